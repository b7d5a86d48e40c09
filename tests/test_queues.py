"""QueueEngine: dispatch order, strategies, timers, pauses, overflow, closing, logs.

No test sleeps: the clock is the datetimes passed in. Helpers here are shared by the
other ``test_queues_*`` files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from ivr.hours import STOCKHOLM
from queues import (
    CALL_LOG_KINDS,
    Action,
    AgentConfig,
    AgentLog,
    CallLog,
    CancelOffer,
    LeaveQueue,
    Offer,
    Position,
    QueueConfig,
    QueueEngine,
    QueueError,
)

from .conftest import ROOT

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=STOCKHOLM)  # a Monday morning


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def engine(queues: Sequence[QueueConfig] | Mapping[str, Any],
           agents: Mapping[str, Mapping[str, int] | Sequence[str]]) -> QueueEngine:
    """Queues as configs (or name -> keyword dict); agents as id -> skills (list: level 5)."""
    if isinstance(queues, Mapping):
        queues = [QueueConfig(name, **kw) for name, kw in queues.items()]
    confs = {}
    for ident, skills in agents.items():
        levels = skills if isinstance(skills, Mapping) else dict.fromkeys(skills, 5)
        confs[ident] = AgentConfig(ident, ident.title(), levels)
    return QueueEngine({q.name: q for q in queues}, confs)


def offers(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.agent, a.call_id) for a in actions if isinstance(a, Offer)]


def logs(actions: list[Action], kind: str) -> list[dict[str, Any]]:
    return [dict(a.data) for a in actions if isinstance(a, CallLog) and a.kind == kind]


def leaves(actions: list[Action]) -> list[tuple[str, str, str | None]]:
    return [(a.call_id, a.outcome, a.target) for a in actions if isinstance(a, LeaveQueue)]


def states(actions: list[Action]) -> list[tuple[str, str, str | None]]:
    return [(a.agent, a.state, a.reason) for a in actions if isinstance(a, AgentLog)]


def answer(q: QueueEngine, now: datetime, agent: str, talk_s: float = 60) -> list[Action]:
    """Accept the agent's offer, talk, end: the agent is in wrap-up."""
    out = q.accept(now, agent)
    return out + q.end_talk(now + timedelta(seconds=talk_s), agent)


def busy(q: QueueEngine, now: datetime, agent: str, call_id: str, queue: str) -> None:
    """Log the agent in and keep it talking on a call of its own."""
    q.login(now, agent)
    assert offers(q.join(now, call_id, queue)) == [(agent, call_id)]
    q.accept(now, agent)


# --------------------------------------------------------------------------- strategies


def test_longest_idle_agent_gets_the_caller() -> None:
    q = engine({"vaxeln": {}}, {"anna": ["vaxeln"], "bo": ["vaxeln"], "cilla": ["vaxeln"]})
    q.login(at(0), "bo")
    q.login(at(5), "anna")
    q.login(at(10), "cilla")
    assert offers(q.join(at(20), "c1", "vaxeln")) == [("bo", "c1")]
    answer(q, at(20), "bo", talk_s=30)
    q.wrapup(at(55), "bo", category=None, resolution="resolved")  # bo idle since 55
    assert offers(q.join(at(60), "c2", "vaxeln")) == [("anna", "c2")]
    assert offers(q.join(at(61), "c3", "vaxeln")) == [("cilla", "c3")]
    assert offers(q.join(at(62), "c4", "vaxeln")) == [("bo", "c4")]


def test_round_robin_rotates_in_a_stable_order() -> None:
    q = engine({"omsorg": {"strategy": "round-robin"}},
               {"anna": ["omsorg"], "bo": ["omsorg"], "cilla": ["omsorg"]})
    for agent in ("cilla", "bo", "anna"):  # login order does not matter
        q.login(at(0), agent)
    got = []
    for i in range(5):  # each caller hangs up while ringing, so everyone stays free
        got += [a for a, _ in offers(q.join(at(i), f"c{i}", "omsorg"))]
        q.hangup(at(i), f"c{i}")
    assert got == ["anna", "bo", "cilla", "anna", "bo"]
    q.pause(at(10), "cilla", "meeting")
    got = [a for a, _ in offers(q.join(at(11), "c5", "omsorg"))]
    q.hangup(at(11), "c5")
    got += [a for a, _ in offers(q.join(at(12), "c6", "omsorg"))]
    assert got == ["anna", "bo"]  # after bo came cilla, who is paused


