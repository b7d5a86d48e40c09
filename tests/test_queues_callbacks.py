"""Callbacks: a caller leaves the line but keeps its place; agents dial back, retry, give up."""

from __future__ import annotations

import pytest

from queues import CancelOffer, Offer, QueueError

from .test_queues import at, busy, engine, logs, offers


def test_callback_keeps_its_place_and_never_jumps_ahead() -> None:
    q = engine({"barn": {"wrapup_s": 600}}, {"anna": ["barn"]})
    busy(q, at(0), "anna", "x", "barn")
    for i, call in enumerate(["c1", "c2", "c3"]):
        q.join(at(10 * i + 1), call, "barn")
    out = q.request_callback(at(30), "c2", "+46701234567")
    assert logs(out, "callback_requested") == [{"queue": "barn", "wait_s": 19.0}]
    q.join(at(40), "c4", "barn")
    assert [q.position(c) for c in ("c1", "c2", "c3", "c4")] == [1, 2, 3, 4]
    q.end_talk(at(50), "anna")
    served = []
    for i in range(4):
        out = q.wrapup(at(100 + 100 * i), "anna", category=None, resolution="resolved")
        offer = next(a for a in out if isinstance(a, Offer))
        served.append((offer.call_id, offer.kind, offer.number))
        q.accept(at(101 + 100 * i), "anna")
        if offer.kind == "callback":
            q.callback_result(at(110 + 100 * i), "anna", "answered")
        q.end_talk(at(150 + 100 * i), "anna")
    assert served == [("c1", "call", None), ("c2", "callback", "+46701234567"),
                      ("c3", "call", None), ("c4", "call", None)]


def test_caller_who_asked_for_a_callback_may_hang_up_without_abandoning() -> None:
    q = engine({"barn": {"announce_every_s": 30}}, {"anna": ["barn"]})
    busy(q, at(0), "anna", "x", "barn")
    q.join(at(1), "c1", "barn")
    q.request_callback(at(5), "c1", "+46701234567")
    assert q.hangup(at(6), "c1") == []
    assert q.tick(at(3600)) == []  # no announcements, no overflow off the line
    snap = q.snapshot(at(3600))["queues"]["barn"]
    assert (snap["waiting"], snap["callbacks"]) == (0, 1)
    with pytest.raises(QueueError, match='call "c1" is not waiting in a queue'):
        q.request_callback(at(3601), "c1", "+46701234567")


def test_callback_requested_while_ringing_cancels_the_offer() -> None:
    q = engine({"barn": {}}, {"anna": ["barn"]})
    q.login(at(0), "anna")
    q.join(at(1), "c1", "barn")
    out = q.request_callback(at(2), "c1", "+46701234567")
    assert [(a.agent, a.reason) for a in out if isinstance(a, CancelOffer)] == [("anna", "caller-hangup")]
    assert [(a.agent, a.kind, a.number) for a in out if isinstance(a, Offer)] == [
        ("anna", "callback", "+46701234567")]


def test_answered_callback_is_talk_then_wrapup() -> None:
    q = engine({"barn": {}}, {"anna": ["barn"]})
    q.login(at(0), "anna")
    q.join(at(0), "c1", "barn")
    q.request_callback(at(0), "c1", "+46701234567")
    out = q.accept(at(5), "anna")
    assert not logs(out, "queue_answered")  # nobody is on the line yet
    assert q.agent_state("anna") == "talking"
    with pytest.raises(QueueError, match="dialling a callback; report callback_result first"):
        q.end_talk(at(6), "anna")
    out = q.callback_result(at(20), "anna", "answered")
    assert logs(out, "callback_attempt") == [{"agent": "anna", "result": "answered", "attempt": 1}]
    out = q.end_talk(at(200), "anna")
    assert logs(out, "talk_ended") == [{"agent": "anna", "talk_s": 180.0}]
    assert q.agent_state("anna") == "wrapup"


def test_unanswered_callback_is_retried_later_keeping_its_place() -> None:
    q = engine({"barn": {"callback_retry_s": 900, "wrapup_s": 5}}, {"anna": ["barn"]})
    q.login(at(0), "anna")
    q.join(at(0), "c1", "barn")
    q.request_callback(at(0), "c1", "+46701234567")
    q.accept(at(1), "anna")
    out = q.callback_result(at(30), "anna", "no-answer")
    assert logs(out, "callback_attempt") == [{"agent": "anna", "result": "no-answer", "attempt": 1}]
    assert q.agent_state("anna") == "available"  # at once, no wrap-up
    assert q.position("c1") is None  # not before 930
    assert offers(q.join(at(100), "c2", "barn")) == [("anna", "c2")]
    q.accept(at(101), "anna")
    q.join(at(200), "c3", "barn")
    q.end_talk(at(920), "anna")  # wrap-up ends at 925: c3 joined at 200, c1 is not yet due
    assert offers(q.tick(at(925))) == [("anna", "c3")]
    q.accept(at(926), "anna")
    q.join(at(927), "c4", "barn")
    assert offers(q.tick(at(930))) == []  # c1 due again, anna busy
    assert (q.position("c1"), q.position("c4")) == (1, 2)  # joined at 0: ahead of c4
    q.end_talk(at(931), "anna")
    out = q.tick(at(936))
    assert [(a.call_id, a.kind, a.wait_s) for a in out if isinstance(a, Offer)] == [
        ("c1", "callback", 936.0)]


def test_callback_given_up_after_max_attempts() -> None:
    q = engine({"barn": {"callback_retry_s": 60, "callback_max_attempts": 3}}, {"anna": ["barn"]})
    q.login(at(0), "anna")
    q.join(at(0), "c1", "barn")
    q.request_callback(at(0), "c1", "+46701234567")
    results = ["busy", "no-answer", "failed"]
    out, t = [], 0
    for i, result in enumerate(results):
        if i:
            assert offers(q.tick(at(t - 1))) == []
            assert offers(q.tick(at(t))) == [("anna", "c1")]
        q.accept(at(t + 1), "anna")
        out = q.callback_result(at(t + 10), "anna", result)
        assert logs(out, "callback_attempt")[0]["attempt"] == i + 1
        t += 10 + 60  # tried again 60 s after the result
    assert logs(out, "callback_failed") == [{"attempts": 3}]
    assert q.tick(at(1000)) == []
    assert q.snapshot(at(1000))["queues"]["barn"]["callbacks"] == 0
    with pytest.raises(QueueError, match="not dialling a callback"):
        q.callback_result(at(1001), "anna", "answered")
    with pytest.raises(QueueError, match='result: expected one of "answered", "no-answer"'):
        q.callback_result(at(1001), "anna", "maybe")
