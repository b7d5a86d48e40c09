"""The staff directory: people and units, imported from CSV, edited by supervisors, searched.

An entry says who someone is (name, title, unit), how to reach them (phone, extension,
email, an endpoint per transport), what they know (languages, topics), when they work and
their status. Entries live in the event log's SQLite file (tables ``directory_*``).

``Directory.import_csv`` reads a file as an HR or directory export gives it: UTF-8 (with
or without BOM), UTF-16 with BOM or Windows-1252; semicolons (Excel in Sweden), commas or
tabs; Swedish or English headers. Every problem is reported as ``(line, column,
message)`` and nothing is written unless the whole file is good. The file is the truth
for the entries it imports: re-importing adds, updates and removes by id, except that a
status set by a supervisor is kept, and entries a supervisor created are left alone.

``Directory.search`` forgives typos and Swedish letters: text is folded (casefold, accents
stripped, ``ae``/``oe``/``aa`` spellings merged) and also reduced to a Swedish phonetic key
(å sounds like o, ä like e), then matched word by word with rapidfuzz against an inverted
index, weighting the field the match is in (name > unit > title > topics). See
``docs/directory.md``.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sqlite_utils

from ivr.directory.csvfile import read_csv
from ivr.directory.fields import _ID, COLUMNS, DELIMITERS, _text, build_entry, fold, slug, sort_key, sound
from ivr.directory.model import (
    BUSY_TIMEOUT_MS,
    KINDS,
    STATUSES,
    TRANSPORTS,
    DirectoryError,
    DirectoryImportError,
    Entry,
    Hit,
    ImportResult,
    Problem,
)
from ivr.directory.search import _Index
from ivr.hours import STOCKHOLM
from ivr.store import format_at, migrate

# The package's public names: ``ivr.directory`` is the one import for its users; the parts are
# model (the data), fields (columns and checks), csvfile (reading an export), search (the index).
__all__ = ["COLUMNS", "DELIMITERS", "KINDS", "STATUSES", "TRANSPORTS", "Directory", "DirectoryError",
           "DirectoryImportError", "Entry", "Hit", "ImportResult", "Problem", "build_entry", "fold", "slug",
           "sound"]

# --------------------------------------------------------------------------- the directory

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS directory_entries (id TEXT PRIMARY KEY, kind TEXT NOT NULL,
    name TEXT NOT NULL, title TEXT, unit TEXT, phone TEXT, extension TEXT, email TEXT,
    endpoints TEXT NOT NULL, languages TEXT NOT NULL, topics TEXT NOT NULL, hours TEXT,
    status TEXT NOT NULL, status_note TEXT, status_until TEXT,
    status_set_by TEXT, status_set_at TEXT,      -- a supervisor's status survives imports
    source TEXT NOT NULL,                         -- "import" or "manual" (imports leave manual ones)
    updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS directory_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO directory_meta (key, value) VALUES ('generation', 0)",
    "INSERT OR IGNORE INTO directory_meta (key, value) VALUES ('schema', 1)",
)
_FIELDS = ("id", "kind", "name", "title", "unit", "phone", "extension", "email", "endpoints", "languages",
           "topics", "hours", "status", "status_note", "status_until")
_STATUS_FIELDS = ("status", "status_note", "status_until")


def _row(entry: Entry) -> dict[str, Any]:
    row = {k: getattr(entry, k) for k in _FIELDS}
    row["endpoints"] = json.dumps(dict(entry.endpoints), ensure_ascii=False, sort_keys=True)
    row["languages"] = json.dumps(list(entry.languages))
    row["topics"] = json.dumps(list(entry.topics), ensure_ascii=False)
    row["status_until"] = format_at(entry.status_until) if entry.status_until else None
    return row


def _entry(row: sqlite3.Row | Mapping[str, Any]) -> Entry:
    until = row["status_until"]
    return Entry(
        id=row["id"], kind=row["kind"], name=row["name"], title=row["title"], unit=row["unit"],
        phone=row["phone"], extension=row["extension"], email=row["email"],
        endpoints=MappingProxyType(json.loads(row["endpoints"])),
        languages=tuple(json.loads(row["languages"])),
        topics=tuple(json.loads(row["topics"])), hours=row["hours"], status=row["status"],
        status_note=row["status_note"],
        status_until=datetime.fromisoformat(until).astimezone(STOCKHOLM) if until else None)


class Directory:
    """The directory in the event log's SQLite file; thread-safe (one connection, one lock)."""

    def __init__(self, db_path: str | Path, *, now: Callable[[], datetime] | None = None):
        self.db_path = Path(db_path)
        self.now = now or (lambda: datetime.now(UTC))
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.db_path), check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db = sqlite_utils.Database(conn)
            db.enable_wal()
            migrate(db)  # the file is (or becomes) an event log: `ivr serve` opens it later
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        conn.row_factory = sqlite3.Row
        self._conn = conn
        self._lock = threading.RLock()
        self._index: _Index | None = None
        self._generation = -1

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def get(self, entry_id: str) -> Entry | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM directory_entries WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def all(self) -> list[Entry]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM directory_entries").fetchall()
        return sorted(map(_entry, rows), key=lambda e: (e.kind != "unit", sort_key(e.name), e.id))

    def search(self, query: str, limit: int = 10) -> list[Hit]:
        """Entries by name, unit, title or topic, best first; typos and å/ä/ö forgiven."""
        with self._lock:
            (generation,) = self._conn.execute(
                "SELECT value FROM directory_meta WHERE key = 'generation'").fetchone()
            if self._index is None or generation != self._generation:
                self._index, self._generation = _Index(self.all()), generation
            index = self._index
        return index.search(query[:200], max(1, limit))

    # ------------------------------------------------------------------ writing

    def _write(self, *, rollback: bool = False) -> _Transaction:
        return _Transaction(self, rollback=rollback)

    def upsert(self, entry: Entry, *, by: str | None = None) -> None:
        """Add or replace ``entry``. With ``by`` (a supervisor's name) its status then survives
        imports, and a new entry is a manual one that imports leave alone."""
        if entry.kind not in KINDS or entry.status not in STATUSES or not _ID.fullmatch(entry.id):
            raise DirectoryError(f"bad entry {entry.id!r}: kind {entry.kind!r}, status {entry.status!r}")
        now = format_at(self.now())
        with self._write() as conn:
            old = conn.execute("SELECT source, status_set_by, status_set_at FROM directory_entries "
                               "WHERE id = ?", (entry.id,)).fetchone()
            source = old["source"] if old else ("manual" if by else "import")
            set_by, set_at = (by, now) if by else ((old["status_set_by"], old["status_set_at"]) if old
                                                   else (None, None))
            self._put(conn, entry, source=source, set_by=set_by, set_at=set_at, at=now)

    def set_status(self, entry_id: str, status: str, note: str | None, until: datetime | None, *,
                   by: str | None = None) -> Entry:
        if status not in STATUSES:
            raise DirectoryError(f'status: expected one of {", ".join(STATUSES)}, got "{status}"',
                                 [("status", f"unknown status {status!r}")])
        if until is not None and until.utcoffset() is None:
            until = until.replace(tzinfo=STOCKHOLM)
        now = format_at(self.now())
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE directory_entries SET status = ?, status_note = ?, status_until = ?, "
                "status_set_by = ?, status_set_at = ?, updated_at = ? WHERE id = ?",
                (status, _text(note), format_at(until) if until else None, by or "?", now, now, entry_id))
            if not cur.rowcount:
                raise DirectoryError(f'no directory entry "{entry_id}"')
        entry = self.get(entry_id)
        assert entry is not None
        return entry

    def delete(self, entry_id: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute("DELETE FROM directory_entries WHERE id = ?", (entry_id,)).rowcount)

    def import_csv(self, path: Path | str, *, dry_run: bool = False) -> ImportResult:
        """Import a whole file or nothing; raises :class:`DirectoryImportError` with every problem."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise DirectoryImportError([Problem(0, "", f"cannot read {path}: {e.strerror}")]) from None
        return self.import_bytes(data, dry_run=dry_run)

    def import_bytes(self, data: bytes, *, dry_run: bool = False) -> ImportResult:
        entries, result = read_csv(data)
        now = format_at(self.now())
        added = updated = unchanged = kept = 0
        with self._write(rollback=dry_run) as conn:
            old = {r["id"]: r for r in conn.execute("SELECT * FROM directory_entries")}
            for _, entry in entries:
                before = old.pop(entry.id, None)
                set_by = set_at = None
                if before is not None and before["status_set_by"] is not None:
                    kept += 1
                    set_by, set_at = before["status_set_by"], before["status_set_at"]
                    entry = replace(entry, **{k: getattr(_entry(before), k) for k in _STATUS_FIELDS})
                if before is None:
                    added += 1
                elif _entry(before) == entry and before["source"] == "import":
                    unchanged += 1
                    continue
                else:
                    updated += 1
                self._put(conn, entry, source="import", set_by=set_by, set_at=set_at, at=now)
            gone = [i for i, r in old.items() if r["source"] == "import"]
            conn.executemany("DELETE FROM directory_entries WHERE id = ?", [(i,) for i in gone])
        return replace(result, added=added, updated=updated, unchanged=unchanged, removed=len(gone),
                       kept_status=kept, dry_run=dry_run)

    def _put(self, conn: sqlite3.Connection, entry: Entry, *, source: str, set_by: str | None,
             set_at: str | None, at: str) -> None:
        row = {**_row(entry), "status_set_by": set_by, "status_set_at": set_at, "source": source,
               "updated_at": at}
        conn.execute(f"INSERT OR REPLACE INTO directory_entries ({', '.join(row)}) "
                     f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))


class _Transaction:
    """``with directory._write() as conn``: BEGIN IMMEDIATE ... COMMIT, bumping the generation."""

    def __init__(self, directory: Directory, *, rollback: bool = False):
        self.directory, self.rollback = directory, rollback

    def __enter__(self) -> sqlite3.Connection:
        self.directory._lock.acquire()
        try:
            self.directory._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.directory._lock.release()
            raise
        return self.directory._conn

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        conn = self.directory._conn
        try:
            if kind is None and not self.rollback:
                conn.execute("UPDATE directory_meta SET value = value + 1 WHERE key = 'generation'")
                conn.execute("COMMIT")
            else:
                conn.execute("ROLLBACK")
        finally:
            self.directory._lock.release()

