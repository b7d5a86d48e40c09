"""Under any sequence of callers, agents and ticks: no caller lost, none served twice.

A hypothesis state machine drives a small contact center with every feature switched
on (skills fallback, overflow to another queue and out, a full queue, a queue that
rejects and closes, short ring and wrap-up times, callbacks with retries). It reads
only the actions the engine hands back, as the controller would, and checks after
every step:

* each joined caller is, at any moment, in exactly one place: waiting (or a callback),
  talking, or ended -- and ended exactly once, as answered, abandoned, overflow, closed
  or callback-failed; a transfer is the only way back from answered to waiting;
* never two agents on one call (ringing or talking), never one agent offered two calls;
* the agent states told by AgentLog are the engine's states, and no action is dated
  before the previous step or after ``now``;
* the snapshot counts agree with the callers the log says are waiting.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from queues import (
    Action,
    AgentConfig,
    AgentLog,
    CallLog,
    CancelOffer,
    LeaveQueue,
    Offer,
    QueueConfig,
    QueueEngine,
    QueueError,
)

from .test_queues import T0

QUEUES = [
    QueueConfig("vaxeln", strategy="skills", fallback_after_s=30, ring_timeout_s=15, wrapup_s=20,
                max_length=4, overflow="message", announce_every_s=25, callback_retry_s=40,
                callback_max_attempts=2),
    QueueConfig("omsorg", strategy="round-robin", max_wait_s=90, overflow="queue:vaxeln",
                ring_timeout_s=10, wrapup_s=0, pause_on_missed=False, categories=("ovrigt",)),
    QueueConfig("barn", when_no_agents="reject", leave_when_empty=True, max_wait_s=60,
                overflow="queue:omsorg", ring_timeout_s=20, wrapup_s=15),
]
AGENTS = {
    "anna": {"vaxeln": 8, "barn": 5},
    "bo": {"vaxeln": 3, "omsorg": 7},
    "cilla": {"omsorg": 4},
    "dan": {"barn": 9},
}
ENDED = ("answered", "abandoned", "overflow", "closed", "callback-failed")


class ContactCenter(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.q = QueueEngine({c.name: c for c in QUEUES},
                             {a: AgentConfig(a, a, s) for a, s in AGENTS.items()})
        self.now = T0
        self.last = T0
        self.calls: dict[str, str] = {}  # call -> "waiting" | "callback" | "talking" | an end
        self.ends: dict[str, list[str]] = {}
        self.agents: dict[str, tuple[str, str | None]] = dict.fromkeys(AGENTS, ("offline", None))
        self.ids = 0
        self.queue_of: dict[str, str] = {}
        self.retry_at: dict[str, datetime] = {}  # a callback due again (no action says so)

    # ------------------------------------------------------------------ reading the actions

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            assert self.last <= a.at <= self.now, a
            self.last = a.at
            if isinstance(a, AgentLog):
                before = self.agents[a.agent][0]
                if a.state == "offered":
                    assert before == "available", (a, before)
                    others = {c for g, (s, c) in self.agents.items()
                              if g != a.agent and s in ("offered", "talking")}
                    assert a.call_id not in others, f"{a.call_id} on two agents"
                self.agents[a.agent] = (a.state, a.call_id)
            elif isinstance(a, Offer):
                assert self.agents[a.agent] == ("offered", a.call_id)
                assert self.calls[a.call_id] in ("waiting", "callback", "retry")
                if self.calls[a.call_id] == "retry":
                    self.calls[a.call_id] = "callback"
                self.queue_of[a.call_id] = a.queue
            elif isinstance(a, CancelOffer):
                assert self.calls[a.call_id] in ("waiting", "callback") or a.reason == "caller-hangup"
            elif isinstance(a, LeaveQueue):
                self.end(a.call_id, a.outcome, ("waiting",))
            elif isinstance(a, CallLog):
                self.log(a)

    def log(self, a: CallLog) -> None:
        call, kind = a.call_id, a.kind
        if kind == "queue_joined":
            assert call not in self.calls
            self.calls[call], self.ends[call] = "waiting", []
            self.queue_of[call] = a.data["queue"]
        elif kind == "queue_overflow" and a.data["target"].startswith("queue:"):
            self.queue_of[call] = a.data["target"][len("queue:"):]
        elif kind == "queue_transferred":
            self.queue_of[call] = a.data["to_queue"]
        elif kind == "queue_answered":
            assert self.calls[call] == "waiting", (a, self.calls[call])
            self.calls[call] = "talking"
        elif kind == "callback_requested":
            assert self.calls[call] == "waiting"
            self.calls[call] = "callback"
        elif kind == "callback_attempt":
            assert self.calls[call] == "callback"
            self.calls[call] = "talking" if a.data["result"] == "answered" else "retry"
            retry_s = next(c.callback_retry_s for c in QUEUES if c.name == self.queue_of[call])
            self.retry_at[call] = a.at + timedelta(seconds=retry_s)
        if kind == "queue_transferred":
            assert self.calls[call] == "talking"
            self.calls[call] = "waiting"
        elif kind == "queue_abandoned":
            self.end(call, "abandoned", ("waiting",))
        elif kind == "callback_failed":
            self.end(call, "callback-failed", ("retry",))

    def end(self, call: str, outcome: str, allowed: tuple[str, ...]) -> None:
        assert self.calls[call] in allowed, (call, outcome, self.calls[call])
        self.calls[call] = outcome
        self.ends[call].append(outcome)

    def do(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        # a refusal changes nothing; timers that fell due come with the next call
        with contextlib.suppress(QueueError):
            self.apply(fn(self.now, *args, **kwargs))

    # ------------------------------------------------------------------ rules

    @rule(seconds=st.sampled_from([0, 1, 5, 10, 15, 20, 30, 45, 60, 120]))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.do(self.q.tick)

    @rule(queue=st.sampled_from([c.name for c in QUEUES]), priority=st.sampled_from([0, 0, 1]))
    def join(self, queue: str, priority: int) -> None:
        self.ids += 1
        self.do(self.q.join, f"c{self.ids}", queue, priority=priority)

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), action=st.sampled_from(["hangup", "callback", "transfer"]),
          queue=st.sampled_from([c.name for c in QUEUES]))
    def caller(self, data: st.DataObject, action: str, queue: str) -> None:
        call = data.draw(st.sampled_from(sorted(self.calls)))
        if action == "hangup":
            before = self.calls[call]
            self.do(self.q.hangup, call)
            if before == "waiting":  # on the line and not yet answered: abandoned, at once
                assert self.calls[call] == "abandoned", (call, self.calls[call])
            else:
                assert self.calls[call] == before
        elif action == "callback":
            self.do(self.q.request_callback, call, "+46701234567")
        else:
            self.do(self.q.transfer, call, queue)

    @rule(agent=st.sampled_from(sorted(AGENTS)),
          action=st.sampled_from(["login", "logout", "pause", "resume", "accept", "accept",
                                  "decline", "end_talk", "wrapup", "answered", "no-answer"]))
    def agent(self, agent: str, action: str) -> None:
        q = self.q
        if action == "pause":
            self.do(q.pause, agent, "lunch")
        elif action == "wrapup":
            self.do(q.wrapup, agent, category="ovrigt", resolution="resolved", note="x")
        elif action in ("answered", "no-answer"):
            self.do(q.callback_result, agent, action)
        else:
            self.do(getattr(q, action), agent)

    # rules that follow the work as it comes, so that sequences reach every state
    def in_state(self, *states: str) -> list[str]:
        return sorted(a for a, (s, _) in self.agents.items() if s in states)

    @precondition(lambda self: self.in_state("offline"))
    @rule(data=st.data())
    def login(self, data: st.DataObject) -> None:
        self.do(self.q.login, data.draw(st.sampled_from(self.in_state("offline"))))

    @precondition(lambda self: self.in_state("offered"))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        self.do(self.q.accept, data.draw(st.sampled_from(self.in_state("offered"))))

    @precondition(lambda self: self.in_state("talking"))
    @rule(data=st.data(), how=st.sampled_from(["end", "end", "transfer", "answered", "busy"]),
          queue=st.sampled_from([c.name for c in QUEUES]))
    def talk(self, data: st.DataObject, how: str, queue: str) -> None:
        agent = data.draw(st.sampled_from(self.in_state("talking")))
        call = self.agents[agent][1]
        if self.calls.get(call) == "callback":
            self.do(self.q.callback_result, agent, "answered" if how == "answered" else how
                    if how == "busy" else "no-answer")
        elif how == "transfer":
            self.do(self.q.transfer, call, queue, by_agent=agent)
        else:
            self.do(self.q.end_talk, agent)

    @precondition(lambda self: self.in_state("wrapup"))
    @rule(data=st.data())
    def code(self, data: st.DataObject) -> None:
        self.do(self.q.wrapup, data.draw(st.sampled_from(self.in_state("wrapup"))),
                category="ovrigt", resolution="other")

    # ------------------------------------------------------------------ invariants

    @invariant()
    def agents_as_logged(self) -> None:
        for agent, (state, _) in self.agents.items():
            assert self.q.agent_state(agent) == state, agent

    @invariant()
    def every_caller_in_one_place(self) -> None:
        snap = self.q.snapshot(self.now)["queues"]
        waiting = sum(1 for s in self.calls.values() if s == "waiting")
        callbacks = sum(1 for s in self.calls.values() if s in ("callback", "retry"))
        dialling = sum(1 for s, c in self.agents.values()
                       if s == "talking" and c is not None and self.calls.get(c) == "callback")
        assert sum(v["waiting"] for v in snap.values()) == waiting
        assert sum(v["callbacks"] for v in snap.values()) == callbacks - dialling
        for call, ends in self.ends.items():
            assert len(ends) <= 1, (call, ends)
            assert bool(ends) == (self.calls[call] in ENDED)

    @invariant()
    def waiting_callers_are_ringing_or_next_in_line(self) -> None:
        """Nobody stuck: a waiting caller rings an agent or has a place, and then no agent
        who has its queue's skill is free (the engine is work-conserving)."""
        on_agent = {c for s, c in self.agents.values() if s in ("offered", "talking")}
        skills = {c.name: c.needs for c in QUEUES}
        for call, status in self.calls.items():
            if status == "retry" and self.now >= self.retry_at[call]:
                status = self.calls[call] = "callback"
            if status in ("waiting", "callback") and call not in on_agent:
                assert self.q.position(call) is not None, call
                need = skills[self.queue_of[call]]
                free = [a for a, (s, _) in self.agents.items() if s == "available"
                        and need in AGENTS[a]]
                assert not free, (call, free)
            elif status == "retry":
                assert self.q.position(call) is None and self.q.next_deadline() is not None

    @invariant()
    def deadline_is_in_the_future(self) -> None:
        due = self.q.next_deadline()
        assert due is None or due > self.now  # everything due by now has run


ContactCenter.TestCase.settings = settings(max_examples=150, stateful_step_count=60,
                                           deadline=None)
TestContactCenter = ContactCenter.TestCase


def test_a_busy_day_replayed_in_coarse_and_fine_ticks_gives_the_same_log() -> None:
    """Timers run at their own due time, so how often the controller ticks does not matter."""
    def run(step_s: int) -> list[tuple[Any, ...]]:
        q = QueueEngine({c.name: c for c in QUEUES},
                        {a: AgentConfig(a, a, s) for a, s in AGENTS.items()})
        out: list[Action] = []
        for agent in AGENTS:
            out += q.login(T0, agent)
        for i in range(12):
            out += q.join(T0 + timedelta(seconds=7 * i), f"c{i}", QUEUES[i % 3].name)
        end = T0 + timedelta(seconds=600)
        now: datetime = T0 + timedelta(seconds=84)
        while now < end:
            now = min(end, now + timedelta(seconds=step_s))
            out += q.tick(now)
        return [(type(a).__name__, a.at, getattr(a, "call_id", None), getattr(a, "agent", None))
                for a in out]

    fine, coarse = run(1), run(97)
    assert fine == coarse and len(fine) > 50
