"""The event log: every trace of every call, append-only, in SQLite (WAL).

``EventLog.append`` runs on the asyncio event loop and never touches SQLite: it hashes
the caller number, numbers and encodes the trace and puts a row on a queue. One writer
thread owns the write connection, commits whatever has piled up in one transaction and
keeps the derived ``calls`` summaries current. A failed write is logged and retried.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ivr.privacy import scrub_caller
from ivr.vocabulary import Trace

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
BATCH_MAX = 500  # queue items drained after the first one, per transaction
BUSY_TIMEOUT_MS = 5000
RETRY_FIRST_DELAY_S = 0.02
RETRY_MAX_DELAY_S = 2.0
ENDED_SEQ_MEMORY = 10_000  # ended calls whose last seq is remembered for late traces

_SUMMARY_KINDS = ("call_started", "call_ended")
_INSERT_EVENT = "INSERT INTO events (call_id, seq, at, kind, node, data) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT_EVENTS = (
    "SELECT call_id, seq, at, kind, node, data FROM events WHERE call_id = ? ORDER BY seq"
)
_CALL_COLUMNS = (
    "call_id", "flow", "transport", "started_at", "ended_at", "duration_s", "caller_hash",
    "caller_masked", "called", "language", "path", "end", "queue", "category", "priority",
    "attributes", "inputs", "timeouts", "invalid_inputs", "message_ref", "status",
)  # fmt: skip
_JSON_COLUMNS = ("path", "attributes")
_UPSERT_CALL = "INSERT OR REPLACE INTO calls ({}) VALUES ({})".format(
    ", ".join(f'"{c}"' for c in _CALL_COLUMNS), ", ".join("?" * len(_CALL_COLUMNS))
)
_V1 = (
    """CREATE TABLE events (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL,
    seq INTEGER NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL, node TEXT, data TEXT,
    UNIQUE (call_id, seq))""",  # the UNIQUE index also serves lookups by call_id
    "CREATE INDEX IF NOT EXISTS events_at ON events (at)",
)
_V2 = (
    _V1[1],
    """CREATE TABLE calls (call_id TEXT PRIMARY KEY, flow TEXT, transport TEXT,
    started_at TEXT, ended_at TEXT, duration_s REAL, caller_hash TEXT, caller_masked TEXT,
    called TEXT, language TEXT, path TEXT, "end" TEXT, queue TEXT, category TEXT,
    priority INTEGER, attributes TEXT, inputs INTEGER, timeouts INTEGER,
    invalid_inputs INTEGER, message_ref TEXT, status TEXT)""",
    "CREATE INDEX IF NOT EXISTS calls_started_at ON calls (started_at)",
    """CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
)

_Row = tuple[str, int, str, str, str | None, str]  # call_id, seq, at, kind, node, data
_STOP = None  # queue item that stops the writer; markers are threading.Event


class StoreError(RuntimeError):
    """The event log cannot do what was asked (closed, bad input, unknown schema)."""


# --------------------------------------------------------------------------- encoding


