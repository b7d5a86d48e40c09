"""Commands -> TwiML: each verb and attribute Twilio acts on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ivr.transports import twiml
from ivr.vocabulary import Gather, Hangup, Prompt, Record, Transfer

from .twilio_driver import query

BASE = "https://ivr.example.se"
STYLE = twiml.Style(voice_sv="Polly.Astrid", voice_en="Polly.Amy", hold_music="musik/kö.mp3",
                    caller_id="+46331234567")


def doc(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    return root


def test_text_is_spoken_in_the_prompts_language_and_audio_is_played_from_recordings() -> None:
    plays = [Prompt("sv", "Hej."), Prompt("en", "Hello."),
             Prompt("sv", "Välkommen", audio="sv/välkommen.wav")]
    root = doc(twiml.flow(plays, Hangup(), base=BASE, step=1, style=STYLE))
    say_sv, say_en, play, hangup = list(root)
    assert (say_sv.text, say_sv.get("language"), say_sv.get("voice")) == ("Hej.", "sv-SE", "Polly.Astrid")
    assert (say_en.get("language"), say_en.get("voice")) == ("en-GB", "Polly.Amy")
    assert play.tag == "Play" and play.text == f"{BASE}/recordings/sv/v%C3%A4lkommen.wav"
    assert hangup.tag == "Hangup"


def test_a_gather_nests_its_prompts_and_falls_back_to_a_timeout_redirect() -> None:
    cmd = Gather((Prompt("sv", "Slå ditt ärendenummer."),), max_digits=8, timeout_s=7.4, finish_on_key="#")
    gather, redirect = list(doc(twiml.flow([], cmd, base=BASE, step=4, style=STYLE)))
    assert gather.attrib == {"input": "dtmf", "numDigits": "8", "timeout": "7", "finishOnKey": "#",
                             "action": f"{BASE}/twilio/gather?step=4", "method": "POST",
                             "actionOnEmptyResult": "false"}
    assert [c.tag for c in gather] == ["Say"]
    assert redirect.get("method") == "POST" and query(redirect.text) == {"step": "4", "timeout": "1"}


def test_a_record_reports_the_recording_and_falls_back_when_nothing_was_said() -> None:
    cmd = Record((Prompt("sv", "Lämna ett meddelande."),), max_length_s=90)
    say, record, redirect = list(doc(twiml.flow([], cmd, base=BASE, step=2, style=STYLE)))
    assert say.tag == "Say"
    assert record.get("maxLength") == "90" and record.get("finishOnKey") == "#"
    assert record.get("action") == f"{BASE}/twilio/record?step=2"
    assert record.get("recordingStatusCallback") == f"{BASE}/twilio/recording-status"
    assert query(redirect.text) == {"step": "2", "empty": "1"}


def test_transfers_and_agents_are_dialled_by_their_kind_of_address() -> None:
    for target, noun in (("+4633000000", "Number"), ("client:jour", "Client"), ("sip:jour@pbx.se", "Sip")):
        [dial] = list(doc(twiml.flow([], Transfer(target), base=BASE, step=3, style=STYLE)))
        assert dial.get("callerId") == "+46331234567"
        assert dial.get("action") == f"{BASE}/twilio/transfer-result?step=3"
        [n] = list(dial)
        assert n.tag == noun and n.text == target.removeprefix("client:")
    [dial] = list(doc(twiml.dial_agent([], agent="anna", endpoint="client:anna", call_sid="CA" + "0" * 32,
                                       ring_s=25, base=BASE, step=5, style=STYLE)))
    assert dial.get("timeout") == "25" and query(dial.get("action")) == {"step": "5", "agent": "anna"}
    [client] = list(dial)
    assert client.tag == "Client" and client.text == "anna"
    assert query(client.get("url")) == {"call": "CA" + "0" * 32, "agent": "anna", "step": "5"}


def test_waiting_is_an_enqueue_whose_rounds_play_hold_music() -> None:
    [enqueue] = list(doc(twiml.enqueue([], "vaxeln", base=BASE, step=6, style=STYLE)))
    assert enqueue.text == "vaxeln" and enqueue.get("waitUrl") == f"{BASE}/twilio/wait?step=6"
    assert enqueue.get("action") == f"{BASE}/twilio/queue-exit?step=6"
    [play] = list(doc(twiml.wait([], base=BASE, step=6, style=STYLE)))
    assert play.tag == "Play" and play.text == f"{BASE}/recordings/musik/k%C3%B6.mp3"
    [gather] = list(doc(twiml.wait([Prompt("en", "You are number 2.")], base=BASE, step=6, style=STYLE,
                                   callback_language="en")))
    assert [c.tag for c in gather] == ["Say", "Say", "Play"] and gather.get("numDigits") == "1"
    assert "call you back" in list(gather)[1].text
