"""How many agents a queue needs: Erlang C, from a forecast or from the event log.

Erlang C is the M/M/N queue: calls arrive at random (Poisson) at ``calls_per_hour``,
each keeps an agent busy for an exponentially distributed handle time with mean
``aht_s`` (talk + wrap-up), ``N`` agents serve one first-come-first-served queue and
nobody hangs up while waiting. With the traffic ``A = calls_per_hour * aht_s / 3600``
(Erlangs: the number of agents that would be busy all the time) and ``N > A``:

* ``erlang_c(N, A)`` -- the probability that a call has to wait at all, computed through
  the Erlang B recursion ``B(n) = A B(n-1) / (n + A B(n-1))`` and
  ``C = N B / (N - A (1 - B))``: no factorials, no overflow, hundreds of agents are fine;
* ``service_level`` -- the share answered within ``T`` seconds, ``1 - C exp(-(N - A) T / AHT)``;
* ``asa_s`` -- the average speed of answer over all calls, ``C AHT / (N - A)``;
* ``occupancy`` -- the share of agent time spent on calls, ``A / N``.

With ``N <= A`` the queue grows without bound: service level 0, ASA infinite,
occupancy 1. What the numbers mean and where the model is wrong (callers who abandon,
peaks inside the hour) is in ``docs/staffing.md``.

Pure computation except :func:`hourly_demand`, which reads the derived ``calls`` table of
the event log through a read-only connection. Standard library only.
"""

from __future__ import annotations

import math
import operator
import re
import sqlite3
from dataclasses import asdict, dataclass
from datetime import date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

SECONDS_PER_HOUR = 3600.0
_OCCUPANCY_SLACK = 1e-12  # A / N is compared with max_occupancy after rounding errors in A
_TARGET = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*/\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:s)?\s*")


class StaffingError(ValueError):
    """The staffing cannot be computed as asked (bad input, no usable log)."""


@dataclass(frozen=True, slots=True)
class Staffing:
    """The smallest staffing that meets a target, and what it achieves.

    ``agents`` must be on the phones (logged in, available or busy with calls) for the
    whole hour; ``rostered`` is how many to schedule once shrinkage (breaks, meetings,
    training, sick leave) takes its share: ``ceil(agents / (1 - shrinkage))``.
    """

    agents: int
    service_level: float
    asa_s: float
    occupancy: float
    traffic_erlangs: float
    calls_per_hour: float
    aht_s: float
    rostered: int


@dataclass(frozen=True, slots=True)
class HourDemand:
    """What the log says about one local hour of the day (0-23), averaged over days.

    ``days`` is the number of days in the range that had any calls (the divisor),
    ``queued_calls`` the calls that reached a queue in this hour over all those days,
    ``calls_per_hour`` their mean per day. ``answered_calls`` are the answered calls
    with a talk time, the basis of ``aht_s`` (talk + wrap-up); when the hour has none,
    ``aht_s`` is the AHT of the whole range and ``aht_fallback`` is true. ``aht_s`` is
    None only when the range has no answered call with a talk time at all.
    """

    hour: int
    days: int
    queued_calls: int
    calls_per_hour: float
    answered_calls: int
    aht_s: float | None
    aht_fallback: bool


# --------------------------------------------------------------------------- Erlang C


def traffic_erlangs(calls_per_hour: float, aht_s: float) -> float:
    """The offered traffic in Erlangs: calls per hour times hours of handling per call."""
    return _non_negative("calls_per_hour", calls_per_hour) * _non_negative("aht_s", aht_s) / SECONDS_PER_HOUR


def erlang_b(agents: int, traffic: float) -> float:
    """Blocking probability of ``agents`` servers without a queue (the Erlang B recursion)."""
    n = _agents(agents)
    a = _non_negative("traffic_erlangs", traffic)
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(agents: int, traffic_erlangs: float) -> float:
    """The probability that a call has to wait (Erlang C), via Erlang B.

    1.0 when ``agents <= traffic_erlangs`` (an overloaded queue: everyone waits), 0.0
    with no traffic.
    """
    n = _agents(agents)
    a = _non_negative("traffic_erlangs", traffic_erlangs)
    return _c_from_b(n, a, erlang_b(n, a))


