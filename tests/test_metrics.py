"""KPIs and FCR against small logs computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils

from ivr import metrics
from ivr.metrics import KPI_NAMES, SCOPES, MetricsError, compute
from ivr.store import EventLog, migrate
from ivr.summary import CALL_COLUMNS
from ivr.vocabulary import Trace

STHLM = ZoneInfo("Europe/Stockholm")
DAY = date(2026, 3, 2)  # a Monday in winter: Stockholm is UTC+1
LATER = datetime(2026, 6, 1, tzinfo=UTC)  # every repeat window has closed


def local(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=STHLM)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def call(n: int, start: datetime, **fields: object) -> dict:
    """A calls row as summarize would write it; queue_outcome etc. from ``fields``."""
    row = dict.fromkeys(CALL_COLUMNS)
    row.update(call_id=f"c{n}", started_at=iso(start), status="ended", path="[]", attributes="{}",
               local_date=start.astimezone(STHLM).date().isoformat(),
               local_hour=start.astimezone(STHLM).hour, transfers=0, offers=0,
               callback_requested=0, callback_completed=0, inputs=0, timeouts=0,
               invalid_inputs=0)  # fmt: skip
    if fields.get("queue_outcome"):
        row["queued_at"] = iso(start + timedelta(seconds=10))
    row.update(fields)
    return row


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "log.db"
    with sqlite_utils.Database(path) as database:
        migrate(database)
    yield path


def insert(path: Path, rows: list[dict]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(f"INSERT INTO calls VALUES ({', '.join('?' * len(CALL_COLUMNS))})",
                         [[r[c] for c in CALL_COLUMNS] for r in rows])  # fmt: skip
    conn.close()


def answered(n: int, start: datetime, wait: float, talk: float, wrapup: float | None, **kw: object) -> dict:
    return call(n, start, queue_outcome="answered", wait_s=wait, talk_s=talk, wrapup_s=wrapup,
                agent="a1", **kw)  # fmt: skip


def ten_calls() -> list[dict]:
    """Queue A: c1 c2 c3 c4 c10, queue B: c5 c6 c7 c9, no queue: c8 (IVR message)."""
    nine, two = local(DAY, 9, 5), local(DAY, 14, 5)
    return [
        answered(1, nine, 20, 100, 20, queue="A", category="x", caller_hash="h1", coded=1,
                 resolution="resolved", survey="yes"),
        answered(2, nine, 90, 200, 40, queue="A", category="x", caller_hash="h2", coded=1,
                 resolution="forwarded", survey="no"),
        call(3, nine, queue="A", queue_outcome="abandoned", wait_s=3, caller_hash="h6"),
        call(4, nine, queue="A", queue_outcome="abandoned", wait_s=30),
        call(5, nine, queue="B", queue_outcome="abandoned", wait_s=120),
        call(6, two, queue="B", queue_outcome="overflow", wait_s=300),
        call(7, two, queue="B", queue_outcome="closed", wait_s=0),
        call(8, two, end="hangup", caller_hash="h3"),
        answered(9, two, 45, 60, None, queue="B", category="y", caller_hash="h4", coded=0,
                 resolution="uncoded", transfers=1),
        call(10, two, queue="A", category="x", caller_hash="h5", queue_outcome="callback",
             wait_s=100, callback_requested=1, callback_completed=1, talk_s=50, wrapup_s=10,
             coded=1, resolution="resolved"),
    ]  # fmt: skip


# --------------------------------------------------------------------------- the basics


def test_no_calls_gives_zero_counts_and_null_shares(db: Path) -> None:
    result = compute(db, DAY, DAY + timedelta(days=1), as_of=LATER)
    assert [result[k] for k in ("calls", "offered", "answered", "abandoned")] == [0, 0, 0, 0]
    shares = ["service_level", "asa_s", "aht_s", "occupancy", "fcr_coded", "fcr_repeat",
              "fcr_survey", "ivr_self_service", "longest_wait_s"]  # fmt: skip
    assert {k: result[k] for k in shares} == dict.fromkeys(shares)
    assert list(result["by_hour"]) == list(range(24))
    assert list(result["by_day"]) == ["2026-03-02", "2026-03-03"]
    assert result["by_queue"] == {} and result["by_category"] == {}


def test_kpis_of_ten_calls(db: Path) -> None:
    insert(db, ten_calls())
    r = compute(db, DAY, DAY, as_of=LATER)
    assert r["calls"] == 10
    assert r["offered"] == 8  # reached a queue: all but c8 (9), less the short abandon c3
    assert (r["answered"], r["abandoned"], r["short_abandoned"]) == (3, 2, 1)  # c1 c2 c9; c4 c5; c3
    assert (r["overflowed"], r["closed"], r["transfers"]) == (1, 1, 1)
    # within 60 s: c1 (20) and c9 (45); abandoned after 60 s: c5 (120) -> 2 / (3 + 1)
    assert r["service_level"] == 0.5
    assert r["asa_s"] == 51.7  # (20 + 90 + 45) / 3
    # handled = 3 answered + c10 (callback reached the caller); handle = talk + wrap-up:
    # (120 + 240 + 60 + 60) / 4
    assert (r["handled"], r["aht_s"]) == (4, 120.0)
    assert r["longest_wait_s"] == 300.0
    assert (r["callbacks_requested"], r["callbacks_completed"]) == (1, 1)
    # coded: c1 resolved, c2 forwarded, c10 resolved; c9 is uncoded and left out
    assert (r["fcr_coded"], r["uncoded"]) == (0.6667, 1)
    assert (r["fcr_survey"], r["survey_answers"]) == (0.5, 2)  # yes (c1) / (yes + no (c2))
    # handled with hash and category: c1 c2 c9 c10, none called again -> 4 / 4
    assert (r["fcr_repeat"], r["fcr_repeat_pending"], r["fcr_repeat_excluded"]) == (1.0, 0, 0)
    assert (r["ivr_self_service"], r["ivr_self_service_pending"]) == (0.1, 0)  # c8 of 10 calls
    assert r["occupancy"] is None  # no agent logged in


def test_each_scope_has_exactly_the_kpi_names(db: Path) -> None:
    insert(db, ten_calls())
    r = compute(db, DAY, DAY, as_of=LATER)
    assert list(r) == [*KPI_NAMES, *SCOPES, "messages", "agent_transfers", "parameters"]
    for scope in SCOPES:
        for key, kpis in r[scope].items():
            assert list(kpis) == list(KPI_NAMES), (scope, key)
    assert list(r["by_queue"]) == ["A", "B", "(none)"]
    a, b = r["by_queue"]["A"], r["by_queue"]["B"]
    # A: c1 c2 c3 c4 c10: reached 5 less short c3; within 60 s: c1; no late abandon -> 1 / 2
    assert (a["calls"], a["offered"], a["answered"], a["service_level"]) == (5, 4, 2, 0.5)
    # B: c5 c6 c7 c9: c9 within 60 s, c5 abandoned after -> 1 / (1 + 1)
    assert (b["calls"], b["offered"], b["service_level"], b["transfers"]) == (4, 4, 0.5, 1)
    assert r["by_queue"]["(none)"]["calls"] == 1
    assert (r["by_hour"][9]["calls"], r["by_hour"][14]["calls"], r["by_hour"][10]["calls"]) == (5, 5, 0)
    assert r["by_hour"][10]["service_level"] is None
    x = r["by_category"]["x"]  # c1 resolved, c2 forwarded, c10 resolved -> 2 / 3
    assert (x["handled"], x["fcr_coded"], r["by_category"]["y"]["fcr_coded"]) == (3, 0.6667, None)


def test_a_queue_report_is_that_queue_of_the_full_report(db: Path) -> None:
    insert(db, ten_calls())
    full, only_b = compute(db, DAY, DAY, as_of=LATER), compute(db, DAY, DAY, queue="B", as_of=LATER)
    assert {k: only_b[k] for k in KPI_NAMES} == full["by_queue"]["B"]
    assert list(only_b["by_queue"]) == ["B"] and only_b["occupancy"] is None
    assert compute(db, DAY, DAY, queue="nowhere", as_of=LATER)["by_queue"]["nowhere"]["calls"] == 0


def test_answered_calls_without_a_measured_wait_stay_out_of_the_service_level(db: Path) -> None:
    # a log written without the queue engine (ivr simulate --queue-result answered)
    insert(db, [call(1, local(DAY, 9), queue_outcome="answered"),
                answered(2, local(DAY, 9), 30, 60, 5)])  # fmt: skip
    r = compute(db, DAY, DAY, as_of=LATER)
    assert (r["answered"], r["service_level"], r["asa_s"]) == (2, 1.0, 30.0)


def test_the_abandons_in_service_level_switch(db: Path) -> None:
    insert(db, ten_calls())
    r = compute(db, DAY, DAY, as_of=LATER, abandons_in_service_level=False)
    assert r["service_level"] == 0.6667  # 2 / 3 answered, c5's late abandon not counted
    assert r["parameters"]["service_level_variant"] == "answered-only"
    r = compute(db, DAY, DAY, as_of=LATER, service_level_s=20)  # only c1 (20 s) within
    assert r["service_level"] == 0.2  # 1 / (3 answered + c4 (30) and c5 (120) after 20 s)


def test_short_abandons_follow_their_threshold(db: Path) -> None:
    insert(db, ten_calls())
    r = compute(db, DAY, DAY, as_of=LATER, short_abandon_s=0)  # c3 (3 s) counts as abandoned
    assert (r["offered"], r["abandoned"], r["short_abandoned"], r["service_level"]) == (9, 3, 0, 0.5)
    r = compute(db, DAY, DAY, as_of=LATER, short_abandon_s=31)  # c3 and c4 (30 s) are short
    assert (r["offered"], r["abandoned"], r["short_abandoned"]) == (7, 1, 2)


# --------------------------------------------------------------------------- days and hours


def test_a_call_across_midnight_belongs_to_the_day_it_started(db: Path) -> None:
    insert(db, [answered(1, local(DAY, 23, 59, 30), 40, 600, 30, queue="A"),
                answered(2, local(DAY + timedelta(days=1), 0, 0, 5), 10, 60, 5, queue="A")])
    r = compute(db, DAY, DAY + timedelta(days=1), as_of=LATER)
    assert (r["by_day"]["2026-03-02"]["answered"], r["by_day"]["2026-03-03"]["answered"]) == (1, 1)
    assert (r["by_hour"][23]["calls"], r["by_hour"][0]["calls"]) == (1, 1)
    only_monday = compute(db, DAY, DAY, as_of=LATER)
    assert (only_monday["calls"], only_monday["asa_s"]) == (1, 40.0)


def test_the_day_summer_time_begins_has_23_hours(db: Path) -> None:
    spring = date(2026, 3, 29)  # 02:00 -> 03:00
    insert(db, [call(1, local(spring, 1, 30)), call(2, local(spring, 3, 30))])
    r = compute(db, spring, spring, as_of=LATER)
    assert (r["by_hour"][1]["calls"], r["by_hour"][2]["calls"], r["by_hour"][3]["calls"]) == (1, 0, 1)


# --------------------------------------------------------------------------- repeat contacts


def test_repeat_contacts_within_the_window_about_the_same_category(db: Path) -> None:
    d = [DAY + timedelta(days=n) for n in range(12)]
    insert(db, [
        answered(1, local(d[0], 10), 5, 60, 5, category="x", caller_hash="A"),  # repeated by 2
        answered(2, local(d[2], 10), 5, 60, 5, category="x", caller_hash="A"),  # none after
        answered(3, local(d[0], 11), 5, 60, 5, category="x", caller_hash="B"),  # 4 is about y
        answered(4, local(d[1], 11), 5, 60, 5, category="y", caller_hash="B"),
        answered(5, local(d[0], 12), 5, 60, 5, category="x", caller_hash="C"),  # 6 is 9 days on
        answered(6, local(d[9], 12), 5, 60, 5, category="x", caller_hash="C"),  # window open
        answered(7, local(d[1], 9), 5, 60, 5, category="x"),  # no caller hash: excluded
        answered(8, local(d[1], 9), 5, 60, 5, caller_hash="D"),  # no category: excluded
        call(9, local(d[1], 13), category="x", caller_hash="E", queue_outcome="abandoned", wait_s=50),
        call(10, local(d[1], 14), category="x", caller_hash="E"),  # not handled: no FCR
    ])  # fmt: skip
    # as_of day 11 noon: windows of calls started up to day 4 noon have closed; call 6's not
    r = compute(db, d[0], d[9], as_of=local(d[11], 12))
    # closed: 1 (repeated on day 2) 2 3 4 5 (next call 9 days on) -> 4 of 5 not repeated
    assert (r["fcr_repeat"], r["fcr_repeat_pending"], r["fcr_repeat_excluded"]) == (0.8, 1, 2)
    assert r["by_category"]["x"]["fcr_repeat"] == 0.75  # 1 2 3 5: 1 was repeated
    early = compute(db, d[0], d[9], as_of=local(d[7], 12))  # closed up to day 0 noon
    # closed: 1 (repeated) 3 5 -> 2 / 3; pending 2 4 6, never counted as resolved
    assert (early["fcr_repeat"], early["fcr_repeat_pending"]) == (0.6667, 3)
    wide = compute(db, d[0], d[9], as_of=local(d[11], 12), repeat_window_days=1)
    assert wide["fcr_repeat"] == 1.0  # call 2 came 2 days after call 1: outside one day


def test_ivr_self_service_needs_no_call_back_within_the_window(db: Path) -> None:
    d = [DAY + timedelta(days=n) for n in range(12)]
    insert(db, [
        call(1, local(d[0], 9), end="hangup", caller_hash="A"),  # served: A never calls again
        call(2, local(d[0], 9), end="hangup", caller_hash="B"),  # B calls again on day 3
        answered(3, local(d[3], 9), 5, 60, 5, category="bygglov", caller_hash="B"),
        call(4, local(d[0], 9), end="hangup"),  # withheld number: cannot be told
        call(5, local(d[0], 9), end="caller-hangup", caller_hash="F"),  # hung up in the menu
        call(6, local(d[9], 9), end="hangup", caller_hash="G"),  # window still open
    ])  # fmt: skip
    r = compute(db, d[0], d[9], as_of=local(d[11], 12))
    assert (r["ivr_self_service"], r["ivr_self_service_pending"]) == (round(1 / 6, 4), 1)


# --------------------------------------------------------------------------- agents


def test_occupancy_is_talk_and_wrap_up_over_time_logged_in_and_not_paused(db: Path) -> None:
    log = EventLog.open(db, hash_key=b"test-key-0123456789abcdef")
    for hh, mm, state in [(8, 0, "available"), (8, 10, "talking"), (8, 20, "wrapup"),
                          (8, 25, "available"), (9, 0, "paused"), (9, 30, "available"),
                          (10, 0, "offline")]:  # fmt: skip
        log.append_agent("a1", local(DAY, hh, mm), state)
    # a2 was talking since the evening before; wraps up and logs off just after midnight
    for moment, state in [(local(DAY - timedelta(days=1), 23, 50), "talking"),
                          (local(DAY, 0, 5), "wrapup"), (local(DAY, 0, 10), "offline")]:
        log.append_agent("a2", moment, state)
    log.close()
    r = compute(db, DAY, DAY, as_of=LATER)
    # busy: a1 10 + 5 min, a2 10 min (from midnight) = 1500 s; logged in: a1 60 + 30 min,
    # a2 10 min = 6000 s
    assert r["occupancy"] == 0.25
    assert r["by_day"]["2026-03-02"]["occupancy"] == 0.25
    # hour 0: a2 only, busy all 10 min; hour 8: 900 / 3600; hour 9: 0 / 1800; 10: nobody
    hours = {h: r["by_hour"][h]["occupancy"] for h in (0, 8, 9, 10)}
    assert hours == {0: 1.0, 8: 0.25, 9: 0.0, 10: None}
    assert r["by_queue"] == {}
    cut = compute(db, DAY, DAY, as_of=local(DAY, 8, 30))
    # up to 08:30: busy a1 15 min + a2 10 min; logged in a1 30 min + a2 10 min
    assert cut["occupancy"] == round(1500 / 2400, 4)


# --------------------------------------------------------------------------- from the event log


def test_figures_from_events_written_through_the_event_log(db: Path) -> None:
    log = EventLog.open(db, hash_key=b"test-key-0123456789abcdef")
    t0 = local(DAY, 23, 58)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    start = {"caller": "070-123 45 67", "flow": "växel", "transport": "sim"}
    log.append_many("e1", [
        Trace(at(0), "call_started", None, start),
        Trace(at(5), "queue_joined", None, {"queue": "bygg", "category": "bygglov"}),
        Trace(at(35), "queue_answered", None, {"agent": "a1", "queue": "bygg", "wait_s": 30}),
        Trace(at(155), "talk_ended", None, {"agent": "a1", "talk_s": 120}),
        Trace(at(156), "survey", "nöjd", {"answer": "yes"}),
        Trace(at(160), "call_ended"),
    ])  # fmt: skip
    log.append_many("e2", [Trace(at(10), "call_started", None, {"caller": "070-765 43 21"}),
                           Trace(at(12), "queue_joined", None, {"queue": "bygg"}),
                           Trace(at(14), "call_ended")])  # fmt: skip
    log.flush()
    log.append("e1", Trace(at(200), "wrapup", None, {"agent": "a1", "category": "tillsyn",
                                                      "resolution": "resolved", "coded": True,
                                                      "wrapup_s": 40}))  # fmt: skip
    log.close()
    r = compute(db, DAY, DAY, as_of=LATER)
    # e1 answered after 30 s and coded late; e2 hung up 2 s into the queue: a short abandon
    assert (r["calls"], r["offered"], r["answered"], r["short_abandoned"]) == (2, 1, 1, 1)
    assert (r["aht_s"], r["fcr_coded"], r["fcr_survey"], r["service_level"]) == (160.0, 1.0, 1.0, 1.0)
    assert list(r["by_category"]) == ["tillsyn", "(none)"]
    assert r["by_day"]["2026-03-02"]["calls"] == 2  # started 23:58, ended after midnight


def test_bad_input_is_refused_with_a_reason(db: Path, tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="before date_from"):
        compute(db, DAY, DAY - timedelta(days=1), as_of=LATER)
    with pytest.raises(MetricsError, match="timezone"):
        compute(db, DAY, DAY, as_of=datetime(2026, 3, 3))
    with pytest.raises(MetricsError, match="YYYY-MM-DD"):
        compute(db, "2 mars", DAY, as_of=LATER)
    with pytest.raises(MetricsError, match="no such event log"):
        compute(tmp_path / "missing.db", DAY, DAY, as_of=LATER)
    old = tmp_path / "v2.db"
    sqlite3.connect(old).execute("PRAGMA user_version = 2").connection.close()
    with pytest.raises(MetricsError, match="schema 2, reports need 5"):
        compute(old, DAY, DAY, as_of=LATER)


def test_a_big_day_is_counted_with_wider_packing(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_NARROW", (3, 4))  # at most 7 calls per slice
    monkeypatch.setattr(metrics, "SLICE_CALLS", 100)
    metrics._calls_sql.cache_clear()
    metrics._layout.cache_clear()
    try:
        insert(db, [answered(n, local(DAY, 9), 10, 60, 5, queue="A") for n in range(20)])
        r = compute(db, DAY, DAY, as_of=LATER)
    finally:
        metrics._calls_sql.cache_clear()
        metrics._layout.cache_clear()
    assert (r["calls"], r["answered"], r["handled"], r["service_level"]) == (20, 20, 20, 1.0)
