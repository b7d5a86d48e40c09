"""Flow steps per second on the default switchboard flow, on one core.

A *step* is one node the engine enters; an *event* is one call of
``CallSession.handle``. Calls follow a fixed mix of realistic paths (menu choices,
sub-menus, a case number, a wrong key, a timeout, closed hours). The baseline in the
same run is the naive way: the same menu hard-coded as if/else in a function with no
validation, no trace and no language support (the shape of Twilio's sample phone
tree), so the figure shows what data-driven flows and a full trace cost.

    python benchmarks/engine.py [--calls N]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.announcements import AnnouncementBoard  # noqa: E402
from ivr.config import load_settings  # noqa: E402
from ivr.engine import CallSession  # noqa: E402
from ivr.flowcheck import FlowContext, load_flow  # noqa: E402
from ivr.vocabulary import CallerHungUp, CallStarted, Digits, InputTimeout  # noqa: E402

OPEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
MIX = [  # (keys, local time offset from OPEN): 't' = timeout
    (["1"], 0), (["2", "1"], 0), (["2", "4", "4711#"], 0), (["3"], 0), (["4", "1"], 0),
    (["5"], 0), (["0"], 0), (["9", "1"], 0), (["7", "3"], 0), (["t", "4", "2"], 0),
    (["1"], 12), (["2"], 12),  # evening: closed menu, message / on-call
]


def run_engine(flow, settings, board, calls: int) -> tuple[int, int, float]:
    steps = events = 0
    t0 = time.perf_counter()
    for i in range(calls):
        keys, hours = MIX[i % len(MIX)]
        at = OPEN + timedelta(hours=hours)
        session = CallSession(flow, schedules=settings.hours, announcements=board)
        session.handle(CallStarted(at, f"c{i}", "+46701234567"))
        events += 1
        for k in keys:
            session.handle(InputTimeout(at) if k == "t" else Digits(at, k))
            events += 1
        session.handle(CallerHungUp(at))
        events += 1
        steps += len(session.path)
        session.take_trace()
    return steps, events, time.perf_counter() - t0


def naive_menu(keys: list[str]) -> list[str]:
    """The hard-coded baseline: what a Flask-view phone tree does per call."""
    path = ["greeting", "opening", "main_menu"]
    options = {"1": "barn", "2": "bygga", "3": "vatten", "4": "omsorg", "5": "felanmalan",
               "0": "vaxeln"}
    for k in keys:
        if k in options:
            path.append(options[k])
            break
    return path


def run_naive(calls: int) -> tuple[int, float]:
    steps = 0
    t0 = time.perf_counter()
    for i in range(calls):
        steps += len(naive_menu(MIX[i % len(MIX)][0]))
    return steps, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30_000)
    args = parser.parse_args()
    settings = load_settings(ROOT / "config.toml", env={})
    flow = load_flow(ROOT / "callflows" / "switchboard.toml", FlowContext.from_settings(settings))
    board = AnnouncementBoard.from_settings(settings.announcements)
    run_engine(flow, settings, board, 500)  # warm caches (holiday tables, imports)
    steps, events, secs = run_engine(flow, settings, board, args.calls)
    naive_steps, naive_secs = run_naive(args.calls)
    print(f"engine : {args.calls} calls, {steps} steps, {events} events in {secs:.3f} s")
    print(f"engine : {steps / secs:,.0f} steps/s   {events / secs:,.0f} events/s   "
          f"{args.calls / secs:,.0f} calls/s")
    print(f"naive  : {naive_steps / naive_secs:,.0f} steps/s (hard-coded if/else, no trace)")
    print(f"target : 50,000 steps/s -> {'met' if steps / secs >= 50_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
