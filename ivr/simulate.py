"""Drive one call through the engine without a phone line, on a virtual clock.

The caller is a list of keys: each answers one ``Gather`` in order (``t`` lets it time
out, ``h`` hangs up there, anything else is pressed as DTMF). When the keys run out the
caller hangs up. A ``Record`` is answered with a ten-second message. At a queue the
simulation stops (``queue_result`` can play on: ``answered``, ``overflow``...).
Time moves as a real call's would: prompts take their speaking time, keys two seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ivr.engine import AnnouncementsLike, CallSession, ScheduleLike
from ivr.flow import Flow
from ivr.vocabulary import (
    CallerHungUp,
    CallStarted,
    Command,
    Digits,
    Enqueue,
    Event,
    Gather,
    Hangup,
    InputTimeout,
    Play,
    QueueResult,
    Record,
    RecordingDone,
    Trace,
    Transfer,
)

CHARS_PER_SECOND = 14.0  # synthetic Swedish speech, roughly
KEY_SECONDS = 2.0
MESSAGE_SECONDS = 10.0


class KeysError(ValueError):
    pass


def parse_keys(text: str | Sequence[str] | None) -> list[str]:
    """``"2,1,t,4711#"`` -> ``["2", "1", "t", "4711#"]``, each checked."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    keys = [k.strip() for k in items if k.strip()]
    for k in keys:
        if k not in ("t", "h") and not all(c in "0123456789*#" for c in k):
            raise KeysError(f'keys: "{k}" is not DTMF (0-9, *, #), "t" (timeout) or "h" (hang up)')
    return keys


@dataclass
class SimResult:
    call_id: str
    path: list[str]
    end: str
    language: str
    attributes: dict[str, str]
    turns: list[tuple[Event, list[Command]]] = field(default_factory=list)
    trace: list[Trace] = field(default_factory=list)
    ended_at: datetime | None = None

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "end": self.end, "language": self.language}


def _speaking_time(commands: Sequence[Command]) -> float:
    seconds = 0.0
    for cmd in commands:
        if isinstance(cmd, Play):
            seconds += len(cmd.prompt.text) / CHARS_PER_SECOND
        elif isinstance(cmd, Gather | Record):
            seconds += sum(len(p.text) for p in cmd.prompts) / CHARS_PER_SECOND
    return seconds


def simulate_call(
    flow: Flow,
    *,
    at: datetime,
    caller: str | None = None,
    called: str | None = None,
    keys: Sequence[str] = (),
    schedules: Mapping[str, ScheduleLike] | None = None,
    announcements: AnnouncementsLike | None = None,
    queue_result: str | None = None,
    call_id: str | None = None,
    on_trace: Callable[[str, list[Trace]], None] | None = None,
) -> SimResult:
    call_id = call_id or uuid.uuid4().hex
    session = CallSession(flow, schedules=schedules, announcements=announcements)
    pending = list(keys)
    result = SimResult(call_id, session.path, "", session.language, session.attributes)
    now = at
    event: Event | None = CallStarted(now, call_id, caller, called, "sim")
    queue_done = False
    while event is not None:
        commands = session.handle(event)
        result.turns.append((event, commands))
        now += timedelta(seconds=_speaking_time(commands))
        event = None
        blocking = commands[-1] if commands else None
        if session.ended or blocking is None or isinstance(blocking, Hangup):
            break
        if isinstance(blocking, Gather):
            if not pending:
                event = CallerHungUp(now)
            else:
                key = pending.pop(0)
                if key == "h":
                    event = CallerHungUp(now)
                elif key == "t":
                    now += timedelta(seconds=blocking.timeout_s)
                    event = InputTimeout(now)
                else:
                    now += timedelta(seconds=KEY_SECONDS)
                    event = Digits(now, key)
        elif isinstance(blocking, Record):
            now += timedelta(seconds=MESSAGE_SECONDS)
            event = RecordingDone(now, f"sim:{call_id}", MESSAGE_SECONDS)
        elif isinstance(blocking, Enqueue) and queue_result and not queue_done:
            queue_done = True
            event = QueueResult(now, queue_result)
        elif isinstance(blocking, Enqueue | Transfer):
            break
    session.close(now, reason="simulation-end")
    result.end = session.end or "caller-hangup"
    result.language = session.language
    result.trace = session.take_trace()
    result.ended_at = now
    if on_trace is not None:
        on_trace(call_id, result.trace)
    return result