def test_skills_highest_level_first_ties_by_longest_idle() -> None:
    q = engine({"vaxeln": {"strategy": "skills"}},
               {"anna": {"vaxeln": 3}, "bo": {"vaxeln": 8}, "cilla": {"vaxeln": 8}})
    q.login(at(0), "anna")
    q.login(at(2), "cilla")
    q.login(at(1), "bo")
    assert offers(q.join(at(5), "c1", "vaxeln")) == [("bo", "c1")]  # level 8, idle longest
    assert offers(q.join(at(6), "c2", "vaxeln")) == [("cilla", "c2")]
    assert offers(q.join(at(7), "c3", "vaxeln")) == [("anna", "c3")]


def test_skills_fallback_to_any_agent_after_the_wait() -> None:
    q = engine({"vaxeln": {"strategy": "skills", "fallback_after_s": 45},
                "omsorg": {}},
               {"anna": ["vaxeln"], "olle": ["omsorg"]})
    busy(q, at(0), "anna", "x", "vaxeln")
    q.login(at(0), "olle")
    assert offers(q.join(at(1), "c1", "vaxeln")) == []  # olle lacks the skill
    assert offers(q.tick(at(45))) == []
    out = q.tick(at(46))
    assert offers(out) == [("olle", "c1")]
    assert out[0].at == at(46)


def test_skills_fallback_prefers_skilled_agents_and_only_skills_queues_fall_back() -> None:
    q = engine({"vaxeln": {"strategy": "skills", "fallback_after_s": 10}, "omsorg": {}},
               {"anna": ["vaxeln"], "olle": ["omsorg"], "pelle": ["omsorg"]})
    busy(q, at(0), "anna", "x", "vaxeln")
    q.join(at(1), "c1", "vaxeln")
    q.end_talk(at(2), "anna")  # wrap-up until 32
    q.login(at(5), "olle")
    assert offers(q.tick(at(11))) == [("olle", "c1")]  # fallback: anyone free
    q.login(at(12), "pelle")
    q.wrapup(at(13), "anna", category=None, resolution="resolved")  # idle since 13, pelle 12
    out = q.logout(at(14), "olle")
    assert offers(out) == [("anna", "c1")]  # the skilled agent before the longer idle one
    q2 = engine({"omsorg": {"fallback_after_s": 10}, "vaxeln": {}},
                {"olle": ["vaxeln"], "anna": ["omsorg"]})
    busy(q2, at(0), "anna", "x", "omsorg")
    q2.join(at(0), "o1", "omsorg")
    q2.login(at(0), "olle")
    assert offers(q2.tick(at(600))) == []  # longest-idle queues never fall back


# --------------------------------------------------------------------------- order


def test_priority_first_then_earliest_join() -> None:
    q = engine({"vaxeln": {"wrapup_s": 600}}, {"anna": ["vaxeln"]})
    busy(q, at(0), "anna", "x", "vaxeln")
    q.join(at(1), "early", "vaxeln")
    q.join(at(2), "late", "vaxeln")
    q.join(at(3), "urgent", "vaxeln", priority=5)
    q.join(at(4), "also-urgent", "vaxeln", priority=5)
    assert [q.position(c) for c in ("urgent", "also-urgent", "early", "late")] == [1, 2, 3, 4]
    q.end_talk(at(10), "anna")
    got = []
    for i in range(4):
        out = q.wrapup(at(11 + i * 100), "anna", category=None, resolution="resolved")
        got += [c for _, c in offers(out)]
        answer(q, at(12 + i * 100), "anna")
    assert got == ["urgent", "also-urgent", "early", "late"]


