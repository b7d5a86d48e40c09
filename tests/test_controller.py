"""The controller joins the call engine, the queue engine and the log: whole calls, no line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivr.announcements import AnnouncementBoard
from ivr.controller import ContactCenter, position_prompt
from ivr.flowcheck import FlowContext, load_flow
from ivr.store import EventLog
from ivr.vocabulary import CallerHungUp, Digits, Enqueue, Gather, Hangup, Play
from queues import AgentConfig, QueueConfig, QueueEngine

from .conftest import FIXTURES

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


class Open:
    def status(self, at: datetime) -> str:
        return "open"


class Line:
    """A transport that records what the controller asks of it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list]] = []
        self.offers: list = []
        self.cancelled: list = []
        self.connected: list[tuple[str, str]] = []

    def send(self, call_id, commands):
        self.sent.append((call_id, list(commands)))

    def offer(self, offer):
        self.offers.append(offer)

    def cancel_offer(self, cancel):
        self.cancelled.append(cancel)

    def connect(self, agent, call_id):
        self.connected.append((agent, call_id))


@pytest.fixture
def center(ctx: FlowContext, tmp_path):
    flow = load_flow(FIXTURES / "flows" / "good" / "every_kind.toml", ctx)
    queues = QueueEngine(
        {"vaxeln": QueueConfig("vaxeln", wrapup_s=30, ring_timeout_s=15, announce_every_s=60,
                               categories=("ovrigt", "personsokning"))},
        {"anna": AgentConfig("anna", "Anna", {"vaxeln": 5}), "bo": AgentConfig("bo", "Bo", {"vaxeln": 3})})
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"controller-test-key-123")
    line = Line()
    cc = ContactCenter(flow, queues, schedules={"office": Open()}, board=AnnouncementBoard(),
                       sink=log, transport=line)
    yield cc, line, log
    log.close()


def to_queue(cc: ContactCenter, call_id: str, at: datetime) -> None:
    cc.start_call(at, call_id, "+46701234567", "+4633000000", "sim")
    cc.call_event(call_id, Digits(at, "1"))
    cc.call_event(call_id, Digits(at, "4711#"))


def test_a_whole_call_menu_queue_agent_survey_wrapup_lands_in_the_log(center) -> None:
    cc, line, log = center
    cc.agent(T0, "anna", "login")
    to_queue(cc, "c1", T0)
    assert isinstance(line.sent[-1][1][-1], Enqueue)
    offer = line.offers[-1]
    assert (offer.agent, offer.call_id, offer.kind) == ("anna", "c1", "call")
    assert dict(offer.attributes)["case_number"] == "4711"
    cc.agent(T0 + timedelta(seconds=8), "anna", "accept")
    assert line.connected == [("anna", "c1")]
    cc.agent_left(T0 + timedelta(seconds=200), "anna")  # the agent hangs up: survey for the caller
    survey = line.sent[-1][1]
    assert isinstance(survey[-1], Gather) and "Fick du hjälp" in survey[-1].prompts[0].text
    cc.call_event("c1", Digits(T0 + timedelta(seconds=205), "1"))
    assert isinstance(line.sent[-1][1][-1], Hangup)
    cc.agent(T0 + timedelta(seconds=220), "anna", "wrapup", category="ovrigt", resolution="resolved",
             note="Gav besked om bygglov")
    log.flush()
    call = log.call("c1")
    assert call["end"] == "queue:vaxeln" and call["queue_outcome"] == "answered"
    assert call["agent"] == "anna" and call["wait_s"] == pytest.approx(8.0)
    assert call["talk_s"] == pytest.approx(192.0) and call["resolution"] == "resolved"
    assert call["coded"] == 1 and call["survey"] == "yes" and call["category"] == "ovrigt"
    kinds = [e["kind"] for e in log.events("c1")]
    assert kinds.index("queue_joined") < kinds.index("queue_offered") < kinds.index("queue_answered")
    assert kinds.index("talk_ended") < kinds.index("survey") < kinds.index("wrapup")


def test_a_caller_who_hangs_up_while_ringing_is_abandoned_and_the_agent_freed(center) -> None:
    cc, line, log = center
    cc.agent(T0, "anna", "login")
    to_queue(cc, "c2", T0)
    cc.call_event("c2", CallerHungUp(T0 + timedelta(seconds=5)))
    assert line.cancelled and line.cancelled[-1].reason == "caller-hangup"
    assert cc.queues.agent_state("anna") == "available"
    log.flush()
    call = log.call("c2")
    assert call["queue_outcome"] == "abandoned" and call["abandon_stage"] == "ringing"


def test_the_caller_hanging_up_mid_talk_puts_the_agent_in_wrapup(center) -> None:
    cc, line, log = center
    cc.agent(T0, "anna", "login")
    to_queue(cc, "c3", T0)
    cc.agent(T0 + timedelta(seconds=3), "anna", "accept")
    cc.call_event("c3", CallerHungUp(T0 + timedelta(seconds=60)))
    assert cc.queues.agent_state("anna") == "wrapup"
    cc.tick(T0 + timedelta(seconds=91))  # wrap-up time runs out: uncoded, never guessed
    assert cc.queues.agent_state("anna") == "available"
    log.flush()
    call = log.call("c3")
    assert call["resolution"] == "uncoded" and call["coded"] == 0 and call["talk_s"] == pytest.approx(57.0)


def test_waiting_callers_hear_their_position_in_their_language(center) -> None:
    cc, line, _log = center
    cc.agent(T0, "anna", "login")
    cc.agent(T0, "anna", "pause", reason="lunch")
    to_queue(cc, "c4", T0)
    cc.tick(T0 + timedelta(seconds=61))
    said = [c.prompt.text for cid, cmds in line.sent if cid == "c4" for c in cmds if isinstance(c, Play)]
    assert any(t.startswith("Du är nummer 1 i kön.") for t in said)


def test_position_prompts_in_swedish_and_english() -> None:
    assert position_prompt("sv", 3, 250).text == "Du är nummer 3 i kön. Beräknad väntetid är cirka 4 minuter."
    assert position_prompt("en", 1, 40).text == (
        "You are number 1 in the queue. The estimated waiting time is about one minute.")
    assert position_prompt("sv", 2, None).text == "Du är nummer 2 i kön."


def test_a_callback_request_keeps_the_raw_number_only_in_raw_numbers(center) -> None:
    cc, line, log = center
    to_queue(cc, "c5", T0)
    assert cc.request_callback(T0 + timedelta(seconds=30), "c5")
    cc.agent(T0 + timedelta(seconds=40), "bo", "login")
    offer = line.offers[-1]
    assert offer.kind == "callback" and offer.number == "+46701234567"
    log.flush()
    import sqlite3
    con = sqlite3.connect(log.db_path)
    assert con.execute("select number, purpose from raw_numbers").fetchall() == [("+46701234567", "callback")]
    events = " ".join(r[0] for r in con.execute("select data from events"))
    assert "701234567" not in events


def test_an_unknown_call_is_reported_not_raised(center) -> None:
    cc, _line, _log = center
    assert cc.call_event("nope", Digits(T0, "1")) is False
