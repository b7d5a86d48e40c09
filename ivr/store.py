"""The event log: every trace of every call, append-only, in SQLite (WAL).

``EventLog.append`` runs on the asyncio event loop and never touches SQLite: it hashes
the caller number, numbers and encodes the trace and puts a row on a queue
(``append_many``: the rows of all its traces as one item, or none if one is bad). So do
``append_agent`` (agent states), ``add_note`` (free text, purgeable) and
``keep_raw_number`` (a raw number a callback needs, purgeable). One writer owns the
write connection, commits whatever has piled up in one transaction and keeps the
derived ``calls`` rows current (:mod:`ivr.summary`), also when a late event arrives for
a call that has ended. A failed write is logged and retried (``last_error`` meanwhile).
The writer (:class:`BatchWriter`) runs on a thread (``writer="thread"``, the default) or
in a child process (``writer="process"``, :mod:`ivr.store_process`: for ``ivr serve``,
so that its SQLite and summary work never competes with the event loop for the GIL).

Messages to case officers (:mod:`ivr.messages`, schema 4) are the one mutable record:
open, delivered, closed. Their writes are functions run by the same writer with
:meth:`EventLog.submit` (in process mode on a thread of this process, once the child
has written everything before them), each in its own transaction, in queue order with the events,
and hand back a ``concurrent.futures.Future``; so there is still one writer, and a
caller on the event loop can await the result (``asyncio.wrap_future``) or let it go.
The tables and their migrations are :mod:`ivr.schema`'s.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import json
import logging
import queue
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ivr import summary
from ivr.privacy import caller_hash, scrub_caller
from ivr.schema import SCHEMA_VERSION, StoreError, _rollback, _transaction, migrate  # noqa: F401 (re-exported)
from ivr.vocabulary import Trace

log = logging.getLogger(__name__)
summarize = summary.summarize  # the calls row of one call (kept here for callers)

BATCH_MAX = 500  # queue items drained after the first one, per transaction
BUSY_TIMEOUT_MS = 5000
RETRY_FIRST_DELAY_S = 0.02
RETRY_MAX_DELAY_S = 2.0
ENDED_SEQ_MEMORY = 10_000  # ended calls whose last seq is remembered for late traces
WRITER_MODES = ("thread", "process")
AGENT_STATES = frozenset({"offline", "available", "offered", "talking", "wrapup", "paused"})

_INSERT_EVENT = "INSERT INTO events (call_id, seq, at, kind, node, data) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT_STORED = "SELECT at, kind, node, data FROM events WHERE call_id = ? AND seq = ?"
_INSERT_AGENT = """INSERT INTO agent_events (agent, at, state, reason, call_id, prev_state)
VALUES (?1, ?2, ?3, ?4, ?5, (SELECT state FROM agent_events WHERE agent = ?1 AND at <= ?2
                              ORDER BY at DESC, id DESC LIMIT 1))"""
_INSERT_NOTE = "INSERT INTO notes (call_id, agent, at, text) VALUES (?, ?, ?, ?)"
_KEEP_NUMBER = ("INSERT OR REPLACE INTO raw_numbers (call_id, number, purpose, stored_at) "
                "VALUES (?, ?, ?, ?)")  # fmt: skip
_Row = tuple[str, int, str, str, str | None, str]  # call_id, seq, at, kind, node, data
_STOP = None  # queue item that stops the writer; markers are threading.Event
_FLUSH = object()  # BatchWriter.write: the end of a batch


@dataclass(frozen=True, slots=True)
class _Write:
    """A queue item that is not a call event: an agent state, a note, a raw number."""

    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Call:
    """A queue item: a function run on the writer's connection in its own transaction."""

    fn: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future