def test_agent_takes_the_best_caller_across_its_queues() -> None:
    q = engine({"omsorg": {}, "barn": {}}, {"anna": ["omsorg", "barn"], "bo": ["omsorg", "barn"]})
    busy(q, at(0), "anna", "x", "omsorg")
    busy(q, at(0), "bo", "y", "barn")
    q.join(at(1), "o1", "omsorg")
    q.join(at(2), "b1", "barn")
    q.join(at(3), "b2", "barn", priority=1)
    q.end_talk(at(5), "anna")
    assert offers(q.wrapup(at(6), "anna", category=None, resolution="resolved")) == [("anna", "b2")]
    q.end_talk(at(5), "bo")
    assert offers(q.wrapup(at(7), "bo", category=None, resolution="resolved")) == [("bo", "o1")]


# --------------------------------------------------------------------------- ringing


def test_ring_timeout_moves_to_the_next_agent_and_pauses_the_missed_one() -> None:
    q = engine({"vaxeln": {"ring_timeout_s": 20}}, {"anna": ["vaxeln"], "bo": ["vaxeln"]})
    q.login(at(0), "anna")
    q.login(at(1), "bo")
    assert offers(q.join(at(5), "c1", "vaxeln")) == [("anna", "c1")]
    assert q.next_deadline() == at(25)
    assert q.tick(at(24.999)) == []
    out = q.tick(at(25))
    assert [(a.agent, a.reason) for a in out if isinstance(a, CancelOffer)] == [("anna", "ring-timeout")]
    assert logs(out, "queue_ring_timeout") == [{"agent": "anna"}]
    assert ("anna", "paused", "missed") in states(out)
    assert offers(out) == [("bo", "c1")]
    assert q.agent_state("anna") == "paused"


def test_missed_agent_is_not_offered_the_same_caller_while_another_is_free() -> None:
    q = engine({"vaxeln": {"pause_on_missed": False}},
               {"anna": ["vaxeln"], "bo": ["vaxeln"], "cilla": ["vaxeln"]})
    busy(q, at(0), "bo", "x", "vaxeln")
    q.login(at(0), "anna")
    q.login(at(1), "cilla")
    q.join(at(2), "c1", "vaxeln")  # anna, idle longest
    out = q.decline(at(3), "anna")
    assert logs(out, "queue_ring_timeout") == [{"agent": "anna"}]
    assert q.agent_state("anna") == "available"  # a decline never pauses
    assert offers(out) == [("cilla", "c1")]  # anna is idle longer, but missed c1
    out = q.tick(at(23))  # cilla lets it ring out: both free agents have missed c1 now,
    assert offers(out) == [("anna", "c1")]  # so the strategy decides (anna, idle longest)


def test_caller_who_hangs_up_while_waiting_or_ringing_is_abandoned() -> None:
    q = engine({"vaxeln": {}}, {"anna": ["vaxeln"]})
    busy(q, at(0), "anna", "x", "vaxeln")
    q.join(at(10), "c1", "vaxeln")
    out = q.hangup(at(40), "c1")
    assert logs(out, "queue_abandoned") == [{"queue": "vaxeln", "stage": "waiting", "wait_s": 30.0}]
    q.join(at(50), "c2", "vaxeln")
    q.end_talk(at(60), "anna")
    q.wrapup(at(61), "anna", category=None, resolution="resolved")
    out = q.hangup(at(65), "c2")
    assert [(a.agent, a.reason) for a in out if isinstance(a, CancelOffer)] == [("anna", "caller-hangup")]
    assert logs(out, "queue_abandoned") == [{"queue": "vaxeln", "stage": "ringing", "wait_s": 15.0}]
    assert q.agent_state("anna") == "available"
    assert q.hangup(at(66), "c2") == [] and q.hangup(at(66), "nobody") == []


