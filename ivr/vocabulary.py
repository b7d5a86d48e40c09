"""The only language between the core and the transports.

Events flow *into* a :class:`ivr.engine.CallSession` (what happened on the line);
commands flow *out* of it (what the transport must do next). Every value is a small
frozen dataclass, so a transport cannot reach into the engine and the engine never
touches a socket, a clock or a file.

One call of ``CallSession.handle(event)`` returns one *turn*: zero or more
non-blocking commands (``Play``) followed by at most one blocking command
(``Gather``, ``Record``, ``Enqueue``, ``Transfer``, ``Hangup``). A transport plays
the turn in order and reports the result of the blocking command as the next event.
That shape maps onto a TwiML document (Play, Play, Gather) and onto a run of AGI
commands (STREAM FILE, STREAM FILE, GET DATA) alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True, slots=True)
class Prompt:
    """Something the caller hears: text for speech synthesis, audio when recorded.

    ``audio`` is a path relative to the recordings directory; when it is set the
    transport plays it and ``text`` is what the recording says (for logs, the test
    phone and speech synthesis as a fallback).
    """

    language: str
    text: str
    audio: str | None = None


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime


@dataclass(frozen=True, slots=True)
class CallStarted(Event):
    call_id: str
    caller: str | None = None
    called: str | None = None
    transport: str = "sim"


@dataclass(frozen=True, slots=True)
class Digits(Event):
    """Keys the caller pressed in answer to a ``Gather`` (without the finish key)."""

    digits: str


@dataclass(frozen=True, slots=True)
class InputTimeout(Event):
    """A ``Gather`` ended with no keys pressed."""


@dataclass(frozen=True, slots=True)
class RecordingDone(Event):
    """A ``Record`` finished; ``ref`` locates the audio (path or URL)."""

    ref: str | None = None
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueResult(Event):
    """The queue is done with the caller.

    ``outcome`` is one of ``answered`` (an agent took the call and has now left it),
    ``overflow`` (max wait/length reached), ``closed`` (no agents and the queue
    does not accept callers), ``callback`` (the caller chose to be called back).
    """

    outcome: str
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class TransferResult(Event):
    """A ``Transfer`` ended without the caller being connected."""

    outcome: str  # "failed" | "busy" | "no-answer"


@dataclass(frozen=True, slots=True)
class CallerHungUp(Event):
    pass


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Command:
    pass


@dataclass(frozen=True, slots=True)
class Play(Command):
    prompt: Prompt


@dataclass(frozen=True, slots=True)
class Gather(Command):
    """Play ``prompts`` (interruptible by a key) and collect DTMF.

    A menu gathers one key (``max_digits=1``, no finish key); an input node gathers
    up to ``max_digits`` ended by ``finish_on_key``.
    """

    prompts: tuple[Prompt, ...]
    max_digits: int = 1
    timeout_s: float = 6.0
    finish_on_key: str | None = None


@dataclass(frozen=True, slots=True)
class Record(Command):
    prompts: tuple[Prompt, ...]
    max_length_s: int = 120
    finish_on_key: str = "#"


@dataclass(frozen=True, slots=True)
class Enqueue(Command):
    queue: str
    category: str | None
    priority: int
    language: str
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Transfer(Command):
    target: str


@dataclass(frozen=True, slots=True)
class Hangup(Command):
    reason: str = "flow"


BLOCKING = (Gather, Record, Enqueue, Transfer, Hangup)


# --------------------------------------------------------------------------- trace


@dataclass(frozen=True, slots=True)
class Trace:
    """A fact about the call for the event log, in the order it happened."""

    at: datetime
    kind: str
    node: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


# Kinds the agent transfers add to the call's record (ivr.transfers.LOG_KINDS: their keys).
TRANSFER_KINDS = frozenset(
    {
        "transfer_started",     # an agent began a transfer: kind, target, from which queue
        "leg_answered",         # the target's leg answered: who, after how long ringing
        "leg_ended",            # the target's leg ended: its talk seconds
        "transfer_completed",   # the caller is with the target (or in the new queue)
        "transfer_failed",      # busy, no answer, refused, caller gone: and the fallback taken
        "transfer_cancelled",   # attended: the agent took the caller back
    }
)

# Kinds of trace a session emits, and the transfers' kinds; the event log accepts exactly
# these (plus the ones the controller and queue engine add later).
TRACE_KINDS = frozenset(
    {
        "call_started",
        "node_entered",
        "input",
        "invalid_input",
        "timeout",
        "command",
        "language",
        "hours",
        "announcement",
        "set",
        "recording",
        "queue_result",
        "transfer_result",
        "survey",
        "unexpected_event",
        "disposition",
        "call_ended",
    }
) | TRANSFER_KINDS
