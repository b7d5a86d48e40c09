"""The event log: round trips, summaries, privacy on disk, migrations, failures."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr import metrics, schema, store
from ivr.privacy import caller_hash
from ivr.store import SCHEMA_VERSION, EventLog, StoreError, migrate, summarize
from ivr.summary import QUEUE_KINDS
from ivr.vocabulary import TRACE_KINDS, Trace

from .fixtures.queue_calls import JOINED, SCENARIOS

KEY = b"test-key-0123456789abcdef"
T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"
RAW_FORMS = [b"0701234567", b"701234567", b"123 45 67", b"1234567"]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def typical_call() -> list[Trace]:
    """What the engine emits for: menu, one timeout, key 2, set, queue, agent answers."""
    return [
        Trace(at(0), "call_started", None, {"caller": "070-123 45 67", "called": "+46313650000",
              "transport": "twilio", "flow": "växel", "language": "sv"}),  # fmt: skip
        Trace(at(0), "node_entered", "start"),
        Trace(at(0), "node_entered", "meny"),
        Trace(at(6), "timeout", "meny"),
        Trace(at(8.5), "input", "meny", {"digits": "9"}),
        Trace(at(8.5), "invalid_input", "meny"),
        Trace(at(11.25), "input", "meny", {"digits": "2"}),
        Trace(at(11.25), "language", "engelska", {"language": "en"}),
        Trace(at(11.25), "node_entered", "bygglov"),
        Trace(at(11.25), "set", "bygglov", {"category": "bygglov", "priority": 2,
              "attributes": {"område": "norr"}}),  # fmt: skip
        Trace(at(11.25), "command", "kö", {"command": "Enqueue", "queue": "bygg",
              "category": "bygglov", "priority": 2}),  # fmt: skip
        Trace(at(11.25), "disposition", "kö", {"end": "queue:bygg", "queue": "bygg",
              "category": "bygglov", "priority": 2}),  # fmt: skip
        Trace(at(95.5), "queue_result", "kö", {"outcome": "answered", "agent": "a7"}),
        Trace(at(95.5), "call_ended", None, {"reason": "queue", "end": "queue:bygg"}),
    ]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "log" / "events.db"


@pytest.fixture
def log(db_path: Path) -> Iterator[EventLog]:
    event_log = EventLog.open(db_path, hash_key=KEY)
    yield event_log
    event_log.close()


_CONNECTIONS: list[sqlite3.Connection] = []


def raw_db(path: Path) -> sqlite3.Connection:
    """A plain connection of the test's own, closed after the test."""
    conn = sqlite3.connect(path, isolation_level=None)
    _CONNECTIONS.append(conn)
    return conn


@pytest.fixture(autouse=True)
def _close_raw_connections() -> Iterator[None]:
    yield
    while _CONNECTIONS:
        _CONNECTIONS.pop().close()


# --------------------------------------------------------------------------- basics


def test_open_creates_a_wal_database_at_the_current_schema(log: EventLog, db_path: Path) -> None:
    assert log.db_path == db_path and db_path.exists()
    conn = raw_db(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"events", "calls", "agent_events", "notes", "raw_numbers", "purges",
                      "messages", "message_events"}


def test_append_flush_events_round_trip(log: EventLog) -> None:
    cet = timezone(timedelta(hours=1))
    data = {"text": "Välkommen till kommunen", "n": [1, 2.5, None]}
    log.append("c1", Trace(datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=cet), "node_entered",
                           "start", data))  # fmt: skip
    log.append_many("c1", [Trace(at(1), "input", "meny", {"digits": "1"}), Trace(at(2), "x")])
    log.flush()
    assert log.events("c1") == [
        {"call_id": "c1", "seq": 1, "at": "2026-12-01T08:30:00.123Z", "kind": "node_entered",
         "node": "start", "data": {"text": "Välkommen till kommunen", "n": [1, 2.5, None]}},
        {"call_id": "c1", "seq": 2, "at": "2026-12-01T08:30:01.000Z", "kind": "input",
         "node": "meny", "data": {"digits": "1"}},
        {"call_id": "c1", "seq": 3, "at": "2026-12-01T08:30:02.000Z", "kind": "x",
         "node": None, "data": {}},
    ]  # fmt: skip
    stored = raw_db(log.db_path).execute("SELECT data FROM events WHERE seq = 1").fetchone()[0]
    assert stored == '{"text":"Välkommen till kommunen","n":[1,2.5,null]}'  # compact, not \\u