def test_agent_logging_out_while_offered_cancels_the_offer() -> None:
    q = engine({"vaxeln": {}}, {"anna": ["vaxeln"], "bo": ["vaxeln"]})
    q.login(at(0), "anna")
    q.join(at(1), "c1", "vaxeln")
    out = q.login(at(2), "bo")
    assert offers(out) == []
    out = q.logout(at(3), "anna")
    assert [(a.agent, a.call_id, a.reason) for a in out if isinstance(a, CancelOffer)] == [
        ("anna", "c1", "logout")]
    assert offers(out) == [("bo", "c1")]
    assert q.agent_state("anna") == "offline"
    with pytest.raises(QueueError, match='agent "anna": cannot log out while offline'):
        q.logout(at(4), "anna")


# --------------------------------------------------------------------------- wrap-up


def test_wrapup_time_before_the_next_offer_and_uncoded_at_expiry() -> None:
    q = engine({"vaxeln": {"wrapup_s": 30, "categories": ("ovrigt",)}}, {"anna": ["vaxeln"]})
    q.login(at(0), "anna")
    q.join(at(0), "c1", "vaxeln")
    out = answer(q, at(5), "anna", talk_s=100)
    assert logs(out, "talk_ended") == [{"agent": "anna", "talk_s": 100.0}]
    assert q.agent_state("anna") == "wrapup"
    assert offers(q.join(at(110), "c2", "vaxeln")) == []
    assert q.next_deadline() == at(135)
    out = q.tick(at(140))
    assert logs(out, "wrapup") == [{"agent": "anna", "category": None, "resolution": "uncoded",
                                    "coded": False, "wrapup_s": 30.0, "has_note": False}]
    assert [a.at for a in out if isinstance(a, AgentLog)][0] == at(135)
    assert offers(out) == [("anna", "c2")] and out[-1].at == at(135)


def test_coded_wrapup_with_a_note_and_checked_values() -> None:
    q = engine({"barn": {"categories": ("skola", "ovrigt")}}, {"anna": ["barn"]})
    q.login(at(0), "anna")
    q.join(at(0), "c1", "barn")
    answer(q, at(0), "anna")
    with pytest.raises(QueueError, match=r'category: expected one of the categories of queue "barn" '
                       r'\("skola", "ovrigt"\), got "skolan" \(did you mean "skola"\?\)'):
        q.wrapup(at(70), "anna", category="skolan", resolution="resolved")
    with pytest.raises(QueueError, match=r'resolution: expected one of "resolved", "forwarded"'):
        q.wrapup(at(70), "anna", category="skola", resolution="done")
    out = q.wrapup(at(75), "anna", category="skola", resolution="forwarded",
                   note="Ringer tillbaka om skolplacering, tel 070-123 45 67")
    data = logs(out, "wrapup")
    assert data == [{"agent": "anna", "category": "skola", "resolution": "forwarded",
                     "coded": True, "wrapup_s": 15.0, "has_note": True}]
    assert "070" not in repr([a for a in out if isinstance(a, CallLog)])
    notes = [(n.call_id, n.agent, n.text) for n in out if type(n).__name__ == "Note"]
    assert notes == [("c1", "anna", "Ringer tillbaka om skolplacering, tel 070-123 45 67")]
    assert q.agent_state("anna") == "available"
    with pytest.raises(QueueError, match='agent "anna" is not in wrap-up'):
        q.wrapup(at(76), "anna", category="skola", resolution="resolved")


# --------------------------------------------------------------------------- pauses