def _c_from_b(n: int, a: float, b: float) -> float:
    if a == 0:
        return 0.0
    if n <= a:
        return 1.0
    return n * b / (n - a * (1.0 - b))


def service_level(agents: int, calls_per_hour: float, aht_s: float, target_s: float) -> float:
    """The share of calls answered within ``target_s`` seconds: ``1 - C exp(-(N - A) T / AHT)``."""
    n, a = _agents(agents), _load(calls_per_hour, aht_s)
    t = _non_negative("target_s", target_s)
    return _service_level(n, a, aht_s, t, erlang_c(n, a))


def _service_level(n: int, a: float, aht_s: float, target_s: float, c: float) -> float:
    if a == 0:
        return 1.0
    if n <= a:
        return 0.0
    return 1.0 - c * math.exp(-(n - a) * target_s / aht_s)


def asa_s(agents: int, calls_per_hour: float, aht_s: float) -> float:
    """The average speed of answer in seconds, over all calls: ``C AHT / (N - A)``.

    ``math.inf`` when ``agents <= traffic`` (the queue grows without bound).
    """
    n, a = _agents(agents), _load(calls_per_hour, aht_s)
    return _asa(n, a, aht_s, erlang_c(n, a))


def _asa(n: int, a: float, aht_s: float, c: float) -> float:
    if a == 0:
        return 0.0
    if n <= a:
        return math.inf
    return c * aht_s / (n - a)


def occupancy(agents: int, calls_per_hour: float, aht_s: float) -> float:
    """The share of the agents' time spent on calls: ``A / N``, at most 1."""
    n, a = _agents(agents), _load(calls_per_hour, aht_s)
    return _occupancy(n, a)


def _occupancy(n: int, a: float) -> float:
    if a == 0:
        return 0.0
    return 1.0 if n <= a else a / n


def agents_needed(
    calls_per_hour: float,
    aht_s: float,
    target_share: float,
    target_s: float,
    *,
    max_occupancy: float | None = None,
    shrinkage: float = 0.0,
) -> Staffing:
    """The smallest number of agents ``N > A`` that answers ``target_share`` of the calls
    within ``target_s`` seconds (and keeps occupancy at or below ``max_occupancy``).

    ``target_share`` is a fraction (0.8 for 80 %). ``shrinkage`` is the share of paid
    time not on the phones (0.3 = 30 %); it only changes ``rostered``. With no calls the
    answer is 0 agents, service level 1.0, ASA 0.
    """
    a = _load(calls_per_hour, aht_s)
    t = _non_negative("target_s", target_s)
    if not (isinstance(target_share, int | float) and 0 < target_share < 1):
        raise StaffingError(f"target_share must be a fraction above 0 and below 1 (0.8 for 80 %), "
                            f"got {target_share!r}")  # fmt: skip
    if max_occupancy is not None and not (isinstance(max_occupancy, int | float) and 0 < max_occupancy <= 1):
        raise StaffingError(f"max_occupancy must be above 0 and at most 1, got {max_occupancy!r}")
    if not (isinstance(shrinkage, int | float) and 0 <= shrinkage < 1):
        raise StaffingError(f"shrinkage must be at least 0 and below 1 (0.3 for 30 %), got {shrinkage!r}")
    if a == 0:
        return _no_calls(calls_per_hour, aht_s)
    n = math.floor(a) + 1  # the first N > A
    b = erlang_b(n, a)
    while True:
        c = _c_from_b(n, a, b)
        level = _service_level(n, a, aht_s, t, c)
        if level >= target_share and (max_occupancy is None or a / n <= max_occupancy + _OCCUPANCY_SLACK):
            break
        n += 1
        b = a * b / (n + a * b)  # one more step of the Erlang B recursion
    return Staffing(agents=n, service_level=level, asa_s=_asa(n, a, aht_s, c),
                    occupancy=_occupancy(n, a), traffic_erlangs=a, calls_per_hour=calls_per_hour,
                    aht_s=aht_s, rostered=rostered(n, shrinkage))  # fmt: skip


