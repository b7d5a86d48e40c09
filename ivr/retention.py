"""Retention and erasure: ``ivr purge`` and ``ivr forget``.

Personal data kept for a feature is deleted when its time is up: raw caller numbers
(kept for callbacks), free-text notes, and recorded messages. Messages to case officers
(:mod:`ivr.messages`) keep their record, but lose the raw callback number with the raw
numbers (``message_numbers``) and the caller's name, the question and the callback note
with the notes (``message_texts``). What reports need stays:
the keyed hashes, the coded outcomes, the times. So a report gives the same figures
before and after a purge. Every deletion is itself recorded in the ``purges`` table
(what kind, how many, older than when), never what was deleted.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ivr.privacy import caller_hash
from ivr.store import format_at


@dataclass(frozen=True)
class Deleted:
    kind: str
    count: int
    older_than: str | None

    def __str__(self) -> str:
        when = f" older than {self.older_than}" if self.older_than else ""
        return f"{self.kind}: {self.count} deleted{when}"


def _record(con: sqlite3.Connection, now: datetime, done: Deleted, detail: str | None = None) -> None:
    con.execute("insert into purges (at, kind, deleted, older_than, detail) values (?, ?, ?, ?, ?)",
                (format_at(now), done.kind, done.count, done.older_than, detail))


def _recordings(con: sqlite3.Connection, call_filter: str, args: tuple[object, ...]) -> list[tuple[str, str]]:
    """(call_id, ref) of recorded messages selected by a WHERE clause on events."""
    rows = con.execute(f"select call_id, data from events where kind = 'recording' and {call_filter}",
                       args).fetchall()
    out = []
    for call_id, data in rows:
        ref = (json.loads(data) if data else {}).get("ref")
        if ref:
            out.append((call_id, ref))
    return out


def _delete_files(refs: list[tuple[str, str]], messages_dir: Path) -> int:
    """Delete local audio files inside ``messages_dir``; remote ones are the provider's."""
    count = 0
    root = messages_dir.resolve()
    for _call_id, ref in refs:
        path = (messages_dir / ref).resolve() if not Path(ref).is_absolute() else Path(ref).resolve()
        if root in path.parents and path.is_file():
            path.unlink()
            count += 1
    return count


_HAS_TEXT = "caller_name is not null or question is not null or close_note is not null"
_CLEAR_TEXTS = ("update messages set caller_name = null, question = null, close_note = null, "
                "personal_data_purged_at = ?")


def purge(db_path: Path, *, now: datetime, raw_number_days: int, note_days: int, recording_days: int,
          messages_dir: Path) -> list[Deleted]:
    con = sqlite3.connect(db_path)
    try:
        with con:
            done = []
            cutoff = format_at(now - timedelta(days=raw_number_days))
            n = con.execute("delete from raw_numbers where stored_at < ?", (cutoff,)).rowcount
            done.append(Deleted("raw_numbers", n, cutoff))
            cutoff = format_at(now - timedelta(days=note_days))
            n = con.execute("delete from notes where at < ?", (cutoff,)).rowcount
            done.append(Deleted("notes", n, cutoff))
            cutoff = format_at(now - timedelta(days=recording_days))
            refs = _recordings(con, "at < ?", (cutoff,))
            done.append(Deleted("recordings", _delete_files(refs, messages_dir), cutoff))
            cutoff = format_at(now - timedelta(days=raw_number_days))
            n = con.execute("update messages set callback_number = null where callback_number is not null "
                            "and created_at < ?", (cutoff,)).rowcount
            done.append(Deleted("message_numbers", n, cutoff))
            cutoff = format_at(now - timedelta(days=note_days))
            n = con.execute(f"{_CLEAR_TEXTS} where created_at < ? and ({_HAS_TEXT})",
                            (format_at(now), cutoff)).rowcount
            done.append(Deleted("message_texts", n, cutoff))
            for d in done:
                _record(con, now, d)
        return done
    finally:
        con.close()


def forget(db_path: Path, number: str, *, key: bytes, now: datetime, messages_dir: Path) -> list[Deleted]:
    """Erase one person's personal data (a GDPR request), keeping hashed counts."""
    hashed = caller_hash(number, key)
    if hashed is None:
        raise ValueError(f'"{number}" is not a caller number that can be looked up')
    con = sqlite3.connect(db_path)
    try:
        with con:
            calls = [r[0] for r in con.execute("select call_id from calls where caller_hash = ?", (hashed,))]
            marks = ",".join("?" * len(calls))
            done = [Deleted("calls_found", len(calls), None)]
            if calls:
                done.append(Deleted("raw_numbers", con.execute(
                    f"delete from raw_numbers where call_id in ({marks})", calls).rowcount, None))
                done.append(Deleted("notes", con.execute(
                    f"delete from notes where call_id in ({marks})", calls).rowcount, None))
                refs = _recordings(con, f"call_id in ({marks})", tuple(calls))
                done.append(Deleted("recordings", _delete_files(refs, messages_dir), None))
            # messages: by the callback number given, or left on one of the person's calls
            where = "callback_hash = ?" + (f" or call_id in ({marks})" if calls else "")
            n = con.execute(f"{_CLEAR_TEXTS}, callback_number = null, callback_masked = null "
                            f"where ({where}) and (callback_number is not null "
                            f"or callback_masked is not null or {_HAS_TEXT})",
                            (format_at(now), hashed, *calls)).rowcount
            if n or calls:
                done.append(Deleted("messages", n, None))
            for d in done[1:]:
                _record(con, now, Deleted(f"forget:{d.kind}", d.count, None))
        return done
    finally:
        con.close()