def test_summary_of_a_typical_call(log: EventLog) -> None:
    log.append_many("c1", typical_call())
    log.flush()
    assert log.call("c1") == {
        "call_id": "c1", "flow": "växel", "transport": "twilio",
        "started_at": "2026-12-01T08:30:00.000Z", "ended_at": "2026-12-01T08:31:35.500Z",
        "duration_s": 95.5, "caller_hash": caller_hash("+46701234567", KEY),
        "caller_masked": "+46 70-*** ** 67", "called": "+46313650000", "language": "en",
        "path": ["start", "meny", "bygglov"], "end": "queue:bygg", "queue": "bygg",
        "category": "bygglov", "priority": 2, "attributes": {"område": "norr"}, "inputs": 2,
        "timeouts": 1, "invalid_inputs": 1, "message_ref": None, "status": "ended",
        # 08:30Z is 09:30 in Stockholm; no queue engine: the engine's queue_result counts
        "local_date": "2026-12-01", "local_hour": 9, "queued_at": "2026-12-01T08:30:11.250Z",
        "wait_s": None, "queue_outcome": "answered", "abandon_stage": None, "answered_at": None,
        "agent": "a7", "talk_s": None, "wrapup_s": None, "resolution": None, "coded": None,
        "transfers": 0, "callback_requested": 0, "callback_completed": 0, "survey": None,
        "offers": 0, "handed_off": 0,
    }  # fmt: skip
    assert log.call("c1") == summarize("c1", log.events("c1"))
    assert [c["call_id"] for c in log.calls()] == ["c1"]
    assert log.call("nope") is None


def test_a_live_call_is_listed_as_in_progress(log: EventLog) -> None:
    log.append_many("live", typical_call()[:3])
    log.flush()
    live = log.call("live")
    assert live is not None
    assert (live["status"], live["ended_at"], live["flow"]) == ("in-progress", None, "växel")


def test_summarize_a_message_call_and_ignores_unknown_kinds() -> None:
    events = [
        {"seq": 2, "at": "2026-01-01T00:00:02.000Z", "kind": "recording", "node": "msg",
         "data": {"ref": "rec/abc.wav", "duration_s": 12.5}},
        {"seq": 1, "at": "2026-01-01T00:00:00.000Z", "kind": "call_started", "node": None,
         "data": {"flow": "f", "caller_hash": None, "caller_masked": "withheld"}},
        {"seq": 3, "at": "2026-01-01T00:00:03.000Z", "kind": "made_up", "node": None,
         "data": ["not", "a", "dict"]},
        {"seq": 4, "at": "2026-01-01T00:00:04.000Z", "kind": "disposition", "node": "msg",
         "data": {"end": "message", "priority": "not a number"}},
        {"seq": 5, "at": "2026-01-01T00:00:04.000Z", "kind": "call_ended", "node": None,
         "data": {"reason": "flow"}},
    ]  # fmt: skip
    row = summarize("m", events)
    assert (row["end"], row["message_ref"], row["priority"]) == ("message", "rec/abc.wav", None)
    assert (row["caller_masked"], row["duration_s"], row["status"]) == ("withheld", 4.0, "ended")
    assert summarize("empty", [])["status"] == "in-progress"


def test_naive_datetimes_are_rejected(log: EventLog) -> None:
    with pytest.raises(StoreError, match="naive"):
        log.append("c1", Trace(datetime(2026, 12, 1, 8, 30), "node_entered", "start"))
    log.flush()
    assert log.events("c1") == []


