"""CallSession: each node kind, retries, timeouts, hang-ups anywhere, and robustness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.announcements import AnnouncementBoard, SlotState
from ivr.engine import CallSession
from ivr.flowcheck import FlowContext, load_flow
from ivr.vocabulary import (
    BLOCKING,
    CallerHungUp,
    CallStarted,
    Digits,
    Enqueue,
    Gather,
    Hangup,
    InputTimeout,
    Play,
    QueueResult,
    Record,
    RecordingDone,
    Transfer,
    TransferResult,
)

from .conftest import FIXTURES

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
ENDS = {"queue:vaxeln", "transfer:+46313000000", "message", "hangup", "caller-hangup"}


class FixedSchedule:
    def __init__(self, status: str):
        self.value = status

    def status(self, at: datetime) -> str:
        return self.value


@pytest.fixture
def flow(ctx: FlowContext):
    return load_flow(FIXTURES / "flows" / "good" / "every_kind.toml", ctx)


def board(on: bool = False, until: datetime | None = None) -> AnnouncementBoard:
    return AnnouncementBoard({"storning": SlotState("storning", on, until,
                                                    {"sv": "Vattenläcka.", "en": "Water leak."})})


def start(flow, status: str = "open", announcements: AnnouncementBoard | None = None):
    session = CallSession(flow, schedules={"office": FixedSchedule(status)},
                          announcements=announcements or board())
    commands = session.handle(CallStarted(T0, "call-1", "+46701234567", "+4633000000"))
    return session, commands


def kinds(trace) -> list[str]:
    return [t.kind for t in trace]


def test_open_call_reaches_the_menu_and_waits_for_one_key(flow) -> None:
    session, commands = start(flow)
    assert [type(c) for c in commands] == [Gather]
    assert commands[0].max_digits == 1 and commands[0].timeout_s == 5.0
    assert commands[0].prompts[0].audio == "sv/menu.wav"
    assert session.path == ["hours", "news", "menu"]
    assert session.waiting_for == "menu"


def test_closed_and_holiday_take_their_branches(flow) -> None:
    for status in ("closed", "holiday"):
        session, commands = start(flow, status)
        assert session.path == ["hours", "bye", "end"]
        assert isinstance(commands[-1], Hangup) and session.ended
        assert session.end == "hangup"


def test_announcement_plays_only_while_switched_on(flow) -> None:
    _s, off = start(flow, announcements=board(on=False))
    _s, on = start(flow, announcements=board(on=True))
    _s, expired = start(flow, announcements=board(on=True, until=T0 - timedelta(minutes=1)))
    assert [type(c) for c in off] == [Gather]
    assert [type(c) for c in on] == [Play, Gather] and on[0].prompt.text == "Vattenläcka."
    assert [type(c) for c in expired] == [Gather]


def test_language_node_switches_every_later_prompt(flow) -> None:
    session, _ = start(flow)
    commands = session.handle(Digits(T0, "2"))
    assert session.language == "en"
    assert commands[0].prompts[0].text == "Press 1, 2, 3 or 4."


def test_input_keeps_a_valid_case_number_and_sets_category(flow) -> None:
    session, _ = start(flow)
    session.handle(Digits(T0, "1"))
    commands = session.handle(Digits(T0, "4711#"))
    assert commands == [Enqueue("vaxeln", "ovrigt", 5, "sv",
                                (("case_number", "4711"), ("source", "ivr")))]
    assert session.end == "queue:vaxeln"
    assert session.attributes["case_number"] == "4711"


def test_input_rejects_a_number_not_matching_the_pattern_then_fails(flow) -> None:
    session, _ = start(flow)
    session.handle(Digits(T0, "1"))
    first = session.handle(Digits(T0, "12#"))
    assert isinstance(first[0], Gather) and first[0].prompts[0].text == "Det valet finns inte."
    session.handle(Digits(T0, "99#"))
    session.handle(Digits(T0, "1x#"))  # three strikes with the default two retries
    assert session.path[-2:] == ["bye", "end"] and session.ended
    assert "case_number" not in session.attributes


def test_menu_invalid_key_uses_the_flows_invalid_prompt_and_counts_retries(flow) -> None:
    session, _ = start(flow)
    again = session.handle(Digits(T0, "9"))
    assert [p.text for p in again[0].prompts] == ["Fel.", "Tryck 1, 2, 3 eller 4."]
    done = session.handle(Digits(T0, "9"))  # retries = 1: the second mistake is on_fail
    assert session.path[-2:] == ["bye", "end"] and isinstance(done[-1], Hangup)


def test_menu_timeout_replays_with_the_builtin_prompt(flow) -> None:
    session, _ = start(flow)
    again = session.handle(InputTimeout(T0))
    assert again[0].prompts[0].text == "Jag uppfattade inget val."
    trace = kinds(session.take_trace())
    assert trace.count("timeout") == 1


def test_star_repeats_without_using_a_retry(flow) -> None:
    session, _ = start(flow)
    for _ in range(5):
        again = session.handle(Digits(T0, "*"))
        assert [p.text for p in again[0].prompts] == ["Tryck 1, 2, 3 eller 4."]
    session.handle(Digits(T0, "9"))
    assert not session.ended  # one retry left after five repeats


def test_queue_answered_goes_to_the_survey_and_records_the_answer(flow) -> None:
    session, _ = start(flow)
    session.handle(Digits(T0, "1"))
    session.handle(Digits(T0, "4711#"))
    survey = session.handle(QueueResult(T0, "answered", agent="anna"))
    assert isinstance(survey[0], Gather) and session.path[-1] == "poll"
    end = session.handle(Digits(T0, "1"))
    assert isinstance(end[-1], Hangup)
    trace = session.take_trace()
    assert [t.data for t in trace if t.kind == "survey"] == [{"answer": "yes"}]
    assert session.end == "queue:vaxeln"


def test_queue_overflow_leads_to_a_message(flow) -> None:
    session, _ = start(flow)
    session.handle(Digits(T0, "1"))
    session.handle(Digits(T0, "4711#"))
    record = session.handle(QueueResult(T0, "overflow"))
    assert isinstance(record[-1], Record)
    done = session.handle(RecordingDone(T0, "rec-1.wav", 12.5))
    assert session.end == "message" and isinstance(done[-1], Hangup)


def test_transfer_that_fails_goes_to_on_fail(flow) -> None:
    session, _ = start(flow)
    commands = session.handle(Digits(T0, "4"))
    assert commands == [Transfer("+46313000000")]
    assert session.end == "transfer:+46313000000"
    again = session.handle(TransferResult(T0, "no-answer"))
    assert isinstance(again[-1], Record) and session.path[-1] == "msg"


def test_message_node_records_and_the_trace_keeps_the_reference(flow) -> None:
    session, _ = start(flow)
    session.handle(Digits(T0, "3"))
    session.handle(RecordingDone(T0, "rec-9.wav", 30.0))
    recordings = [t.data for t in session.take_trace() if t.kind == "recording"]
    assert recordings == [{"ref": "rec-9.wav", "duration_s": 30.0}]


def test_hangup_in_queue_keeps_the_queue_disposition(flow) -> None:
    session, _ = start(flow)
    session.handle(Digits(T0, "1"))
    session.handle(Digits(T0, "4711#"))
    assert session.handle(CallerHungUp(T0)) == []
    assert session.ended and session.end == "queue:vaxeln"
    assert session.take_trace()[-1].data == {"reason": "caller-hangup", "end": "queue:vaxeln"}


def test_events_that_do_not_fit_are_recorded_and_ignored(flow) -> None:
    session, _ = start(flow)
    assert session.handle(RecordingDone(T0, "x")) == []
    assert session.handle(QueueResult(T0, "answered")) == []
    assert kinds(session.take_trace())[-2:] == ["unexpected_event", "unexpected_event"]
    assert session.waiting_for == "menu"


def test_a_second_call_started_is_ignored_and_events_before_start_too(flow) -> None:
    fresh = CallSession(flow, schedules={"office": FixedSchedule("open")})
    assert fresh.handle(Digits(T0, "1")) == []
    session, _ = start(flow)
    assert session.handle(CallStarted(T0, "again")) == []
    assert session.call_id == "call-1"


def test_after_the_end_nothing_more_happens(flow) -> None:
    session, _ = start(flow)
    session.handle(CallerHungUp(T0))
    session.take_trace()
    assert session.handle(Digits(T0, "1")) == []
    assert session.take_trace() == []


def test_naive_times_are_taken_as_utc_and_trace_times_follow_events(flow) -> None:
    session = CallSession(flow, schedules={"office": FixedSchedule("open")})
    session.handle(CallStarted(T0.replace(tzinfo=None), "c"))
    later = T0 + timedelta(seconds=7)
    session.handle(Digits(later, "2"))
    trace = session.take_trace()
    assert trace[0].at == T0
    assert trace[-1].at == later


def test_an_engine_fault_ends_the_call_instead_of_raising(flow) -> None:
    # A schedule that blows up stands for any bug: the session must not raise.
    class Broken:
        def status(self, at: datetime) -> str:
            raise RuntimeError("boom")

    session = CallSession(flow, schedules={"office": Broken()})
    commands = session.handle(CallStarted(T0, "c"))
    assert commands == [Hangup("error")] and session.ended
    assert "boom" in session.take_trace()[-3].data["error"]


# ----------------------------------------------------------------- hang up anywhere


def waiting_points(flow):
    """Every (keys so far) after which the session waits, found by exploring the flow."""
    found = {}
    frontier = [()]
    answers = ["1", "2", "3", "4", "#", "9", "4711#", "t"]
    while frontier:
        keys = frontier.pop()
        session, commands = start(flow)
        for k in keys:
            event = InputTimeout(T0) if k == "t" else Digits(T0, k)
            commands = session.handle(event)
        if session.ended or not commands or session.node is None:
            continue
        node = session.node.id
        if node in found or len(keys) > 4:
            continue
        found[node] = keys
        if isinstance(commands[-1], Gather):
            frontier.extend(keys + (a,) for a in answers)
    return found


def test_hanging_up_at_every_waiting_node_ends_the_call_cleanly(flow) -> None:
    points = waiting_points(flow)
    assert set(points) >= {"menu", "case", "q", "msg", "out"}
    for node, keys in points.items():
        session, _ = start(flow)
        for k in keys:
            session.handle(InputTimeout(T0) if k == "t" else Digits(T0, k))
        assert session.handle(CallerHungUp(T0)) == [], node
        trace = session.take_trace()
        assert session.ended and trace[-1].kind == "call_ended", node
        assert session.end in ENDS


# ----------------------------------------------------------------- property

EVENTS = st.one_of(
    st.builds(Digits, st.just(T0), st.text(alphabet="0123456789*#", max_size=6)),
    st.builds(Digits, st.just(T0), st.text(max_size=4)),
    st.builds(InputTimeout, st.just(T0)),
    st.builds(RecordingDone, st.just(T0), st.none() | st.text(max_size=5)),
    st.builds(QueueResult, st.just(T0), st.sampled_from(["answered", "overflow", "closed", "x"])),
    st.builds(TransferResult, st.just(T0), st.sampled_from(["failed", "busy"])),
    st.builds(CallerHungUp, st.just(T0)),
    st.builds(CallStarted, st.just(T0), st.text(max_size=3)),
)


# The flow fixture is frozen, so sharing it between examples is safe.
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["open", "closed", "holiday"]), st.lists(EVENTS, max_size=25))
def test_no_sequence_of_events_crashes_and_every_call_reaches_an_end(flow, status, events):
    session, commands = start(flow, status)
    for event in events:
        commands = session.handle(event)
        blocking = [c for c in commands if isinstance(c, BLOCKING)]
        assert len(blocking) <= 1 and (not blocking or commands[-1] is blocking[0])
    session.handle(CallerHungUp(T0))
    assert session.ended and session.end in ENDS
    trace = session.take_trace()
    assert [t.kind for t in trace].count("call_ended") == 1
    assert trace[-1].kind == "call_ended"
