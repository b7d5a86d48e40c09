"""Retention and erasure: personal data goes, the figures stay."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ivr import metrics
from ivr.cli import main
from ivr.directory import Directory, Entry
from ivr.messages import MessageBook
from ivr.retention import forget, purge
from ivr.store import EventLog
from ivr.vocabulary import Trace

from .conftest import ROOT
from .test_loadsim import KEY, simulate

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def log_db(tmp_path: Path) -> Path:
    path = tmp_path / "ivr.db"
    simulate(path, seed=3, calls=120)
    messages = tmp_path / "messages"
    messages.mkdir()
    log = EventLog.open(path, hash_key=KEY)
    old, fresh = NOW - timedelta(days=200), NOW - timedelta(days=2)
    for call_id, at in (("old-call", old), ("new-call", fresh)):
        (messages / f"{call_id}.wav").write_bytes(b"RIFF")
        log.append(call_id, Trace(at, "call_started", None, {"caller": "+46701112233", "flow": "t"}))
        log.append(call_id, Trace(at, "recording", "message", {"ref": f"{call_id}.wav", "duration_s": 9.0}))
        log.append(call_id, Trace(at, "call_ended", None, {"reason": "caller-hangup", "end": "message"}))
        log.add_note(call_id, "anna", at, "Ringer om fakturan, personnummer 19800101-1234")
        log.keep_raw_number(call_id, "+46701112233", "callback", at)
    with Directory(path) as directory:
        directory.upsert(Entry(id="bygg", kind="unit", name="Bygglovsenheten", email="bygg@kommun.se"))
        book = MessageBook(log, entries=directory, categories=("fraga",), promise_hours=24)
        form = {"target": "bygg", "category": "fraga", "callback_number": "+46701112233",
                "consent": True, "caller_name": "Karin", "question": "Mitt bygglov?"}
        # a message on the old call (200 days), one without a call (40 days), one fresh
        book.create({**form, "call_id": "old-call"}, by="anna", now=old)
        book.create({**form, "caller_name": "Olle", "callback_number": "0702223344"}, by="anna",
                    now=NOW - timedelta(days=40))
        book.create({**form, "callback_number": "0701112233"}, by="anna", now=fresh)
    log.close()
    return path


def message_rows(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute("select callback_number, callback_masked, caller_name, question "
                           "from messages order by id").fetchall()
    finally:
        con.close()


def kpis(path: Path) -> dict:
    return metrics.compute(path, date(2026, 12, 1), date(2026, 12, 2), as_of=NOW)


def test_purge_deletes_what_is_past_retention_and_keeps_the_figures(log_db: Path) -> None:
    before = kpis(log_db)
    done = purge(log_db, now=NOW, raw_number_days=30, note_days=90, recording_days=90,
                 messages_dir=log_db.parent / "messages")
    assert {d.kind: d.count for d in done} == {"raw_numbers": 1, "notes": 1, "recordings": 1,
                                               "message_numbers": 2, "message_texts": 1}
    assert not (log_db.parent / "messages" / "old-call.wav").exists()
    assert (log_db.parent / "messages" / "new-call.wav").exists()
    con = sqlite3.connect(log_db)
    assert con.execute("select call_id from raw_numbers").fetchall() == [("new-call",)]
    assert con.execute("select call_id from notes").fetchall() == [("new-call",)]
    purges = con.execute("select kind, deleted from purges order by id").fetchall()
    assert purges == [("raw_numbers", 1), ("notes", 1), ("recordings", 1), ("message_numbers", 2),
                      ("message_texts", 1)]
    con.close()
    # numbers go after 30 days, texts after 90 (note_days here); the masked form stays
    assert message_rows(log_db) == [(None, "+46 70-*** ** 33", None, None),
                                    (None, "+46 70-*** ** 44", "Olle", "Mitt bygglov?"),
                                    ("+46701112233", "+46 70-*** ** 33", "Karin", "Mitt bygglov?")]
    assert kpis(log_db) == before
    again = purge(log_db, now=NOW, raw_number_days=30, note_days=90, recording_days=90,
                  messages_dir=log_db.parent / "messages")
    assert {d.kind: d.count for d in again}["message_numbers"] == 0


def test_forget_erases_one_callers_data_and_keeps_the_figures(log_db: Path) -> None:
    before = kpis(log_db)
    done = forget(log_db, "070-111 22 33", key=KEY, now=NOW, messages_dir=log_db.parent / "messages")
    counts = {d.kind: d.count for d in done}
    assert counts == {"calls_found": 2, "raw_numbers": 2, "notes": 2, "recordings": 2, "messages": 2}
    # the fresh message by its number, the old one by its call; Olle's stays
    assert message_rows(log_db) == [(None, None, None, None),
                                    ("+46702223344", "+46 70-*** ** 44", "Olle",
                                     "Mitt bygglov?"),
                                    (None, None, None, None)]
    con = sqlite3.connect(log_db)
    assert con.execute("select count(*) from raw_numbers").fetchone()[0] == 0
    assert con.execute("select count(*) from notes").fetchone()[0] == 0
    kinds = [r[0] for r in con.execute("select kind from purges")]
    con.close()
    assert kinds == ["forget:raw_numbers", "forget:notes", "forget:recordings", "forget:messages"]
    assert kpis(log_db) == before


def test_forget_with_the_wrong_key_finds_nothing(log_db: Path) -> None:
    done = forget(log_db, "+46701112233", key=b"another-key-0123456789", now=NOW,
                  messages_dir=log_db.parent / "messages")
    assert done[0].count == 0 and len(done) == 1


def test_purge_command_prints_what_it_deleted(log_db: Path, capsys) -> None:
    log = EventLog.open(log_db, hash_key=KEY)  # a note from long ago is past any retention
    log.add_note("ancient", "anna", datetime(2001, 1, 1, tzinfo=UTC), "Gammal anteckning")
    log.close()
    code = main(["purge", "--config", str(ROOT / "config.toml"), "--db", str(log_db)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split(":")[0] for line in lines] == ["raw_numbers", "notes", "recordings",
                                                      "message_numbers", "message_texts"]
    assert lines[1].startswith("notes: ") and " deleted older than " in lines[1]
    con = sqlite3.connect(log_db)
    assert con.execute("select count(*) from notes where call_id = 'ancient'").fetchone()[0] == 0
    assert con.execute("select count(*) from purges where kind = 'notes'").fetchone()[0] == 1
    con.close()
