"""The load simulator: deterministic, realistic enough to exercise every outcome."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import pytest

from ivr.config import load_settings
from ivr.flowcheck import FlowContext, load_flow
from ivr.loadsim import LoadSimulation, Profile
from ivr.store import EventLog

from .conftest import ROOT

KEY = b"loadsim-test-key-0123456789"


def simulate(path: Path, seed: int, days: int = 1, calls: int = 150) -> int:
    settings = load_settings(ROOT / "config.toml", env={})
    flow = load_flow(ROOT / "callflows" / "switchboard.toml", FlowContext.from_settings(settings))
    log = EventLog.open(path, hash_key=KEY)
    try:
        sim = LoadSimulation(
            settings,
            flow,
            log,
            Profile(calls_per_day=calls),
            seed=seed,
            agents=None,
            start=date(2026, 12, 1),
            progress=False,
        )
        return sim.run(days)
    finally:
        log.close()


def dump(path: Path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return (
            con.execute("select call_id, seq, at, kind, node, data from events order by id").fetchall()
            + con.execute("select agent, at, state, reason, call_id from agent_events order by id").fetchall()
        )
    finally:
        con.close()


@pytest.fixture(scope="module")
def day_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "a.db"
    simulate(path, seed=7)
    return path


def test_the_same_seed_gives_the_same_log(day_log: Path, tmp_path: Path) -> None:
    simulate(tmp_path / "b.db", seed=7)
    assert dump(day_log) == dump(tmp_path / "b.db")


def test_another_seed_gives_another_log(day_log: Path, tmp_path: Path) -> None:
    simulate(tmp_path / "c.db", seed=8)
    assert dump(day_log) != dump(tmp_path / "c.db")


def test_a_simulated_day_has_every_kind_of_outcome_and_no_live_call_left(day_log: Path) -> None:
    con = sqlite3.connect(day_log)
    outcomes = dict(con.execute("select coalesce(queue_outcome, '-'), count(*) from calls group by 1"))
    statuses = {r[0] for r in con.execute("select distinct status from calls")}
    resolutions = {
        r[0] for r in con.execute("select distinct resolution from calls where resolution is not null")
    }
    states = {r[0] for r in con.execute("select distinct state from agent_events")}
    con.close()
    assert outcomes["answered"] > outcomes.get("abandoned", 0) > 0
    assert "-" in outcomes  # some calls never queue: closed hours, hang-ups in the menu
    assert statuses == {"ended"}
    assert {"resolved", "forwarded", "uncoded"} <= resolutions
    assert states == {"offline", "available", "offered", "talking", "wrapup", "paused"}


def test_callers_who_were_not_helped_call_again(day_log: Path) -> None:
    con = sqlite3.connect(day_log)
    repeats = con.execute(
        "select count(*) from (select caller_hash from calls group by caller_hash having count(*) > 1)"
    ).fetchone()[0]
    con.close()
    assert repeats > 0


def test_a_profile_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "p.toml"
    good.write_text("calls_per_day = 50\npatience_mean_s = 90.0\n", encoding="utf-8")
    profile = Profile.from_file(good, calls_per_day=70)
    assert (profile.calls_per_day, profile.patience_mean_s) == (70, 90.0)
    bad = tmp_path / "bad.toml"
    bad.write_text("calls_per_dag = 50\n", encoding="utf-8")
    with pytest.raises(ValueError, match="calls_per_dag: unknown profile key"):
        Profile.from_file(bad)