def test_pauses_with_reasons_and_pause_after_the_call() -> None:
    q = engine({"vaxeln": {"wrapup_s": 10}}, {"anna": ["vaxeln"]})
    q.login(at(0), "anna")
    assert states(q.pause(at(1), "anna", "lunch")) == [("anna", "paused", "lunch")]
    assert states(q.pause(at(2), "anna", "meeting")) == [("anna", "paused", "meeting")]
    assert offers(q.join(at(3), "c1", "vaxeln")) == []
    out = q.resume(at(4), "anna")
    assert states(out) == [("anna", "available", None), ("anna", "offered", None)]
    q.accept(at(5), "anna")
    assert q.pause(at(6), "anna", "training") == []  # still talking: pause after the wrap-up
    q.join(at(7), "c2", "vaxeln")
    q.end_talk(at(8), "anna")
    out = q.tick(at(18))
    assert states(out) == [("anna", "paused", "training")] and offers(out) == []
    assert offers(q.resume(at(19), "anna")) == [("anna", "c2")]
    with pytest.raises(QueueError, match='agent "anna": cannot resume while offered'):
        q.resume(at(20), "anna")


def test_resume_before_the_wrapup_ends_cancels_the_pause() -> None:
    q = engine({"vaxeln": {}}, {"anna": ["vaxeln"]})
    q.login(at(0), "anna")
    q.join(at(0), "c1", "vaxeln")
    answer(q, at(0), "anna")
    q.pause(at(61), "anna", "lunch")
    q.resume(at(62), "anna")
    q.join(at(63), "c2", "vaxeln")
    out = q.wrapup(at(64), "anna", category=None, resolution="resolved")
    assert offers(out) == [("anna", "c2")]


def test_every_agent_state_change_is_logged_with_its_time() -> None:
    q = engine({"vaxeln": {"wrapup_s": 30, "ring_timeout_s": 15}}, {"anna": ["vaxeln"]})
    seen: list[tuple[datetime, str, str | None, str | None]] = []

    def record(actions: list[Action]) -> None:
        seen.extend((a.at, a.state, a.reason, a.call_id) for a in actions if isinstance(a, AgentLog))

    record(q.login(at(0), "anna"))
    record(q.join(at(1), "c1", "vaxeln"))
    record(q.tick(at(16)))  # rang out
    record(q.resume(at(20), "anna"))
    record(q.accept(at(21), "anna"))
    record(q.end_talk(at(81), "anna"))
    record(q.tick(at(200)))  # wrap-up expires at 111
    record(q.pause(at(300), "anna", "lunch"))
    record(q.logout(at(400), "anna"))
    assert seen == [
        (at(0), "available", None, None), (at(1), "offered", None, "c1"),
        (at(16), "paused", "missed", None), (at(20), "available", None, None),
        (at(20), "offered", None, "c1"),
        (at(21), "talking", None, "c1"), (at(81), "wrapup", None, "c1"),
        (at(111), "available", None, None), (at(300), "paused", "lunch", None),
        (at(400), "offline", None, None),
    ]
    # resume() found c1 waiting and offered it at once: available and offered at 20
    assert q.snapshot(at(401))["agents"]["anna"] == {"state": "offline", "reason": None,
                                                     "since": at(400).isoformat(), "call_id": None}


def test_refusals_name_the_problem_and_lose_no_timer() -> None:
    q = engine({"vaxeln": {"wrapup_s": 30}}, {"anna": ["vaxeln"]})
    with pytest.raises(QueueError, match='unknown agent "ana" \\(did you mean "anna"\\?\\)'):
        q.login(at(0), "ana")
    with pytest.raises(QueueError, match='unknown queue "vaxel"'):
        q.join(at(0), "c1", "vaxel")
    q.login(at(0), "anna")
    with pytest.raises(QueueError, match='agent "anna" has no offer to accept'):
        q.accept(at(0), "anna")
    q.join(at(0), "c1", "vaxeln")
    with pytest.raises(QueueError, match='call "c1" is already in queue "vaxeln"'):
        q.join(at(0), "c1", "vaxeln")
    q.accept(at(1), "anna")
    with pytest.raises(QueueError, match='agent "anna": cannot log out while talking'):
        q.logout(at(2), "anna")
    q.end_talk(at(10), "anna")
    with pytest.raises(QueueError, match="not in wrap-up"):  # the wrap-up ran out at 40
        q.wrapup(at(50), "anna", category=None, resolution="resolved")
    assert logs(q.tick(at(50)), "wrapup")[0]["resolution"] == "uncoded"  # handed over later
    with pytest.raises(QueueError, match="timezone-aware"):
        q.tick(datetime(2026, 3, 2, 9, 0))


