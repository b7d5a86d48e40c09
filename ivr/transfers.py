"""Agent transfers as a sans-I/O state machine: blind and attended, with their legs and fallbacks.

One :class:`Transfers` holds the transfers under way, at most one per call. Every method
takes ``now`` from its caller and returns a list of actions for the controller to carry
out in order (the queue engine's shape): facts for the call's one record (:class:`Log`,
kinds in :data:`LOG_KINDS`) and instructions for the line. The machine never reads a
clock, sleeps or touches a socket; its only timer, the ring timeout, falls due inside
it (``next_deadline()``, ``tick(now)``).

    blind:    start -> ringing -> answered: joined (agent done; the caller talks to the target)
                               -> busy | failed | no-answer -> fallback: the agent, or a message
    attended: start -> ringing (caller on hold) -> answered: consulting
                consulting -> complete (caller joined to the colleague, agent done)
                           -> cancel (colleague dropped, caller back with the agent)
              ringing -> busy | failed | no-answer | cancel -> caller back with the agent
    a queue:  blind only, at once: the queue engine's ``transfer`` (the caller keeps its wait)

A transport that refuses a step (REST 4xx, AMI ``Response: Error``) reports ``refused``:
the call stays with the agent (:class:`ReturnToAgent`, a no-op where nothing had moved)
and the refusal is logged. Targets are resolved and checked at the door by
:func:`resolve_target`; a bad one raises :class:`TransferError` with an HTTP status
(400 bad input, 404 unknown target, 409 not possible now) and a message naming it.

Targets and the policy live in :mod:`ivr.transfer_targets`, the reports in
:mod:`ivr.transfer_report` (both re-exported here). See ``docs/transfers.md``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ivr.transfer_report import Counts, Leg, menu_choice, transfer_report
from ivr.transfer_targets import (
    FALLBACKS,
    TARGET_KINDS,
    DirectoryEntry,
    DirectoryLike,
    Target,
    TransferError,
    TransferPolicy,
    resolve_target,
)

__all__ = [
    "FALLBACKS", "KINDS", "LEG_FAILURES", "LOG_KINDS", "TARGET_KINDS", "Action", "AgentDone", "Consult",
    "Counts", "DirectoryEntry", "DirectoryLike", "DropTarget", "JoinTarget", "Leg", "Log", "QueueTransfer",
    "ReturnToAgent", "RingTarget", "Target", "ToMessage", "TransferError", "TransferPolicy", "TransferView",
    "Transfers", "menu_choice", "resolve_target", "transfer_report",
]

KINDS = ("blind", "attended")
LEG_FAILURES = ("busy", "no-answer", "failed")

# What each Log kind carries (exactly these keys); ivr.vocabulary.TRACE_KINDS lists them too.
LOG_KINDS: Mapping[str, tuple[str, ...]] = {
    "transfer_started": ("transfer", "kind", "target_kind", "target", "agent", "from_queue",
                         "same_topic", "ring_timeout_s"),
    "leg_answered": ("transfer", "leg", "by", "ring_s"),
    "leg_ended": ("transfer", "leg", "by", "talk_s", "reason"),
    "transfer_completed": ("transfer", "kind", "target_kind", "target", "agent", "consult_s"),
    "transfer_failed": ("transfer", "reason", "fallback", "detail"),
    "transfer_cancelled": ("transfer", "agent", "consult_s"),
}


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Action:
    at: datetime
    call_id: str
    transfer: int   # 1, 2, ... within the call


@dataclass(frozen=True, slots=True)
class Log(Action):
    """A fact for the call's event log; ``kind`` and ``data`` keys as in LOG_KINDS."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RingTarget(Action):
    """Dial the target. Blind: for the caller (the agent's leg is released now). Attended:
    for the agent, the caller on hold meanwhile. Ring no longer than ``timeout_s`` plus a
    margin: the machine's ring timeout decides."""

    kind: str
    target: Target
    agent: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Consult(Action):
    """Attended: the colleague answered; the agent talks to them, the caller stays on hold."""

    agent: str


@dataclass(frozen=True, slots=True)
class JoinTarget(Action):
    """The caller and the target are joined; the agent's leg leaves. Blind: when the target
    answers (a no-op where the caller's own dial already connects them). Attended: on
    completion."""

    agent: str | None


