"""``QueueEngine``: callers waiting in queues and agents taking them, as a sans-I/O machine.

Every method takes ``now`` (an aware datetime) from its caller and returns a list of
actions (:mod:`queues.model`) for the controller to carry out; the engine never reads a
clock, sleeps or touches a socket. Timers (ring timeouts, wrap-up expiry, max wait,
skills fallback, position announcements, callback retries) fall due inside the engine:
``next_deadline()`` says when the next one does, and ``tick(now)`` -- or any other call
-- runs every timer due by ``now``, each at its own due time.

A request that does not fit the state (accepting without an offer, coding a wrap-up
that is over, an unknown agent or queue, a category the queue does not have) raises
:class:`queues.QueueError` (a ``ValueError``) with a clear message and changes nothing.

See ``docs/queues.md`` for the rules and the log kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from queues import dispatch as d
from queues.core import EPOCH, _Agent, _Entry, seconds_us, span_s, suggest, to_us
from queues.model import (
    CALLBACK_RESULTS,
    RESOLUTIONS,
    Action,
    AgentConfig,
    CallLog,
    CancelOffer,
    Note,
    QueueConfig,
    QueueError,
)
from queues.states import Offered, Talking, Wrapup
from queues.timers import _Reactions


class QueueEngine(_Reactions):
    def __init__(self, queues: Mapping[str, QueueConfig], agents: Mapping[str, AgentConfig]):
        super().__init__(dict(queues), dict(agents))

    def _begin(self, now: datetime) -> int:
        t = to_us(now)
        self._advance(now, t)
        return t

    def _end(self, now: datetime, t: int) -> list[Action]:
        self._advance(now, t)  # timers set to fall due at once (a zero wrap-up, say)
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ callers

    def join(self, now: datetime, call_id: str, queue: str, *, priority: int = 0,
             category: str | None = None, language: str = "sv",
             attributes: tuple[tuple[str, str], ...] = ()) -> list[Action]:
        """A caller enters ``queue``: offered at once, told its place, or sent away."""
        q = self._queue(queue)
        if type(priority) is not int:
            raise QueueError(f"priority: expected an integer, got {priority!r}")
        t = self._begin(now)
        if (old := self._entries.get(call_id)) is not None:
            raise QueueError(f'call "{call_id}" is already in queue "{old.queue.name}"')
        e = _Entry(call_id, next(self._seq), q, priority, category, language,
                   tuple(tuple(p) for p in attributes), t)  # type: ignore[misc]
        self._entries[call_id] = e
        self._by_seq[e.seq] = e
        log = len(self._out)
        self._place(e, q, now, t)
        if e.stage == "waiting":
            position: int | None = d.rank(q.ready, e.key)
            ewt = self._estimate(q, position)  # type: ignore[arg-type]
        else:  # ringing at once, or gone
            position, ewt = (1, 0.0) if e.stage == "ringing" else (None, None)
        self._out.insert(log, CallLog(now, call_id, "queue_joined", {
            "queue": q.name, "category": category, "priority": priority, "position": position,
            "estimated_wait_s": ewt}))
        return self._end(now, t)

    def hangup(self, now: datetime, call_id: str) -> list[Action]:
        """The caller hung up: abandoned if waiting or ringing; nothing otherwise."""
        t = self._begin(now)
        e = self._entries.get(call_id)
        if e is not None and e.kind == "call" and e.stage in ("waiting", "ringing"):
            stage, agent = e.stage, self._agents.get(e.agent or "")
            if agent is not None:
                self._cancel(agent, e, "caller-hangup", now, pause=False)
            self._drop(e)
            self._log(now, call_id, "queue_abandoned", queue=e.queue.name, stage=stage,
                      wait_s=span_s(e.joined_us, t))
            if agent is not None:
                self._serve_agent(agent, now, t)
        return self._end(now, t)

    def request_callback(self, now: datetime, call_id: str, number: str) -> list[Action]:
        """The caller leaves the line but keeps its place; later an agent calls ``number``."""
        if not isinstance(number, str) or not number.strip():
            raise QueueError("number: expected a phone number (a non-empty string)")
        t = self._begin(now)
        e = self._entries.get(call_id)
        if e is None or e.kind != "call" or e.stage not in ("waiting", "ringing"):
            raise QueueError(f'call "{call_id}" is not waiting in a queue')
        agent = self._agents.get(e.agent or "")
        if agent is not None:
            self._cancel(agent, e, "caller-hangup", now, pause=False)
        self._unlink(e)
        e.kind, e.number, e.stage, e.agent = "callback", number, "waiting", None
        e.max_wait_us = e.announce_us = None  # not on the line: no overflow, no announcements
        self._link(e)
        self._log(now, call_id, "callback_requested", queue=e.queue.name,
                  wait_s=span_s(e.joined_us, t))
        if agent is not None:
            self._serve_entry(e, now, t)
            self._serve_agent(agent, now, t)
        return self._end(now, t)

    def transfer(self, now: datetime, call_id: str, to_queue: str, *,
                 by_agent: str | None = None) -> list[Action]:
        """The talking agent sends the caller to ``to_queue``: the caller keeps its original
        join time (its place and its wait), the agent goes to wrap-up."""
        target = self._queue(to_queue)
        t = self._begin(now)
        e = self._entries.get(call_id)
        if e is None or e.kind != "call" or e.stage != "talking":
            raise QueueError(f'call "{call_id}" is not talking to an agent')
        a = self._agents[e.agent]  # type: ignore[index]
        if by_agent is not None and by_agent != a.id:
            raise QueueError(f'call "{call_id}" is talking to "{a.id}", not "{by_agent}"')
        self._log(now, call_id, "queue_transferred", from_queue=e.queue.name,
                  to_queue=target.name, agent=a.id)
        self._end_talk(a, e, now, t)
        e.agent = None
        self._place(e, target, now, t)
        return self._end(now, t)

    # ------------------------------------------------------------------ agents

    def login(self, now: datetime, agent: str) -> list[Action]:
        a = self._agent(agent)
        t = self._begin(now)
        self._set_state(a, _step(a, a.state.login, now, t), now)
        self._serve_agent(a, now, t)
        return self._end(now, t)

    def logout(self, now: datetime, agent: str) -> list[Action]:
        """Offered: the offer is cancelled and the caller goes to the next agent. In
        wrap-up: the call is logged uncoded. Talking: refused."""
        a = self._agent(agent)
        t = self._begin(now)
        state = a.state
        new = _step(a, state.logout, now)
        if isinstance(state, Offered):
            e = self._entries[state.call_id]
            self._out.append(CancelOffer(now, a.id, e.call_id, "logout"))
            self._set_state(a, new, now)
            self._back_to_waiting(e, now, t)
        else:
            if isinstance(state, Wrapup):
                self._wrapup_done(a, now, t)
            self._set_state(a, new, now)
        for q in a.queues:
            if q.logged_in == 0 and q.config.leave_when_empty:
                for key in list(q.ready):
                    e = self._by_seq[key[2]]
                    if e.kind == "call":
                        self._close(e, "last_agent_left", now)
        return self._end(now, t)

    def pause(self, now: datetime, agent: str, reason: str) -> list[Action]:
        """Available: paused now. Offered: the offer is declined first. Talking or in
        wrap-up: paused when the wrap-up ends (``resume`` before then cancels it)."""
        if not isinstance(reason, str) or not reason.strip():
            raise QueueError(f"pause reason: expected a non-empty string, got {reason!r}")
        a = self._agent(agent)
        t = self._begin(now)
        state = a.state
        new = _step(a, state.pause, now, reason)
        if isinstance(state, Offered):
            e = self._entries[state.call_id]
            self._out.append(CancelOffer(now, a.id, e.call_id, "declined"))
            self._set_state(a, new, now)
            e.missed.add(a.id)
            self._back_to_waiting(e, now, t)
        else:
            self._set_state(a, new, now)
        return self._end(now, t)

    def resume(self, now: datetime, agent: str) -> list[Action]:
        a = self._agent(agent)
        t = self._begin(now)
        self._set_state(a, _step(a, a.state.resume, now), now)
        self._serve_agent(a, now, t)
        return self._end(now, t)

    def accept(self, now: datetime, agent: str) -> list[Action]:
        """The agent answered the offer: talking (for a callback: now dialling the citizen)."""
        a = self._agent(agent)
        t = self._begin(now)
        state = a.state
        if not isinstance(state, Offered):
            raise QueueError(f'agent "{agent}" has no offer to accept ({state.name})')
        e = self._entries[state.call_id]
        self._set_stage(e, "talking")
        e.max_wait_us = e.fallback_us = e.announce_us = None  # their timers lapse
        self._set_state(a, state.accept(now, t, e.kind == "callback"), now)
        if e.kind == "call":
            self._log(now, e.call_id, "queue_answered", agent=a.id, queue=e.queue.name,
                      wait_s=span_s(e.joined_us, t))
        return self._end(now, t)

    def decline(self, now: datetime, agent: str) -> list[Action]:
        """Like a ring timeout for the caller (the next agent); the agent stays available."""
        a = self._agent(agent)
        t = self._begin(now)
        if not isinstance(a.state, Offered):
            raise QueueError(f'agent "{agent}" has no offer to decline ({a.state.name})')
        self._ring_out(a, "declined", now, t)
        return self._end(now, t)

    def end_talk(self, now: datetime, agent: str, call_id: str | None = None) -> list[Action]:
        """The conversation ended: wrap-up. Nothing when the agent is not talking (or, with
        ``call_id``, not talking on that call), so both legs may report the end."""
        a = self._agent(agent)
        t = self._begin(now)
        state = a.state
        if isinstance(state, Talking) and call_id in (None, state.call_id):
            if state.dialling:
                raise QueueError(f'agent "{agent}" is dialling a callback; report '
                                 "callback_result first")
            e = self._entries[state.call_id]
            self._end_talk(a, e, now, t)
            self._drop(e)
        return self._end(now, t)

    def wrapup(self, now: datetime, agent: str, *, category: str | None, resolution: str,
               note: str | None = None) -> list[Action]:
        """Code the call; the agent is available (or paused, if asked) at once."""
        a = self._agent(agent)
        if resolution not in RESOLUTIONS:
            raise QueueError(f"resolution: expected one of {_quoted(RESOLUTIONS)}, "
                             f"got {_show(resolution)}")
        if note is not None and not isinstance(note, str):
            raise QueueError(f"note: expected text, got {note!r}")
        t = self._begin(now)
        state = a.state
        if not isinstance(state, Wrapup):
            raise QueueError(f'agent "{agent}" is not in wrap-up ({state.name})')
        categories = self._queues[state.queue].config.categories
        if categories and category not in categories:
            raise QueueError(f'category: expected one of the categories of queue "{state.queue}" '
                             f"({_quoted(categories)}), got {_show(category)}"
                             + suggest(str(category), categories))
        has_note = bool(note and note.strip())
        self._wrapup_done(a, now, t, category=category, resolution=resolution, has_note=has_note)
        if has_note:
            self._out.append(Note(now, state.call_id, a.id, note))  # type: ignore[arg-type]
        self._set_state(a, state.done(now, t), now)
        self._serve_agent(a, now, t)
        return self._end(now, t)

    def callback_result(self, now: datetime, agent: str, result: str) -> list[Action]:
        """How the callback the agent dialled went: "answered" (talking goes on) or
        "no-answer" | "busy" | "failed" (agent free; retried later or given up)."""
        a = self._agent(agent)
        if result not in CALLBACK_RESULTS:
            raise QueueError(f"result: expected one of {_quoted(CALLBACK_RESULTS)}, got {_show(result)}")
        t = self._begin(now)
        state = a.state
        if not isinstance(state, Talking) or not state.dialling:
            raise QueueError(f'agent "{agent}" is not dialling a callback ({state.name})')
        e = self._entries[state.call_id]
        e.attempts += 1
        self._log(now, e.call_id, "callback_attempt", agent=a.id, result=result, attempt=e.attempts)
        if result == "answered":
            self._set_state(a, state.answered(t), now)
            return self._end(now, t)
        self._set_state(a, state.free(now, t), now)
        e.agent = None
        config = e.queue.config
        if e.attempts >= config.callback_max_attempts:
            self._log(now, e.call_id, "callback_failed", attempts=e.attempts)
            self._drop(e)
        else:
            self._set_stage(e, "scheduled")
            e.retry_us = self._schedule(t + seconds_us(config.callback_retry_s), "retry", e)
        self._serve_agent(a, now, t)
        return self._end(now, t)

    def tick(self, now: datetime) -> list[Action]:
        """Run every timer due by ``now``."""
        return self._end(now, self._begin(now))

    def next_deadline(self) -> datetime | None:
        """When the earliest pending timer falls due (UTC), so a controller can sleep until then."""
        due = self._next_due()
        return None if due is None else EPOCH + timedelta(microseconds=due)

    # ------------------------------------------------------------------ queries

    def position(self, call_id: str) -> int | None:
        """1-based place among the dispatchable entries of its queue; None unless waiting."""
        e = self._entries.get(call_id)
        return d.rank(e.queue.ready, e.key) if e is not None and e.stage == "waiting" else None

    def estimated_wait(self, now: datetime, call_id: str) -> float | None:
        position = self.position(call_id)
        return None if position is None else self._estimate(self._entries[call_id].queue, position)

    def agent_state(self, agent: str) -> str:
        return self._agent(agent).state.name

    def agent_call(self, agent: str) -> str | None:
        """The call the agent is offered, talking to or wrapping up; None when free."""
        return self._agent(agent).state.call_id

    def queue_config(self, queue: str) -> QueueConfig:
        """A queue's settings; QueueError (with the closest name) for an unknown queue."""
        return self._queue(queue).config

    def deadline(self, agent: str) -> datetime | None:
        """When the agent's offer rings out (offered) or its wrap-up ends (wrap-up); else None."""
        state = self._agent(agent).state
        due = getattr(state, "deadline_us", None) if isinstance(state, Offered | Wrapup) else None
        return None if due is None else EPOCH + timedelta(microseconds=due)

    def callers(self, now: datetime) -> dict[str, list[dict[str, Any]]]:
        """Callers and callbacks not yet answered, per queue (only queues that have some):
        ringing first, then waiting by place (``position``, 1 = next), then callbacks
        scheduled for a retry. ``wait_s`` counts from the first join (a transfer keeps it).
        Callback numbers are not included."""
        t = to_us(now)
        order = {"ringing": 0, "waiting": 1, "scheduled": 2}
        out: dict[str, list[dict[str, Any]]] = {}
        for e in self._entries.values():
            if e.stage not in order:
                continue
            out.setdefault(e.queue.name, []).append({
                "call_id": e.call_id, "kind": e.kind, "stage": e.stage,
                "position": self.position(e.call_id), "priority": e.priority,
                "category": e.category, "language": e.language, "wait_s": round(span_s(e.joined_us, t), 1),
                "agent": e.agent if e.stage == "ringing" else None, "attempts": e.attempts,
            })
        for rows in out.values():
            rows.sort(key=lambda r: (order[r["stage"]], r["position"] or 0, -r["wait_s"]))
        return out

    def snapshot(self, now: datetime) -> dict[str, Any]:
        """What a wallboard shows: per queue and per agent."""
        t = to_us(now)
        longest = dict.fromkeys(self._queues, 0)
        for e in self._entries.values():
            if e.kind == "call" and e.stage in ("waiting", "ringing"):
                longest[e.queue.name] = max(longest[e.queue.name], t - e.joined_us)
        queues = {name: {"waiting": q.on_line, "longest_wait_s": span_s(0, longest[name]),
                         "callbacks": q.callbacks, "agents_serving": q.active,
                         "estimated_wait_s": self._estimate(q, len(q.ready) + 1)}
                  for name, q in self._queues.items()}
        agents = {a.id: {"state": a.state.name, "reason": a.state.reason,
                         "since": None if a.state.since == EPOCH else a.state.since.isoformat(),
                         "call_id": a.state.call_id}
                  for a in self._order}
        return {"queues": queues, "agents": agents}

def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _step(a: _Agent, transition: Any, *args: Any) -> Any:
    """A state transition, its refusal naming the agent."""
    try:
        return transition(*args)
    except QueueError as e:
        raise QueueError(f'agent "{a.id}": {e}') from None