# --------------------------------------------------------------------------- overflow and closing


def test_overflow_after_max_wait() -> None:
    q = engine({"omsorg": {"max_wait_s": 120, "overflow": "message"}}, {"anna": ["omsorg"]})
    busy(q, at(0), "anna", "x", "omsorg")
    q.join(at(10), "c1", "omsorg")
    assert q.next_deadline() == at(70)  # the first announcement comes before
    out = q.tick(at(130))
    assert leaves(out) == [("c1", "overflow", "message")]
    assert logs(out, "queue_overflow") == [{"queue": "omsorg", "target": "message",
                                            "reason": "max_wait", "wait_s": 120.0}]
    assert [a.at for a in out if isinstance(a, LeaveQueue)] == [at(130)]
    assert q.position("c1") is None and q.hangup(at(131), "c1") == []


def test_overflow_when_the_queue_is_full() -> None:
    q = engine({"barn": {"max_length": 2, "overflow": "callback"}}, {"anna": ["barn"]})
    busy(q, at(0), "anna", "x", "barn")
    q.join(at(1), "c1", "barn")
    q.join(at(2), "c2", "barn")
    out = q.join(at(3), "c3", "barn")
    assert logs(out, "queue_joined")[0]["position"] is None
    assert logs(out, "queue_overflow") == [{"queue": "barn", "target": "callback",
                                            "reason": "max_length", "wait_s": 0.0}]
    assert leaves(out) == [("c3", "overflow", "callback")]
    q.hangup(at(4), "c1")
    assert leaves(q.join(at(5), "c4", "barn")) == []


def test_overflow_to_another_queue_keeps_the_wait_and_the_place() -> None:
    q = engine({"felanmalan": {"max_wait_s": 300, "overflow": "queue:vaxeln"}, "vaxeln": {}},
               {"lars": ["felanmalan"], "maria": ["vaxeln"]})
    busy(q, at(0), "lars", "x", "felanmalan")
    busy(q, at(0), "maria", "y", "vaxeln")
    q.join(at(0), "f1", "felanmalan")
    q.join(at(100), "v1", "vaxeln")
    out = q.tick(at(300))
    assert logs(out, "queue_overflow") == [{"queue": "felanmalan", "target": "queue:vaxeln",
                                            "reason": "max_wait", "wait_s": 300.0}]
    assert leaves(out) == []
    assert (q.position("f1"), q.position("v1")) == (1, 2)  # joined first, so ahead
    q.end_talk(at(310), "maria")
    assert offers(q.wrapup(at(311), "maria", category=None, resolution="resolved")) == [
        ("maria", "f1")]
    out = q.accept(at(312), "maria")
    assert logs(out, "queue_answered") == [{"agent": "maria", "queue": "vaxeln", "wait_s": 312.0}]


def test_reject_when_no_agents_and_leave_when_the_last_agent_logs_out() -> None:
    q = engine({"omsorg": {"when_no_agents": "reject", "leave_when_empty": True}},
               {"anna": ["omsorg"], "bo": ["omsorg"]})
    out = q.join(at(0), "c1", "omsorg")
    assert leaves(out) == [("c1", "closed", None)]
    assert logs(out, "queue_closed") == [{"queue": "omsorg", "reason": "no_agents"}]
    busy(q, at(1), "anna", "x", "omsorg")
    q.login(at(1), "bo")
    q.pause(at(1), "bo", "lunch")  # paused agents are logged in: the queue stays open
    assert leaves(q.join(at(2), "c2", "omsorg")) == []
    q.request_callback(at(3), "c2", "+46701234567")
    q.join(at(4), "c3", "omsorg")
    q.end_talk(at(5), "anna")
    assert leaves(q.logout(at(6), "anna")) == []  # bo is still logged in
    out = q.logout(at(7), "bo")
    assert leaves(out) == [("c3", "closed", None)]
    assert logs(out, "queue_closed") == [{"queue": "omsorg", "reason": "last_agent_left"}]
    assert q.snapshot(at(8))["queues"]["omsorg"] == {
        "waiting": 0, "longest_wait_s": 0.0, "callbacks": 1, "agents_serving": 0,
        "estimated_wait_s": None}


