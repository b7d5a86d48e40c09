"""The one-year report: ``metrics.compute`` over about 1,000,000 calls, against a baseline.

The log is built directly as summary rows (``calls`` and ``agent_events``, no events),
seeded, with a municipal day profile and realistic outcome mixes: 260 working days of
about 3,700 calls and quiet weekends, a fifth of the calls never queued, answered within
a minute or two, some abandoned (a few in the first seconds), overflows, closed queues,
callbacks, transfers, agent codes and survey answers, and callers who call again about
the same thing within days. Agents log in, take lunch, and go through offered, talking,
wrap-up and available for every call they take.

The baseline in the same run is the cheapest honest question SQLite can answer over
the same rows: ``SELECT local_date, queue, COUNT(*) ... GROUP BY`` for the year.

    python benchmarks/report.py [--calls 1000000] [--db PATH] [--keep]
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlite_utils  # noqa: E402

from ivr import metrics  # noqa: E402
from ivr.store import migrate  # noqa: E402
from ivr.summary import CALL_COLUMNS  # noqa: E402

STOCKHOLM = ZoneInfo("Europe/Stockholm")
YEAR = 2025
HOURLY = {7: 1.0, 8: 12.0, 9: 14.0, 10: 12.0, 11: 9.0, 12: 6.0, 13: 11.0, 14: 10.0,
          15: 8.0, 16: 4.0, 17: 1.5, 18: 1.0, 19: 0.5, 20: 0.3, 21: 0.2}  # fmt: skip
QUEUES = {  # queue: (share of queued calls, categories)
    "barn-utbildning": (0.22, ["forskola", "skola", "skolskjuts", "vuxenutbildning", "ovrigt"]),
    "bygga-bo-miljo": (0.2, ["bygglov", "miljo-halsa", "bostad", "ovrigt"]),
    "vatten-avfall": (0.18, ["vatten", "avlopp", "sophamtning", "faktura", "ovrigt"]),
    "omsorg": (0.15, ["aldreomsorg", "funktionsstod", "ekonomiskt-bistand", "ovrigt"]),
    "felanmalan": (0.1, ["gatubelysning", "vag", "park", "snorojning", "ovrigt"]),
    "vaxeln": (0.15, ["personsokning", "ovrigt"]),
}  # fmt: skip
NOT_QUEUED = [("hangup", 0.55), ("caller-hangup", 0.3), ("message", 0.08), ("transfer:jour", 0.07)]
OUTCOMES = [("answered", 0.80), ("abandoned", 0.12), ("overflow", 0.02), ("closed", 0.01),
            ("callback", 0.05)]  # fmt: skip
RESOLUTIONS = [("resolved", 0.55), ("forwarded", 0.2), ("callback-promised", 0.1),
               ("wrong-queue", 0.05), ("other", 0.1)]  # fmt: skip
AGENTS = [f"agent-{n:02d}" for n in range(1, 41)]


def pick(rng: random.Random, table: list[tuple[str, float]]) -> str:
    x, total = rng.random(), 0.0
    for value, share in table:
        total += share
        if x < total:
            return value
    return table[-1][0]


class Clock:
    """Epoch seconds -> the log's ISO form, fast (one datetime per hour)."""

    def __init__(self) -> None:
        self.hours: dict[int, str] = {}

    def iso(self, t: float) -> str:
        hour, rest = divmod(round(t * 1000), 3_600_000)
        prefix = self.hours.get(hour)
        if prefix is None:
            prefix = datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:")
            self.hours[hour] = prefix
        minute, rest = divmod(rest, 60_000)
        return f"{prefix}{minute:02d}:{rest // 1000:02d}.{rest % 1000:03d}Z"


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


def local_epoch(day: date, hour: int, minute: float = 0.0) -> float:
    local = datetime(day.year, day.month, day.day, hour, tzinfo=STOCKHOLM)
    return local.timestamp() + minute * 60