_Item = _Row | _Write


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
    text = _ENCODE(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _ENCODE_ASCII(value)
    return text


def _json_default(value: Any) -> str:
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return format_at(value)
    return str(value)  # lenient: anything else JSON cannot hold is stored as text


# built once: json.dumps with options builds an encoder on every call
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _check_text(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise StoreError(f"{name} must be a non-empty string, not {value!r}")
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{name} is not valid text: {value!r}") from exc


# --------------------------------------------------------------------------- summaries


def _decode_call(row: dict) -> dict:
    for column in summary.JSON_COLUMNS:
        row[column] = _decode(row[column])
    return row


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return sqlite_utils.Database(conn)


def _insert_renumbering(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    """Insert row by row; a row stored already is skipped; a row whose seq is taken by
    another (a call id reused after a restart) is stored after the call's last event."""
    for row in rows:
        if conn.execute(_INSERT_EVENT.replace("INSERT", "INSERT OR IGNORE", 1), row).rowcount:
            continue
        stored = conn.execute(_SELECT_STORED, row[:2]).fetchone()
        if stored is not None and tuple(stored) == row[2:]:
            continue  # this very event is stored already (a batch resent)
        sql = "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE call_id = ?"
        (seq,) = conn.execute(sql, (row[0],)).fetchone()
        log.warning("event log: call %s already has event %d; stored as %d", row[0], row[1], seq)
        conn.execute(_INSERT_EVENT, (row[0], seq, *row[2:]))


# --------------------------------------------------------------------------- the writer

_SAME_AGENT = ("SELECT 1 FROM agent_events WHERE agent = ? AND at = ? AND state = ? "
               "AND reason IS ? AND call_id IS ?")  # fmt: skip
_SAME_NOTE = "SELECT 1 FROM notes WHERE call_id = ? AND agent = ? AND at = ? AND text = ?"
_ALREADY_STORED = {_INSERT_AGENT: _SAME_AGENT, _INSERT_NOTE: _SAME_NOTE}


def take_batch(items: queue.SimpleQueue, *, wait: bool = True) -> list:
    """The next queue item (waiting for it), then whatever else is queued, up to the stop item."""
    try:
        batch = [items.get(block=wait)]
    except queue.Empty:
        return []
    try:
        while len(batch) <= BATCH_MAX and batch[-1] is not _STOP:
            batch.append(items.get_nowait())
    except queue.Empty:
        pass
    return batch


class BatchWriter:
    """The write side on one connection: a batch of queue items in one transaction with
    the summaries, retried while it fails; a submitted function in a transaction of its
    own. Used by the writer thread and by the writer process (:mod:`ivr.store_process`).

    ``report`` hears the error of the write being retried, and ``None`` once it succeeds.
    ``abandon`` set makes a failing write give up.
    """

    def __init__(self, abandon: threading.Event, report: Callable[[str | None], None]) -> None:
        self._abandon, self._report = abandon, report

    def write(self, conn: sqlite3.Connection, batch: Iterable[Any], *, resent: bool = False) -> None:
        """Write the rows of ``batch`` (lists of rows, rows, :class:`_Write`); a :class:`_Call`
        runs after the rows before it; anything else (markers, the stop item) is skipped.

        ``resent``: the batch may have been committed already (its writer process died
        before saying so): rows already stored are skipped, not stored twice."""
        rows: list[_Item] = []
        for item in [*batch, _FLUSH]:  # rows up to each function call, then the call
            if isinstance(item, list):  # the rows of one append_many
                rows.extend(item)
            elif isinstance(item, tuple | _Write):
                rows.append(item)
            elif isinstance(item, _Call) or item is _FLUSH:
                try:
                    if rows:
                        self.commit(conn, rows, renumber=resent)
                except Exception:  # never let the writer die; commit itself retries
                    log.exception("event log: unexpected error; %d events not written", len(rows))
                rows = []
                if isinstance(item, _Call):
                    self.call(conn, item)

    def call(self, conn: sqlite3.Connection, call: _Call) -> None:
        """Run a submitted function; retry while the database is busy, else report."""
        if not call.future.set_running_or_notify_cancel():
            return
        delay, failed = RETRY_FIRST_DELAY_S, False
        while True:
            try:
                with _transaction(conn):
                    result = call.fn(conn)
            except sqlite3.OperationalError as exc:  # locked, busy, disk I/O: try again
                failed, error = True, f"{type(exc).__name__}: {exc}"
                self._report(error)
                log.error("event log: a submitted write failed, will retry: %s", error)
                if self._abandon.wait(delay):
                    call.future.set_exception(StoreError(f"the event log was closed: {exc}"))
                    return
                delay = min(delay * 2, RETRY_MAX_DELAY_S)
                continue
            except BaseException as exc:  # the function's own error: the caller's to handle
                call.future.set_exception(exc)
                return
            if failed:
                self._report(None)
            call.future.set_result(result)
            return

    def commit(self, conn: sqlite3.Connection, rows: list[_Item], *, renumber: bool = False) -> None:
        delay, failures = RETRY_FIRST_DELAY_S, 0
        while True:
            try:
                self._write_batch(conn, rows, renumber)
            except Exception as exc:
                _rollback(conn)
                if isinstance(exc, sqlite3.IntegrityError) and not renumber:
                    renumber = True  # a seq is taken already: go row by row, at once
                    continue
                failures += 1
                error = f"{type(exc).__name__}: {exc}"
                self._report(error)
                log.error("event log: writing %d events failed (attempt %d), will retry: %s",
                          len(rows), failures, error, exc_info=failures == 1)  # fmt: skip
                if self._abandon.wait(delay):
                    log.error("event log: closed while failing; %d events lost", len(rows))
                    return
                delay = min(delay * 2, RETRY_MAX_DELAY_S)
                continue
            if failures:
                log.warning("event log: %d events written after %d retries", len(rows), failures)
                self._report(None)
            return

    def _write_batch(self, conn: sqlite3.Connection, items: list[_Item], renumber: bool) -> None:
        """One transaction: the rows, then the summaries of calls started or ended, and
        of ended calls that got a late event (a wrap-up coded after the caller hung up).

        ``renumber``: row by row; an event already stored as it is, an agent state or a
        note already stored alike, is skipped (a resent batch), and an event whose seq
        is taken by another is stored after its call's last event."""
        rows = [item for item in items if isinstance(item, tuple)]
        with _transaction(conn):
            if renumber:
                _insert_renumbering(conn, rows)
            else:
                conn.executemany(_INSERT_EVENT, rows)
            for item in items:
                if isinstance(item, _Write):
                    same = _ALREADY_STORED.get(item.sql) if renumber else None
                    if same is None or conn.execute(same, item.params).fetchone() is None:
                        conn.execute(item.sql, item.params)
            for call_id in summary.calls_to_summarize(conn, rows):
                try:
                    summary.upsert_summary(conn, call_id)
                except sqlite3.Error:
                    raise
                except Exception:  # odd data must not hold up the events themselves
                    log.exception("event log: cannot summarize call %s", call_id)


# --------------------------------------------------------------------------- the log

_OPEN_LOGS: weakref.WeakSet[EventLog] = weakref.WeakSet()


class EventLog:
    """Append-only log of call traces: one writer thread; reads from any thread."""

    def __init__(self, path: Path, reader: sqlite_utils.Database,
                 writer: sqlite_utils.Database, hash_key: bytes, mode: str = "thread") -> None:  # fmt: skip
        self._path, self._reader, self._hash_key = path, reader, hash_key
        self._queue: queue.SimpleQueue[_Item | list[_Row] | _Call | threading.Event | None]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()  # closing, seq numbers and queue order
        self._read_lock = threading.Lock()
        self._closed = self._reader_closed = False
        self._live_seq: dict[str, int] = {}
        self._ended_seq: OrderedDict[str, int] = OrderedDict()
        self._abandon = threading.Event()
        self._at_memo: tuple[datetime | None, str] = (None, "")  # the last trace time, formatted
        self.last_error: str | None = None  # of the write being retried, if any
        self._batch_writer = BatchWriter(self._abandon, self._report)
        self._host: Any = None  # the writer process's host (mode "process")
        if mode == "process":
            from ivr.store_process import WriterHost  # noqa: PLC0415 (it imports this module)

            self._host = self._writer = WriterHost(self, writer)
        else:
            self._writer = threading.Thread(
                target=self._run, args=(writer,), name=f"event-log {path.name}", daemon=True
            )
            self._writer.start()
        _OPEN_LOGS.add(self)

    @classmethod
    def open(cls, path: str | Path, *, hash_key: bytes, writer: str = "thread") -> EventLog:
        """Open the log at ``path``, creating or migrating it as needed.

        ``writer``: ``"thread"`` writes on a thread of this process; ``"process"`` in a
        child process (:mod:`ivr.store_process`), so that none of the SQLite and summary
        work holds the GIL the event loop needs (``ivr serve``).
        """
        if writer not in WRITER_MODES:
            raise StoreError(f"writer must be one of {', '.join(WRITER_MODES)}, not {writer!r}")
        if not isinstance(hash_key, bytes) or not hash_key:
            raise StoreError("hash_key must be non-empty bytes (see ivr.privacy)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        reader = _connect(path)
        try:
            reader.enable_wal()
            migrate(reader)
            connection = _connect(path)
        except BaseException:
            reader.close()
            raise
        try:
            return cls(path, reader, connection, hash_key, writer)
        except BaseException:  # the writer (process) could not be started: nothing left open
            connection.close()
            reader.close()
            raise

    @property
    def db_path(self) -> Path:
        return self._path

    def _report(self, error: str | None) -> None:
        self.last_error = error

    def caller_hash(self, number: str | None) -> str | None:
        """The keyed hash of a number, as the log stores callers (for matching, not display)."""
        return caller_hash(number, self._hash_key)

    # ------------------------------------------------------------------- writing

    def append(self, call_id: str, trace: Trace) -> None:
        """Queue ``trace`` for writing; never waits on SQLite."""
        self.append_many(call_id, (trace,))

    def append_many(self, call_id: str, traces: Iterable[Trace]) -> None:
        """Queue the traces of one call, in order: all of them or (bad input) none."""
        _check_text("call_id", call_id)
        encoded = [self._encode(trace) for trace in traces]
        if not encoded:
            return
        with self._lock:
            if self._closed:
                raise StoreError(f"the event log {self._path} is closed")
            rows = [(call_id, self._next_seq(call_id, kind), at, kind, node, data)
                    for at, kind, node, data in encoded]
            self._queue.put(rows)  # one item (one writer wake-up) per call's batch

    def _encode(self, trace: Trace) -> tuple[str, str, str | None, str]:
        """(at, kind, node, data) of a trace: checked, the caller scrubbed, JSON encoded."""
        kind, node, at = trace.kind, trace.node, trace.at
        _check_text("trace kind", kind)
        if node is not None:
            _check_text("trace node", node)
        memo = self._at_memo  # the traces of one event share one time: format it once
        if memo[0] is not at:
            memo = self._at_memo = (at, format_at(at))
        data = encode_json(scrub_caller(trace.data, self._hash_key)) if trace.data else "{}"
        return memo[1], kind, node, data

    def append_agent(self, agent: str, at: datetime, state: str, reason: str | None = None,
                     call_id: str | None = None) -> None:
        """Queue an agent's change of state (append-only, like call events)."""
        _check_text("agent", agent)
        if state not in AGENT_STATES:
            raise StoreError(f"agent state must be one of {sorted(AGENT_STATES)}, not {state!r}")
        _check_text("reason", reason, optional=True)
        _check_text("call_id", call_id, optional=True)
        self._put(_Write(_INSERT_AGENT, (agent, format_at(at), state, reason, call_id)))

    def add_note(self, call_id: str, agent: str, at: datetime, text: str) -> None:
        """Queue an agent's free-text note on a call (personal data: purged by retention)."""
        _check_text("call_id", call_id)
        _check_text("agent", agent)
        _check_text("note", text)
        self._put(_Write(_INSERT_NOTE, (call_id, agent, format_at(at), text)))

    def keep_raw_number(self, call_id: str, number: str, purpose: str, at: datetime) -> None:
        """Queue the caller's raw number for a feature that must dial it (a callback).

        The only place a raw number is written; retention deletes it when its days are up.
        """
        _check_text("call_id", call_id)
        _check_text("number", number)
        _check_text("purpose", purpose)
        self._put(_Write(_KEEP_NUMBER, (call_id, number, purpose, format_at(at))))

    def submit(self, fn: Callable[[sqlite3.Connection], Any]) -> concurrent.futures.Future:
        """Run ``fn(connection)`` on the writer thread, in its own transaction, after
        everything queued before; the future holds its result or its exception.

        A busy or locked database is retried like any write; any other exception rolls
        the transaction back and goes to the future. Never waits on SQLite itself.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise StoreError(f"the event log {self._path} is closed")
            self._queue.put(_Call(fn, future))
        return future

    def _put(self, item: _Write) -> None:
        with self._lock:
            if self._closed:
                raise StoreError(f"the event log {self._path} is closed")
            self._queue.put(item)

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
            if self._host is not None:
                self._host.abandon()
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
            while True:
                batch = take_batch(self._queue)
                self._batch_writer.write(db.conn, batch)
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
                if batch[-1] is _STOP:
                    return
        finally:
            db.close()

    # ------------------------------------------------------------------- reading

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        """Rows of a read-only query on the reader connection (blocks: not on the loop)."""
        return self._query(sql, params)

    def _query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        with self._read_lock:
            if self._reader_closed:
                raise StoreError(f"the event log {self._path} is closed")
            return list(self._reader.query(sql, params))

    def events(self, call_id: str) -> list[dict]:
        """The call's events in seq order, ``data`` decoded."""
        rows = self._query(summary.SELECT_EVENTS, (call_id,))
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
                return summary.summarize_all(self._reader.conn)


@atexit.register
def _close_open_logs() -> None:
    """Write what is still queued when the program exits without closing its logs."""
    for event_log in list(_OPEN_LOGS):
        try:
            event_log.close()
        except StoreError:
            log.exception("event log: could not close at exit")
