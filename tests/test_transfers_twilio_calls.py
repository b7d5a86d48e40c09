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


# --------------------------------------------------------------------------- attended: a conference per call


def rest_to(r, part: str) -> list[dict]:
    return [q for q in r.rest.requests if part in q["url"] and q["outcome"] in (200, 201, 204)]


async def consulting(r):
    """anna starts an attended transfer to Åsa 30 s into the talk; Åsa answers 5 s later."""
    call = await talking(r)
    r.center.transfer(r.clock.advance(30), "anna", call.sid, "attended", ASA)
    await r.settle()
    # the agent's leg is redirected into the conference, the caller follows from its <Dial action>;
    # on the caller's participant-join it is held and the colleague added
    assert await call.follow_rest() == 3
    assert call.state == "conference"
    conference = call.conference
    assert conference.name == f"xfer-{call.sid}"
    assert set(conference.parties) == {"agent", "caller", "colleague"}
    assert conference.parties["caller"].end_on_exit and not conference.parties["agent"].end_on_exit
    assert [q["url"].rsplit("/", 2)[-2:] for q in r.rest.requests] == [
        ["Calls", f"{call.agent_leg}.json"], ["Participants", "caller.json"],
        [conference.sid, "Participants.json"]]
    assert call.party("caller").hold
    colleague = rest_to(r, "/Participants.json")[0]["data"]
    assert (colleague["To"], colleague["Label"], colleague["Timeout"]) == ("client:asa", "colleague", 25)
    assert r.center.transfer_state(call.sid)["state"] == "ringing"
    r.clock.advance(5)
    await call.colleague_answers()
    assert r.center.transfer_state(call.sid)["state"] == "consulting"
    assert r.runtime.queues.agent_state("anna") == "talking"
    return call


async def test_attended_transfer_on_twilio_consults_in_a_conference_then_completes(r) -> None:
    call = await consulting(r)
    r.center.agent(r.clock.advance(40), "anna", "transfer_complete")
    await r.settle()
    assert await call.follow_rest() == 3  # caller off hold, colleague endConferenceOnExit, agent removed
    assert set(call.conference.parties) == {"caller", "colleague"}
    assert not call.party("caller").hold and call.party("colleague").end_on_exit
    assert call.agent_heard[-1] == "Hangup"  # the agent's removed leg hangs up
    assert r.runtime.queues.agent_state("anna") == "wrapup"

    r.clock.advance(60)
    await call.party_hangs_up("colleague")  # Åsa is done: the conference ends, the caller goes on
    await r.settle()
    await call.follow_rest()
    assert call.state == "gather" and call.heard[-1].startswith("Fick du den hjälp")
    await call.press("1")
    assert call.state == "ended"
    events = await r.events(call.sid)
    kinds = [e["kind"] for e in events if e["kind"].startswith(("transfer", "leg"))]
    assert kinds == ["transfer_started", "leg_answered", "transfer_completed", "leg_ended"]
    assert logged(events, "transfer_completed")[0]["consult_s"] == 40.0
    assert logged(events, "leg_ended")[0]["talk_s"] == 100.0
    row = await r.row(call.sid)
    assert (row["survey"], row["agent"]) == ("yes", "anna")


async def test_attended_transfer_on_twilio_cancelled_gives_the_caller_back_to_the_agent(r) -> None:
    call = await consulting(r)
    r.center.agent(r.clock.advance(20), "anna", "transfer_cancel")
    await r.settle()
    assert await call.follow_rest() == 3  # colleague removed, caller off hold, agent ends it on leaving
    assert set(call.conference.parties) == {"agent", "caller"}
    assert not call.party("caller").hold and call.party("agent").end_on_exit
    assert r.center.transfer_state(call.sid)["state"] == "cancelled"
    assert r.runtime.queues.agent_state("anna") == "talking"

    await call.party_hangs_up("agent")  # anna finishes: the conference ends, the survey follows
    assert call.state == "gather" and call.heard[-1].startswith("Fick du den hjälp")
    kinds = [e["kind"] for e in await r.events(call.sid) if e["kind"].startswith(("transfer", "leg"))]
    assert kinds == ["transfer_started", "leg_answered", "leg_ended", "transfer_cancelled"]
    assert r.runtime.queues.agent_state("anna") == "wrapup"