def test_a_bad_trace_in_append_many_queues_none_of_them(log: EventLog) -> None:
    good = [Trace(at(0), "call_started"), Trace(at(1), "node_entered", "meny")]
    for bad, error in [(Trace(at(2), "node_entered", "\ud800"), "trace node is not valid text"),
                       (Trace(at(2), ""), "trace kind must be a non-empty string"),
                       (Trace(datetime(2026, 12, 1, 8, 30), "input", "meny"), "naive")]:
        with pytest.raises(StoreError, match=error):
            log.append_many("c1", [*good, bad])
    log.append_many("c1", [Trace(at(3), "node_entered", "Välkommen")])  # valid text, not ASCII
    log.flush()
    # nothing of the refused batches was written, and their seq numbers were not used up
    assert [(e["seq"], e["node"]) for e in log.events("c1")] == [(1, "Välkommen")]


def test_traces_sharing_a_time_and_traces_that_do_not_keep_their_own(log: EventLog) -> None:
    first, later = at(0), at(1.5)
    same_as_first = first.astimezone(timezone(timedelta(hours=1)))  # equal, another object
    log.append_many("c1", [Trace(first, "call_started"), Trace(first, "node_entered", "a"),
                           Trace(later, "node_entered", "b"), Trace(first, "node_entered", "c"),
                           Trace(same_as_first, "node_entered", "d")])
    log.append("c2", Trace(later + timedelta(milliseconds=1), "call_started"))
    log.flush()
    assert [e["at"] for e in log.events("c1")] == [
        "2026-12-01T08:30:00.000Z", "2026-12-01T08:30:00.000Z", "2026-12-01T08:30:01.500Z",
        "2026-12-01T08:30:00.000Z", "2026-12-01T08:30:00.000Z"]  # fmt: skip
    assert [e["at"] for e in log.events("c2")] == ["2026-12-01T08:30:01.501Z"]