def _no_calls(calls_per_hour: float, aht_s: float) -> Staffing:
    return Staffing(agents=0, service_level=1.0, asa_s=0.0, occupancy=0.0, traffic_erlangs=0.0,
                    calls_per_hour=calls_per_hour, aht_s=aht_s, rostered=0)  # fmt: skip


def rostered(agents: int, shrinkage: float) -> int:
    """``ceil(agents / (1 - shrinkage))``, exact for decimal shrinkage (21 at 0.3 is 30, not 31)."""
    n = _agents(agents)
    if not (isinstance(shrinkage, int | float) and 0 <= shrinkage < 1):
        raise StaffingError(f"shrinkage must be at least 0 and below 1 (0.3 for 30 %), got {shrinkage!r}")
    # Fraction(str(0.3)) is exactly 3/10, where the float 1 - 0.3 would make 21 / 0.7 = 30.000000000000004.
    return math.ceil(Fraction(n) / (1 - Fraction(str(shrinkage))))


def as_json(staffing: Staffing) -> dict[str, Any]:
    """A JSON-ready dict of a :class:`Staffing`, rounded for people to read.

    Shares (service level, occupancy) to 4 decimals, seconds to 1, Erlangs to 3, calls
    per hour to 2; an infinite ASA becomes None (JSON has no infinity).
    """
    data = asdict(staffing)
    for key, digits in (("service_level", 4), ("occupancy", 4), ("asa_s", 1), ("aht_s", 1),
                        ("traffic_erlangs", 3), ("calls_per_hour", 2)):  # fmt: skip
        value = data[key]
        data[key] = None if not math.isfinite(value) else round(value, digits)
    return data


def parse_target(text: str) -> tuple[float, float]:
    """``"80/60"`` -> ``(0.8, 60.0)``: the share in percent, then the seconds."""
    match = _TARGET.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise StaffingError(f'--target: expected SHARE/SECONDS like 80/60, got "{text}"')
    share, seconds = float(match[1]), float(match[2])
    if not 1 < share < 100:
        raise StaffingError(f"--target: the share is a percentage above 1 and below 100 "
                            f'(80/60 means 80 % within 60 s), got "{text}"')  # fmt: skip
    return share / 100, seconds


# --------------------------------------------------------------------------- the log

_DAYS_SQL = "SELECT COUNT(DISTINCT local_date) FROM calls WHERE local_date BETWEEN :first AND :last"
_HOURS_SQL = """SELECT local_hour, COUNT(*),
  SUM(queue_outcome = 'answered' AND talk_s IS NOT NULL),
  SUM(CASE WHEN queue_outcome = 'answered' AND talk_s IS NOT NULL
      THEN talk_s + IFNULL(wrapup_s, 0) END)
FROM calls WHERE local_date BETWEEN :first AND :last AND queue_outcome IS NOT NULL
  AND local_hour BETWEEN 0 AND 23"""
_QUEUE_SQL = " AND queue = :queue"


def hourly_demand(
    db_path: str | Path, date_from: date | str, date_to: date | str, queue: str | None = None
) -> list[HourDemand]:
    """Arrivals and handle times per local hour of the day (24 rows, hour 0 first).

    Read from the event log's ``calls`` table for the local dates ``date_from`` ..
    ``date_to`` (inclusive). A call *arrived* when it reached a queue (it has a queue
    outcome: answered, abandoned, overflow, closed, callback, callback-failed). The
    mean is taken over the days in the range that had any call at all (of ``queue``
    when given), so days the switchboard was shut do not dilute the figures. AHT is
    talk + wrap-up (a missing wrap-up counts as 0) over the answered calls.
    """
    first = local_day(date_from, "date_from", StaffingError)
    last = local_day(date_to, "date_to", StaffingError)
    if last < first:
        raise StaffingError(f"date_to {last} is before date_from {first}")
    params = {"first": first.isoformat(), "last": last.isoformat(), "queue": queue}
    where_queue = _QUEUE_SQL if queue is not None else ""
    conn = _connect(Path(db_path))
    try:
        days = conn.execute(_DAYS_SQL + where_queue, params).fetchone()[0]
        rows = conn.execute(_HOURS_SQL + where_queue + " GROUP BY local_hour", params).fetchall()
    except sqlite3.Error as exc:
        raise StaffingError(f"{db_path}: cannot read the calls table: {exc}") from exc
    finally:
        conn.close()
    by_hour = {int(hour): (queued, answered or 0, handle or 0.0) for hour, queued, answered, handle in rows}
    total_answered = sum(answered for _, answered, _ in by_hour.values())
    overall = sum(handle for _, _, handle in by_hour.values()) / total_answered if total_answered else None
    result = []
    for hour in range(24):
        queued, answered, handle = by_hour.get(hour, (0, 0, 0.0))
        result.append(HourDemand(
            hour=hour, days=days, queued_calls=queued,
            calls_per_hour=queued / days if days else 0.0,
            answered_calls=answered,
            aht_s=handle / answered if answered else overall,
            aht_fallback=not answered and overall is not None,
        ))  # fmt: skip
    return result


