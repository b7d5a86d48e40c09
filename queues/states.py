"""Agent states as values: each state is a frozen dataclass whose methods return the next state.

The shape follows wazo-calld's ``plugins/calls/state.py``: one class per state, one
method per thing that can happen, and a transition that does not exist in a state is
refused (here with :class:`QueueError`, so a desk gets a clear answer instead of a
silently ignored click). The states only decide *which* state comes next; the engine
does the bookkeeping (indexes, timers, logs) around each transition.

Times the engine compares are integers of microseconds since the epoch (``*_us``);
``since`` is the datetime the state began, as shown to supervisors.

    offline --login--> available --offer--> offered --accept--> talking --end_talk--> wrapup
    available <--ring_out/decline/cancel-- offered          wrapup --done--> available
    available <--resume-- paused <--pause-- available|offered    (pause while talking or in
    wrap-up is remembered and takes effect when the wrap-up ends; resume forgets it)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar

from queues.model import QueueError


@dataclass(frozen=True, slots=True)
class AgentState:
    since: datetime  # first: subclasses turn some class variables below into fields
    name: ClassVar[str] = ""
    logged_in: ClassVar[bool] = True
    active: ClassVar[bool] = True  # logged in and not paused: serving, in wait estimates
    # What a log line and a supervisor see besides the name: each state sets them, as a
    # constant or as a field.
    call_id: ClassVar[str | None]
    reason: ClassVar[str | None]

    def _refuse(self, what: str) -> QueueError:
        return QueueError(f"cannot {what} while {self.name}")

    # transitions; each state overrides the ones it allows
    def login(self, now: datetime, now_us: int) -> AgentState:
        raise self._refuse("log in")

    def logout(self, now: datetime) -> AgentState:
        return Offline(now)

    def pause(self, now: datetime, reason: str) -> AgentState:
        raise self._refuse("pause")

    def resume(self, now: datetime) -> AgentState:
        raise self._refuse("resume")

    def offer(self, now: datetime, call_id: str, deadline_us: int) -> AgentState:
        raise self._refuse("be offered a call")

    def accept(self, now: datetime, now_us: int, callback: bool) -> AgentState:
        raise self._refuse("accept")

    def decline(self, now: datetime, *, pause: bool) -> AgentState:
        raise self._refuse("decline")


@dataclass(frozen=True, slots=True)
class Offline(AgentState):
    name: ClassVar[str] = "offline"
    logged_in: ClassVar[bool] = False
    active: ClassVar[bool] = False
    call_id: ClassVar[str | None] = None
    reason: ClassVar[str | None] = None

    def login(self, now: datetime, now_us: int) -> AgentState:
        return Available(now, idle_us=now_us)

    def logout(self, now: datetime) -> AgentState:
        raise self._refuse("log out")


@dataclass(frozen=True, slots=True)
class Available(AgentState):
    name: ClassVar[str] = "available"
    call_id: ClassVar[str | None] = None
    reason: ClassVar[str | None] = None
    idle_us: int  # idle since: the end of the last wrap-up, or the login

    def pause(self, now: datetime, reason: str) -> AgentState:
        return Paused(now, reason=reason, idle_us=self.idle_us)

    def offer(self, now: datetime, call_id: str, deadline_us: int) -> AgentState:
        return Offered(now, call_id=call_id, idle_us=self.idle_us, deadline_us=deadline_us)


@dataclass(frozen=True, slots=True)
class Offered(AgentState):
    name: ClassVar[str] = "offered"
    reason: ClassVar[str | None] = None
    call_id: str  # type: ignore[assignment]
    idle_us: int
    deadline_us: int  # the ring timeout

    def accept(self, now: datetime, now_us: int, callback: bool) -> AgentState:
        return Talking(now, call_id=self.call_id, started_us=now_us, dialling=callback)

    def decline(self, now: datetime, *, pause: bool) -> AgentState:
        """Rang out, declined, or the caller went away: idle time is kept."""
        if pause:
            return Paused(now, reason="missed", idle_us=self.idle_us)
        return Available(now, idle_us=self.idle_us)

    def pause(self, now: datetime, reason: str) -> AgentState:
        return Paused(now, reason=reason, idle_us=self.idle_us)


class _PauseAfterWork:
    """Talking and wrap-up: a pause asked for now starts once the work is done."""

    __slots__ = ()

    def pause(self, now: datetime, reason: str) -> AgentState:
        return replace(self, pause_after=reason)  # type: ignore[type-var]

    def resume(self, now: datetime) -> AgentState:
        if self.pause_after is None:  # type: ignore[attr-defined]
            raise self._refuse("resume")  # type: ignore[attr-defined]
        return replace(self, pause_after=None)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class Talking(_PauseAfterWork, AgentState):
    name: ClassVar[str] = "talking"
    reason: ClassVar[str | None] = None
    call_id: str  # type: ignore[assignment]
    started_us: int
    dialling: bool = False  # a callback the agent is dialling, result not yet reported
    pause_after: str | None = None

    def logout(self, now: datetime) -> AgentState:
        raise self._refuse("log out")

    def answered(self, now_us: int) -> AgentState:
        """The citizen answered the callback: the conversation starts now."""
        return replace(self, started_us=now_us, dialling=False)

    def end_talk(self, now: datetime, queue: str, talk_s: float, deadline_us: int) -> AgentState:
        return Wrapup(now, call_id=self.call_id, queue=queue, talk_s=talk_s,
                      deadline_us=deadline_us, pause_after=self.pause_after)

    def free(self, now: datetime, now_us: int) -> AgentState:
        """A callback attempt ended without a conversation: no wrap-up."""
        return after_work(now, now_us, self.pause_after)


@dataclass(frozen=True, slots=True)
class Wrapup(_PauseAfterWork, AgentState):
    name: ClassVar[str] = "wrapup"
    reason: ClassVar[str | None] = None
    call_id: str  # type: ignore[assignment]
    queue: str
    talk_s: float
    deadline_us: int
    pause_after: str | None = None

    def done(self, now: datetime, now_us: int) -> AgentState:
        return after_work(now, now_us, self.pause_after)


@dataclass(frozen=True, slots=True)
class Paused(AgentState):
    name: ClassVar[str] = "paused"
    active: ClassVar[bool] = False
    call_id: ClassVar[str | None] = None
    reason: str  # type: ignore[assignment]
    idle_us: int

    def pause(self, now: datetime, reason: str) -> AgentState:
        return self if reason == self.reason else Paused(now, reason=reason, idle_us=self.idle_us)

    def resume(self, now: datetime) -> AgentState:
        return Available(now, idle_us=self.idle_us)


def after_work(now: datetime, now_us: int, pause_after: str | None) -> AgentState:
    """The agent is free again: idle from now, or paused if a pause was asked for meanwhile."""
    if pause_after is None:
        return Available(now, idle_us=now_us)
    return Paused(now, reason=pause_after, idle_us=now_us)
