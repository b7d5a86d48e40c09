"""Event-log throughput: traces appended and committed per second through the one writer.

Baseline in the same run: the same rows written by plain sqlite3 `executemany` in one
transaction, no thread, no JSON, no summaries: the floor SQLite itself sets on this disk.

    python benchmarks/store.py [--calls N]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.store import EventLog  # noqa: E402
from ivr.vocabulary import Trace  # noqa: E402

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
KINDS = ["node_entered", "node_entered", "input", "node_entered", "command", "disposition"]


def call_traces(i: int) -> list[Trace]:
    at = T0 + timedelta(seconds=i)
    out = [Trace(at, "call_started", None, {"caller": f"+4670{i % 9_000_000:07d}",
                                            "transport": "sim", "flow": "bench"})]
    out += [Trace(at, k, f"n{j}", {"digits": "1"} if k == "input" else {}) for j, k in enumerate(KINDS)]
    out.append(Trace(at, "call_ended", None, {"reason": "caller-hangup", "end": "hangup"}))
    return out


def bench_log(path: Path, calls: int) -> tuple[int, float]:
    log = EventLog.open(path, hash_key=b"benchmark-key-0123456789")
    traces = [call_traces(i) for i in range(calls)]
    n = sum(len(t) for t in traces)
    t0 = time.perf_counter()
    for i, tr in enumerate(traces):
        log.append_many(f"call-{i}", tr)
    appended = time.perf_counter() - t0
    log.close()
    total = time.perf_counter() - t0
    print(f"event log : {n} traces ({calls} calls) appended in {appended:.3f} s "
          f"({n / appended:,.0f}/s on the caller's thread)")
    return n, total


def bench_baseline(path: Path, calls: int) -> tuple[int, float]:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("create table events (id integer primary key, call_id text, seq int, at text, "
                "kind text, node text, data text)")
    rows = [(f"call-{i}", s, (T0 + timedelta(seconds=i)).isoformat(), t.kind, t.node, json.dumps(t.data))
            for i in range(calls) for s, t in enumerate(call_traces(i))]
    t0 = time.perf_counter()
    with con:
        con.executemany("insert into events (call_id, seq, at, kind, node, data) values (?,?,?,?,?,?)", rows)
    secs = time.perf_counter() - t0
    con.close()
    return len(rows), secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=25_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        n, secs = bench_log(Path(tmp) / "log.db", args.calls)
        bn, bsecs = bench_baseline(Path(tmp) / "base.db", args.calls)
    print(f"event log : {n / secs:,.0f} traces/s committed (writer thread, JSON, summaries, hashing)")
    print(f"baseline  : {bn / bsecs:,.0f} rows/s (plain sqlite3 executemany, one transaction)")
    print(f"target    : 20,000 traces/s -> {'met' if n / secs >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