def format_at(at: datetime) -> str:
    """``2026-12-01T08:30:00.000Z``: UTC with milliseconds. Naive datetimes are refused."""
    if not isinstance(at, datetime):
        raise StoreError(f"trace time must be a datetime, not {type(at).__name__}")
    if at.utcoffset() is None:
        raise StoreError(f"trace time {at.isoformat()} is naive; give it a timezone")
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def encode_json(value: Any) -> str:
    """Compact JSON that SQLite can store (lone surrogates fall back to \\u escapes)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(value, separators=(",", ":"), default=_json_default)
    return text


def _json_default(value: Any) -> str:
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return format_at(value)
    return str(value)  # lenient: anything else JSON cannot hold is stored as text


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _check_text(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise StoreError(f"{name} must be a non-empty string, not {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{name} is not valid text: {value!r}") from exc


# --------------------------------------------------------------------------- summaries


def summarize(call_id: str, events: Sequence[dict]) -> dict:
    """The ``calls`` row of one call, derived from its events (``data`` decoded)."""
    row: dict[str, Any] = dict.fromkeys(_CALL_COLUMNS)
    row.update(call_id=call_id, path=[], attributes={}, status="in-progress")
    row.update(inputs=0, timeouts=0, invalid_inputs=0)
    ordered = sorted(events, key=lambda e: e.get("seq") or 0)
    row["started_at"] = ordered[0].get("at") if ordered else None
    started = False
    for event in ordered:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if event.get("kind") == "call_started" and not started:
            started = True
            row["started_at"] = event.get("at")
            for key in ("flow", "transport", "caller_hash", "caller_masked", "called"):
                row[key] = data.get(key)
            row["language"] = data.get("language")
        else:
            _apply(row, event, data)
    row["duration_s"] = _duration(row["started_at"], row["ended_at"])
    return row


_COUNTERS = {"input": "inputs", "timeout": "timeouts", "invalid_input": "invalid_inputs"}


def _apply(row: dict[str, Any], event: dict, data: dict) -> None:
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
    elif kind == "recording":
        row["message_ref"] = data.get("ref", row["message_ref"])
    elif kind == "disposition":
        row["end"] = data.get("end", row["end"])
        row["queue"] = data.get("queue", row["queue"])
        _apply_routing(row, data)
    elif kind == "call_ended":
        row["ended_at"], row["status"] = event.get("at"), "ended"
        row["end"] = row["end"] or data.get("end")


def _apply_routing(row: dict[str, Any], data: dict) -> None:
    if data.get("category") is not None:
        row["category"] = data["category"]
    with contextlib.suppress(KeyError, TypeError, ValueError):
        row["priority"] = int(data["priority"])
    attributes = data.get("attributes")
    if isinstance(attributes, list | tuple):  # Enqueue.attributes: pairs
        attributes = {str(p[0]): p[1] for p in attributes if isinstance(p, list | tuple)
                      and len(p) == 2}  # fmt: skip
    if isinstance(attributes, dict):
        row["attributes"].update(attributes)


def _duration(started_at: Any, ended_at: Any) -> float | None:
    try:
        seconds = datetime.fromisoformat(ended_at) - datetime.fromisoformat(started_at)
        return round(seconds.total_seconds(), 3)
    except (TypeError, ValueError, AttributeError):
        return None


def _read_events(conn: sqlite3.Connection, call_id: str) -> list[dict]:
    return [
        {"call_id": c, "seq": s, "at": a, "kind": k, "node": n, "data": _decode(d)}
        for c, s, a, k, n, d in conn.execute(_SELECT_EVENTS, (call_id,))
    ]


def _upsert_summary(conn: sqlite3.Connection, call_id: str) -> None:
    summary = summarize(call_id, _read_events(conn, call_id))
    for column in _JSON_COLUMNS:
        summary[column] = encode_json(summary[column])
    conn.execute(_UPSERT_CALL, [summary[c] for c in _CALL_COLUMNS])


def _summarize_all(conn: sqlite3.Connection) -> int:
    ids = [r[0] for r in conn.execute("SELECT DISTINCT call_id FROM events").fetchall()]
    for call_id in ids:
        _upsert_summary(conn, call_id)
    return len(ids)


def _decode_call(row: dict) -> dict:
    for column in _JSON_COLUMNS:
        row[column] = _decode(row[column])
    return row


# --------------------------------------------------------------------------- schema


def migrate(db: sqlite_utils.Database) -> int:
    """Bring ``db`` forward to :data:`SCHEMA_VERSION`; return the version it had."""
    conn = db.conn
    found = _user_version(db)
    if found == SCHEMA_VERSION:
        return found
    with _transaction(conn):
        found = _user_version(db)  # another process may have migrated meanwhile
        if found == 0 and db.table_names():
            raise StoreError(f"not an event log: no schema version, but {db.table_names()}")
        for statement in (_V1 if found == 0 else ()) + (_V2 if found <= 1 else ()):
            conn.execute(statement)
        if found <= 1:
            _summarize_all(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return found


def _user_version(db: sqlite_utils.Database) -> int:
    version = int(db.conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        name = db.conn.execute("PRAGMA database_list").fetchone()[2] or "the database"
        raise StoreError(f"{name} was written by a newer version (schema {version}); "
                         f"this program knows up to {SCHEMA_VERSION}")  # fmt: skip
    return version


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        log.exception("event log: rollback failed")


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return sqlite_utils.Database(conn)


def _insert_renumbering(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    """Insert row by row; a row whose seq is taken (a call id reused after a restart)
    is stored after the call's last event instead."""
    for row in rows:
        if conn.execute(_INSERT_EVENT.replace("INSERT", "INSERT OR IGNORE", 1), row).rowcount:
            continue
        sql = "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE call_id = ?"
        (seq,) = conn.execute(sql, (row[0],)).fetchone()
        log.warning("event log: call %s already has event %d; stored as %d", row[0], row[1], seq)
        conn.execute(_INSERT_EVENT, (row[0], seq, *row[2:]))