def test_seq_continues_for_traces_after_call_ended(
    log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    log.append_many("c1", [Trace(at(0), "call_started"), Trace(at(1), "call_ended")])
    log.append("c1", Trace(at(2), "survey", "nöjd", {"answer": 5}))
    log.append("c2", Trace(at(2), "call_started"))
    log.flush()
    assert [e["seq"] for e in log.events("c1")] == [1, 2, 3]
    assert [e["seq"] for e in log.events("c2")] == [1]
    assert "already has event" not in caplog.text  # numbered right, not repaired


def test_a_call_id_reused_after_a_restart_is_renumbered(db_path: Path) -> None:
    first = EventLog.open(db_path, hash_key=KEY)
    first.append_many("c1", [Trace(at(0), "call_started"), Trace(at(1), "node_entered", "a")])
    first.close()
    second = EventLog.open(db_path, hash_key=KEY)
    second.append_many("c1", [Trace(at(5), "node_entered", "b"), Trace(at(6), "call_ended")])
    second.append("c2", Trace(at(7), "call_started"))
    second.flush()
    assert [(e["seq"], e["node"]) for e in second.events("c1")] == [
        (1, None), (2, "a"), (3, "b"), (4, None)]  # fmt: skip
    assert second.call("c1")["path"] == ["a", "b"]
    assert len(second.events("c2")) == 1
    second.close()


def test_events_are_append_only(log: EventLog) -> None:
    log.append("c1", Trace(at(0), "call_started"))
    log.flush()
    with pytest.raises(sqlite3.DatabaseError, match="events are append-only"):
        raw_db(log.db_path).execute("UPDATE events SET kind = 'forged'")
    assert log.events("c1")[0]["kind"] == "call_started"


def test_rebuild_summaries_recomputes_them_from_events(log: EventLog) -> None:
    log.append_many("c1", typical_call())
    log.append_many("c2", typical_call()[:2])
    log.flush()
    before = log.calls()
    conn = raw_db(log.db_path)
    conn.execute("DELETE FROM calls")
    assert log.calls() == []
    assert log.rebuild_summaries() == 2
    assert log.calls() == before
    conn.execute("DELETE FROM events WHERE call_id = 'c2'")  # retention may delete events
    assert log.rebuild_summaries() == 1
    assert [c["call_id"] for c in log.calls()] == ["c1"]


# --------------------------------------------------------------------------- queue outcomes

def events_of(steps: list[tuple[float, str, dict]]) -> list[dict]:
    return [{"seq": n, "at": store.format_at(at(s)), "kind": kind, "node": None, "data": data}
            for n, (s, kind, data) in enumerate(steps, 1)]  # fmt: skip


@pytest.mark.parametrize("name", SCENARIOS)
def test_queue_outcomes_are_summarized(name: str, log: EventLog) -> None:
    steps, expected = SCENARIOS[name]
    row = summarize("c1", events_of(JOINED + steps))
    assert {key: row[key] for key in expected} == expected
    assert (row["queued_at"], row["local_date"], row["local_hour"]) == (
        "2026-12-01T08:30:02.000Z", "2026-12-01", 9)  # fmt: skip
    log.append_many("c1", [Trace(at(s), kind, None, data) for s, kind, data in JOINED + steps])
    log.flush()  # through the writer, late events after call_ended included
    assert log.call("c1") == summarize("c1", log.events("c1"))


def test_a_call_that_never_queued_has_no_queue_outcome() -> None:
    row = summarize("ivr", events_of([(0, "call_started", {}), (9, "disposition", {"end": "hangup"}),
                                      (9, "call_ended", {})]))  # fmt: skip
    assert (row["queued_at"], row["queue_outcome"], row["wait_s"], row["transfers"]) == (
        None, None, None, 0)  # fmt: skip


def test_a_call_started_before_midnight_belongs_to_that_local_day() -> None:
    winter = events_of([(0, "call_started", {})])
    winter[0]["at"] = "2026-12-31T22:59:59.000Z"  # 23:59:59 in Stockholm (CET)
    summer = events_of([(0, "call_started", {})])
    summer[0]["at"] = "2026-06-30T22:30:00.000Z"  # 00:30 on 1 July (CEST)
    assert (summarize("w", winter)["local_date"], summarize("w", winter)["local_hour"]) == (
        "2026-12-31", 23)  # fmt: skip
    assert (summarize("s", summer)["local_date"], summarize("s", summer)["local_hour"]) == (
        "2026-07-01", 0)  # fmt: skip


def test_a_late_wrapup_updates_the_summary_of_an_ended_call(log: EventLog) -> None:
    steps = JOINED + SCENARIOS["answered, coded after the caller hung up"][0]
    traces = [Trace(at(s), kind, None, data) for s, kind, data in steps]
    log.append_many("c1", traces[:-1])
    log.append_many("c2", typical_call())
    log.flush()
    assert (log.call("c1")["status"], log.call("c1")["resolution"]) == ("ended", None)
    log.append("c1", traces[-1])  # the agent codes the call half a minute later
    log.flush()
    row = log.call("c1")
    assert (row["resolution"], row["coded"], row["wrapup_s"], row["category"]) == (
        "resolved", 1, 30.0, "tillsyn")  # fmt: skip
    assert [e["seq"] for e in log.events("c1")] == list(range(1, len(steps) + 1))


def test_odd_event_data_never_jams_the_writer(log: EventLog) -> None:
    log.append_many("c1", [
        Trace(at(0), "call_started", None, {"flow": {"not": "text"}, "language": 2**70}),
        Trace(at(1), "queue_answered", None, {"agent": ["a1"], "wait_s": "soon"}),
        Trace(at(2), "wrapup", None, {"coded": "yes", "resolution": 7, "wrapup_s": float("inf")}),
        Trace(at(3), "call_ended")])  # fmt: skip
    log.flush(timeout=2)
    row = log.call("c1")
    assert (row["flow"], row["language"], row["agent"], row["wait_s"]) == (
        '{"not":"text"}', str(2**70), None, None)  # fmt: skip
    assert (row["queue_outcome"], row["resolution"], row["coded"]) == ("answered", None, 1)


# --------------------------------------------------------------------------- agents, notes, numbers


def test_agent_states_notes_and_raw_numbers_go_through_the_writer(log: EventLog) -> None:
    log.append_agent("a1", at(0), "available")
    log.append_agent("a1", at(5), "talking", call_id="c1")
    log.append_agent("a1", at(60), "paused", reason="lunch")
    log.add_note("c1", "a1", at(61), "Ringer om bygglov för Storgatan 3")
    log.keep_raw_number("c1", "+46701234567", "callback", at(62))
    log.keep_raw_number("c1", "+46707654321", "callback", at(63))  # replaces the first
    for bad in [lambda: log.append_agent("a1", at(0), "asleep"),
                lambda: log.append_agent("", at(0), "available"),
                lambda: log.add_note("c1", "a1", at(0), ""),
                lambda: log.keep_raw_number("c1", "+4670", "callback", datetime(2026, 1, 1))]:
        with pytest.raises(StoreError):
            bad()
    log.flush()
    conn = raw_db(log.db_path)
    assert conn.execute("SELECT agent, at, state, reason, call_id, prev_state FROM agent_events "
                        "ORDER BY id").fetchall() == [
        ("a1", "2026-12-01T08:30:00.000Z", "available", None, None, None),
        ("a1", "2026-12-01T08:30:05.000Z", "talking", None, "c1", "available"),
        ("a1", "2026-12-01T08:31:00.000Z", "paused", "lunch", None, "talking")]  # fmt: skip
    assert conn.execute("SELECT call_id, agent, at, text FROM notes").fetchall() == [
        ("c1", "a1", "2026-12-01T08:31:01.000Z", "Ringer om bygglov för Storgatan 3")]
    assert conn.execute("SELECT * FROM raw_numbers").fetchall() == [
        ("c1", "+46707654321", "callback", "2026-12-01T08:31:03.000Z")]
    with pytest.raises(sqlite3.DatabaseError, match="agent events are append-only"):
        conn.execute("UPDATE agent_events SET state = 'available'")
    log.close()
    with pytest.raises(StoreError, match="closed"):
        log.add_note("c1", "a1", at(70), "för sent")


# --------------------------------------------------------------------------- privacy


def test_the_raw_caller_number_is_stored_nowhere(log: EventLog) -> None:
    for n in range(3):
        log.append_many(f"c{n}", typical_call())
    log.flush()
    conn = raw_db(log.db_path)
    dump = "\n".join(conn.iterdump())
    for raw in RAW_FORMS:
        assert raw.decode() not in dump
    assert caller_hash("0701234567", KEY) in dump and "+46 70-*** ** 67" in dump
    files = [log.db_path, log.db_path.with_name(log.db_path.name + "-wal")]
    assert files[1].exists()
    for path in files:
        content = path.read_bytes()
        assert not [raw for raw in RAW_FORMS if raw in content], path
    log.close()  # checkpoints the WAL into the database file
    content = log.db_path.read_bytes()
    assert not [raw for raw in RAW_FORMS if raw in content]


# --------------------------------------------------------------------------- lifecycle


def test_a_closed_log_rejects_appends(log: EventLog) -> None:
    log.close()
    with pytest.raises(StoreError, match="closed"):
        log.append("c1", Trace(at(0), "call_started"))
    with pytest.raises(StoreError, match="closed"):
        log.events("c1")
    log.close()  # idempotent
    log.flush()  # nothing pending: returns at once


def test_close_writes_everything_still_queued(db_path: Path) -> None:
    event_log = EventLog.open(db_path, hash_key=KEY)
    for n in range(300):
        event_log.append_many(f"c{n}", typical_call())
    event_log.close()
    conn = raw_db(db_path)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 300 * len(typical_call())
    assert conn.execute("SELECT COUNT(*) FROM calls WHERE status = 'ended'").fetchone()[0] == 300


# --------------------------------------------------------------------------- migrations


def build_v1(path: Path) -> list[tuple]:
    conn = raw_db(path)
    conn.executescript((FIXTURES / "events_v1.sql").read_text(encoding="utf-8"))
    return conn.execute("SELECT * FROM events ORDER BY id").fetchall()


def test_a_version_1_database_is_migrated_and_backfilled(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    old_rows = build_v1(db_path)
    event_log = EventLog.open(db_path, hash_key=KEY)
    try:
        conn = raw_db(db_path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert conn.execute("SELECT * FROM events ORDER BY id").fetchall() == old_rows
        ended, live = event_log.call("v1-a"), event_log.call("v1-b")
        assert ended is not None and live is not None
        assert ended["path"] == ["start", "meny", "socialtjänst"]
        assert (ended["end"], ended["queue"], ended["category"], ended["priority"]) == (
            "queue:social", "social", "försörjningsstöd", 3)  # fmt: skip
        assert (ended["timeouts"], ended["inputs"], ended["duration_s"]) == (1, 1, 252.5)
        assert (ended["status"], live["status"], live["caller_masked"]) == (
            "ended", "in-progress", "withheld")  # fmt: skip
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET node = NULL")
        event_log.append("v1-c", Trace(at(0), "call_started", None, {"flow": "ny"}))
        event_log.flush()
        assert event_log.call("v1-c")["flow"] == "ny"
    finally:
        event_log.close()


def test_a_version_2_database_is_migrated_and_its_summaries_rebuilt(db_path: Path) -> None:
    """events_v2.sql was written by the schema-2 code with queue events it did not summarize."""
    db_path.parent.mkdir(parents=True)
    conn = raw_db(db_path)
    conn.executescript((FIXTURES / "events_v2.sql").read_text(encoding="utf-8"))
    old_rows = conn.execute("SELECT * FROM events ORDER BY id").fetchall()
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 4
    event_log = EventLog.open(db_path, hash_key=KEY)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert conn.execute("SELECT * FROM events ORDER BY id").fetchall() == old_rows
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"calls_report", "calls_repeat", "agent_events_hour"} <= indexes
        answered, abandoned = event_log.call("v2-answered"), event_log.call("v2-abandoned")
        info, live = event_log.call("v2-info"), event_log.call("v2-live")
        # 22:59:50Z is 23:59:50 in Stockholm on 28 March; the wrap-up came after call_ended
        assert (answered["local_date"], answered["local_hour"], answered["wait_s"]) == (
            "2026-03-28", 23, 22.0)  # fmt: skip
        assert (answered["resolution"], answered["category"], answered["talk_s"]) == (
            "resolved", "bygglov-tillsyn", 180.0)  # fmt: skip
        assert (abandoned["queue_outcome"], abandoned["wait_s"]) == ("abandoned", 48.0)
        assert (info["queue_outcome"], info["caller_hash"], info["end"]) == (None, None, "hangup")
        assert (live["status"], live["queue_outcome"]) == ("in-progress", None)
        event_log.append_agent("a1", at(0), "available")
        event_log.flush()
        assert conn.execute("SELECT COUNT(*) FROM agent_events").fetchone()[0] == 1
    finally:
        event_log.close()


def build_v3(path: Path) -> None:
    """A schema-3 log as that version wrote it: a voice message and an answered call."""
    conn = raw_db(path)
    for statement in (*schema._V1, *schema._V2, *schema._V3):
        conn.execute(statement)
    events = [
        ("v3-voice", 1, "2026-03-02T17:00:00.000Z", "call_started", None, '{"flow":"t"}'),
        ("v3-voice", 2, "2026-03-02T17:00:20.000Z", "recording", "message",
         '{"ref":"v3-voice.wav","duration_s":9.5}'),
        ("v3-voice", 3, "2026-03-02T17:00:21.000Z", "call_ended", None, '{"end":"message"}'),
        ("v3-answered", 1, "2026-03-02T09:00:00.000Z", "call_started", None, '{"flow":"t"}'),
        ("v3-answered", 2, "2026-03-02T09:00:10.000Z", "queue_joined", None, '{"queue":"A"}'),
        ("v3-answered", 3, "2026-03-02T09:00:30.000Z", "queue_answered", None,
         '{"queue":"A","agent":"a1","wait_s":20}'),
        ("v3-answered", 4, "2026-03-02T09:03:00.000Z", "call_ended", None, '{"end":"queue:A"}'),
    ]
    conn.executemany("INSERT INTO events (call_id, seq, at, kind, node, data) VALUES (?, ?, ?, ?, ?, ?)",
                     events)
    columns = [c for c in store.summary.CALL_COLUMNS if c != "handed_off"]
    for call_id in ("v3-voice", "v3-answered"):  # the rows schema 3 derived (no handed_off)
        row = summarize(call_id, [{**dict(zip(("call_id", "seq", "at", "kind", "node"), e[:5], strict=True)),
                                   "data": json.loads(e[5])} for e in events if e[0] == call_id])
        conn.execute(f"INSERT INTO calls ({', '.join(f'{c!r}' for c in columns)}) "
                     f"VALUES ({', '.join('?' * len(columns))})",
                     [store.summary._json(row[c]) if c in store.summary.JSON_COLUMNS else row[c]
                      for c in columns])  # fmt: skip
    conn.execute("PRAGMA user_version = 3")


def test_a_version_3_database_gets_messages_and_the_handed_off_flag(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    build_v3(db_path)
    conn = raw_db(db_path)
    old_events = conn.execute("SELECT * FROM events ORDER BY id").fetchall()
    assert "handed_off" not in {r[1] for r in conn.execute("PRAGMA table_info(calls)")}
    event_log = EventLog.open(db_path, hash_key=KEY)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert conn.execute("SELECT * FROM events ORDER BY id").fetchall() == old_events
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"messages", "message_events"} <= tables
        # the summaries are derived again: a voice message hands the call off
        voice, answered = event_log.call("v3-voice"), event_log.call("v3-answered")
        assert (voice["handed_off"], answered["handed_off"]) == (1, 0)
        assert answered["wait_s"] == 20.0
        repeat = [r[2] for r in conn.execute("PRAGMA index_info(calls_repeat)")]
        assert repeat[0] == "caller_hash" and repeat[-1] == "handed_off"  # the FCR pass stays covered
        # messages are mutable, their history is not
        future = event_log.submit(lambda c: c.execute(
            "INSERT INTO messages (created_at, source, delivery) VALUES ('2026-03-02T10:00:00.000Z', "
            "'desk', 'pending')").lastrowid)
        message_id = future.result(timeout=5)
        event_log.submit(lambda c: c.execute(
            "INSERT INTO message_events (message_id, at, kind) VALUES (?, '2026-03-02T10:00:00.000Z', "
            "'created')", (message_id,))).result(timeout=5)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE message_events SET kind = 'x'")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO messages (created_at, source, delivery) VALUES ('x', 'fax', 'pending')")
    finally:
        event_log.close()


def test_submitted_writes_run_in_order_with_the_events_and_report_their_errors(log: EventLog) -> None:
    log.append("c1", Trace(at(0), "call_started", None, {"flow": "t"}))
    seen = log.submit(lambda conn: conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    log.append("c1", Trace(at(1), "node_entered", "start"))
    assert seen.result(timeout=5) == 1  # after the event queued before it, before the one after

    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO messages (created_at, source, delivery) VALUES ('x', 'desk', 'pending')")
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        log.submit(bad).result(timeout=5)
    log.flush()
    assert raw_db(log.db_path).execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0  # rolled back
    assert len(log.events("c1")) == 2 and log.last_error is None
    log.close()
    with pytest.raises(StoreError, match="is closed"):
        log.submit(lambda conn: None)


def test_migrate_reports_the_version_it_found(tmp_path: Path) -> None:
    with sqlite_utils.Database(tmp_path / "fresh.db") as db:
        assert migrate(db) == 0
        assert migrate(db) == 5
    build_v1(tmp_path / "old.db")
    with sqlite_utils.Database(tmp_path / "old.db") as db:
        assert migrate(db) == 1
        assert db["calls"].count == 2


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    raw_db(path).execute("PRAGMA user_version = 6")
    with pytest.raises(StoreError, match=r"written by a newer version \(schema 6\); "
                       r"this program knows up to 5"):  # fmt: skip
        EventLog.open(path, hash_key=KEY)


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw_db(path).execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="not an event log"):
        EventLog.open(path, hash_key=KEY)


# --------------------------------------------------------------------------- failures


def test_the_writer_survives_a_failing_write(
    log: EventLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store, "RETRY_FIRST_DELAY_S", 0.001)
    real_write = log._batch_writer._write_batch
    attempts: list[int] = []

    def fail_once(conn: sqlite3.Connection, rows: list, renumber: bool) -> None:
        attempts.append(len(rows))
        if len(attempts) == 1:
            conn.execute("BEGIN IMMEDIATE")  # the failure leaves a transaction open
            raise sqlite3.OperationalError("disk I/O error")
        real_write(conn, rows, renumber)

    monkeypatch.setattr(log._batch_writer, "_write_batch", fail_once)
    log.append_many("c1", typical_call())
    log.flush()
    assert len(attempts) >= 2
    assert len(log.events("c1")) == len(typical_call())
    assert log.call("c1")["status"] == "ended"
    assert "disk I/O error" in caplog.text
    assert log.last_error is None


def test_writes_wait_out_a_locked_database(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 1)
    monkeypatch.setattr(store, "RETRY_FIRST_DELAY_S", 0.001)
    monkeypatch.setattr(store, "RETRY_MAX_DELAY_S", 0.01)
    event_log = EventLog.open(db_path, hash_key=KEY)
    blocker = raw_db(db_path)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        event_log.append_many("c1", typical_call())  # returns at once all the same
        with pytest.raises(StoreError, match="not written within .*database is locked"):
            event_log.flush(timeout=0.3)
    finally:
        blocker.execute("COMMIT")
    event_log.flush()
    assert len(event_log.events("c1")) == len(typical_call())
    event_log.close()


def test_close_gives_up_on_a_write_that_keeps_failing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    event_log = EventLog.open(db_path, hash_key=KEY)

    def always_fail(conn: sqlite3.Connection, rows: list, renumber: bool) -> None:
        raise sqlite3.OperationalError("disk is full")

    monkeypatch.setattr(event_log._batch_writer, "_write_batch", always_fail)
    event_log.append("c1", Trace(at(0), "call_started"))
    with pytest.raises(StoreError, match="could not be written: OperationalError: disk is full"):
        event_log.close(timeout=0.2)  # does not hang, and says so
    assert "1 events lost" in caplog.text
    event_log.close()  # closed all the same


# --------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
trace_data = st.dictionaries(st.text().filter(lambda k: k != "caller"), json_values, max_size=5)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
traces = st.builds(
    Trace,
    at=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=offsets),
    kind=st.sampled_from(sorted(TRACE_KINDS | QUEUE_KINDS)) | st.text(min_size=1),
    node=st.none() | st.text(min_size=1),
    data=trace_data,
)


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventLog]:
    event_log = EventLog.open(tmp_path_factory.mktemp("prop") / "events.db", hash_key=KEY)
    yield event_log
    event_log.close()


