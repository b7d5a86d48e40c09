"""Retention and erasure: ``ivr purge`` and ``ivr forget``.

Personal data kept for a feature is deleted when its time is up: raw caller numbers
(kept for callbacks), free-text notes, and recorded messages. Messages to case officers
(:mod:`ivr.messages`) keep their record, but lose the raw callback number with the raw
numbers (``message_numbers``) and the caller's name, the question and the callback note
with the notes (``message_texts``). What reports need stays:
the keyed hashes, the coded outcomes, the times. So a report gives the same figures
before and after a purge. Every deletion is itself recorded in the ``purges`` table
(what kind, how many, older than when), never what was deleted.

Voice messages recorded over Twilio are logged with Twilio's ``RecordingUrl`` as their
``ref``; the transport downloads each into the messages folder as ``twilio-RE....wav``
(:func:`local_audio_name`) and deletes it at Twilio. Retention deletes that local file.
A recording whose download never succeeded is still at Twilio: :func:`remote_recordings_due`
names those past ``recording_days`` (no network here), the server's daily purge deletes them
at Twilio and :func:`record_remote_deleted` notes how far it got.
"""

from __future__ import annotations

import json
import re
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


# Twilio's RecordingUrl: https://api.twilio.com/2010-04-01/Accounts/AC.../Recordings/RE...
# (a regional edge is api.EDGE.REGION.twilio.com). Nothing else is taken for one.
TWILIO_RECORDING_URL = re.compile(
    r"https://api(?:\.[a-z0-9-]+){0,2}\.twilio\.com/2010-04-01/Accounts/AC[0-9a-f]{32}"
    r"/Recordings/(RE[0-9a-f]{32})")
RECORDING_SID = re.compile(r"RE[0-9a-f]{32}")
REMOTE_KIND = "twilio_recordings"  # the purges row of the server's deletions at Twilio


def twilio_recording_sid(ref: str) -> str | None:
    """The RecordingSid of a Twilio RecordingUrl, else None."""
    match = TWILIO_RECORDING_URL.fullmatch(ref)
    return match.group(1) if match else None


def twilio_file_name(recording_sid: str) -> str:
    """The local file of a Twilio recording in the messages folder (the SID checked first)."""
    if not RECORDING_SID.fullmatch(recording_sid):
        raise ValueError(f"RecordingSid: expected RE followed by 32 lowercase hex digits, "
                         f"got {recording_sid[:40]!r}")
    return f"twilio-{recording_sid}.wav"


def local_audio_name(ref: str) -> str:
    """Where a recording's audio is in the messages folder: a Twilio RecordingUrl maps to
    the file the transport downloaded it to; any other ref is already a local name."""
    sid = twilio_recording_sid(ref)
    return twilio_file_name(sid) if sid else ref


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
    """Delete local audio files inside ``messages_dir`` (a Twilio ref: its downloaded copy);
    a recording still at Twilio is :func:`remote_recordings_due`'s."""
    count = 0
    root = messages_dir.resolve()
    for _call_id, ref in refs:
        ref = local_audio_name(ref)
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


@dataclass(frozen=True)
class RemoteRecording:
    """A Twilio recording past its retention, perhaps still at Twilio."""

    sid: str
    at: str  # when it was recorded (the event's time)


def remote_recordings_due(db_path: Path, *, now: datetime, recording_days: int
                          ) -> tuple[list[RemoteRecording], str]:
    """Twilio recordings past ``recording_days`` not yet handed to a deletion at Twilio, and
    the cutoff. Each is due once: from the cutoff the last :func:`record_remote_deleted`
    reached (every one, the first time). Reads only; deleting is the caller's."""
    cutoff = format_at(now - timedelta(days=recording_days))
    con = sqlite3.connect(db_path)
    try:
        row = con.execute("select max(older_than) from purges where kind = ?", (REMOTE_KIND,)).fetchone()
        since = row[0] if row and row[0] else ""
        rows = con.execute("select at, data from events where kind = 'recording' and at < ? and at >= ? "
                           "order by at", (cutoff, since)).fetchall()
    finally:
        con.close()
    due = []
    for at, data in rows:
        ref = (json.loads(data) if data else {}).get("ref")
        sid = twilio_recording_sid(ref) if isinstance(ref, str) else None
        if sid:
            due.append(RemoteRecording(sid, at))
    return due, cutoff


def record_remote_deleted(db_path: Path, *, now: datetime, cutoff: str, deleted: int,
                          failed: list[RemoteRecording]) -> Deleted:
    """Note the deletions at Twilio: the next run starts at ``cutoff``, or at the oldest
    that failed (tried again then; one Twilio already deleted answers 404, counted as done)."""
    reached = min([cutoff, *(r.at for r in failed)])
    return _note(db_path, now, Deleted(REMOTE_KIND, deleted, reached))


def twilio_recordings_of(db_path: Path, number: str, *, key: bytes) -> list[str]:
    """The RecordingSids of Twilio recordings on one caller's calls (for ``ivr forget``, which
    deletes them at Twilio too: a download that never succeeded left them there). Reads only."""
    hashed = caller_hash(number, key)
    if hashed is None:
        return []
    con = sqlite3.connect(db_path)
    try:
        calls = [r[0] for r in con.execute("select call_id from calls where caller_hash = ?", (hashed,))]
        refs = _recordings(con, f"call_id in ({','.join('?' * len(calls))})", tuple(calls)) if calls else []
    finally:
        con.close()
    return sorted({sid for _call, ref in refs if (sid := twilio_recording_sid(ref))})


def record_forgotten_at_twilio(db_path: Path, *, now: datetime, deleted: int) -> Deleted:
    """Note, as ``forget`` notes its deletions, how many recordings it deleted at Twilio."""
    _note(db_path, now, Deleted("forget:twilio_recordings", deleted, None))
    return Deleted("twilio_recordings", deleted, None)


def _note(db_path: Path, now: datetime, done: Deleted) -> Deleted:
    """``done`` recorded in the ``purges`` table, in a transaction of its own."""
    con = sqlite3.connect(db_path)
    try:
        with con:
            _record(con, now, done)
    finally:
        con.close()
    return done

