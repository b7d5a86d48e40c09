"""Transfers in the reports: per queue and per menu choice, misroutes, and every leg's talk
time, as pure functions of the calls' logged events (:func:`transfer_report`).
See ``docs/transfers.md`` (and ``docs/metrics.md``) for the definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class Counts:
    """Per queue or per menu choice. ``answered``: calls answered there; ``transfers``:
    completed transfers by the answering agent; ``misroutes``: see :func:`transfer_report`."""

    answered: int = 0
    transfers: int = 0
    to_queue: int = 0
    to_directory: int = 0
    to_number: int = 0
    attended: int = 0
    failed: int = 0
    misroutes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg of a call: an agent (``kind="agent"``) or a transfer target, with its talk time."""

    call_id: str
    kind: str           # "agent" | "target"
    by: str
    answered_at: str
    ended_at: str | None
    talk_s: float | None


NO_MENU = "(none)"


def menu_choice(events: Sequence[Mapping[str, Any]]) -> str:
    """``node:key`` of the caller's last menu key before first joining a queue (input nodes,
    which carry a ``var``, do not count); ``(none)`` without one."""
    choice = NO_MENU
    for e in _ordered(events):
        kind = e.get("kind")
        data = _data(e)
        if kind in ("queue_joined", "queue_closed") or data.get("command") == "Enqueue":
            break
        if kind == "input" and "var" not in data and data.get("digits"):
            choice = f"{e.get('node')}:{data['digits']}"
    return choice


def transfer_report(calls: Iterable[Sequence[Mapping[str, Any]]], *,
                    misroute_window_s: float = 60.0) -> dict[str, Any]:
    """Transfers and misroutes per queue and per menu choice, and every leg's talk time.

    ``calls``: each call's events (``kind``, ``at`` ISO text, ``node``, ``data``; as
    ``EventLog.events`` returns them). A transfer counts once completed: the queue
    engine's ``queue_transferred``, or ``transfer_completed`` to a person or a number. It
    is counted for the queue the transferring agent answered the call in, and for the
    call's menu choice. It is a **misroute** when the target is another queue, or a
    directory entry sharing no topic with that queue (``same_topic`` false), and the agent
    started it at most ``misroute_window_s`` after answering. Transfers that failed are
    counted apart (``failed``), never as transfers.
    """
    report = _Report(misroute_window_s)
    for events in calls:
        report.add(_ordered(events))
    totals = Counts()
    for c in report.by_queue.values():
        for k in totals.__dataclass_fields__:
            setattr(totals, k, getattr(totals, k) + getattr(c, k))
    return {"by_queue": {q: c.as_dict() for q, c in sorted(report.by_queue.items())},
            "by_menu_choice": {m: c.as_dict() for m, c in sorted(report.by_menu.items())},
            "totals": totals.as_dict(), "legs": report.legs, "misroute_window_s": misroute_window_s}


class _Report:
    def __init__(self, window_s: float):
        self.window_s = window_s
        self.by_queue: dict[str, Counts] = {}
        self.by_menu: dict[str, Counts] = {}
        self.legs: list[Leg] = []

    def add(self, events: list[Mapping[str, Any]]) -> None:
        if not events:
            return
        call_id, menu = str(events[0].get("call_id") or ""), menu_choice(events)
        answered: tuple[str, datetime | None] | None = None  # the queue and when, while it counts
        started: dict[Any, tuple[datetime | None, Any]] = {}  # transfer -> (started at, same_topic)
        agents: dict[str, str] = {}  # agent -> answered at, until talk_ended
        targets: dict[Any, tuple[str, str]] = {}  # transfer -> (answered at, by), until leg_ended
        for e in events:
            kind, data, at = e.get("kind"), _data(e), str(e.get("at"))
            if kind == "queue_answered" and isinstance(data.get("queue"), str):
                answered = (data["queue"], _parse(at))
                self._count(data["queue"], menu, "answered")
                agents[str(data.get("agent"))] = at
            elif kind == "talk_ended" and str(data.get("agent")) in agents:
                agent = str(data.get("agent"))
                talk = _number(data.get("talk_s"))
                self.legs.append(Leg(call_id, "agent", agent, agents.pop(agent), at, talk))
            elif kind == "transfer_started":
                started[data.get("transfer")] = (_parse(at), data.get("same_topic"))
            elif kind == "leg_answered":
                targets[data.get("transfer")] = (at, str(data.get("by")))
            elif kind == "leg_ended" and data.get("transfer") in targets:
                since, by = targets.pop(data["transfer"])
                self.legs.append(Leg(call_id, "target", by, since, at, _number(data.get("talk_s"))))
            elif answered is not None and kind == "transfer_failed":
                self._count(answered[0], menu, "failed")
            elif answered is not None and (kind == "queue_transferred" or (
                    kind == "transfer_completed" and data.get("target_kind") in ("directory", "number"))):
                queue, answered_at = answered
                to = "queue" if kind == "queue_transferred" else str(data["target_kind"])
                begun, same = started.get(data.get("transfer"), (None, None))
                begun = begun or _parse(at)
                if to == "queue":
                    same = data.get("to_queue") == queue
                soon = answered_at is not None and begun is not None and \
                    (begun - answered_at).total_seconds() <= self.window_s
                self._count(queue, menu, "transfers", f"to_{to}")
                if data.get("kind") == "attended":
                    self._count(queue, menu, "attended")
                if soon and same is False and to != "number":
                    self._count(queue, menu, "misroutes")
                if to == "queue":
                    answered = None  # the next answer, in the new queue, counts from there
        for since, by in targets.values():  # the record has no end for this leg yet
            self.legs.append(Leg(call_id, "target", by, since, None, None))

    def _count(self, queue: str, menu: str, *names: str) -> None:
        for counts in (self.by_queue.setdefault(queue, Counts()), self.by_menu.setdefault(menu, Counts())):
            for name in names:
                setattr(counts, name, getattr(counts, name) + 1)


def _ordered(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(events, key=lambda e: e.get("seq") or 0)


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    return data if isinstance(data, Mapping) else {}


def _parse(at: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
