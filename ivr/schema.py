"""The event log's SQLite schema and its migrations (``PRAGMA user_version``).

Each version's statements run once, in order, in one transaction when a log is opened
(:func:`migrate`); a database written by a newer version is refused. The ``calls``
summary table's columns are :mod:`ivr.summary`'s. ``SCHEMA_VERSION`` is also what
:mod:`ivr.metrics` expects of the logs it reads.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator

import sqlite_utils

from ivr import summary

log = logging.getLogger("ivr.store")

SCHEMA_VERSION = 5


class StoreError(RuntimeError):
    """The event log cannot do what was asked (closed, bad input, unknown schema)."""


_V1 = (
    """CREATE TABLE events (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL,
    seq INTEGER NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL, node TEXT, data TEXT,
    UNIQUE (call_id, seq))""",  # the UNIQUE index also serves lookups by call_id
    "CREATE INDEX IF NOT EXISTS events_at ON events (at)",
)
_V2 = (_V1[1], *summary.CALLS_V2, """CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""")
_V3 = (
    *summary.CALLS_V3,
    # prev_state: the agent's state before this event, set on insert (agent time by hour)
    """CREATE TABLE agent_events (id INTEGER PRIMARY KEY, agent TEXT NOT NULL,
    at TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, call_id TEXT, prev_state TEXT)""",
    "CREATE INDEX agent_events_agent_at ON agent_events (agent, at)",
    """CREATE INDEX agent_events_hour ON agent_events (substr(at, 1, 13), state, prev_state, at)""",
    """CREATE TRIGGER agent_events_append_only BEFORE UPDATE ON agent_events
    BEGIN SELECT RAISE(ABORT, 'agent events are append-only'); END""",
    """CREATE TABLE notes (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, agent TEXT,
    at TEXT NOT NULL, text TEXT NOT NULL)""",
    "CREATE INDEX notes_call_id ON notes (call_id)",
    "CREATE INDEX notes_at ON notes (at)",
    """CREATE TABLE raw_numbers (call_id TEXT PRIMARY KEY, number TEXT NOT NULL,
    purpose TEXT NOT NULL, stored_at TEXT NOT NULL)""",
    "CREATE INDEX raw_numbers_stored_at ON raw_numbers (stored_at)",
    """CREATE TABLE purges (id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL,
    deleted INTEGER NOT NULL, older_than TEXT, detail TEXT)""",
    """CREATE TRIGGER purges_append_only BEFORE UPDATE ON purges
    BEGIN SELECT RAISE(ABORT, 'the purge record is append-only'); END""",
)

_V4 = (
    *summary.CALLS_V4,
    # Messages to case officers: mutable case records (open -> delivered -> closed). The
    # target's unit, name and e-mail are copied at creation, so that a later change in the
    # directory does not rewrite history. callback_number is raw (kept only with the
    # caller's consent; retention clears it like raw_numbers); callback_hash finds it for
    # `ivr forget` after that.
    """CREATE TABLE messages (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, call_id TEXT,
    created_by TEXT, source TEXT NOT NULL CHECK (source IN ('desk', 'voicemail')),
    target_id TEXT, target_unit TEXT, target_name TEXT, target_email TEXT,
    caller_name TEXT, callback_number TEXT, callback_masked TEXT, callback_hash TEXT,
    consent INTEGER NOT NULL DEFAULT 0, category TEXT, question TEXT, case_number TEXT,
    promised_by TEXT, audio_ref TEXT, duration_s REAL,
    delivery TEXT NOT NULL CHECK (delivery IN ('pending', 'retrying', 'delivered', 'unaddressed')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT, last_error TEXT,
    delivered_at TEXT, closed_at TEXT, closed_by TEXT, outcome TEXT, close_note TEXT,
    personal_data_purged_at TEXT)""",
    "CREATE INDEX messages_open ON messages (closed_at, created_at)",
    "CREATE INDEX messages_due ON messages (delivery, next_attempt_at)",
    "CREATE INDEX messages_call ON messages (call_id)",
    "CREATE INDEX messages_callback_hash ON messages (callback_hash)",
    # the history of each message: created, each delivery attempt, delivered, closed
    """CREATE TABLE message_events (id INTEGER PRIMARY KEY, message_id INTEGER NOT NULL
    REFERENCES messages (id), at TEXT NOT NULL, kind TEXT NOT NULL, by TEXT, detail TEXT)""",
    "CREATE INDEX message_events_message ON message_events (message_id)",
    """CREATE TRIGGER message_events_append_only BEFORE UPDATE ON message_events
    BEGIN SELECT RAISE(ABORT, 'message events are append-only'); END""",
)

_V5 = (
    # The calls with a transfer in a period, for the report, without reading every event
    # of the period (a partial index: only transfer events are in it).
    """CREATE INDEX events_transfers ON events (at, call_id)
    WHERE kind IN ('transfer_started', 'queue_transferred')""",
)


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
        statements = ((_V1 if found == 0 else ()) + (_V2 if found <= 1 else ())
                      + (_V3 if found <= 2 else ()) + (_V4 if found <= 3 else ()) + _V5)
        for statement in statements:
            conn.execute(statement)
        if found <= 3:  # the new columns, and late events schema 2 left out (5 adds an index)
            summary.summarize_all(conn)
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
