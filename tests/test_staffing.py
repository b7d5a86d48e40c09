"""Staffing: Erlang C against published figures and an exact formula, and demand from the log.

Every published figure below is also recomputed here with the textbook Erlang C formula
in exact rational arithmetic (:func:`exact_c`), so a test fails if either the code or
the quoted figure is wrong.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import sqlite3
import sys
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest

from ivr import staffing
from ivr.staffing import (
    Staffing,
    StaffingError,
    agents_needed,
    as_json,
    asa_s,
    erlang_c,
    hourly_demand,
    occupancy,
    parse_target,
    rostered,
    service_level,
    staffing_from_log,
)
from ivr.summary import CALLS_V2, CALLS_V3

from .conftest import ROOT

# --------------------------------------------------------------------------- the exact formula


def exact_c(agents: int, traffic: Fraction | int) -> Fraction:
    """Erlang C straight from the textbook, with factorials, in exact rationals:
    C = (A^N / N! * N / (N - A)) / (sum_{k<N} A^k / k! + A^N / N! * N / (N - A))."""
    a = Fraction(traffic)
    top = a**agents / math.factorial(agents) * Fraction(agents) / (agents - a)
    return top / (sum(a**k / math.factorial(k) for k in range(agents)) + top)


def exact_sl(agents: int, traffic: Fraction, aht_s: float, target_s: float) -> float:
    return 1 - float(exact_c(agents, traffic)) * math.exp(-float(agents - traffic) * target_s / aht_s)


def exact_asa(agents: int, traffic: Fraction, aht_s: float) -> float:
    return float(exact_c(agents, traffic) * Fraction(aht_s) / (agents - traffic))


# --------------------------------------------------------------------------- published figures

# Call Centre Helper, "Erlang C Formula - Made Simple With an Easy Worked Example"
# (callcentrehelper.com): 100 calls per 30 minutes = 200 calls/h, AHT 180 s, so A = 10
# Erlangs; target 80 % in 20 s, maximum occupancy 85 %, shrinkage 30 %. Starting from
# N = A + 1 = 11 the probability of waiting is 0.6821. The same example is the one of
# pyworkforce (pypi.org/project/pyworkforce/0.1.0, ErlangC(transactions=100, asa=20/60,
# aht=3, interval=30, max_occupancy=0.85, shrinkage=0.3)), which publishes the answer:
# raw_positions 14, positions 20, service_level 0.8883500191794669,
# occupancy 0.7142857142857143, waiting_probability 0.1741319335950498.
CCH_CALLS, CCH_AHT, CCH_A = 200, 180, Fraction(10)
CCH_WAIT = {11: 0.6821, 12: 0.4494, 13: 0.2853, 14: 0.1741}  # 12 and 13: the worked iterations


@pytest.mark.parametrize(("agents", "published"), sorted(CCH_WAIT.items()))
def test_probability_of_waiting_matches_the_worked_example(agents: int, published: float) -> None:
    assert float(exact_c(agents, CCH_A)) == pytest.approx(published, abs=5e-5)  # the figure is right
    assert erlang_c(agents, 10.0) == pytest.approx(float(exact_c(agents, CCH_A)), rel=1e-12)
    assert round(erlang_c(agents, 10.0), 4) == published


def test_worked_example_answer_14_agents_20_rostered() -> None:
    result = agents_needed(CCH_CALLS, CCH_AHT, 0.8, 20, max_occupancy=0.85, shrinkage=0.3)
    assert result.agents == 14
    assert result.rostered == 20  # 14 / (1 - 0.3)
    assert result.traffic_erlangs == 10.0
    assert result.service_level == pytest.approx(0.8883500191794669, rel=1e-12)  # pyworkforce
    assert result.service_level == pytest.approx(exact_sl(14, CCH_A, 180, 20), rel=1e-12)
    assert result.occupancy == pytest.approx(0.7142857142857143, rel=1e-12)
    assert erlang_c(14, 10.0) == pytest.approx(0.1741319335950498, rel=1e-12)
    # ASA = C * AHT / (N - A) = 0.17413 * 180 / 4 = 7.84 s (not published; exact formula)
    assert result.asa_s == pytest.approx(exact_asa(14, CCH_A, 180), rel=1e-12)
    assert result.asa_s == pytest.approx(7.836, abs=1e-3)
    # one agent fewer misses the target: 13 agents answer 79.6 % within 20 s
    assert service_level(13, CCH_CALLS, CCH_AHT, 20) == pytest.approx(exact_sl(13, CCH_A, 180, 20))
    assert service_level(13, CCH_CALLS, CCH_AHT, 20) < 0.8
    # and the first iteration of the worked example: 11 agents, 39 % within 20 s
    assert service_level(11, CCH_CALLS, CCH_AHT, 20) == pytest.approx(0.3896, abs=5e-5)


def test_westbay_example_360_calls_per_half_hour() -> None:
    # Westbay Engineers, "The Erlang-C formula" (erlang.com): 360 calls per half hour
    # (0.2 calls/s = 720 calls/h), call duration 240 s, 55 agents, target 15 s:
    # E_C = 0.2387, average speed of answer 8.184 s, P(wait <= 15 s) = 0.8459
    # (the page's figures, as reproduced with Maxima's erlang package).
    a = Fraction(720 * 240, 3600)
    assert a == 48
    assert float(exact_c(55, a)) == pytest.approx(0.2387, abs=5e-5)
    assert erlang_c(55, 48.0) == pytest.approx(float(exact_c(55, a)), rel=1e-12)
    assert asa_s(55, 720, 240) == pytest.approx(8.184, abs=5e-4)
    assert asa_s(55, 720, 240) == pytest.approx(exact_asa(55, a, 240), rel=1e-12)
    assert service_level(55, 720, 240, 15) == pytest.approx(0.8459, abs=5e-5)
    assert service_level(55, 720, 240, 15) == pytest.approx(exact_sl(55, a, 240, 15), rel=1e-12)


@pytest.mark.parametrize(("aht_s", "published"), [(240, 2.243505841), (300, 30.4312286)])
def test_abstract_micro_average_wait(aht_s: int, published: float) -> None:
    # Abstract Micro Systems, Erlang Library for Excel, ErlcWait4 reference page:
    # ErlcWait4(20, 1800, 100, 240) = 2.243505841 and ErlcWait4(20, 1800, 100, 300)
    # = 30.4312286 -- 20 agents, 100 calls per half hour (200/h).
    assert exact_asa(20, Fraction(200 * aht_s, 3600), aht_s) == pytest.approx(published, abs=1e-6)
    assert asa_s(20, 200, aht_s) == pytest.approx(published, abs=1e-6)


# --------------------------------------------------------------------------- the formula itself


@pytest.mark.parametrize("traffic", [Fraction(1, 10), Fraction(1, 2), 1, Fraction(37, 10), 8,
                                     Fraction(250, 3), Fraction(4999, 100)])  # fmt: skip
def test_erlang_c_equals_the_factorial_formula(traffic: Fraction) -> None:
    first = math.floor(traffic) + 1
    for agents in range(first, first + 25):
        assert erlang_c(agents, float(traffic)) == pytest.approx(float(exact_c(agents, traffic)), rel=1e-11)


def test_one_agent_is_the_m_m_1_queue() -> None:
    # M/M/1: the probability of waiting is the utilisation, ASA = rho / (1 - rho) * AHT
    assert erlang_c(1, 0.25) == pytest.approx(0.25, rel=1e-15)
    assert asa_s(1, 5, 180) == pytest.approx(0.25 / 0.75 * 180, rel=1e-15)  # 5 * 180 / 3600 = 0.25


def test_more_agents_higher_service_level_lower_asa() -> None:
    for calls, aht in ((200, 180), (35, 420), (1000, 300)):
        a = calls * aht / 3600
        agents = range(math.floor(a) + 1, math.floor(a) + 40)
        levels = [service_level(n, calls, aht, 30) for n in agents]
        waits = [asa_s(n, calls, aht) for n in agents]
        chances = [erlang_c(n, a) for n in agents]
        assert all(x < y for x, y in zip(levels, levels[1:], strict=False) if y < 1.0)
        assert all(x > y for x, y in zip(waits, waits[1:], strict=False) if y > 0.0)
        assert all(x > y for x, y in zip(chances, chances[1:], strict=False) if y > 0.0)
        assert levels[-1] > 0.999 and min(levels) >= 0


def test_longer_target_higher_service_level() -> None:
    levels = [service_level(12, 200, 180, t) for t in (0, 10, 20, 60, 300)]
    assert levels == sorted(levels) and len(set(levels)) == 5
    assert levels[0] == pytest.approx(1 - erlang_c(12, 10.0))  # target 0: answered at once


def test_overloaded_queue() -> None:
    # N <= A: the queue grows without bound
    assert erlang_c(10, 10.0) == 1.0
    assert erlang_c(9, 10.0) == 1.0
    assert service_level(10, 200, 180, 20) == 0.0
    assert asa_s(10, 200, 180) == math.inf
    assert occupancy(10, 200, 180) == 1.0
    assert occupancy(5, 200, 180) == 1.0
    assert occupancy(20, 200, 180) == 0.5


def test_zero_traffic() -> None:
    assert erlang_c(0, 0.0) == 0.0
    assert erlang_c(3, 0.0) == 0.0
    assert service_level(0, 0, 180, 20) == 1.0
    assert asa_s(0, 0, 180) == 0.0
    assert occupancy(0, 0, 180) == 0.0
    result = agents_needed(0, 180, 0.8, 60, shrinkage=0.3, max_occupancy=0.85)
    assert result == Staffing(agents=0, service_level=1.0, asa_s=0.0, occupancy=0.0, traffic_erlangs=0.0,
                              calls_per_hour=0, aht_s=180, rostered=0)  # fmt: skip


def test_large_case_without_overflow() -> None:
    # 1000 calls/h at 300 s: A = 83.3 Erlangs; factorials of 88 overflow a float
    with pytest.raises(OverflowError):
        float(math.factorial(180))
    a = Fraction(1000 * 300, 3600)
    result = agents_needed(1000, 300, 0.8, 60)
    assert result.traffic_erlangs == pytest.approx(250 / 3)
    assert result.agents == 88
    assert result.service_level == pytest.approx(exact_sl(88, a, 300, 60), rel=1e-10)
    assert result.service_level >= 0.8 > exact_sl(87, a, 300, 60)  # the smallest N
    assert result.asa_s == pytest.approx(exact_asa(88, a, 300), rel=1e-10)
    assert result.occupancy == pytest.approx(float(a) / 88)
    # hundreds and thousands of agents: finite, in [0, 1], and exact where we can check
    assert erlang_c(500, 480.0) == pytest.approx(float(exact_c(500, 480)), rel=1e-9)
    big = agents_needed(100_000, 300, 0.9, 20)
    assert big.agents > big.traffic_erlangs > 8000
    assert 0.9 <= big.service_level < 1 and math.isfinite(big.asa_s)


def test_agents_needed_is_the_smallest_meeting_the_target() -> None:
    for calls, aht, share, target in ((200, 180, 0.8, 20), (12, 240, 0.8, 60), (90, 300, 0.9, 30),
                                      (3, 600, 0.95, 10), (450, 200, 0.5, 5)):  # fmt: skip
        result = agents_needed(calls, aht, share, target)
        a = Fraction(calls * aht, 3600)
        assert result.agents > a
        assert result.service_level >= share
        assert result.service_level == pytest.approx(exact_sl(result.agents, a, aht, target), rel=1e-10)
        if result.agents - 1 > a:
            assert exact_sl(result.agents - 1, a, aht, target) < share
        assert result.rostered == result.agents  # no shrinkage


def test_max_occupancy_adds_agents() -> None:
    assert agents_needed(200, 180, 0.8, 20).agents == 14  # occupancy 71 %
    capped = agents_needed(200, 180, 0.8, 20, max_occupancy=0.7)
    assert capped.agents == 15 and capped.occupancy == pytest.approx(10 / 15)
    # exactly at the cap is allowed: A = 8.5 (170 calls at 180 s), 10 agents = 85 %
    assert agents_needed(170, 180, 0.5, 60, max_occupancy=0.85).agents == 10
    assert agents_needed(170, 180, 0.5, 60, max_occupancy=0.84).agents == 11


@pytest.mark.parametrize(("agents", "shrinkage", "expected"),
                         [(14, 0.3, 20), (21, 0.3, 30), (7, 0.3, 10), (10, 0.3, 15), (17, 0.32, 25),
                          (10, 0.0, 10), (1, 0.5, 2), (9, 0.55, 20), (0, 0.3, 0)])  # fmt: skip
def test_shrinkage_rosters_more(agents: int, shrinkage: float, expected: int) -> None:
    # ceil(N / (1 - s)) on the decimal the user gave: in floats 21 / (1 - 0.3) is
    # 30.000000000000004, which a naive ceil turns into 31
    assert rostered(agents, shrinkage) == expected
    assert expected == math.ceil(Fraction(agents) / (1 - Fraction(str(shrinkage))))


def test_shrinkage_in_agents_needed() -> None:
    plain = agents_needed(200, 180, 0.8, 20)
    shrunk = agents_needed(200, 180, 0.8, 20, shrinkage=0.25)
    assert shrunk.agents == plain.agents == 14 and shrunk.service_level == plain.service_level
    assert shrunk.rostered == 19  # 14 / 0.75 = 18.67


@pytest.mark.parametrize(("call", "message"), [
    (lambda: agents_needed(-1, 180, 0.8, 20), "calls_per_hour"),
    (lambda: agents_needed(100, 0, 0.8, 20), "aht_s"),
    (lambda: agents_needed(100, math.nan, 0.8, 20), "aht_s"),
    (lambda: agents_needed(100, 180, 80, 20), "target_share"),
    (lambda: agents_needed(100, 180, 1.0, 20), "target_share"),
    (lambda: agents_needed(100, 180, 0.8, -1), "target_s"),
    (lambda: agents_needed(100, 180, 0.8, 20, shrinkage=1.0), "shrinkage"),
    (lambda: agents_needed(100, 180, 0.8, 20, max_occupancy=0), "max_occupancy"),
    (lambda: erlang_c(2.5, 1.0), "agents"),
    (lambda: erlang_c(-1, 1.0), "agents"),
    (lambda: erlang_c(3, math.inf), "traffic"),
])  # fmt: skip
def test_bad_input_is_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- --target and JSON


@pytest.mark.parametrize(("text", "expected"), [
    ("80/60", (0.8, 60.0)), ("90/30", (0.9, 30.0)), (" 80 / 20 ", (0.8, 20.0)), ("80%/60", (0.8, 60.0)),
    ("95.5/10", (0.955, 10.0)), ("80/0", (0.8, 0.0)), ("80/60s", (0.8, 60.0)),
])  # fmt: skip
def test_parse_target(text: str, expected: tuple[float, float]) -> None:
    assert parse_target(text) == pytest.approx(expected)


def test_parse_target_error_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_target("80%")
    assert str(info.value) == '--target: expected SHARE/SECONDS like 80/60, got "80%"'


@pytest.mark.parametrize("text", ["80", "", "80/", "/60", "eighty/60", "80/60/5", "80/-5", "-80/60", "80,60"])
def test_parse_target_refuses_malformed(text: str) -> None:
    with pytest.raises(StaffingError, match=r'^--target: expected SHARE/SECONDS like 80/60, got "'):
        parse_target(text)


@pytest.mark.parametrize("text", ["0.8/60", "1/60", "100/60", "120/60", "0/60"])
def test_parse_target_wants_a_percentage(text: str) -> None:
    with pytest.raises(StaffingError, match="percentage"):
        parse_target(text)


def test_as_json() -> None:
    data = as_json(agents_needed(200, 180, 0.8, 20, shrinkage=0.3))
    assert data == {"agents": 14, "service_level": 0.8884, "asa_s": 7.8, "occupancy": 0.7143,
                    "traffic_erlangs": 10.0, "calls_per_hour": 200, "aht_s": 180, "rostered": 20}  # fmt: skip
    assert json.loads(json.dumps(data)) == data
    overloaded = Staffing(agents=9, service_level=0.0, asa_s=math.inf, occupancy=1.0, traffic_erlangs=10.0,
                          calls_per_hour=200, aht_s=180, rostered=9)  # fmt: skip
    assert as_json(overloaded)["asa_s"] is None
    json.dumps(as_json(overloaded), allow_nan=False)


def test_staffing_is_frozen() -> None:
    result = agents_needed(200, 180, 0.8, 20)
    with pytest.raises(AttributeError):
        result.agents = 3  # type: ignore[misc]


def test_module_uses_the_standard_library_only() -> None:
    tree = ast.parse((ROOT / "ivr" / "staffing.py").read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    roots = {name.split(".")[0] for name in names}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots
    assert not roots & {"aiohttp", "twilio", "panoramisk", "ivr"}


# --------------------------------------------------------------------------- from the log

COLUMNS = ("call_id", "local_date", "local_hour", "queue", "queue_outcome", "talk_s", "wrapup_s")
# (date, hour, queue, outcome, talk, wrap-up); handle = talk + wrap-up over answered calls
CALLS = [
    ("2026-03-01", 8, "vaxeln", "answered", 900, 0),  # before the range
    ("2026-03-02", 8, "vaxeln", "answered", 200, 40),  # handle 240
    ("2026-03-02", 8, "vaxeln", "answered", 100, None),  # 100: wrap-up not coded counts 0
    ("2026-03-02", 8, "vaxeln", "abandoned", None, None),
    ("2026-03-02", 8, "bygglov", "answered", 300, 60),  # 360
    ("2026-03-02", 9, "vaxeln", "closed", None, None),
    ("2026-03-02", 9, None, None, None, None),  # served by the IVR: not an arrival
    ("2026-03-03", 8, "vaxeln", "answered", 180, 20),  # 200
    ("2026-03-03", 8, "vaxeln", "overflow", None, None),
    ("2026-03-03", 10, "vaxeln", "callback", None, None),
    ("2026-03-03", 10, "vaxeln", "answered", None, None),  # an arrival, but no talk time to measure
    ("2026-03-03", 14, "vaxeln", "answered", 450, 150),  # 600
    ("2026-03-04", 11, None, None, None, None),  # a day with calls, none queued
    # 2026-03-05 and 03-06: no calls at all (the switchboard was shut): not counted
    ("2026-03-10", 8, "vaxeln", "answered", 1000, 0),  # after the range
]


def make_log(path: Path, calls: list[tuple] = CALLS) -> Path:
    conn = sqlite3.connect(path)
    for statement in (*CALLS_V2, *CALLS_V3):  # the real calls table of the event log
        conn.execute(statement)
    conn.executemany(f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(f"c{i}", *row) for i, row in enumerate(calls)])  # fmt: skip
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return make_log(tmp_path / "ivr.db")


def test_hourly_demand_all_queues(log: Path) -> None:
    hours = hourly_demand(log, "2026-03-02", "2026-03-06")
    assert [h.hour for h in hours] == list(range(24))
    assert {h.days for h in hours} == {3}  # 03-02, 03-03, 03-04 had calls
    by = {h.hour: h for h in hours}
    # hour 8: 4 + 2 queued calls over 3 days; AHT (240 + 100 + 360 + 200) / 4
    assert (by[8].queued_calls, by[8].calls_per_hour) == (6, 2.0)
    assert (by[8].answered_calls, by[8].aht_s, by[8].aht_fallback) == (4, 225.0, False)
    # hour 14: one answered call of 600 s
    assert (by[14].queued_calls, by[14].aht_s, by[14].aht_fallback) == (1, 600.0, False)
    assert by[14].calls_per_hour == pytest.approx(1 / 3)
    # hours 9 and 10: arrivals without a measured handle time -> the range's AHT, 1500 / 5
    assert (by[9].queued_calls, by[9].answered_calls, by[9].aht_s, by[9].aht_fallback) == (1, 0, 300.0, True)
    assert (by[10].queued_calls, by[10].answered_calls, by[10].aht_s) == (2, 0, 300.0)
    assert by[10].calls_per_hour == pytest.approx(2 / 3)
    # hour 11: only a call the IVR served
    assert (by[11].queued_calls, by[11].calls_per_hour) == (0, 0.0)
    assert sum(h.queued_calls for h in hours) == 10


def test_hourly_demand_one_queue(log: Path) -> None:
    hours = {h.hour: h for h in hourly_demand(log, date(2026, 3, 2), date(2026, 3, 6), queue="vaxeln")}
    assert hours[8].days == 2  # vaxeln had calls on 03-02 and 03-03
    assert (hours[8].queued_calls, hours[8].calls_per_hour, hours[8].aht_s) == (5, 2.5, 180.0)  # 540 / 3
    assert (hours[9].calls_per_hour, hours[9].aht_s) == (0.5, 285.0)  # fallback (540 + 600) / 4
    assert (hours[10].calls_per_hour, hours[14].calls_per_hour, hours[14].aht_s) == (1.0, 0.5, 600.0)
    bygglov = {h.hour: h for h in hourly_demand(log, "2026-03-02", "2026-03-06", queue="bygglov")}
    assert (bygglov[8].days, bygglov[8].calls_per_hour, bygglov[8].aht_s) == (1, 1.0, 360.0)
    assert sum(h.queued_calls for h in bygglov.values()) == 1
    assert all(h.calls_per_hour == 0 for h in hourly_demand(log, "2026-03-02", "2026-03-06", queue="nope"))


def test_hourly_demand_single_day_and_empty_range(log: Path) -> None:
    day = {h.hour: h for h in hourly_demand(log, "2026-03-10", "2026-03-10")}
    assert (day[8].days, day[8].calls_per_hour, day[8].aht_s) == (1, 1.0, 1000.0)
    empty = hourly_demand(log, "2026-03-05", "2026-03-06")
    assert all(h.days == 0 and h.calls_per_hour == 0.0 and h.aht_s is None for h in empty)


def test_staffing_from_log(log: Path) -> None:
    rows = staffing_from_log(log, "2026-03-02", "2026-03-06", 0.8, 60)
    assert [r["hour"] for r in rows] == list(range(24))
    by = {r["hour"]: r for r in rows}
    # hour 8: 2 calls/h at 225 s = 0.125 Erlangs. One agent is an M/M/1 queue, where the
    # chance of waiting is the load: SL = 1 - 0.125 exp(-0.875 * 60 / 225) = 0.9010,
    # ASA = 0.125 * 225 / 0.875 = 32.14 s.
    assert by[8]["agents"] == 1
    assert by[8]["calls_per_hour"] == 2.0 and by[8]["aht_s"] == 225.0
    assert by[8]["service_level"] == round(1 - 0.125 * math.exp(-0.875 * 60 / 225), 4) == 0.901
    assert by[8]["asa_s"] == 32.1
    assert by[8]["traffic_erlangs"] == 0.125 and by[8]["occupancy"] == 0.125
    # hour 14: 1/3 call/h at 600 s = 1/18 Erlang
    assert by[14]["agents"] == 1 and by[14]["calls_per_hour"] == 0.33
    assert by[14]["asa_s"] == round((1 / 18) * 600 / (17 / 18), 1) == 35.3
    # an hour without calls needs nobody
    q = by[3]
    assert (q["agents"], q["service_level"], q["asa_s"], q["rostered"]) == (0, 1.0, 0.0, 0)
    assert q["calls_per_hour"] == 0
    # every hour with calls is agents_needed on that hour's demand
    demand = hourly_demand(log, "2026-03-02", "2026-03-06")
    for r, d in zip(rows, demand, strict=True):
        for key in ("hour", "calls_per_hour", "aht_s", "agents", "service_level", "asa_s"):
            assert isinstance(r[key], int | float), (key, r)  # the CLI formats them as numbers
        if d.queued_calls:
            assert r == {"hour": d.hour, "days": 3, "queued_calls": d.queued_calls,
                         "aht_fallback": d.aht_fallback,
                         **as_json(agents_needed(d.calls_per_hour, d.aht_s, 0.8, 60))}  # fmt: skip
    assert [r["hour"] for r in rows if r["agents"]] == [8, 9, 10, 14]
    json.dumps(rows, allow_nan=False)


def test_staffing_from_log_busier_hour(tmp_path: Path) -> None:
    # one day, hour 9: 200 calls answered, each 150 s talk + 30 s wrap-up -> the worked example
    calls = [("2026-03-02", 9, "vaxeln", "answered", 150, 30)] * 200
    rows = staffing_from_log(make_log(tmp_path / "busy.db", calls), "2026-03-02", "2026-03-02", 0.8, 20,
                             queue="vaxeln", shrinkage=0.3)  # fmt: skip
    assert rows[9] == {"hour": 9, "days": 1, "queued_calls": 200, "calls_per_hour": 200, "aht_s": 180.0,
                            "aht_fallback": False, "agents": 14, "service_level": 0.8884, "asa_s": 7.8,
                            "occupancy": 0.7143, "traffic_erlangs": 10.0, "rostered": 20}  # fmt: skip


def test_staffing_from_log_without_handle_times(tmp_path: Path) -> None:
    path = make_log(tmp_path / "abandoned.db", [("2026-03-02", 9, "vaxeln", "abandoned", None, None)])
    assert hourly_demand(path, "2026-03-02", "2026-03-02")[9].aht_s is None
    with pytest.raises(StaffingError, match="handle time cannot be measured"):
        staffing_from_log(path, "2026-03-02", "2026-03-02", 0.8, 60)
    rows = staffing_from_log(path, "2026-03-03", "2026-03-03", 0.8, 60)  # no calls at all: fine
    assert {r["agents"] for r in rows} == {0}


def test_log_is_only_read(log: Path) -> None:
    before = hashlib.sha256(log.read_bytes()).hexdigest()
    staffing_from_log(log, "2026-03-02", "2026-03-06", 0.8, 60)
    assert hashlib.sha256(log.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in log.parent.iterdir()) == ["ivr.db"]


def test_log_errors(tmp_path: Path, log: Path) -> None:
    with pytest.raises(StaffingError, match="no such event log"):
        hourly_demand(tmp_path / "missing.db", "2026-03-02", "2026-03-06")
    with pytest.raises(StaffingError, match="before date_from"):
        hourly_demand(log, "2026-03-06", "2026-03-02")
    with pytest.raises(StaffingError, match="YYYY-MM-DD"):
        hourly_demand(log, "2 mars", "2026-03-06")
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(StaffingError, match="calls table"):
        hourly_demand(other, "2026-03-02", "2026-03-06")


def test_staffing_module_exports() -> None:
    for name in ("erlang_c", "service_level", "asa_s", "occupancy", "agents_needed", "parse_target",
                 "hourly_demand", "staffing_from_log", "as_json", "Staffing", "HourDemand"):  # fmt: skip
        assert hasattr(staffing, name)
