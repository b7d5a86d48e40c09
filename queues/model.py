"""The queue engine's vocabulary: what a queue and an agent are, and what the engine asks.

Configs are read once (from :mod:`ivr.config` settings or built in code) and checked at
the door: a bad value raises :class:`QueueError` naming the queue, the field and the
expected form. Actions are what a :class:`queues.QueueEngine` method hands back; the
controller carries them out in order. Every action carries ``at`` first: the moment
the fact happened (for a timer, the moment it fell due).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

STRATEGIES = ("longest-idle", "round-robin", "skills")
WHEN_NO_AGENTS = ("join", "reject")
RESOLUTIONS = ("resolved", "forwarded", "callback-promised", "wrong-queue", "other")
CALLBACK_RESULTS = ("answered", "no-answer", "busy", "failed")
AGENT_STATES = ("offline", "available", "offered", "talking", "wrapup", "paused")

# What each CallLog kind carries (exactly these keys); reports are derived from them.
CALL_LOG_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "queue_joined": ("queue", "category", "priority", "position", "estimated_wait_s"),
    "queue_position": ("position", "estimated_wait_s"),
    "queue_offered": ("agent", "kind"),
    "queue_ring_timeout": ("agent",),
    "queue_answered": ("agent", "queue", "wait_s"),
    "queue_abandoned": ("queue", "stage", "wait_s"),
    "queue_overflow": ("queue", "target", "reason", "wait_s"),
    "queue_closed": ("queue", "reason"),
    "queue_transferred": ("from_queue", "to_queue", "agent"),
    "callback_requested": ("queue", "wait_s"),
    "callback_attempt": ("agent", "result", "attempt"),
    "callback_failed": ("attempts",),
    "talk_ended": ("agent", "talk_s"),
    "wrapup": ("agent", "category", "resolution", "coded", "wrapup_s", "has_note"),
})


class QueueError(ValueError):
    """A request the engine cannot carry out: bad config, unknown name, wrong state."""


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    strategy: str = "longest-idle"      # "longest-idle" | "round-robin" | "skills"
    skill: str | None = None            # the skill this queue needs; None -> the queue name
    fallback_after_s: float = 60.0      # skills: then agents without the skill may take the caller
    ring_timeout_s: float = 20.0        # then the next agent
    wrapup_s: float = 30.0              # after each call; not coded by then -> "uncoded"
    max_wait_s: float | None = None     # in this queue; then overflow
    max_length: int | None = None       # callers waiting; one more overflows at once
    overflow: str | None = None         # "queue:NAME" (moved, keeps its wait) or a target for the controller
    when_no_agents: str = "join"        # "join" | "reject" (a caller joining with no agent logged in leaves)
    leave_when_empty: bool = False      # the last agent logging out closes the queue for waiting callers
    announce_every_s: float = 60.0      # position + estimated wait: at join, then every N s (0 = never)
    expected_handle_s: float = 240.0    # seed of the handle-time average used in estimates
    callback_retry_s: float = 900.0     # a callback with no answer is tried again after this
    callback_max_attempts: int = 3
    pause_on_missed: bool = True        # an agent who lets an offer ring out is paused ("missed")
    categories: tuple[str, ...] = ()    # when set, a wrap-up must use one of them

    def __post_init__(self) -> None:
        def bad(name: str, form: str) -> QueueError:
            return QueueError(f'queue "{self.name}": {name}: expected {form}, '
                              f"got {getattr(self, name)!r}")

        def number(value: object) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        if not isinstance(self.name, str) or not self.name:
            raise QueueError(f"queue name: expected a non-empty string, got {self.name!r}")
        if self.strategy not in STRATEGIES:
            raise bad("strategy", "one of " + ", ".join(f'"{s}"' for s in STRATEGIES))
        if self.when_no_agents not in WHEN_NO_AGENTS:
            raise bad("when_no_agents", '"join" or "reject"')
        if self.skill is not None and (not isinstance(self.skill, str) or not self.skill):
            raise bad("skill", "a non-empty string")
        for name in ("ring_timeout_s", "expected_handle_s"):
            if not number(getattr(self, name)) or getattr(self, name) <= 0:
                raise bad(name, "a positive number of seconds")
        for name in ("fallback_after_s", "wrapup_s", "announce_every_s", "callback_retry_s"):
            if not number(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "a non-negative number of seconds")
        if self.max_wait_s is not None and (not number(self.max_wait_s) or self.max_wait_s <= 0):
            raise bad("max_wait_s", "a positive number of seconds")
        if self.max_length is not None and (type(self.max_length) is not int or self.max_length < 1):
            raise bad("max_length", "a positive integer")
        if type(self.callback_max_attempts) is not int or self.callback_max_attempts < 1:
            raise bad("callback_max_attempts", "a positive integer")
        if self.overflow is not None and (not isinstance(self.overflow, str) or not self.overflow
                                          or self.overflow == f"queue:{self.name}"):
            raise bad("overflow", 'a target such as "message" or "queue:NAME" (another queue)')

    @property
    def needs(self) -> str:
        """The skill an agent must have to serve this queue."""
        return self.skill or self.name

    @property
    def overflow_queue(self) -> str | None:
        """The queue an overflowing caller moves to, when ``overflow`` is "queue:NAME"."""
        if self.overflow and self.overflow.startswith("queue:"):
            return self.overflow[len("queue:"):]
        return None

    @classmethod
    def from_settings(cls, qs: Any) -> QueueConfig:
        """From :class:`ivr.config.QueueSettings` (any object with the same fields)."""
        names = [f for f in cls.__dataclass_fields__ if f != "name"]
        values = {n: getattr(qs, n) for n in names if hasattr(qs, n)}
        if "categories" in values:
            values["categories"] = tuple(values["categories"])
        return cls(name=qs.name, **values)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    id: str
    name: str
    skills: Mapping[str, int] = field(default_factory=_empty, hash=False)  # skill -> level 1..10
    endpoints: Mapping[str, str] = field(default_factory=_empty, hash=False)  # transport -> address

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise QueueError(f"agent id: expected a non-empty string, got {self.id!r}")
        for skill, level in self.skills.items():
            if type(level) is not int or not 1 <= level <= 10:
                raise QueueError(f'agent "{self.id}": skills.{skill}: expected an integer '
                                 f"from 1 to 10, got {level!r}")
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))
        object.__setattr__(self, "endpoints", MappingProxyType(dict(self.endpoints)))

    @classmethod
    def from_settings(cls, a: Any) -> AgentConfig:
        """From :class:`ivr.config.AgentSettings` (any object with the same fields)."""
        return cls(a.id, a.name, dict(a.skills), dict(getattr(a, "endpoints", {})))


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Action:
    at: datetime


@dataclass(frozen=True, slots=True)
class Offer(Action):
    """Ring this agent. ``number`` is set for callbacks only (the citizen to dial)."""

    agent: str
    call_id: str
    queue: str
    kind: str  # "call" | "callback"
    number: str | None
    category: str | None
    attributes: tuple[tuple[str, str], ...]
    wait_s: float  # since the caller's original join
    language: str = "sv"


@dataclass(frozen=True, slots=True)
class CancelOffer(Action):
    """Stop ringing. ``reason``: "caller-hangup" | "ring-timeout" | "declined" | "logout"."""

    agent: str
    call_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Position(Action):
    """Tell the waiting caller their place (1 = next) and the estimated wait, when known."""

    call_id: str
    position: int
    estimated_wait_s: float | None


@dataclass(frozen=True, slots=True)
class LeaveQueue(Action):
    """The caller must leave the queue: outcome "overflow" (to ``target``) or "closed"."""

    call_id: str
    outcome: str
    target: str | None


@dataclass(frozen=True, slots=True)
class CallLog(Action):
    """A fact for the call's event log; ``kind`` and ``data`` keys as in CALL_LOG_KINDS."""

    call_id: str
    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AgentLog(Action):
    """An agent changed state (one of AGENT_STATES)."""

    agent: str
    state: str
    reason: str | None
    call_id: str | None


@dataclass(frozen=True, slots=True)
class Note(Action):
    """The free text an agent wrote at wrap-up; kept apart because it may hold personal data."""

    call_id: str
    agent: str
    text: str
