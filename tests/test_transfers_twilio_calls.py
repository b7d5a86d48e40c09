"""Agent transfers end to end over the fake Twilio (tests/twilio_driver.py): signed webhooks,
TwiML followed as XML, the caller's call moved by the REST API."""

from __future__ import annotations

import pytest

from ivr.transfers import Target

from .twilio_driver import T0, query, rig

ASA = Target("directory", "asa-oberg", "client:asa", "Åsa Öberg", ("bygglov",))
NUMBER = Target("number", "+46313001122", "+46313001122", "+46 31-*** ** 22")


@pytest.fixture
async def r(aiohttp_client, tmp_path):
    return await rig(aiohttp_client, tmp_path)


async def talking(r):
    """A caller in "barn-utbildning" talking to anna (dialled in the menu's answer)."""
    r.center.agent(T0, "anna", "login")
    call = r.twilio.call()
    await call.start()
    await call.press("1")
    r.clock.advance(10)
    await call.agent_answers()
    assert r.runtime.queues.agent_state("anna") == "talking"
    return call


def logged(events: list[dict], kind: str) -> list[dict]:
    return [e["data"] for e in events if e["kind"] == kind]


async def test_a_blind_transfer_to_a_person_moves_the_caller_and_the_survey_follows_the_target(r) -> None:
    call = await talking(r)
    r.clock.advance(30)
    r.center.transfer(r.clock.now(), "anna", call.sid, "blind", ASA)
    await r.settle()
    assert await call.follow_rest() == 1  # the caller's call is redirected out of the agent's <Dial>
    assert call.state == "dial" and call.dialled() == ("Client", "asa")
    action = call.verb.attrib["action"]
    assert "/twilio/xfer-result" in action and query(action)["n"] == "1"
    assert r.runtime.queues.agent_state("anna") == "talking"  # until the target answers

    r.clock.advance(6)
    await call.agent_answers()  # Åsa picks up: xfer-answer on her leg
    assert call.state == "talking" and r.runtime.queues.agent_state("anna") == "wrapup"

    r.clock.advance(90)
    await call.agent_hangs_up(90)  # Åsa hangs up: the <Dial action> goes on to the survey
    assert call.state == "gather" and call.heard[-1].startswith("Fick du den hjälp")
    await call.press("1")
    assert call.state == "ended"

    events = await r.events(call.sid)
    assert logged(events, "transfer_started")[0]["from_queue"] == "barn-utbildning"
    assert logged(events, "leg_answered")[0]["ring_s"] == 6.0
    assert logged(events, "transfer_completed")[0]["target"] == "asa-oberg"
    assert logged(events, "leg_ended")[0]["talk_s"] == 90.0
    assert logged(events, "talk_ended")[0]["talk_s"] == pytest.approx(36.0)  # anna's leg
    row = await r.row(call.sid)
    assert row["survey"] == "yes" and row["agent"] == "anna"


async def test_a_busy_number_gives_the_caller_back_to_the_agent_in_the_same_answer(r) -> None:
    call = await talking(r)
    r.center.transfer(r.clock.now(), "anna", call.sid, "blind", NUMBER)
    await r.settle()
    await call.follow_rest()
    assert call.dialled() == ("Number", "+46313001122")
    await call.dial_ends("busy")  # the <Dial action> answers with the agent's <Dial> again
    assert call.state == "dial" and call.dialled() == ("Client", "anna")
    await call.agent_answers()
    assert call.state == "talking" and r.runtime.queues.agent_state("anna") == "talking"
    failed = logged(await r.events(call.sid), "transfer_failed")[0]
    assert (failed["reason"], failed["fallback"]) == ("busy", "agent")
    assert failed["detail"] == "DialCallStatus busy"


async def test_a_target_that_rings_out_comes_back_to_the_agent_through_rest(r) -> None:
    call = await talking(r)
    r.center.transfer(r.clock.now(), "anna", call.sid, "blind", ASA)
    await r.settle()
    await call.follow_rest()
    assert call.verb.attrib["timeout"] == "30"  # 25 s and Twilio's margin: the machine decides
    r.advance(25)  # the ring timeout
    await r.settle()
    assert await call.follow_rest() == 1
    assert call.dialled() == ("Client", "anna")
    assert logged(await r.events(call.sid), "transfer_failed")[0]["reason"] == "no-answer"


async def test_the_caller_hanging_up_while_the_target_rings_ends_the_transfer_and_the_agents_talk(r) -> None:
    call = await talking(r)
    r.center.transfer(r.clock.now(), "anna", call.sid, "blind", ASA)
    await r.settle()
    await call.follow_rest()
    r.clock.advance(4)
    await call.hang_up()
    assert r.runtime.queues.agent_state("anna") == "wrapup"
    assert r.center.transfers.next_deadline() is None  # no ring timeout left over
    assert r.center.transfers.view(call.sid) is None
    assert logged(await r.events(call.sid), "transfer_failed")[0]["reason"] == "caller-hangup"


async def test_an_attended_transfer_is_refused_on_twilio_for_now_and_the_call_stays(r) -> None:
    call = await talking(r)
    r.center.transfer(r.clock.now(), "anna", call.sid, "attended", ASA)
    await r.settle()
    assert await call.follow_rest() == 0 and call.state == "talking"
    assert r.runtime.queues.agent_state("anna") == "talking"
    failed = logged(await r.events(call.sid), "transfer_failed")[0]
    assert failed["reason"] == "refused" and "not wired on Twilio" in failed["detail"]
