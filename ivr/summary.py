"""The ``calls`` table: its columns, one call's row derived from its events, and its upkeep.

:func:`summarize` is pure (no I/O): the row of one call from its events, rebuildable at
any time. :func:`upsert_summary`, :func:`summarize_all` and :func:`calls_to_summarize`
run inside the event log's writer transaction (``ivr.store``).

The events come from three writers that share one ``call_id``: the call engine (the
flow: nodes, inputs, the ``Enqueue`` command, the survey), the queue engine (joined,
offered, answered, abandoned, overflow, closed, transferred, callbacks) and the
controller (talk ended, wrap-up). Events arrive in ``seq`` order; some arrive after
``call_ended`` (the agent codes the call after the caller has hung up, a callback is
made hours later), and the summary is derived again when they do.

Rules worth knowing when reading a report:

* ``queued_at`` is the caller's *first* join; ``wait_s`` is taken from the event that
  ended the wait (the queue engine measures it from that first join, across transfers).
* ``queue`` is the final queue: where the call was answered, abandoned, overflowed or
  closed. A transfer sends the caller back to wait in another queue: the outcome starts
  over there.
* A call that ended while still waiting (or ringing at an agent) without a queue
  outcome is ``abandoned``, its wait running up to the end of the call.
* ``transfers`` counts the agents' completed transfers: to another queue
  (``queue_transferred``) and to a person or an outside number (``transfer_completed``);
  failed and cancelled ones do not count.
* ``category`` is the agent's coded category when the call was coded, else the flow's.
* ``handed_off`` is 1 when the call left a message for a case officer: a voice message
  recorded by the flow (a ``recording`` with audio) or a message written at the desk
  (``message_left``, appended by :mod:`ivr.messages`). Such a call is never resolved at
  first contact (:mod:`ivr.metrics`).
* A value that SQLite cannot store (a list, a huge integer) is stored as text, so that a
  malformed event can never jam the writer.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")

CALL_COLUMNS = (
    # schema 2
    "call_id", "flow", "transport", "started_at", "ended_at", "duration_s", "caller_hash",
    "caller_masked", "called", "language", "path", "end", "queue", "category", "priority",
    "attributes", "inputs", "timeouts", "invalid_inputs", "message_ref", "status",
    # schema 3
    "local_date", "local_hour", "queued_at", "wait_s", "queue_outcome", "abandon_stage",
    "answered_at", "agent", "talk_s", "wrapup_s", "resolution", "coded", "transfers",
    "callback_requested", "callback_completed", "survey", "offers",
    # schema 4
    "handed_off",
)  # fmt: skip
JSON_COLUMNS = ("path", "attributes")

# The calls table as schema 2 created it and schema 3 extended it (ivr.store migrates).
CALLS_V2 = (
    """CREATE TABLE calls (call_id TEXT PRIMARY KEY, flow TEXT, transport TEXT,
    started_at TEXT, ended_at TEXT, duration_s REAL, caller_hash TEXT, caller_masked TEXT,
    called TEXT, language TEXT, path TEXT, "end" TEXT, queue TEXT, category TEXT,
    priority INTEGER, attributes TEXT, inputs INTEGER, timeouts INTEGER,
    invalid_inputs INTEGER, message_ref TEXT, status TEXT)""",
    "CREATE INDEX IF NOT EXISTS calls_started_at ON calls (started_at)",
)
_V3_TYPES = {"local_hour": "INTEGER", "wait_s": "REAL", "talk_s": "REAL", "wrapup_s": "REAL",
             "coded": "INTEGER", "transfers": "INTEGER", "callback_requested": "INTEGER",
             "callback_completed": "INTEGER", "offers": "INTEGER"}  # fmt: skip
CALLS_V3 = (
    *(f'ALTER TABLE calls ADD COLUMN "{name}" {_V3_TYPES.get(name, "TEXT")}'
      for name in CALL_COLUMNS[CALL_COLUMNS.index("local_date"):CALL_COLUMNS.index("handed_off")]),
    # the reports: by local date and queue, then hour and category, in index order
    "CREATE INDEX calls_report ON calls (local_date, queue, local_hour, category)",
    # repeat contacts: the next call of a caller is a nearby seek; the other columns let
    # ivr.metrics tell handled calls and information messages apart without the table
    """CREATE INDEX calls_repeat ON calls (caller_hash, category, started_at, queue_outcome,
    callback_completed, "end", local_date, queue, local_hour)""",
)
# Schema 4: the message flag, also in the repeat index so that the FCR pass stays covered.
CALLS_V4 = (
    'ALTER TABLE calls ADD COLUMN "handed_off" INTEGER',
    "DROP INDEX calls_repeat",
    """CREATE INDEX calls_repeat ON calls (caller_hash, category, started_at, queue_outcome,
    callback_completed, "end", local_date, queue, local_hour, handed_off)""",
)
MESSAGE_KIND = "message_left"  # trace: a message to a case officer was written for the call

QUEUE_OUTCOMES = ("answered", "abandoned", "overflow", "closed", "callback", "callback-failed")
RESOLUTIONS = ("resolved", "forwarded", "callback-promised", "wrong-queue", "other", "uncoded")
_ENGINE_OUTCOMES = ("answered", "overflow", "closed", "callback")  # QueueResult.outcome
_COUNTERS = {"input": "inputs", "timeout": "timeouts", "invalid_input": "invalid_inputs"}
_INT64 = 2**63


def summarize(call_id: str, events: Sequence[dict]) -> dict:
    """The ``calls`` row of one call, derived from its events (``data`` decoded)."""
    row: dict[str, Any] = dict.fromkeys(CALL_COLUMNS)
    row.update(call_id=call_id, path=[], attributes={}, status="in-progress")
    row.update(inputs=0, timeouts=0, invalid_inputs=0, transfers=0, offers=0)
    row.update(callback_requested=0, callback_completed=0, handed_off=0)
    ordered = sorted(events, key=lambda e: e.get("seq") or 0)
    row["started_at"] = ordered[0].get("at") if ordered else None
    wait = _Wait()
    started = False
    for event in ordered:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        kind = event.get("kind")
        if kind == "call_started" and not started:
            started = True
            row["started_at"] = event.get("at")
            for key in ("flow", "transport", "caller_hash", "caller_masked", "called", "language"):
                row[key] = data.get(key)
        elif isinstance(kind, str) and kind in _QUEUE_KINDS:
            _QUEUE_KINDS[kind](row, wait, event.get("at"), data)
        else:
            _apply(row, wait, event, data)
    row["duration_s"] = _seconds(row["started_at"], row["ended_at"])
    _finish(row, wait)
    return {key: value if key in JSON_COLUMNS else _storable(value) for key, value in row.items()}


class _Wait:
    """What the summary needs to remember beyond the row itself."""

    def __init__(self) -> None:
        self.stage: str | None = None  # "waiting" | "ringing" while in a queue
        self.enqueued_at: str | None = None  # the engine's Enqueue command
        self.engine_outcome: tuple[str, str | None] | None = None  # queue_result
        self.queue_events = False
        self.wrapups: list[tuple[str | None, str | None, str | None, bool]] = []


# --------------------------------------------------------------------------- the flow


def _apply(row: dict[str, Any], wait: _Wait, event: dict, data: dict) -> None:
    kind = event.get("kind")
    if kind == "node_entered" and (event.get("node") or data.get("node")):
        row["path"].append(event.get("node") or data.get("node"))
    elif kind in _COUNTERS:
        row[_COUNTERS[kind]] += 1
    elif kind == "language":
        row["language"] = data.get("language", row["language"])
    elif kind == "set" or (kind == "command" and data.get("command") == "Enqueue"):
        row["queue"] = data.get("queue", row["queue"])
        _apply_routing(row, data)
        if kind == "command" and wait.enqueued_at is None:
            wait.enqueued_at = _text(event.get("at"))
    elif kind == "recording":
        row["message_ref"] = data.get("ref", row["message_ref"])
        if _text(data.get("ref")):
            row["handed_off"] = 1
    elif kind == MESSAGE_KIND:
        row["handed_off"] = 1
    elif kind == "disposition":
        row["end"] = data.get("end", row["end"])
        row["queue"] = data.get("queue", row["queue"])
        _apply_routing(row, data)
    elif kind == "queue_result" and _text(data.get("outcome")) in _ENGINE_OUTCOMES:
        wait.engine_outcome = (data["outcome"], _text(data.get("agent")))
    elif kind == "survey":
        row["survey"] = _text(data.get("answer"))
    elif kind == "call_ended":
        row["ended_at"], row["status"] = event.get("at"), "ended"
        row["end"] = row["end"] or data.get("end")


def _apply_routing(row: dict[str, Any], data: dict) -> None:
    if data.get("category") is not None:
        row["category"] = data["category"]
    with contextlib.suppress(KeyError, TypeError, ValueError, OverflowError):
        row["priority"] = int(data["priority"])
    attributes = data.get("attributes")
    if isinstance(attributes, list | tuple):  # Enqueue.attributes: pairs
        attributes = {str(p[0]): p[1] for p in attributes if isinstance(p, list | tuple)
                      and len(p) == 2}  # fmt: skip
    if isinstance(attributes, dict):
        row["attributes"].update(attributes)


# --------------------------------------------------------------------------- the queue


def _joined(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    row["queued_at"] = row["queued_at"] or _text(at)
    row["queue"] = _text(data.get("queue")) or row["queue"]
    _apply_routing(row, {k: data[k] for k in ("category", "priority") if k in data})
    _wait_again(row, wait)


def _wait_again(row: dict[str, Any], wait: _Wait) -> None:
    """The caller waits (again): an earlier outcome, such as an overflow into this
    queue or an answer before a transfer, is not the final one."""
    wait.stage = "waiting"
    row["queue_outcome"] = row["abandon_stage"] = None


def _offered(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    row["offers"] += 1
    if data.get("kind", "call") == "call" and row["queue_outcome"] is None:
        wait.stage = "ringing"


def _ring_timeout(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    if wait.stage == "ringing":
        wait.stage = "waiting"


def _answered(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    _outcome(row, wait, at, data, "answered")
    row["answered_at"] = _text(at)
    row["agent"] = _text(data.get("agent")) or row["agent"]


def _abandoned(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    stage = _text(data.get("stage")) or wait.stage or "waiting"
    _outcome(row, wait, at, data, "abandoned")
    row["abandon_stage"] = stage


def _overflow(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    _outcome(row, wait, at, data, "overflow")


def _closed(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    row["queued_at"] = row["queued_at"] or _text(at)  # turned away on arrival
    _outcome(row, wait, at, data, "closed")


def _transferred(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    row["transfers"] += 1
    row["queue"] = _text(data.get("to_queue")) or row["queue"]
    _wait_again(row, wait)


def _transfer_completed(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    """An agent's transfer to a person or an outside number went through (one to a queue
    is counted by its ``queue_transferred``)."""
    if data.get("target_kind") != "queue":
        row["transfers"] += 1


def _callback_requested(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    row["callback_requested"] = 1
    _outcome(row, wait, at, data, "callback")


def _callback_attempt(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    if data.get("result") == "answered":
        row["callback_completed"] = 1
        row["agent"] = _text(data.get("agent")) or row["agent"]


def _callback_failed(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    wait.queue_events = True
    if not row["callback_completed"]:
        row["queue_outcome"] = "callback-failed"


def _talk_ended(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    talk = _number(data.get("talk_s"))
    if talk is not None:
        row["talk_s"] = (row["talk_s"] or 0.0) + talk


def _wrapup(row: dict[str, Any], wait: _Wait, at: Any, data: dict) -> None:
    seconds = _number(data.get("wrapup_s"))
    if seconds is not None:
        row["wrapup_s"] = (row["wrapup_s"] or 0.0) + seconds
    resolution = _text(data.get("resolution"))
    coded = bool(data["coded"]) if "coded" in data else resolution not in (None, "uncoded")
    wait.wrapups.append((_text(data.get("agent")), _text(data.get("category")), resolution, coded))


def _outcome(row: dict[str, Any], wait: _Wait, at: Any, data: dict, outcome: str) -> None:
    """The wait ended: how, where, and after how long (the queue engine's figure)."""
    wait.queue_events, wait.stage = True, None
    row["queue_outcome"] = outcome
    row["abandon_stage"] = None
    row["queue"] = _text(data.get("queue")) or row["queue"]
    waited = _number(data.get("wait_s"))
    row["wait_s"] = waited if waited is not None else _seconds(row["queued_at"], at)


_QUEUE_KINDS = {
    "queue_joined": _joined, "queue_offered": _offered, "queue_ring_timeout": _ring_timeout,
    "queue_answered": _answered, "queue_abandoned": _abandoned, "queue_overflow": _overflow,
    "queue_closed": _closed, "queue_transferred": _transferred, "transfer_completed": _transfer_completed,
    "callback_requested": _callback_requested, "callback_attempt": _callback_attempt,
    "callback_failed": _callback_failed, "talk_ended": _talk_ended, "wrapup": _wrapup,
}  # fmt: skip
QUEUE_KINDS = frozenset(_QUEUE_KINDS)  # written by the queue engine and the controller


# --------------------------------------------------------------------------- the end


def _finish(row: dict[str, Any], wait: _Wait) -> None:
    row["queued_at"] = row["queued_at"] or wait.enqueued_at
    if row["queued_at"] and row["queue_outcome"] is None:
        if wait.engine_outcome and not wait.queue_events:  # a log without a queue engine
            row["queue_outcome"] = wait.engine_outcome[0]
            row["agent"] = row["agent"] or wait.engine_outcome[1]
            row["callback_requested"] = int(wait.engine_outcome[0] == "callback")
        elif row["status"] == "ended":  # hung up while waiting or ringing
            row["queue_outcome"], row["abandon_stage"] = "abandoned", wait.stage or "waiting"
            row["wait_s"] = _seconds(row["queued_at"], row["ended_at"])
    if wait.wrapups:
        final = [w for w in wait.wrapups if w[0] == row["agent"]] or wait.wrapups
        agent, category, resolution, coded = final[-1]
        row["resolution"], row["coded"] = resolution, int(coded)
        if coded and category:
            row["category"] = category
    local = _local(row["started_at"])
    if local is not None:
        row["local_date"], row["local_hour"] = local.date().isoformat(), local.hour


# --------------------------------------------------------------------------- upkeep

SELECT_EVENTS = "SELECT call_id, seq, at, kind, node, data FROM events WHERE call_id = ? ORDER BY seq"
_UPSERT = "INSERT OR REPLACE INTO calls ({}) VALUES ({})".format(
    ", ".join(f'"{c}"' for c in CALL_COLUMNS), ", ".join("?" * len(CALL_COLUMNS)))
_ENDS = ("call_started", "call_ended")


def upsert_summary(conn: sqlite3.Connection, call_id: str) -> None:
    """Derive the call's row from its events again (in the caller's transaction)."""
    events = [{"call_id": c, "seq": s, "at": a, "kind": k, "node": n,
               "data": None if d is None else json.loads(d)}
              for c, s, a, k, n, d in conn.execute(SELECT_EVENTS, (call_id,))]  # fmt: skip
    row = summarize(call_id, events)
    conn.execute(_UPSERT, [_json(row[c]) if c in JSON_COLUMNS else row[c] for c in CALL_COLUMNS])


def summarize_all(conn: sqlite3.Connection) -> int:
    ids = [r[0] for r in conn.execute("SELECT DISTINCT call_id FROM events").fetchall()]
    for call_id in ids:
        upsert_summary(conn, call_id)
    return len(ids)


def calls_to_summarize(conn: sqlite3.Connection, rows: Sequence[tuple]) -> list[str]:
    """Of the event rows (call_id, seq, at, kind, ...) written: the calls started or ended,
    then the calls that had ended before and got a late event."""
    chosen = {row[0]: 0 for row in rows if row[3] in _ENDS}
    others = list({row[0]: 0 for row in rows if row[0] not in chosen})
    for start in range(0, len(others), 500):
        part = others[start:start + 500]
        marks = ",".join("?" * len(part))
        sql = f"SELECT call_id FROM calls WHERE status = 'ended' AND call_id IN ({marks})"
        chosen.update((call_id, 0) for (call_id,) in conn.execute(sql, part))
    return list(chosen)


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: store them as \u escapes
        text = json.dumps(value, separators=(",", ":"), default=str)
    return text


# --------------------------------------------------------------------------- values


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _parse(at: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _seconds(start: Any, end: Any) -> float | None:
    first, last = _parse(start), _parse(end)
    if first is None or last is None:
        return None
    return round((last - first).total_seconds(), 3)


def _local(at: Any) -> datetime | None:
    moment = _parse(at)
    try:
        return None if moment is None else moment.astimezone(STOCKHOLM)
    except (OverflowError, ValueError):  # year 1 or 9999 at the edge of the range
        return None


def _storable(value: Any) -> Any:
    """Something SQLite stores and gives back equal (JSON columns are encoded apart)."""
    if value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, list | dict):
        return _json(value)
    return str(value)