async def test_a_colleague_who_does_not_answer_on_twilio_leaves_the_caller_with_the_agent(r) -> None:
    call = await talking(r)
    r.center.transfer(r.clock.now(), "anna", call.sid, "attended", ASA)
    await r.settle()
    await call.follow_rest()
    r.advance(25)  # the machine's ring timeout
    await r.settle()
    assert await call.follow_rest() == 3  # the ringing colleague removed, caller off hold, agent ends it
    assert set(call.conference.parties) == {"agent", "caller"} and not call.party("caller").hold
    failed = logged(await r.events(call.sid), "transfer_failed")[0]
    assert (failed["reason"], failed["fallback"]) == ("no-answer", "agent")
    assert r.runtime.queues.agent_state("anna") == "talking"


async def test_a_busy_colleague_on_twilio_is_reported_by_the_participant_callback(r) -> None:
    call = await talking(r)
    r.center.transfer(r.clock.now(), "anna", call.sid, "attended", NUMBER)
    await r.settle()
    await call.follow_rest()
    assert call.party("colleague").to == "+46313001122"
    await call.colleague_fails("busy")
    failed = logged(await r.events(call.sid), "transfer_failed")[0]
    assert (failed["reason"], failed["detail"]) == ("busy", "CallStatus busy")
    await r.settle()
    await call.follow_rest()
    assert not call.party("caller").hold and call.party("agent").end_on_exit


async def test_a_refused_move_of_the_agents_leg_keeps_the_call_as_it_was(aiohttp_client, tmp_path) -> None:
    from .twilio_driver import FakeRest
    r = await rig(aiohttp_client, tmp_path, rest=FakeRest())
    call = await talking(r)
    r.rest.script = [404]  # the agent's leg is gone as far as Twilio knows
    r.center.transfer(r.clock.now(), "anna", call.sid, "attended", ASA)
    await r.settle()
    assert await call.follow_rest() == 0 and call.state == "talking"
    assert r.runtime.queues.agent_state("anna") == "talking"
    failed = logged(await r.events(call.sid), "transfer_failed")[0]
    assert failed["reason"] == "refused" and "HTTP 404" in failed["detail"]
    assert r.transport.lines[call.sid].mode == "talking"


async def test_an_agent_who_hangs_up_while_consulting_leaves_the_caller_with_the_colleague(r) -> None:
    """As on a PBX the transfer completes; the agent's participant is gone already (Twilio: 404),
    which must not leave the caller on hold music."""
    call = await consulting(r)
    r.rest.script = [200, 200, 404]  # caller off hold, colleague endConferenceOnExit, agent gone
    r.clock.advance(40)
    await call.party_hangs_up("agent")
    await r.settle()
    await call.follow_rest()
    assert not call.party("caller").hold
    assert set(call.conference.parties) == {"caller", "colleague"} and call.party("colleague").end_on_exit
    assert r.center.transfer_state(call.sid)["state"] == "completed"
    assert r.runtime.queues.agent_state("anna") == "wrapup"


async def test_a_transfer_to_a_queue_puts_the_caller_on_hold_there_through_rest(r) -> None:
    """The caller leaves the agent's <Dial> for the new queue's <Enqueue> at once, not on
    the next offer or announcement."""
    call = await talking(r)
    r.clock.advance(20)
    r.center.agent(r.clock.now(), "anna", "transfer", call_id=call.sid, to_queue="omsorg")
    await r.settle()
    assert await call.follow_rest() == 1  # redirected out of the agent's <Dial>
    assert call.state == "enqueue" and call.verb.text == "omsorg"
    assert r.runtime.queues.agent_state("anna") == "wrapup"
    started = logged(await r.events(call.sid), "queue_transferred")
    assert started and (started[0]["from_queue"], started[0]["to_queue"]) == ("barn-utbildning", "omsorg")