def build(path: Path, calls: int, seed: int = 2025) -> tuple[int, int]:
    """Write about ``calls`` calls of one year and their agents' states; returns the counts."""
    with sqlite_utils.Database(path) as db:
        migrate(db)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -400000")
    rng, clock = random.Random(seed), Clock()
    days = days_of(YEAR)
    weekday_calls = calls / (sum(d.weekday() < 5 for d in days) + 0.1 * sum(d.weekday() >= 5 for d in days))
    hours, weights = list(HOURLY), list(HOURLY.values())
    queue_names = list(QUEUES)
    queue_weights = [QUEUES[q][0] for q in queue_names]
    recent: list[tuple[str, str, str]] = []  # (caller, queue, category) of recent calls
    call_rows: list[tuple] = []
    agent_rows: list[tuple] = []
    blank = dict.fromkeys(CALL_COLUMNS)
    serial = 0
    for day in days:
        n_calls = round(rng.gauss(1, 0.08) * weekday_calls * (1 if day.weekday() < 5 else 0.1))
        staff = AGENTS if day.weekday() < 5 else AGENTS[:4]
        free = [(local_epoch(day, 7, 45), agent) for agent in staff]  # (free at, agent)
        heapq.heapify(free)
        lunch = {agent: local_epoch(day, 11, rng.uniform(0, 90)) for agent in staff}
        for agent in staff:
            agent_rows.append((agent, clock.iso(local_epoch(day, 7, 45)), "available", None, None))
        starts = sorted(local_epoch(day, h, rng.uniform(0, 60))
                        for h in rng.choices(hours, weights, k=max(n_calls, 0)))  # fmt: skip
        for start in starts:
            serial += 1
            row = dict(blank)
            if recent and rng.random() < 0.18:  # calls again about the same thing
                caller, queue, category = recent[rng.randrange(len(recent))]
            else:
                caller = f"{rng.getrandbits(64):016x}" if rng.random() > 0.04 else None
                queue = rng.choices(queue_names, queue_weights)[0]
                category = rng.choice(QUEUES[queue][1])
            local = datetime.fromtimestamp(start, STOCKHOLM)
            row.update(call_id=f"c{serial:08d}", flow="vaxel", transport="sim",
                       started_at=clock.iso(start), caller_hash=caller, language="sv",
                       path="[]", attributes="{}", inputs=1, timeouts=0, invalid_inputs=0,
                       status="ended", local_date=local.date().isoformat(), local_hour=local.hour,
                       transfers=0, offers=0, callback_requested=0, callback_completed=0)  # fmt: skip
            end_at = start + rng.uniform(10, 60)
            if rng.random() < 0.22:
                row["end"] = pick(rng, NOT_QUEUED)
                row["category"] = category if row["end"] != "hangup" else None
            else:
                end_at = queued(rng, clock, row, start + rng.uniform(8, 40), queue, category,
                                free, lunch, agent_rows)  # fmt: skip
                recent.append((caller, row["queue"], row["category"])) if caller else None
            if len(recent) > 6000:
                del recent[:1000]
            row["ended_at"] = clock.iso(end_at)
            row["duration_s"] = round(end_at - start, 3)
            call_rows.append(tuple(row[c] for c in CALL_COLUMNS))
        for free_at, agent in free:  # the day's last call done: log off
            agent_rows.append((agent, clock.iso(max(free_at, local_epoch(day, 16, 30))),
                               "offline", None, None))  # fmt: skip
    agent_rows.sort(key=lambda r: (r[0], r[1]))  # prev_state: what the writer would set
    previous = [None, *(r[2] for r in agent_rows[:-1])]
    agent_rows = [(*r, p if i and agent_rows[i - 1][0] == r[0] else None)
                  for i, (r, p) in enumerate(zip(agent_rows, previous, strict=True))]
    agent_rows.sort(key=lambda r: r[1])
    marks = ", ".join("?" * len(CALL_COLUMNS))
    indexes = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                           " AND tbl_name IN ('calls', 'agent_events')").fetchall()  # fmt: skip
    with conn:  # bulk load without the indexes, then build them once from sorted data
        for (sql,) in indexes:
            conn.execute("DROP INDEX " + sql.split()[2])
        conn.executemany(f"INSERT INTO calls VALUES ({marks})", call_rows)
        conn.executemany("INSERT INTO agent_events (agent, at, state, reason, call_id, prev_state) "
                         "VALUES (?, ?, ?, ?, ?, ?)", agent_rows)  # fmt: skip
        for (sql,) in indexes:
            conn.execute(sql)
    conn.execute("ANALYZE")
    conn.close()
    return len(call_rows), len(agent_rows)