@dataclass(frozen=True, slots=True)
class DropTarget(Action):
    """End the target's leg (cancelled, or it rang out)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReturnToAgent(Action):
    """The caller goes back to the agent: off hold (attended), or the agent's endpoint rung
    again (a blind transfer nobody answered). A no-op where nothing had moved yet."""

    agent: str
    reason: str


@dataclass(frozen=True, slots=True)
class ToMessage(Action):
    """Nobody answered a blind transfer: the caller may leave a message for ``target``."""

    target: Target


@dataclass(frozen=True, slots=True)
class QueueTransfer(Action):
    """A blind transfer to a queue: the queue engine's ``transfer`` (it logs ``queue_transferred``)."""

    agent: str
    queue: str


@dataclass(frozen=True, slots=True)
class AgentDone(Action):
    """The agent's part of the call is over (controller: end the talk, wrap-up)."""

    agent: str


# --------------------------------------------------------------------------- the machine


@dataclass(slots=True)
class _Transfer:
    n: int
    call_id: str
    agent: str | None       # None once the agent has left (then no "back to the agent")
    kind: str
    target: Target
    started_at: datetime
    deadline: datetime | None
    stage: str = "ringing"  # ringing | consulting | connected
    answered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TransferView:
    """What a desk shows about a transfer under way."""

    call_id: str
    transfer: int
    kind: str
    stage: str
    target_kind: str
    target: str
    name: str
    started_at: datetime
    since: datetime      # when the stage began (the answer, for consulting and connected)


