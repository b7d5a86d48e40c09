"""The bookkeeping under :class:`queues.QueueEngine`: records, indexes, timers, matching.

Invariant, true after every public call: no available agent could take a dispatchable
caller (work-conserving). It is kept incrementally: when an agent becomes available it
takes the best caller across the queues it may serve (:meth:`_Core._serve_agent`), and
when a caller becomes dispatchable it takes the agent its queue's strategy chooses
among the free ones (:meth:`_Core._serve_entry`). Each is a look at the front of a few
sorted lists (see :mod:`queues.dispatch`), never a scan.

Time inside is an integer of microseconds since the epoch, so a deadline handed out by
``next_deadline`` and fed back as ``now`` is due exactly. Timers sit in one heap; a
timer is checked when it pops (the state it was set for may have moved on) rather than
removed when cancelled. Actions collect in ``self._out`` and are handed back by the
public method; when a method refuses a request the actions of timers that fell due
before it stay queued and come with the next call, so nothing is lost.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from heapq import heappop, heappush
from typing import Any

from queues import dispatch as d
from queues.estimate import HandleTime, estimated_wait
from queues.model import (
    Action,
    AgentConfig,
    AgentLog,
    CallLog,
    LeaveQueue,
    Offer,
    Position,
    QueueConfig,
    QueueError,
)
from queues.states import AgentState, Offline, Wrapup

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(now: datetime) -> int:
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise QueueError(f"now: expected a timezone-aware datetime, got {now!r}")
    delta = now - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def seconds_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def span_s(start_us: int, end_us: int) -> float:
    return round(max(0, end_us - start_us) / 1_000_000, 3)


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Queue:
    __slots__ = ("config", "name", "strategy", "ready", "available", "last_order", "logged_in",
                 "active", "on_line", "callbacks", "aht", "ring_us", "wrapup_us")

    def __init__(self, config: QueueConfig):
        self.config, self.name, self.strategy = config, config.name, config.strategy
        self.ready: list[d.Key] = []      # dispatchable entries, in dispatch order
        self.available: list[d.Key] = []  # available agents serving it, strategy order
        self.last_order = -1              # round-robin: the agent offered last
        self.logged_in = 0                # serving agents logged in (paused too)
        self.active = 0                   # ... and not paused
        self.on_line = 0                  # callers on the line, waiting or ringing
        self.callbacks = 0                # callbacks not yet reached
        self.aht = HandleTime(config.expected_handle_s)
        self.ring_us = seconds_us(config.ring_timeout_s)
        self.wrapup_us = seconds_us(config.wrapup_s)


class _Agent:
    __slots__ = ("config", "id", "order", "state", "queues", "levels")

    def __init__(self, config: AgentConfig, order: int, queues: list[_Queue]):
        self.config, self.id, self.order = config, config.id, order
        self.state: AgentState = Offline(EPOCH)
        self.queues = queues  # the queues it serves (it has their skill)
        self.levels = [config.skills[q.config.needs] for q in queues]


class _Entry:
    """One caller (or callback) in the engine, from join to answer or leaving."""

    __slots__ = ("call_id", "seq", "queue", "priority", "category", "language", "attributes",
                 "kind", "number", "joined_us", "entered_us", "stage", "agent", "missed",
                 "fallback", "overdue", "attempts", "key", "max_wait_us", "fallback_us",
                 "announce_us", "retry_us")

    def __init__(self, call_id: str, seq: int, queue: _Queue, priority: int, category: str | None,
                 language: str, attributes: tuple[tuple[str, str], ...], joined_us: int):
        self.call_id, self.seq, self.queue = call_id, seq, queue
        self.priority, self.category, self.language = priority, category, language
        self.attributes = attributes
        self.kind, self.number = "call", None  # "callback" with the number to dial
        self.joined_us = self.entered_us = joined_us  # original join; entering this queue
        self.stage: str | None = None  # "waiting" | "ringing" | "talking" | "scheduled"
        self.agent: str | None = None
        self.missed: set[str] = set()  # agents whose offer for it rang out or was declined
        self.fallback = self.overdue = False
        self.attempts = 0
        self.key = d.entry_key(priority, joined_us, seq)
        self.max_wait_us = self.fallback_us = self.announce_us = self.retry_us = None


class _Core:
    def __init__(self, queues: dict[str, QueueConfig], agents: dict[str, AgentConfig]):
        self._queues: dict[str, _Queue] = {}
        for name, config in queues.items():
            if config.name != name:
                raise QueueError(f'queue "{name}": its config is named "{config.name}"')
            self._queues[name] = _Queue(config)
        for q in self._queues.values():
            target = q.config.overflow_queue
            if target is not None and target not in self._queues:
                raise QueueError(f'queue "{q.name}": overflow: unknown queue "{target}"'
                                 + suggest(target, self._queues))
        self._agents: dict[str, _Agent] = {}
        self._order: list[_Agent] = []
        for i, (ident, config) in enumerate(agents.items()):
            if config.id != ident:
                raise QueueError(f'agent "{ident}": its config has the id "{config.id}"')
            served = [q for q in self._queues.values() if q.config.needs in config.skills]
            self._agents[ident] = agent = _Agent(config, i, served)
            self._order.append(agent)
        self._entries: dict[str, _Entry] = {}
        self._by_seq: dict[int, _Entry] = {}
        self._fallback: list[d.Key] = []  # dispatchable entries any agent may take
        self._idle: list[d.Key] = []      # all available agents, longest idle first
        self._timers: list[tuple[int, int, str, Any]] = []
        self._tseq = itertools.count()
        self._seq = itertools.count()
        self._out: list[Action] = []

    # ------------------------------------------------------------------ lookups

    def _agent(self, ident: str) -> _Agent:
        agent = self._agents.get(ident)
        if agent is None:
            raise QueueError(f'unknown agent "{ident}"' + suggest(str(ident), self._agents))
        return agent

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise QueueError(f'unknown queue "{name}"' + suggest(str(name), self._queues))
        return queue

    def _estimate(self, q: _Queue, position: int) -> float | None:
        ewt = estimated_wait(position, q.aht.value, q.active)
        return None if ewt is None else round(ewt, 1)

    def _log(self, at: datetime, call_id: str, kind: str, /, **data: Any) -> None:
        self._out.append(CallLog(at, call_id, kind, data))

    # ------------------------------------------------------------------ agent states

    def _set_state(self, a: _Agent, new: AgentState, at: datetime) -> None:
        old = a.state
        if old.name == "available":
            self._index(a, old, d.remove)  # type: ignore[arg-type]
        if old.logged_in != new.logged_in or old.active != new.active:
            dl, da = new.logged_in - old.logged_in, new.active - old.active
            for q in a.queues:
                q.logged_in += dl
                q.active += da
        a.state = new
        if new.name == "available":
            self._index(a, new, d.add)
        if old.name != new.name or old.reason != new.reason or old.call_id != new.call_id:
            self._out.append(AgentLog(at, a.id, new.name, new.reason, new.call_id))

    def _index(self, a: _Agent, state: Any, op: Any) -> None:
        idle = state.idle_us
        for q, level in zip(a.queues, a.levels, strict=True):
            op(q.available, d.agent_key(q.strategy, level, idle, a.order))
        op(self._idle, (idle, a.order))

    # ------------------------------------------------------------------ entry stages

    def _link(self, e: _Entry) -> None:
        q, stage = e.queue, e.stage
        if stage == "waiting":
            d.add(q.ready, e.key)
            if e.fallback:
                d.add(self._fallback, e.key)
        if e.kind == "call":
            if stage == "waiting" or stage == "ringing":
                q.on_line += 1
        elif stage == "waiting" or stage == "ringing" or stage == "scheduled":
            q.callbacks += 1

    def _unlink(self, e: _Entry) -> None:
        q, stage = e.queue, e.stage
        if stage == "waiting":
            d.remove(q.ready, e.key)
            if e.fallback:
                d.remove(self._fallback, e.key)
        if e.kind == "call":
            if stage == "waiting" or stage == "ringing":
                q.on_line -= 1
        elif stage == "waiting" or stage == "ringing" or stage == "scheduled":
            q.callbacks -= 1

    def _set_stage(self, e: _Entry, stage: str | None) -> None:
        self._unlink(e)
        e.stage = stage
        self._link(e)

    def _drop(self, e: _Entry) -> None:
        self._set_stage(e, None)
        del self._entries[e.call_id], self._by_seq[e.seq]

    # ------------------------------------------------------------------ matching

    def _serve_entry(self, e: _Entry, at: datetime, t: int) -> None:
        """A caller became dispatchable: offer it to the agent its queue's strategy picks."""
        q = e.queue
        tiers = []
        if q.available:
            tiers.append((q.available, d.start_of(q.strategy, q.available, q.last_order)))
        if e.fallback and self._idle:
            tiers.append((self._idle, 0))
        if tiers:
            agent = d.pick(tiers, self._order.__getitem__, e.missed, _ident)
            if agent is not None:
                self._offer(agent, e, at, t)

    def _serve_agent(self, a: _Agent, at: datetime, t: int) -> None:
        """An agent became available: offer it the best caller across what it may serve."""
        if a.state.name != "available":
            return
        best = None
        for q in a.queues:
            if q.ready and (best is None or q.ready[0] < best):
                best = q.ready[0]
        if self._fallback and (best is None or self._fallback[0] < best):
            best = self._fallback[0]
        if best is not None:
            self._offer(a, self._by_seq[best[2]], at, t)

    def _offer(self, a: _Agent, e: _Entry, at: datetime, t: int) -> None:
        q = e.queue
        deadline = t + q.ring_us
        self._set_stage(e, "ringing")
        e.agent = a.id
        q.last_order = a.order
        self._set_state(a, a.state.offer(at, e.call_id, deadline), at)
        self._log(at, e.call_id, "queue_offered", agent=a.id, kind=e.kind)
        self._out.append(Offer(at, a.id, e.call_id, q.name, e.kind, e.number, e.category,
                               e.attributes, span_s(e.joined_us, t), e.language))
        self._schedule(deadline, "ring", (a, e.call_id))

    # ------------------------------------------------------------------ callers in and out

    def _place(self, e: _Entry, q: _Queue, at: datetime, t: int,
               visited: frozenset[str] = frozenset()) -> None:
        """Put a caller in ``q`` (join, transfer or overflow): closed, overflow or wait."""
        e.queue, e.entered_us, e.fallback, e.overdue = q, t, False, False
        e.max_wait_us = e.fallback_us = e.announce_us = None
        config = q.config
        if config.when_no_agents == "reject" and q.logged_in == 0:
            self._close(e, "no_agents", at)
            return
        if config.max_length is not None and q.on_line >= config.max_length:
            self._overflow(e, "max_length", at, t, visited | {q.name})
            return
        if config.max_wait_s is not None:
            e.max_wait_us = self._schedule(t + seconds_us(config.max_wait_s), "max_wait", e)
        if config.strategy == "skills":
            if config.fallback_after_s <= 0:
                e.fallback = True
            else:
                e.fallback_us = self._schedule(t + seconds_us(config.fallback_after_s), "fallback", e)
        self._set_stage(e, "waiting")
        self._serve_entry(e, at, t)
        if config.announce_every_s > 0:
            if e.stage == "waiting":
                self._announce(e, at)
            e.announce_us = self._schedule(t + seconds_us(config.announce_every_s), "announce", e)

    def _back_to_waiting(self, e: _Entry, at: datetime, t: int) -> None:
        """An offer ended without an answer: the caller waits on, keeping its place."""
        e.agent = None
        if e.overdue and e.kind == "call":
            self._overflow(e, "max_wait", at, t)
            return
        self._set_stage(e, "waiting")
        self._serve_entry(e, at, t)

    def _overflow(self, e: _Entry, reason: str, at: datetime, t: int,
                  visited: frozenset[str] = frozenset()) -> None:
        q = e.queue
        self._log(at, e.call_id, "queue_overflow", queue=q.name, target=q.config.overflow,
                  reason=reason, wait_s=span_s(e.joined_us, t))
        target = q.config.overflow_queue
        if target is not None and target not in visited:
            self._set_stage(e, None)
            self._place(e, self._queues[target], at, t, visited | {q.name})
        else:  # a target for the controller, or a ring of full queues: the caller leaves
            self._drop(e)
            self._out.append(LeaveQueue(at, e.call_id, "overflow",
                                        q.config.overflow if target is None else None))

    def _close(self, e: _Entry, reason: str, at: datetime) -> None:
        self._log(at, e.call_id, "queue_closed", queue=e.queue.name, reason=reason)
        self._drop(e)
        self._out.append(LeaveQueue(at, e.call_id, "closed", None))

    def _announce(self, e: _Entry, at: datetime) -> None:
        position = d.rank(e.queue.ready, e.key)
        ewt = self._estimate(e.queue, position)
        self._out.append(Position(at, e.call_id, position, ewt))
        self._log(at, e.call_id, "queue_position", position=position, estimated_wait_s=ewt)

    def _wrapup_done(self, a: _Agent, at: datetime, t: int, **coding: Any) -> None:
        """End a wrap-up, coded (``coding`` has category, resolution, has_note) or not."""
        state: Wrapup = a.state  # type: ignore[assignment]
        q = self._queues[state.queue]
        wrapup_s = span_s(to_us(state.since), t)
        data = coding or {"category": None, "resolution": "uncoded", "has_note": False}
        self._log(at, state.call_id, "wrapup", agent=a.id, category=data["category"],
                  resolution=data["resolution"], coded=bool(coding), wrapup_s=wrapup_s,
                  has_note=data["has_note"])
        q.aht.add(state.talk_s + wrapup_s)

    # ------------------------------------------------------------------ timers

    def _schedule(self, due: int, kind: str, ref: Any) -> int:
        heappush(self._timers, (due, next(self._tseq), kind, ref))
        return due

    def _live(self, due: int, kind: str, ref: Any) -> bool:
        if kind == "ring" or kind == "wrapup":
            a, call_id = ref
            s = a.state
            return s.name == ("offered" if kind == "ring" else "wrapup") and \
                s.call_id == call_id and s.deadline_us == due
        return self._entries.get(ref.call_id) is ref and getattr(ref, kind + "_us") == due

    def _advance(self, now: datetime, t: int) -> None:
        """Run every timer due by ``t``, each at its own due time, in order."""
        timers = self._timers
        while timers and timers[0][0] <= t:
            due, _, kind, ref = heappop(timers)
            if self._live(due, kind, ref):
                at = now if due == t else (EPOCH + timedelta(microseconds=due)).astimezone(now.tzinfo)
                getattr(self, "_on_" + kind)(ref, at, due)

    def _next_due(self) -> int | None:
        timers = self._timers
        while timers and not self._live(timers[0][0], timers[0][2], timers[0][3]):
            heappop(timers)
        return timers[0][0] if timers else None


def _ident(agent: _Agent) -> str:
    return agent.id