def test_leave_when_empty_closes_waiting_callers_but_keeps_callbacks() -> None:
    q = engine({"omsorg": {"leave_when_empty": True}}, {"anna": ["omsorg"]})
    busy(q, at(0), "anna", "x", "omsorg")
    q.join(at(1), "c1", "omsorg")
    q.join(at(2), "c2", "omsorg")
    q.request_callback(at(3), "c1", "+46701234567")
    q.end_talk(at(4), "anna")
    out = q.logout(at(5), "anna")
    assert leaves(out) == [("c2", "closed", None)]
    assert logs(out, "queue_closed") == [{"queue": "omsorg", "reason": "last_agent_left"}]
    assert q.snapshot(at(6))["queues"]["omsorg"]["callbacks"] == 1
    q2 = engine({"omsorg": {}}, {"anna": ["omsorg"]})
    busy(q2, at(0), "anna", "x", "omsorg")
    q2.join(at(1), "c1", "omsorg")
    q2.end_talk(at(4), "anna")
    assert leaves(q2.logout(at(5), "anna")) == []  # without leave_when_empty they wait on


# --------------------------------------------------------------------------- transfers


def test_transfer_keeps_the_original_wait_and_is_logged() -> None:
    q = engine({"vaxeln": {}, "omsorg": {}},
               {"maria": ["vaxeln"], "fatima": ["omsorg"]})
    q.login(at(0), "maria")
    busy(q, at(0), "fatima", "x", "omsorg")
    q.join(at(0), "c1", "vaxeln")
    q.accept(at(10), "maria")
    q.join(at(40), "o1", "omsorg")
    out = q.transfer(at(70), "c1", "omsorg", by_agent="maria")
    assert logs(out, "queue_transferred") == [{"from_queue": "vaxeln", "to_queue": "omsorg",
                                               "agent": "maria"}]
    assert logs(out, "talk_ended") == [{"agent": "maria", "talk_s": 60.0}]
    assert q.agent_state("maria") == "wrapup"
    assert (q.position("c1"), q.position("o1")) == (1, 2)  # joined at 0, before o1 at 40
    q.end_talk(at(100), "fatima")
    out = q.wrapup(at(101), "fatima", category=None, resolution="resolved")
    assert offers(out) == [("fatima", "c1")]
    assert logs(q.accept(at(102), "fatima"), "queue_answered") == [
        {"agent": "fatima", "queue": "omsorg", "wait_s": 102.0}]
    with pytest.raises(QueueError, match='talking to "fatima", not "maria"'):
        q.transfer(at(103), "c1", "vaxeln", by_agent="maria")


# --------------------------------------------------------------------------- announcements


def test_position_and_estimated_wait_announced_at_join_and_every_interval() -> None:
    q = engine({"vaxeln": {"announce_every_s": 60, "expected_handle_s": 200}},
               {"anna": ["vaxeln"], "bo": ["vaxeln"]})
    busy(q, at(0), "anna", "x", "vaxeln")
    busy(q, at(0), "bo", "y", "vaxeln")
    out = q.join(at(10), "c1", "vaxeln")
    out += q.join(at(20), "c2", "vaxeln")
    told = [(a.at, a.call_id, a.position, a.estimated_wait_s) for a in out if isinstance(a, Position)]
    assert told == [(at(10), "c1", 1, 50.0), (at(20), "c2", 2, 150.0)]  # (p - 1/2) x 200 / 2
    assert logs(out, "queue_joined")[1] == {"queue": "vaxeln", "category": None, "priority": 0,
                                            "position": 2, "estimated_wait_s": 150.0}
    out = q.tick(at(80))
    assert [(a.at, a.call_id, a.position) for a in out if isinstance(a, Position)] == [
        (at(70), "c1", 1), (at(80), "c2", 2)]
    assert logs(out, "queue_position") == [{"position": 1, "estimated_wait_s": 50.0},
                                           {"position": 2, "estimated_wait_s": 150.0}]
    q.hangup(at(85), "c1")
    out = q.tick(at(140))
    assert [(a.at, a.call_id, a.position) for a in out if isinstance(a, Position)] == [
        (at(140), "c2", 1)]
    quiet = engine({"vaxeln": {"announce_every_s": 0}}, {"anna": ["vaxeln"]})
    assert not [a for a in quiet.join(at(0), "c1", "vaxeln") + quiet.tick(at(3600))
                if isinstance(a, Position)]


