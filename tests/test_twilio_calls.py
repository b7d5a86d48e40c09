"""Whole calls through the Twilio transport, over real HTTP, with a fake Twilio that
follows the TwiML as Twilio does (``tests/twilio_driver.py``)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from ivr.cli import main
from ivr.flowcheck import FlowContext, load_flow
from ivr.simulate import simulate_call

from .conftest import ROOT
from .twilio_driver import T0, query, rig


@pytest.fixture
async def r(aiohttp_client, tmp_path):
    return await rig(aiohttp_client, tmp_path)


def kinds(events: list[dict]) -> list[str]:
    return [e["kind"] for e in events]


def figures(table: str, label: str) -> list[str]:
    """The cells after ``label`` on its line of an ``ivr report`` table."""
    lines = [line for line in table.splitlines() if line.startswith(label + "  ")]
    assert len(lines) == 1, f"{label!r}: {len(lines)} lines in\n{table}"
    return re.split(r"\s{2,}", lines[0][len(label):].strip())


def report(capsys, r, *argv: str) -> str:
    """``ivr report`` for the test's day, over the test's event log, as a person runs it."""
    capsys.readouterr()
    day = T0.date().isoformat()
    code = main(["report", "--config", str(ROOT / "config.toml"), "--db", str(r.log.db_path),
                 "--from", day, "--to", day, *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


async def test_a_whole_call_menu_queue_agent_survey_wrapup_is_logged_as_simulate_would(r, capsys) -> None:
    call = r.twilio.call("+46701234567")
    await call.start()
    assert call.heard[0] == "Välkommen till Bollebygds kommun."
    assert call.state == "gather" and call.verb.attrib["numDigits"] == "1"
    assert call.verb.attrib["finishOnKey"] == ""  # a menu: # may be an option
    say = call.verb.find("Say")
    assert (say.get("language"), say.get("voice")) == ("sv-SE", "Polly.Astrid")

    await call.press("1")  # barn och utbildning; nobody logged in yet: wait in the queue
    assert call.heard[-1] == "Du kopplas till barn och utbildning."
    assert call.state == "enqueue" and call.verb.text == "barn-utbildning"
    await call.wait_round()
    assert call.heard[-2:] == ["Du är nummer 1 i kön.",
                               "Om du vill bli uppringd i stället för att vänta, tryck 1."]

    r.clock.advance(30)
    r.center.agent(r.clock.now(), "anna", "login")  # anna is offered the caller at once
    r.runtime.poke()
    await r.settle()
    assert len(r.rest.redirects(call.sid)) == 1  # the caller is fetched out of <Enqueue>
    await call.follow_rest()
    assert call.state == "dial" and call.dialled() == ("Client", "anna")
    assert call.verb.attrib["timeout"] == "25"  # ring_timeout_s 20 + the margin

    r.clock.advance(8)
    whisper = await call.agent_answers()
    assert "Barn och utbildning" in whisper
    assert r.runtime.queues.agent_state("anna") == "talking"

    r.clock.advance(200)
    await call.agent_hangs_up()  # the agent leaves: the caller is asked the survey
    assert call.state == "gather" and call.heard[-1].startswith("Fick du den hjälp")
    r.clock.advance(4)
    await call.press("1")
    assert call.heard[-1] == "Tack för ditt svar." and call.state == "ended"

    r.center.agent(r.clock.advance(20), "anna", "wrapup", category="skola", resolution="resolved")
    row = await r.row(call.sid)
    assert row["transport"] == "twilio" and row["status"] == "ended"
    assert (row["queue"], row["queue_outcome"], row["agent"]) == ("barn-utbildning", "answered", "anna")
    assert row["wait_s"] == pytest.approx(38) and row["talk_s"] == pytest.approx(200)
    assert (row["survey"], row["resolution"], row["category"]) == ("yes", "resolved", "skola")

    flow = load_flow(ROOT / "callflows" / "switchboard.toml", FlowContext.from_settings(r.runtime.settings))
    sim = simulate_call(flow, at=T0, keys=["1", "1"], queue_result="answered",
                        schedules=r.runtime.settings.hours, announcements=r.runtime.board)
    assert (row["path"], row["end"]) == (sim.path, sim.end)
    assert call.sid not in r.runtime.router.owner  # released when the call ended

    # and `ivr report` over this log shows it, as the municipality reads it
    table = report(capsys, r)
    assert figures(table, "KPI") == ["Totalt / Total", "barn-utbildning"]
    assert figures(table, "Erbjudna till kö / Offered") == ["1", "1"]
    assert figures(table, "Besvarade / Answered") == ["1", "1"]
    assert figures(table, "Avbrutna i kö / Abandoned") == ["0", "0"]
    assert figures(table, "Snittid till svar / ASA") == ["38.0 s", "38.0 s"]
    assert figures(table, "Löst enligt kodning / FCR, agent-coded") == ["100.0 %", "100.0 %"]  # resolved
    assert figures(table, "Löst enligt enkät / FCR, survey") == ["100.0 %", "100.0 %"]  # survey: yes
    assert figures(table, "skola") == ["1", "1", "100.0 %", "0", "–", "1", "100.0 %", "1"]


async def test_an_agent_already_free_is_dialled_in_the_same_answer_without_rest(r) -> None:
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    assert call.heard[-1] == "Du kopplas till barn och utbildning."
    assert call.state == "dial" and call.dialled() == ("Client", "anna")
    assert r.rest.requests == []


async def test_caller_who_hangs_up_in_the_queue_is_abandoned(r) -> None:
    call = r.twilio.call()
    await call.start()
    await call.press("3")
    assert call.state == "enqueue"
    r.clock.advance(45)
    await call.hang_up()
    row = await r.row(call.sid)
    assert (row["queue_outcome"], row["status"]) == ("abandoned", "ended")
    assert row["wait_s"] == pytest.approx(45)
    assert r.runtime.queues.snapshot(r.clock.now())["queues"]["vatten-avfall"]["waiting"] == 0


async def test_caller_who_hangs_up_while_the_agent_rings_is_abandoned_and_the_offer_cancelled(r) -> None:
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    r.clock.advance(5)
    await call.hang_up()
    row = await r.row(call.sid)
    assert (row["queue_outcome"], row["abandon_stage"]) == ("abandoned", "ringing")
    assert r.runtime.queues.agent_state("anna") == "available"


async def test_caller_who_hangs_up_while_talking_sends_the_agent_to_wrapup(r) -> None:
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    await call.agent_answers()
    r.clock.advance(90)
    await call.hang_up()
    assert r.runtime.queues.agent_state("anna") == "wrapup"
    row = await r.row(call.sid)
    assert (row["queue_outcome"], row["talk_s"], row["status"]) == ("answered", pytest.approx(90), "ended")


async def test_an_agent_whose_phone_is_busy_declines_and_the_next_agent_is_dialled(r) -> None:
    r.center.agent(T0, "anna", "login")
    r.center.agent(T0, "johan", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    first = call.dialled()[1]
    r.clock.advance(6)
    await call.dial_ends("busy")
    second = {"anna": "johan", "johan": "anna"}[first]
    assert call.state == "dial" and call.dialled() == ("Client", second)
    assert r.runtime.queues.agent_state(first) == "available"  # declined, not paused
    events = await r.events(call.sid)
    assert [e["data"]["agent"] for e in events if e["kind"] == "queue_offered"] == [first, second]


async def test_a_failed_dial_puts_the_caller_back_in_the_queue_until_the_engine_rings_out(r) -> None:
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    await call.dial_ends("failed")  # anna's phone cannot be reached
    assert call.state == "enqueue" and call.verb.text == "barn-utbildning"
    assert r.runtime.queues.agent_state("anna") == "offered"
    r.advance(21)
    await r.settle()
    assert r.runtime.queues.agent_state("anna") == "paused"  # missed
    assert r.rest.requests == []  # the caller already waits: nothing to redirect
    await call.wait_round()
    assert call.state == "enqueue"


async def test_an_offer_that_rings_out_in_the_engine_sends_the_caller_back_to_waiting(r) -> None:
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    assert call.state == "dial"
    r.advance(21)  # the engine's ring timeout (20 s) comes first: anna is paused as missed
    r.runtime.poke()
    await r.settle()
    assert await call.follow_rest() == 1
    assert call.state == "enqueue"
    assert r.runtime.queues.agent_state("anna") == "paused"
    events = await r.events(call.sid)
    assert "queue_ring_timeout" in kinds(events)


async def test_a_queue_that_overflows_moves_the_waiting_caller_on_through_rest(r) -> None:
    call = r.twilio.call()
    await call.start()
    await call.press("1")  # barn-utbildning: max_wait_s 600, overflow to "busy" then a message
    await call.wait_round()
    r.advance(601)
    await r.settle()
    await call.follow_rest()
    assert "Just nu är det många som ringer" in call.heard[-2]
    assert call.state == "record" and call.verb.attrib["maxLength"] == "120"
    await call.record(seconds=12)
    assert call.heard[-1].startswith("Tack för ditt meddelande") and call.state == "ended"
    row = await r.row(call.sid)
    assert (row["queue_outcome"], row["end"]) == ("overflow", "message")
    assert row["message_ref"].startswith("https://api.twilio.com/") and "/Recordings/RE" in row["message_ref"]


async def test_an_english_caller_hears_the_position_in_english_between_hold_rounds(r) -> None:
    call = r.twilio.call()
    await call.start()
    await call.press("9")
    assert call.verb.find("Say").get("language") == "en-GB"
    await call.press("0")  # the switchboard
    first = await call.wait_round()
    assert call.heard[-2].startswith("You are number 1 in the queue.")
    assert ET.fromstring(first).find(".//Pause") is not None  # no hold music configured
    call.heard.clear()
    await call.wait_round()
    assert not any(h.startswith("You are number") for h in call.heard)  # said once per announcement


async def test_a_menu_timeout_follows_the_fallback_and_is_logged_once(r) -> None:
    call = r.twilio.call()
    await call.start()
    await call.timeout()
    assert call.state == "gather"  # asked again
    assert call.heard[-2:] == ["Jag uppfattade inget val.", call.heard[1]]  # then the menu again
    events = await r.events(call.sid)
    assert kinds(events).count("timeout") == 1


async def test_a_case_number_is_gathered_with_the_finish_key(r) -> None:
    call = r.twilio.call()
    await call.start()
    await call.press("2")
    await call.press("4")
    assert (call.verb.attrib["finishOnKey"], call.verb.attrib["numDigits"]) == ("#", "8")
    await call.press("4711")
    assert call.state == "enqueue" and call.verb.text == "bygga-bo-miljo"
    events = await r.events(call.sid)
    assert {"digits": "4711", "var": "case_number", "valid": True} in [e["data"] for e in events]


async def test_a_caller_waiting_can_ask_to_be_called_back(r) -> None:
    call = r.twilio.call("+46701112233")
    await call.start()
    await call.press("4")
    await call.press("4")  # omsorg, other questions
    doc = await call.wait_round(press="1")
    assert "tryck 1" in doc
    assert call.heard[-1].startswith("Tack. Vi ringer upp dig") and call.state == "ended"
    row = await r.row(call.sid)
    assert (row["queue_outcome"], row["callback_requested"]) == ("callback", 1)


async def test_closed_hours_message_and_on_call_transfer(r) -> None:
    r.clock.value = T0.replace(hour=19)  # 20:00 in Stockholm
    call = r.twilio.call()
    await call.start()
    await call.press("2")  # the on-call service: a transfer
    assert call.state == "dial" and call.dialled() == ("Number", "+4633000000")
    assert query(call.verb.attrib["action"])["step"]
    await call.dial_ends("no-answer")  # nobody there: on to the message
    assert call.state == "record"
    await call.record()
    row = await r.row(call.sid)
    assert row["end"] == "message"
    events = await r.events(call.sid)
    assert [e["data"] for e in events if e["kind"] == "transfer_result"] == [{"outcome": "no-answer"}]


async def test_a_withheld_number_is_not_offered_a_callback(r) -> None:
    call = r.twilio.call("+266696687")  # Twilio's stand-in for an anonymous caller
    await call.start()
    await call.press("0")
    doc = ET.fromstring(await call.wait_round())
    assert doc.find("Gather") is None and doc.find("Say").text.startswith("Du är nummer 1")


async def test_an_agent_hanging_up_from_the_desk_moves_the_caller_on_through_rest(r) -> None:
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    await call.agent_answers()
    r.center.agent_left(r.clock.advance(60), "anna")  # the desk's hang-up button, outside any webhook
    await r.settle()
    assert await call.follow_rest() == 1
    assert call.state == "gather" and call.heard[-1].startswith("Fick du den hjälp")
    late = await r.twilio.post(call.verb.attrib["action"].replace("gather", "dial-result") + "&agent=anna",
                               call.params(DialCallStatus="completed"))
    assert late.status == 200  # Twilio's late report of the broken bridge changes nothing
    await call.press("2")
    row = await r.row(call.sid)
    assert (row["survey"], row["talk_s"]) == ("no", pytest.approx(60))
