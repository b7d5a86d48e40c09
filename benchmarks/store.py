"""Event-log throughput: traces appended and committed per second through the one writer.

For each writer (``--writer``: the writer thread, the writer process, or both side by
side): appends/s on the caller's thread (the event loop's cost: the writer works at the
same time and, as a thread, competes for the GIL) and traces/s committed (until ``close``
returns).

Baseline in the same run: the same rows written by plain sqlite3 `executemany` in one
transaction, no thread, no JSON, no summaries: the floor SQLite itself sets on this disk.

    python benchmarks/store.py [--calls N] [--writer thread|process|both]
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


def bench_log(path: Path, calls: int, writer: str) -> tuple[int, float, float]:
    """(traces, seconds to append them, seconds until all are committed)."""
    log = EventLog.open(path, hash_key=b"benchmark-key-0123456789", writer=writer)
    log.flush()  # the writer (process) is up
    traces = [call_traces(i) for i in range(calls)]
    n = sum(len(t) for t in traces)
    t0 = time.perf_counter()
    for i, tr in enumerate(traces):
        log.append_many(f"call-{i}", tr)
    appended = time.perf_counter() - t0
    log.close()
    return n, appended, time.perf_counter() - t0


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
    parser.add_argument("--writer", choices=["thread", "process", "both"], default="both")
    args = parser.parse_args()
    writers = ["thread", "process"] if args.writer == "both" else [args.writer]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for writer in writers:
            results[writer] = bench_log(Path(tmp) / f"{writer}.db", args.calls, writer)
        bn, bsecs = bench_baseline(Path(tmp) / "base.db", args.calls)
    n = next(iter(results.values()))[0]
    print(f"event log : {n} traces ({args.calls} calls); JSON, summaries, hashing")
    print(f"{'writer':<10}{'appends/s (caller)':>20}{'committed/s':>14}")
    for writer, (n, appended, total) in results.items():
        print(f"{writer:<10}{n / appended:>20,.0f}{n / total:>14,.0f}")
    print(f"baseline  : {bn / bsecs:,.0f} rows/s (plain sqlite3 executemany, one transaction)")
    for writer, (n, _appended, total) in results.items():
        verdict = "met" if n / total >= 20_000 else "NOT met"
        print(f"target    : 20,000 traces/s committed ({writer}) -> {verdict}")


if __name__ == "__main__":
    main()