def test_estimated_wait_is_unknown_without_working_agents() -> None:
    q = engine({"vaxeln": {}}, {"anna": ["vaxeln"]})
    q.join(at(0), "c1", "vaxeln")
    assert q.position("c1") == 1 and q.estimated_wait(at(0), "c1") is None
    q.login(at(1), "anna")
    assert q.position("c1") is None  # ringing


def test_call_logs_carry_exactly_the_documented_keys() -> None:
    q = engine({"vaxeln": {"max_length": 2, "overflow": "message", "categories": ("ovrigt",)},
                "omsorg": {"when_no_agents": "reject"}},
               {"anna": ["vaxeln"], "bo": ["vaxeln"]})
    out = q.login(at(0), "anna") + q.join(at(0), "c1", "vaxeln") + q.tick(at(20))
    out += q.join(at(21), "c2", "vaxeln") + q.join(at(22), "c3", "vaxeln")
    out += q.login(at(23), "bo") + q.accept(at(24), "bo")
    out += q.transfer(at(25), "c1", "vaxeln")
    out += q.hangup(at(26), "c2") + q.join(at(27), "c4", "omsorg")
    out += q.request_callback(at(28), "c1", "+4670")
    out += q.resume(at(29), "anna") + q.accept(at(30), "anna")
    out += q.callback_result(at(31), "anna", "busy") + q.tick(at(40))
    out += q.wrapup(at(41), "bo", category="ovrigt", resolution="resolved")
    seen = {a.kind for a in out if isinstance(a, CallLog)}
    for a in out:
        if isinstance(a, CallLog):
            assert tuple(a.data) == CALL_LOG_KINDS[a.kind], a
    assert seen == set(CALL_LOG_KINDS) - {"callback_failed"}


def test_snapshot_for_a_wallboard() -> None:
    q = engine({"vaxeln": {"expected_handle_s": 100}, "omsorg": {}},
               {"anna": ["vaxeln"], "bo": ["omsorg"]})
    busy(q, at(0), "anna", "x", "vaxeln")
    q.join(at(10), "c1", "vaxeln")
    q.join(at(40), "c2", "vaxeln")
    q.request_callback(at(50), "c2", "+46701234567")
    snap = q.snapshot(at(70))
    assert snap["queues"]["vaxeln"] == {"waiting": 1, "longest_wait_s": 60.0, "callbacks": 1,
                                        "agents_serving": 1, "estimated_wait_s": 250.0}
    assert snap["queues"]["omsorg"]["agents_serving"] == 0
    assert snap["agents"] == {
        "anna": {"state": "talking", "reason": None, "since": at(0).isoformat(), "call_id": "x"},
        "bo": {"state": "offline", "reason": None, "since": None, "call_id": None}}


def test_docs_list_every_call_log_kind_with_its_keys() -> None:
    rows = {}
    for line in (ROOT / "docs" / "queues.md").read_text(encoding="utf-8").splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) == 2 and parts[0].startswith("`") and parts[0].strip("`") in CALL_LOG_KINDS:
            rows[parts[0].strip("`")] = tuple(k.strip() for k in parts[1].split(","))
    assert rows == dict(CALL_LOG_KINDS)
