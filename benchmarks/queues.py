"""Queue-engine dispatch decisions per second, 1,000 waiting callers and 200 agents, one core.

A *dispatch decision* is the engine choosing a pair: an agent who becomes free takes the
best caller across the queues it serves (*agent side*), or a caller who joins takes the
agent its queue's strategy picks among the free ones (*caller side*).

* agent side: 200 agents talk, 1,000 callers wait in six queues (skills, round-robin and
  longest-idle, priorities mixed). A cycle is: one agent ends its call, codes the
  wrap-up -- the decision, an offer -- accepts it, and a new caller joins, so 1,000
  stay waiting. Measured: the whole cycle (four engine calls with all their logs), and
  the ``wrapup`` call that makes the decision alone.
* caller side: 100 agents talk with 1,000 callers waiting for them, while 100 others are
  free for two queues nobody waits in (one longest-idle, one skills); a caller joins one
  of the two (the decision), then hangs up while it rings, which frees the agent again.

The baseline, in the same run, makes the same agent-side decisions the naive way: the
waiting callers in one list and the agents in another, a linear scan over each per
decision, no logs, no timers.

    python benchmarks/queues.py [--cycles N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from queues import AgentConfig, Offer, QueueConfig, QueueEngine  # noqa: E402

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=50)
QUEUES = [QueueConfig("vaxeln", strategy="skills", fallback_after_s=7200, announce_every_s=0,
                      wrapup_s=3600),
          QueueConfig("barn", announce_every_s=0, wrapup_s=3600),
          QueueConfig("omsorg", strategy="round-robin", announce_every_s=0, wrapup_s=3600),
          QueueConfig("bygga", announce_every_s=0, wrapup_s=3600),
          QueueConfig("vatten", announce_every_s=0, wrapup_s=3600),
          QueueConfig("felanmalan", announce_every_s=0, wrapup_s=3600)]
SPARE = [QueueConfig("e-tjanster", announce_every_s=0), QueueConfig("fardtjanst",
                                                                    strategy="skills",
                                                                    announce_every_s=0)]
WAITING, AGENTS = 1_000, 200


def agents(rng: random.Random, spare: bool) -> dict[str, AgentConfig]:
    """Two or three skills each; with ``spare``, the second half serves the spare queues only."""
    names = [q.name for q in QUEUES]
    out = {}
    for i in range(AGENTS):
        if spare and i >= AGENTS // 2:
            skills = {q.name: rng.randint(1, 10) for q in SPARE}
        else:
            skills = {n: rng.randint(1, 10) for n in rng.sample(names, rng.randint(2, 3))}
        out[f"a{i:03d}"] = AgentConfig(f"a{i:03d}", f"Agent {i}", skills)
    return out


def busy_center(rng: random.Random, spare: bool = False) -> tuple[QueueEngine, list[str], datetime]:
    """Every agent talking (``spare``: but those of the spare queues), WAITING callers waiting."""
    confs = agents(rng, spare)
    q = QueueEngine({c.name: c for c in QUEUES + SPARE}, confs)
    now, n = T0, 0
    for agent in confs:
        q.login(now, agent)
    ids = list(confs)
    main = {c.name for c in QUEUES}
    while any(q.agent_state(a) == "available" and main & set(confs[a].skills) for a in ids):
        for a in q.join(now, f"warm{n}", rng.choice(QUEUES).name):
            if isinstance(a, Offer):
                q.accept(now, a.agent)
        n += 1
    for i in range(WAITING):
        now += STEP
        q.join(now, f"w{i}", rng.choice(QUEUES).name, priority=rng.choice((0, 0, 0, 1)))
    return q, ids, now


def agent_side(cycles: int, seed: int) -> tuple[int, float, float]:
    rng = random.Random(seed)
    q, ids, now = busy_center(rng)
    decisions, total, deciding = 0, 0.0, 0.0
    names = [c.name for c in QUEUES]
    for i in range(cycles):
        agent = ids[i % len(ids)]
        now += STEP
        t0 = time.perf_counter()
        q.end_talk(now, agent)
        t1 = time.perf_counter()
        out = q.wrapup(now, agent, category=None, resolution="resolved")
        t2 = time.perf_counter()
        for a in out:
            if isinstance(a, Offer):
                decisions += 1
                q.accept(now, a.agent)
        q.join(now, f"n{i}", names[i % 6], priority=int(i % 4 == 0))
        t3 = time.perf_counter()
        total += t3 - t0
        deciding += t2 - t1
    return decisions, total, deciding


def caller_side(cycles: int, seed: int) -> tuple[int, float]:
    rng = random.Random(seed)
    q, ids, now = busy_center(rng, spare=True)
    assert sum(q.agent_state(a) == "available" for a in ids) == AGENTS // 2
    decisions, total = 0, 0.0
    spare = [s.name for s in SPARE]
    for i in range(cycles):
        now += STEP
        t0 = time.perf_counter()
        out = q.join(now, f"s{i}", spare[i % 2])
        t1 = time.perf_counter()
        decisions += sum(isinstance(a, Offer) for a in out)
        q.hangup(now, f"s{i}")
        total += t1 - t0
    return decisions, total


class Naive:
    """The baseline: lists and linear scans, nothing logged."""

    def __init__(self, confs: dict[str, AgentConfig]):
        self.waiting: list[tuple[int, float, int, str, str]] = []  # (-prio, joined, seq, call, q)
        self.skills = {a: set(c.skills) for a, c in confs.items()}
        self.state = dict.fromkeys(confs, "talking")
        self.idle = dict.fromkeys(confs, 0.0)
        self.seq = 0

    def agent_free(self, agent: str, now: float) -> str | None:
        self.state[agent], self.idle[agent] = "available", now
        best, where = None, -1
        for i, entry in enumerate(self.waiting):  # scan every caller
            if entry[4] in self.skills[agent] and (best is None or entry < best):
                best, where = entry, i
        if best is None:
            return None
        del self.waiting[where]
        self.state[agent] = "talking"
        return best[3]

    def join(self, call: str, queue: str, priority: int, now: float) -> str | None:
        best = None
        for agent, state in self.state.items():  # scan every agent
            if state == "available" and queue in self.skills[agent] and (
                    best is None or self.idle[agent] < self.idle[best]):
                best = agent
        if best is not None:
            self.state[best] = "talking"
            return best
        self.seq += 1
        self.waiting.append((-priority, now, self.seq, call, queue))
        return None


def naive_side(cycles: int, seed: int) -> tuple[int, float, float]:
    rng = random.Random(seed)
    confs = agents(rng, False)
    n = Naive(confs)
    names = [c.name for c in QUEUES]
    for i in range(WAITING):
        n.join(f"w{i}", rng.choice(QUEUES).name, rng.choice((0, 0, 0, 1)), float(i))
    ids = list(confs)
    decisions, total, deciding = 0, 0.0, 0.0
    for i in range(cycles):
        now = WAITING + i * 0.05
        t0 = time.perf_counter()
        if n.agent_free(ids[i % len(ids)], now) is not None:
            decisions += 1
        t1 = time.perf_counter()
        n.join(f"n{i}", names[i % 6], int(i % 4 == 0), now)
        total += time.perf_counter() - t0
        deciding += t1 - t0
    return decisions, total, deciding


def main() -> None:
    global WAITING
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--waiting", type=int, default=WAITING)
    args = parser.parse_args()
    cycles, WAITING = args.cycles, args.waiting
    best = {}
    for name, fn in (("agent", agent_side), ("caller", caller_side), ("naive", naive_side)):
        runs = [fn(cycles, seed) for seed in (1, 2, 3)]  # type: ignore[operator]
        best[name] = min(runs, key=lambda r: r[1])
    d, total, deciding = best["agent"]
    dc, total_c = best["caller"]
    dn, total_n, deciding_n = best["naive"]

    def rate(n: int, seconds: float) -> str:
        return f"{n / seconds:>9,.0f}/s {seconds / n * 1e6:>6.1f} us"

    print(f"Queue engine: {WAITING:,} callers waiting, {AGENTS} agents, {cycles:,} cycles, "
          "best of 3 seeds, one core")
    print(f"{'':56} {'engine':>19}   {'baseline':>19}   speedup")
    print(f"{'agent side, the deciding call (wrap-up -> offer)':56} {rate(d, deciding)}   "
          f"{rate(dn, deciding_n)}   {(d / deciding) / (dn / deciding_n):5.1f}x")
    print(f"{'agent side, full cycle (end_talk, wrapup, accept, join)':56} {rate(d, total)}   "
          f"{rate(dn, total_n)}   {(d / total) / (dn / total_n):5.1f}x")
    print(f"{'caller side, join -> offer':56} {rate(dc, total_c)}")
    print("baseline: callers and agents in plain lists, a linear scan per decision, nothing "
          "logged, no timers")
    print(f"target 20,000 decisions/s (full cycle): "
          f"{'met' if d / total >= 20_000 else 'NOT met'}, {d / total / 20_000:.1f}x")


if __name__ == "__main__":
    main()