# --------------------------------------------------------------------------- the log

_OPEN_LOGS: weakref.WeakSet[EventLog] = weakref.WeakSet()


class EventLog:
    """Append-only log of call traces: one writer thread; reads from any thread."""

    def __init__(self, path: Path, reader: sqlite_utils.Database,
                 writer: sqlite_utils.Database, hash_key: bytes) -> None:  # fmt: skip
        self._path, self._reader, self._hash_key = path, reader, hash_key
        self._queue: queue.SimpleQueue[_Row | threading.Event | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # closing, seq numbers and queue order
        self._read_lock = threading.Lock()
        self._closed = self._reader_closed = False
        self._live_seq: dict[str, int] = {}
        self._ended_seq: OrderedDict[str, int] = OrderedDict()
        self._abandon = threading.Event()
        self.last_error: str | None = None  # of the write being retried, if any
        self._writer = threading.Thread(
            target=self._run, args=(writer,), name=f"event-log {path.name}", daemon=True
        )
        self._writer.start()
        _OPEN_LOGS.add(self)

    @classmethod
    def open(cls, path: str | Path, *, hash_key: bytes) -> EventLog:
        """Open the log at ``path``, creating or migrating it as needed."""
        if not isinstance(hash_key, bytes) or not hash_key:
            raise StoreError("hash_key must be non-empty bytes (see ivr.privacy)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        reader = _connect(path)
        try:
            reader.enable_wal()
            migrate(reader)
            writer = _connect(path)
        except BaseException:
            reader.close()
            raise
        return cls(path, reader, writer, hash_key)

    @property
    def db_path(self) -> Path:
        return self._path

    # ------------------------------------------------------------------- writing

    def append(self, call_id: str, trace: Trace) -> None:
        """Queue ``trace`` for writing; never waits on SQLite."""
        _check_text("call_id", call_id)
        _check_text("trace kind", trace.kind)
        _check_text("trace node", trace.node, optional=True)
        at = format_at(trace.at)
        data = encode_json(scrub_caller(trace.data or {}, self._hash_key))
        with self._lock:
            if self._closed:
                raise StoreError(f"the event log {self._path} is closed")
            seq = self._next_seq(call_id, trace.kind)
            self._queue.put((call_id, seq, at, trace.kind, trace.node, data))

    def append_many(self, call_id: str, traces: Iterable[Trace]) -> None:
        for trace in traces:
            self.append(call_id, trace)

    def _next_seq(self, call_id: str, kind: str) -> int:
        if call_id in self._live_seq or call_id not in self._ended_seq:
            seq = self._live_seq.pop(call_id, 0) + 1
            if kind != "call_ended":
                self._live_seq[call_id] = seq
                return seq
        else:  # a late trace of an ended call: number it after the call's last one
            seq = self._ended_seq.pop(call_id) + 1
        self._ended_seq[call_id] = seq
        if len(self._ended_seq) > ENDED_SEQ_MEMORY:
            self._ended_seq.popitem(last=False)
        return seq

    def flush(self, timeout: float | None = 10.0) -> None:
        """Block until everything appended before this call is committed."""
        marker = threading.Event()
        with self._lock:
            if self._closed:
                return  # close() has already waited for the writer
            self._queue.put(marker)
        if not marker.wait(timeout):
            reason = f"; last error: {self.last_error}" if self.last_error else ""
            raise StoreError(f"the event log was not written within {timeout} s{reason}")

    def close(self, timeout: float | None = 30.0) -> None:
        """Write everything queued, stop the writer and close the connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._writer.join(timeout)
        stuck = self._writer.is_alive()
        if stuck:  # the writer keeps failing: give up on what it holds
            self._abandon.set()
            self._writer.join(timeout)
        with self._read_lock:
            self._reader_closed = True
            self._reader.close()
        _OPEN_LOGS.discard(self)
        if stuck:
            raise StoreError(f"the event log could not be written: {self.last_error}")

    # ------------------------------------------------------------------- writer thread

    def _run(self, db: sqlite_utils.Database) -> None:
        try:
            while self._write_next_batch(db.conn):
                pass
        finally:
            db.close()

    def _write_next_batch(self, conn: sqlite3.Connection) -> bool:
        """Take what is queued, write it; False once the stop item was taken."""
        batch = [self._queue.get()]
        try:
            while len(batch) <= BATCH_MAX and batch[-1] is not _STOP:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        rows = [item for item in batch if isinstance(item, tuple)]
        try:
            if rows:
                self._commit(conn, rows)
        except Exception:  # never let the writer die; _commit itself retries
            log.exception("event log: unexpected error; %d events not written", len(rows))
        for item in batch:
            if isinstance(item, threading.Event):
                item.set()
        return batch[-1] is not _STOP

    def _commit(self, conn: sqlite3.Connection, rows: list[_Row]) -> None:
        delay, failures, renumber = RETRY_FIRST_DELAY_S, 0, False
        while True:
            try:
                self._write_batch(conn, rows, renumber)
            except Exception as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.IntegrityError) and not renumber:
                    renumber = True  # a seq is taken already: go row by row, at once
                    continue
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("event log: writing %d events failed (attempt %d), will retry: %s",
                          len(rows), failures, self.last_error, exc_info=failures == 1)  # fmt: skip
                if self._abandon.wait(delay):
                    log.error("event log: closed while failing; %d events lost", len(rows))
                    return
                delay = min(delay * 2, RETRY_MAX_DELAY_S)
                continue
            if failures:
                log.warning("event log: %d events written after %d retries", len(rows), failures)
                self.last_error = None
            return

    def _write_batch(self, conn: sqlite3.Connection, rows: list[_Row], renumber: bool) -> None:
        """One transaction: the rows, then the summaries of calls started or ended."""
        with _transaction(conn):
            if renumber:
                _insert_renumbering(conn, rows)
            else:
                conn.executemany(_INSERT_EVENT, rows)
            for call_id in {row[0]: 0 for row in rows if row[3] in _SUMMARY_KINDS}:
                try:
                    _upsert_summary(conn, call_id)
                except sqlite3.Error:
                    raise
                except Exception:  # odd data must not hold up the events themselves
                    log.exception("event log: cannot summarize call %s", call_id)

    # ------------------------------------------------------------------- reading

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        with self._read_lock:
            if self._reader_closed:
                raise StoreError(f"the event log {self._path} is closed")
            return list(self._reader.query(sql, params))

    def events(self, call_id: str) -> list[dict]:
        """The call's events in seq order, ``data`` decoded."""
        rows = self._query(_SELECT_EVENTS, (call_id,))
        return [{**row, "data": _decode(row["data"])} for row in rows]

    def call(self, call_id: str) -> dict | None:
        rows = self._query("SELECT * FROM calls WHERE call_id = ?", (call_id,))
        return _decode_call(rows[0]) if rows else None

    def calls(self) -> list[dict]:
        return [_decode_call(r) for r in self._query("SELECT * FROM calls ORDER BY started_at")]

    def rebuild_summaries(self) -> int:
        """Recompute every summary from the events; returns the number of calls."""
        self.flush(None)
        with self._read_lock:
            if self._reader_closed:
                raise StoreError(f"the event log {self._path} is closed")
            with _transaction(self._reader.conn):
                self._reader.conn.execute("DELETE FROM calls")
                return _summarize_all(self._reader.conn)


@atexit.register
def _close_open_logs() -> None:
    """Write what is still queued when the program exits without closing its logs."""
    for event_log in list(_OPEN_LOGS):
        try:
            event_log.close()
        except StoreError:
            log.exception("event log: could not close at exit")