def expected_at(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=st.lists(traces, min_size=1, max_size=8))
def test_random_traces_come_back_equal(shared_log: EventLog, generated: list[Trace]) -> None:
    call_id = f"prop-{uuid.uuid4()}"
    shared_log.append_many(call_id, generated)
    shared_log.flush()
    stored = shared_log.events(call_id)
    assert [(e["seq"], e["at"], e["kind"], e["node"], e["data"]) for e in stored] == [
        (n, expected_at(t.at), t.kind, t.node, t.data) for n, t in enumerate(generated, 1)
    ]
    if any(t.kind in ("call_started", "call_ended") for t in generated):
        assert shared_log.call(call_id) == summarize(call_id, stored)


def test_a_version_4_database_gets_the_transfer_index_without_resummarizing(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    log = EventLog.open(db_path, hash_key=KEY)
    log.append("c4", Trace(T0, "call_started", None, {"caller": "0701234567"}))
    log.close()
    with sqlite_utils.Database(db_path) as db:
        db.conn.execute("DROP INDEX events_transfers")
        db.conn.execute("UPDATE calls SET path = '[\"kept\"]'")  # a resummarize would overwrite it
        db.conn.execute("PRAGMA user_version = 4")
        db.conn.commit()
    with sqlite_utils.Database(db_path) as db:
        assert migrate(db) == 4
        assert db.conn.execute("SELECT path FROM calls").fetchall() == [('["kept"]',)]
        indexes = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "events_transfers" in indexes
        plan = " ".join(str(r) for r in db.conn.execute(
            "EXPLAIN QUERY PLAN " + metrics._TRANSFER_CALLS, {"start": "2026", "end": "2027"}))
        assert "events_transfers" in plan
