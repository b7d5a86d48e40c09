"""Transfers on Twilio: the TwiML of the legs (parsed as XML, as Twilio reads it) and the REST
calls (Calls and Conference Participants) through the twilio library against the fake REST API."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from twilio.rest import Client

from ivr.transports.twilio_transfer import TransferRest, dial_target, join_conference
from ivr.transports.twiml import Style

from .twilio_driver import ACCOUNT_SID, AUTH_TOKEN, FakeRest, query

BASE = "https://ivr.example.se"
CALL = "CA" + "1" * 32
CONF = "CF" + "2" * 32


def rest(*outcomes: object) -> tuple[TransferRest, FakeRest, list[float]]:
    fake, sleeps = FakeRest(list(outcomes)), []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=fake, environment={})
    return TransferRest(client, retries=2, sleep=sleep), fake, sleeps


def test_a_blind_transfer_dials_the_target_and_learns_of_its_answer_on_the_targets_leg():
    doc = ET.fromstring(dial_target("+46313001122", call_sid=CALL, transfer=2, ring_s=25, base=BASE,
                                    style=Style(caller_id="+46330000000")))
    (dial,) = doc
    (number,) = dial
    assert (dial.tag, number.tag, number.text) == ("Dial", "Number", "+46313001122")
    assert dial.attrib["timeout"] == "30" and dial.attrib["callerId"] == "+46330000000"
    assert query(dial.attrib["action"]) == {"call": CALL, "n": "2"}
    assert dial.attrib["action"].startswith(f"{BASE}/twilio/xfer-result?")
    assert number.attrib["url"].startswith(f"{BASE}/twilio/xfer-answer?")
    client = ET.fromstring(dial_target("client:asa", call_sid=CALL, transfer=1, ring_s=25, base=BASE,
                                       style=Style()))[0][0]
    assert (client.tag, client.text) == ("Client", "asa")


def test_the_conference_keeps_the_caller_and_ends_with_the_caller_not_the_agent():
    style = Style(hold_music="hold.mp3")
    caller = ET.fromstring(join_conference(CALL, "caller", base=BASE, style=style))[0][0]
    agent = ET.fromstring(join_conference(CALL, "agent", base=BASE, style=style))[0][0]
    assert caller.tag == agent.tag == "Conference" and caller.text == agent.text == f"xfer-{CALL}"
    assert (caller.attrib["participantLabel"], caller.attrib["endConferenceOnExit"]) == ("caller", "true")
    assert (agent.attrib["participantLabel"], agent.attrib["endConferenceOnExit"]) == ("agent", "false")
    assert caller.attrib["waitUrl"] == f"{BASE}/recordings/hold.mp3" and "waitUrl" not in agent.attrib
    assert "join" in caller.attrib["statusCallbackEvent"].split()


async def test_participants_are_added_held_and_removed_by_label():
    api, fake, _ = rest()
    assert await api.add_colleague(CONF, to="client:asa", from_="+46330000000", ring_s=25,
                                   status_callback=f"{BASE}/twilio/xfer-participant?call={CALL}&n=1") is None
    assert await api.update(CONF, "caller", hold=True, hold_url=f"{BASE}/recordings/hold.mp3") is None
    assert await api.remove(CONF, "agent") is None
    create, hold, remove = fake.requests
    assert create["method"] == "POST" and create["url"].endswith(f"/Conferences/{CONF}/Participants.json")
    assert {k: create["data"][k] for k in ("To", "From", "Label", "Timeout", "EndConferenceOnExit")} == {
        "To": "client:asa", "From": "+46330000000", "Label": "colleague", "Timeout": 25,
        "EndConferenceOnExit": "false"}
    assert hold["url"].endswith(f"/Conferences/{CONF}/Participants/caller.json")
    assert hold["data"]["Hold"] == "true"
    assert (remove["method"], remove["url"].endswith("/Participants/agent.json")) == ("DELETE", True)


async def test_a_refusal_is_final_and_named_while_a_server_error_is_retried():
    api, fake, sleeps = rest(400)
    detail = await api.redirect(CALL, f"{BASE}/twilio/xfer?call={CALL}")
    assert detail is not None and detail.startswith(f"redirect {CALL}: HTTP 400") and len(fake.requests) == 1
    api, fake, sleeps = rest(500, 429)
    assert await api.remove(CONF, "colleague") is None
    assert len(fake.requests) == 3 and sleeps == [0.5, 1.0]