class Transfers:
    def __init__(self, policy: TransferPolicy | None = None):
        self.policy = policy or TransferPolicy()
        self._live: dict[str, _Transfer] = {}
        self._count: dict[str, int] = {}   # transfers started per call (numbers them)

    # ------------------------------------------------------------------ the agent

    def start(self, now: datetime, call_id: str, agent: str, kind: str, target: Target, *,
              from_queue: str | None = None, queue_topics: Collection[str] = ()) -> list[Action]:
        """The agent talking to ``call_id`` transfers it. ``queue_topics``: the topics of the
        queue the call was answered in (its name and categories), for the misroute report."""
        if kind not in KINDS:
            raise TransferError(f'kind: expected "blind" or "attended", got {kind!r}')
        if (busy := self._live.get(call_id)) is not None:
            raise TransferError(f'call "{call_id}" already has a {busy.kind} transfer to '
                                f'{busy.target.shown} under way ({busy.stage})', 409)
        if target.kind == "queue":
            if kind == "attended":
                raise TransferError("an attended transfer needs a person or a number; "
                                    "send the caller to a queue with a blind transfer")
            if target.id == from_queue:
                raise TransferError(f'the call is already in queue "{target.id}"', 409)
        n = self._count[call_id] = self._count.get(call_id, 0) + 1
        out: list[Action] = [self._log(now, call_id, n, "transfer_started", kind=kind,
                                       target_kind=target.kind, target=target.shown, agent=agent,
                                       from_queue=from_queue,
                                       same_topic=_same_topic(target, from_queue, queue_topics),
                                       ring_timeout_s=None if target.kind == "queue"
                                       else self.policy.ring_timeout_s)]
        if target.kind == "queue":
            out.append(QueueTransfer(now, call_id, n, agent, target.id))
            out.append(self._log(now, call_id, n, "transfer_completed", kind=kind, target_kind="queue",
                                 target=target.id, agent=agent, consult_s=None))
            return out
        deadline = now + timedelta(seconds=self.policy.ring_timeout_s)
        self._live[call_id] = _Transfer(n, call_id, agent, kind, target, now, deadline)
        out.append(RingTarget(now, call_id, n, kind, target, agent, self.policy.ring_timeout_s))
        return out

    def complete(self, now: datetime, call_id: str, agent: str | None = None) -> list[Action]:
        """Attended: the agent hands the caller to the colleague they are talking to."""
        t = self._get(call_id, agent)
        if t.kind != "attended":
            raise TransferError(f'call "{call_id}": a blind transfer completes by itself', 409)
        if t.stage != "consulting":
            raise TransferError(f'call "{call_id}": {t.target.name or t.target.shown} has not answered '
                                "yet; wait, or cancel the transfer", 409)
        return self._complete(now, t)

    def cancel(self, now: datetime, call_id: str, agent: str | None = None) -> list[Action]:
        """Attended: the agent takes the caller back; the colleague's leg ends."""
        t = self._get(call_id, agent)
        if t.kind != "attended":
            raise TransferError(f'call "{call_id}": a blind transfer cannot be taken back', 409)
        assert t.agent is not None
        out: list[Action] = [DropTarget(now, call_id, t.n, "cancelled")]
        consult = self._end_leg(now, t, "cancelled", out)
        out.append(self._log(now, call_id, t.n, "transfer_cancelled", agent=t.agent, consult_s=consult))
        out.append(ReturnToAgent(now, call_id, t.n, t.agent, "cancelled"))
        del self._live[call_id]
        return out

    def agent_left(self, now: datetime, call_id: str) -> list[Action]:
        """The agent hung up during a transfer. Consulting: that completes it (as a PBX does).
        Ringing: the caller stays on hold for the target, with the message as the fallback."""
        t = self._live.get(call_id)
        if t is None or t.agent is None:
            return []
        if t.stage == "consulting":
            return self._complete(now, t)
        t.agent = None  # the controller ends the agent's talk itself
        return []

    # ------------------------------------------------------------------ the line

    def answered(self, now: datetime, call_id: str) -> list[Action]:
        """The target's leg answered."""
        t = self._live.get(call_id)
        if t is None or t.stage != "ringing":
            return []
        t.answered_at, t.deadline = now, None
        out: list[Action] = [self._log(now, call_id, t.n, "leg_answered", leg="target", by=t.target.shown,
                                       ring_s=_seconds(t.started_at, now))]
        if t.kind == "attended" and t.agent is not None:
            t.stage = "consulting"
            return [*out, Consult(now, call_id, t.n, t.agent)]
        t.stage = "connected"
        out.append(JoinTarget(now, call_id, t.n, t.agent))
        out.append(self._log(now, call_id, t.n, "transfer_completed", kind=t.kind, target_kind=t.target.kind,
                             target=t.target.shown, agent=t.agent, consult_s=None))
        if t.agent is not None:
            out.append(AgentDone(now, call_id, t.n, t.agent))
            t.agent = None
        return out

    def leg_failed(self, now: datetime, call_id: str, reason: str, detail: str | None = None) -> list[Action]:
        """The target could not be reached: "busy", "no-answer" or "failed"."""
        if reason not in LEG_FAILURES:
            raise TransferError(f"reason: expected one of {', '.join(LEG_FAILURES)}, got {reason!r}")
        t = self._live.get(call_id)
        if t is None or t.stage != "ringing":
            return []
        return self._fail(now, t, reason, detail, drop=False)

    def refused(self, now: datetime, call_id: str, detail: str) -> list[Action]:
        """The transport refused a step (REST 4xx, AMI error): the call stays with the agent."""
        t = self._live.get(call_id)
        if t is None or t.stage == "connected":
            return []
        out: list[Action] = []
        if t.stage == "consulting":  # the colleague is on the line: let them go
            out.append(DropTarget(now, call_id, t.n, "refused"))
            self._end_leg(now, t, "refused", out)
        return out + self._fail(now, t, "refused", detail, drop=False, fallback="agent")

    def leg_ended(self, now: datetime, call_id: str, reason: str = "hangup") -> list[Action]:
        """The target's leg ended after answering (the colleague or the caller hung up)."""
        t = self._live.get(call_id)
        if t is None or t.answered_at is None:
            return []
        out: list[Action] = []
        self._end_leg(now, t, reason, out)
        if t.stage == "consulting":  # the colleague hung up on the agent: the caller comes back
            assert t.agent is not None
            out.append(self._log(now, call_id, t.n, "transfer_failed", reason="target-left",
                                 fallback="agent", detail=None))
            out.append(ReturnToAgent(now, call_id, t.n, t.agent, "target-left"))
        del self._live[call_id]
        return out

    def caller_hung_up(self, now: datetime, call_id: str) -> list[Action]:
        t = self._live.pop(call_id, None)
        self._count.pop(call_id, None)
        if t is None:
            return []
        out: list[Action] = []
        if t.stage == "connected":
            self._end_leg(now, t, "caller-hangup", out)
            return out
        out.append(DropTarget(now, call_id, t.n, "caller-hangup"))
        self._end_leg(now, t, "caller-hangup", out)
        out.append(self._log(now, call_id, t.n, "transfer_failed", reason="caller-hangup", fallback=None,
                             detail=None))
        return out

    def tick(self, now: datetime) -> list[Action]:
        """Ring timeouts due by ``now``, each at its own due time."""
        due = sorted((t for t in self._live.values() if t.deadline is not None and t.deadline <= now),
                     key=lambda t: (t.deadline, t.call_id))
        out: list[Action] = []
        for t in due:
            assert t.deadline is not None
            out += self._fail(t.deadline, t, "no-answer", None, drop=True)
        return out

    def next_deadline(self) -> datetime | None:
        return min((t.deadline for t in self._live.values() if t.deadline is not None), default=None)

    def view(self, call_id: str) -> TransferView | None:
        t = self._live.get(call_id)
        if t is None:
            return None
        return TransferView(call_id, t.n, t.kind, t.stage, t.target.kind, t.target.shown, t.target.name,
                            t.started_at, t.answered_at or t.started_at)

    # ------------------------------------------------------------------ inside

    def _get(self, call_id: str, agent: str | None) -> _Transfer:
        t = self._live.get(call_id)
        if t is None or t.stage == "connected":
            raise TransferError(f'call "{call_id}" has no transfer under way', 409)
        if agent is not None and t.agent != agent:
            raise TransferError(f'call "{call_id}": the transfer is "{t.agent}"\'s, not "{agent}"\'s', 409)
        return t

    def _complete(self, now: datetime, t: _Transfer) -> list[Action]:
        agent = t.agent
        assert agent is not None and t.answered_at is not None
        t.stage, t.agent = "connected", None
        return [JoinTarget(now, t.call_id, t.n, agent),
                self._log(now, t.call_id, t.n, "transfer_completed", kind=t.kind, target_kind=t.target.kind,
                          target=t.target.shown, agent=agent, consult_s=_seconds(t.answered_at, now)),
                AgentDone(now, t.call_id, t.n, agent)]

    def _fail(self, now: datetime, t: _Transfer, reason: str, detail: str | None, *, drop: bool,
              fallback: str | None = None) -> list[Action]:
        out: list[Action] = [DropTarget(now, t.call_id, t.n, reason)] if drop else []
        if fallback is None:
            fallback = "agent" if t.kind == "attended" else self.policy.no_answer
            if t.agent is None:  # the agent has left: nobody to come back to
                fallback = "message"
        out.append(self._log(now, t.call_id, t.n, "transfer_failed", reason=reason, fallback=fallback,
                             detail=detail))
        if fallback == "agent" and t.agent is not None:
            out.append(ReturnToAgent(now, t.call_id, t.n, t.agent, reason))
        else:
            out.append(ToMessage(now, t.call_id, t.n, t.target))
            if t.agent is not None:
                out.append(AgentDone(now, t.call_id, t.n, t.agent))
        del self._live[t.call_id]
        return out

    def _end_leg(self, now: datetime, t: _Transfer, reason: str, out: list[Action]) -> float | None:
        """Log the end of the target's leg if it was answered; its talk seconds."""
        if t.answered_at is None:
            return None
        talk = _seconds(t.answered_at, now)
        out.append(self._log(now, t.call_id, t.n, "leg_ended", leg="target", by=t.target.shown, talk_s=talk,
                             reason=reason))
        return talk

    @staticmethod
    def _log(now: datetime, call_id: str, n: int, log_kind: str, /, **data: Any) -> Log:
        return Log(now, call_id, n, log_kind, {"transfer": n, **data})


def _seconds(start: datetime, end: datetime) -> float:
    return round(max(0.0, (end - start).total_seconds()), 3)


def _same_topic(target: Target, from_queue: str | None, queue_topics: Collection[str]) -> bool | None:
    """Whether the target serves the topic of the queue the call was answered in: None when
    unknown (an outside number, an entry without topics, a call that came from no queue)."""
    if from_queue is None or target.kind == "number":
        return None
    if target.kind == "queue":
        return target.id == from_queue
    mine = {t.casefold() for t in (*queue_topics, from_queue)}
    theirs = {t.casefold() for t in target.topics}
    return bool(mine & theirs) if theirs else None