def staffing_from_log(
    db_path: str | Path,
    date_from: date | str,
    date_to: date | str,
    target_share: float,
    target_s: float,
    queue: str | None = None,
    *,
    max_occupancy: float | None = None,
    shrinkage: float = 0.0,
) -> list[dict[str, Any]]:
    """The agents needed in each local hour of the day, from the arrivals and AHT measured
    in the log (see :func:`hourly_demand`).

    One JSON-ready dict per hour 0-23: ``hour``, ``days``, ``queued_calls``,
    ``calls_per_hour``, ``aht_s``, ``aht_fallback`` and the :func:`as_json` fields
    (``agents``, ``service_level``, ``asa_s``, ``occupancy``, ``traffic_erlangs``,
    ``rostered``). An hour without calls needs 0 agents. Raises :class:`StaffingError`
    when calls arrived but no answered call in the range has a talk time to measure AHT.
    """
    demand = hourly_demand(db_path, date_from, date_to, queue)
    rows = []
    for d in demand:
        if d.queued_calls and d.aht_s is None:
            raise StaffingError(f"no answered call with a talk time between {date_from} and {date_to}"
                                f"{f' in queue {queue}' if queue else ''}: the handle time cannot be "
                                "measured; give --calls-per-hour and --aht-s instead")  # fmt: skip
        aht = d.aht_s if d.aht_s is not None else 0.0
        if d.queued_calls:
            staffing = agents_needed(d.calls_per_hour, aht, target_share, target_s,
                                     max_occupancy=max_occupancy, shrinkage=shrinkage)  # fmt: skip
        else:
            staffing = _no_calls(0.0, aht)
        row = as_json(staffing)
        rows.append({"hour": d.hour, "days": d.days, "queued_calls": d.queued_calls,
                     "calls_per_hour": row.pop("calls_per_hour"), "aht_s": row.pop("aht_s"),
                     "aht_fallback": d.aht_fallback, **row})  # fmt: skip
    return rows


# --------------------------------------------------------------------------- helpers


def _agents(agents: int) -> int:
    try:
        n = operator.index(agents)
    except TypeError:
        raise StaffingError(f"agents must be a whole number, got {agents!r}") from None
    if n < 0:
        raise StaffingError(f"agents must be at least 0, got {n}")
    return n


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise StaffingError(f"{name} must be a finite number at least 0, got {value!r}")
    return float(value)


def _load(calls_per_hour: float, aht_s: float) -> float:
    """The traffic in Erlangs, checking that a handle time is given (> 0)."""
    _non_negative("aht_s", aht_s)
    if aht_s == 0:
        raise StaffingError("aht_s must be above 0 seconds")
    return traffic_erlangs(calls_per_hour, aht_s)


def local_day(value: date | str, name: str, error: type[Exception] = ValueError) -> date:
    """``value`` as a local date (a ``date`` or ``YYYY-MM-DD``); ``error`` naming ``name`` if not.
    Shared with :mod:`ivr.metrics` (this module imports the standard library only)."""
    if isinstance(value, datetime):
        raise error(f"{name} must be a local date, not a time: {value!r}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be a date YYYY-MM-DD, not {value!r}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StaffingError(f"{path}: no such event log")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as exc:
        raise StaffingError(f"{path}: cannot be read: {exc}") from exc
    return conn