def queued(rng: random.Random, clock: Clock, row: dict, joined: float, queue: str, category: str,
           free: list[tuple[float, str]], lunch: dict[str, float], agent_rows: list[tuple]) -> float:
    """Fill in the queue part of one call; returns when the call ended."""
    row.update(end=f"queue:{queue}", queue=queue, category=category, queued_at=clock.iso(joined))
    outcome = pick(rng, OUTCOMES)
    if outcome == "abandoned":
        wait = rng.uniform(0, 5) if rng.random() < 0.25 else rng.expovariate(1 / 110)
        row.update(queue_outcome="abandoned", wait_s=round(wait, 3),
                   abandon_stage="ringing" if rng.random() < 0.1 else "waiting")
        return joined + wait
    if outcome in ("overflow", "closed"):
        wait = rng.uniform(300, 600) if outcome == "overflow" else 0.0
        row.update(queue_outcome=outcome, wait_s=wait)
        return joined + wait + 20
    wait = rng.expovariate(1 / 70)
    if outcome == "callback":
        row.update(queue_outcome="callback", wait_s=round(wait + 60, 3), callback_requested=1)
        if rng.random() < 0.15:
            row["queue_outcome"] = "callback-failed"
            return joined + wait + 70
        row["callback_completed"] = 1
        answered = joined + wait + rng.uniform(900, 7200)
    else:
        answered = joined + wait
        row.update(queue_outcome="answered", wait_s=round(wait, 3), answered_at=clock.iso(answered))
    free_at, agent = heapq.heappop(free)
    while lunch.get(agent, 1e12) <= max(answered, free_at):  # lunch first, when free
        went = max(free_at, lunch.pop(agent))
        agent_rows.append((agent, clock.iso(went), "paused", "lunch", None))
        agent_rows.append((agent, clock.iso(went + 2700), "available", None, None))
        free_at, agent = heapq.heappushpop(free, (went + 2700, agent))
    talk, wrap = rng.lognormvariate(5.1, 0.6), rng.expovariate(1 / 25)
    coded = rng.random() < 0.93
    row.update(agent=agent, talk_s=round(talk, 3), wrapup_s=round(wrap, 3), offers=1,
               resolution=pick(rng, RESOLUTIONS) if coded else "uncoded", coded=int(coded),
               transfers=int(rng.random() < 0.03))  # fmt: skip
    if rng.random() < 0.3:
        row["survey"] = pick(rng, [("yes", 0.75), ("no", 0.2), ("no-answer", 0.05)])
    start = max(answered, free_at)
    for t, state in [(start - 5, "offered"), (start, "talking"), (start + talk, "wrapup"),
                     (start + talk + wrap, "available")]:
        agent_rows.append((agent, clock.iso(t), state, None, row["call_id"]))
    heapq.heappush(free, (start + talk + wrap, agent))
    return answered + talk


def timed(fn, repeat: int = 3) -> tuple[float, float, object]:
    """(first run, best run) in seconds, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times[0], min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse (or keep) the log at this path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "year.db"
        if not path.exists():
            t0 = time.perf_counter()
            n_calls, n_agent = build(path, args.calls)
            print(f"built     : {n_calls:,} calls, {n_agent:,} agent states in "
                  f"{time.perf_counter() - t0:.1f} s ({os.path.getsize(path) / 1e6:,.0f} MB)")
        as_of = datetime(YEAR + 1, 1, 15, 12, tzinfo=UTC)
        first, best, result = timed(lambda: metrics.compute(
            path, f"{YEAR}-01-01", f"{YEAR}-12-31", as_of=as_of))
        conn = sqlite3.connect(path)
        sql = ("SELECT local_date, queue, COUNT(*) FROM calls "
               "WHERE local_date BETWEEN ? AND ? GROUP BY local_date, queue")
        b_first, b_best, _ = timed(lambda: conn.execute(sql, (f"{YEAR}-01-01", f"{YEAR}-12-31")).fetchall())
        scan = ("SELECT COUNT(*), SUM(wait_s), SUM(talk_s), SUM(wrapup_s), SUM(queue_outcome = "
                "'answered'), SUM(coded = 1) FROM calls")  # fmt: skip
        s_first, s_best, _ = timed(lambda: conn.execute(scan).fetchall())
        conn.close()
        q_first, q_best, _ = timed(lambda: metrics.compute(
            path, f"{YEAR}-01-01", f"{YEAR}-12-31", queue="omsorg", as_of=as_of))
        m_first, m_best, _ = timed(lambda: metrics.compute(
            path, f"{YEAR}-03-01", f"{YEAR}-03-31", as_of=as_of))
        total = result  # type: ignore[assignment]
        print(f"year      : {total['calls']:,} calls, {total['offered']:,} offered, "
              f"service level {total['service_level']:.3f}, fcr coded/repeat/survey "
              f"{total['fcr_coded']:.3f}/{total['fcr_repeat']:.3f}/{total['fcr_survey']:.3f}, "
              f"occupancy {total['occupancy']:.3f}")
        print(f"compute   : {first:.2f} s first run, {best:.2f} s best of 3 (one year, all queues)")
        print(f"compute   : {q_first:.2f} s first run, {q_best:.2f} s best of 3 (one year, one queue)")
        print(f"compute   : {m_first:.2f} s first run, {m_best:.2f} s best of 3 (March, all queues)")
        print(f"baseline  : {b_first:.2f} s first run, {b_best:.2f} s best of 3 "
              "(SELECT local_date, queue, COUNT(*) ... GROUP BY, the year)")
        print(f"baseline  : {s_first:.2f} s first run, {s_best:.2f} s best of 3 "
              "(one full scan of calls with six plain sums)")
        print(f"target    : 2 s for the year -> {'met' if best < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
