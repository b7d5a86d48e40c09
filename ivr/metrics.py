"""KPIs and first-contact resolution from the event log, for a period of local days.

Everything is read from the derived ``calls`` rows and from ``agent_events``; nothing is
written. Every figure is defined in ``docs/metrics.md``: the names in :data:`KPI_NAMES`
are the contract between this module, the reports and that page.

How a year (a million calls) stays near a second or two, on two threads with their own
read-only connections (SQLite releases the GIL while it works):

1. Repeat contacts: one pass along the covering index ``calls_repeat`` (caller hash,
   category, start, ...), where the next call of the same caller is one nearby seek,
   gives the calls followed up within the window (two halves of the hash space).
2. Agent time: one pass over the ``agent_events_hour`` index (hour, state, prev_state).
3. The calls themselves, in slices of days: each groups its calls by (local date, queue,
   local hour, category) in ``calls_report`` index order, so no sort, and rolls that cube
   up per queue, category, hour and day. Counts are flags summed four to an integer.

Messages to case officers (``messages``, schema 4) are few: their figures per unit
(:func:`message_figures`) are read row by row and added under ``messages``. So are the
calls with an agent transfer: their events go through :func:`ivr.transfer_report.
transfer_report` (:func:`transfer_figures`), under ``agent_transfers``.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import sqlite3
import statistics
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ivr.staffing import local_day
from ivr.transfer_report import transfer_report

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SCHEMA_VERSION = 5  # of the event log this module reads (ivr.store.SCHEMA_VERSION)

KPI_NAMES = (
    "calls", "offered", "answered", "abandoned", "short_abandoned", "overflowed", "closed",
    "service_level", "asa_s", "aht_s", "longest_wait_s", "transfers", "callbacks_requested",
    "callbacks_completed", "occupancy", "handled", "handed_off", "fcr_coded", "uncoded", "fcr_repeat",
    "fcr_repeat_pending", "fcr_repeat_excluded", "fcr_survey", "survey_answers",
    "ivr_self_service", "ivr_self_service_pending",
)  # fmt: skip
SCOPES = ("by_queue", "by_category", "by_hour", "by_day")
NONE_KEY = "(none)"  # the by_queue / by_category key of calls without a queue or category
BUSY = ("talking", "wrapup")
LOGGED_IN = ("available", "offered", "talking", "wrapup")
WORKERS = 2


class MetricsError(ValueError):
    """The report cannot be computed as asked (bad dates, not an event log, ...)."""


# --------------------------------------------------------------------------- per call

_HANDLED = "(x.queue_outcome = 'answered' OR x.callback_completed = 1)"  # an agent took it
_OWNED = "(x.caller_hash IS NOT NULL AND x.category IS NOT NULL)"  # a repeat can be told
_IVR = "x.\"end\" = 'hangup' AND x.queue_outcome IS NULL AND x.caller_hash IS NOT NULL"
_CLOSED = "x.started_at <= :closed_before"  # the repeat window has closed by as_of
_KEPT = "IFNULL(x.handed_off, 0) = 0"  # no message was left: may count as resolved
# (guard, terms): a term is one count (name, condition) or a choice of counts that
# exclude each other, tested in order (a None condition: all the rest). Terms are only
# tested where the guard holds.
_COUNTS = (  # in this order, four to a word (see _layout)
    (_HANDLED, ((("handled", "1"),), (("handle_n", "x.talk_s IS NOT NULL"),),
                (("coded", "x.coded = 1"),),
                (("resolved", f"x.coded = 1 AND x.resolution = 'resolved' AND {_KEPT}"),),
                (("repeat_excluded", f"NOT {_OWNED}"), ("repeat_pending", f"NOT {_CLOSED}"),
                 ("repeat_closed", None)))),
    (_IVR, ((("ivr_pending", f"NOT {_CLOSED}"),),)),
    ("x.queue_outcome = 'answered'", ((("answered", "1"),), (("answered_in_time", "x.wait_s <= :sl"),),
                                      (("wait_n", "x.wait_s IS NOT NULL"),))),
    ("1", ((("survey_yes", f"x.survey = 'yes' AND {_KEPT}"),  # a "yes" on a message: not resolved
            ("survey_no", "x.survey IN ('yes', 'no')")),
           (("handed_off", "x.handed_off = 1"),),
           (("callbacks_requested", "x.callback_requested = 1"),),
           (("callbacks_completed", "x.callback_completed = 1"),))),
    ("x.queue_outcome = 'abandoned'", ((("abandoned_all", "1"),), (("short", "x.wait_s < :short"),),
                                       (("abandoned_late", "x.wait_s > :sl AND x.wait_s >= :short"),))),
    ("x.queued_at IS NOT NULL", ((("reached", "1"),), (("overflowed", "x.queue_outcome = 'overflow'"),
                                                       ("closed", "x.queue_outcome = 'closed'")))),
)  # fmt: skip
_PLAIN = (  # (name, aggregate, SQL)
    ("calls", "COUNT", "*"),
    ("wait_sum", "TOTAL", "CASE WHEN x.queue_outcome = 'answered' THEN x.wait_s END"),
    ("handle_sum", "TOTAL", f"CASE WHEN x.talk_s IS NOT NULL AND {_HANDLED}"
     " THEN x.talk_s + IFNULL(x.wrapup_s, 0) END"),
    ("longest", "MAX", "CASE WHEN x.queued_at IS NOT NULL THEN x.wait_s END"),
    ("transfers", "SUM", "x.transfers"),
)  # fmt: skip
_KEYS = {"by_queue": "q", "by_category": "c", "by_hour": "h", "by_day": "d"}
# Packing: (bits per count, counts per SQL integer); a slice holds fewer calls than
# 2**bits, so a rolled-up count never spills into its neighbour (_calls_slice checks).
_NARROW, _WIDE = (15, 4), (21, 3)
SLICE_CALLS = 29_000  # per slice: under 2**15, with room for calls logged meanwhile


@functools.cache
def _layout(packing: tuple[int, int]) -> tuple[list[str], list[tuple[str, int, int]]]:
    """The SQL of each packed integer, and where each count sits: (name, word, slot)."""
    bits, per = packing
    words: list[dict[str, list[str]]] = [{}]
    where: list[tuple[str, int, int]] = []
    used = 0
    for guard, terms in _COUNTS:
        for term in terms:
            if used + len(term) > per:
                words.append({})
                used = 0
            shifts = [1 << (bits * (used + i)) for i in range(len(term))]
            where += [(name, len(words) - 1, used + i) for i, (name, _) in enumerate(term)]
            used += len(term)
            if term[0][1] == "1":
                sql = str(shifts[0])
            else:
                sql = "CASE " + " ".join(f"WHEN {cond} THEN {shift}" if cond else f"ELSE {shift}"
                                         for (_, cond), shift in zip(term, shifts, strict=True))
                sql += "" if term[-1][1] is None else " ELSE 0"
                sql += " END"
            words[-1].setdefault(guard, []).append(sql)
    sqls = [" + ".join(" + ".join(terms) if guard == "1" else
                       f"CASE WHEN {guard} THEN {' + '.join(terms)} ELSE 0 END"
                       for guard, terms in word.items()) for word in words]  # fmt: skip
    return sqls, where


_SUMS = (*(name for _, terms in _COUNTS for term in terms for name, _ in term),
         *(name for name, _, _ in _PLAIN), "repeated", "ivr_served")  # fmt: skip


@functools.cache
def _calls_sql(packing: tuple[int, int], with_queue: bool) -> str:
    words, _ = _layout(packing)
    cells = [f"SUM({word}) AS p{i}" for i, word in enumerate(words)]
    cells += [f"{how}({expr}) AS {name}" for name, how, expr in _PLAIN]
    rolled = ", ".join([f"SUM(p{i})" for i in range(len(words))]
                       + [f"{'MAX' if how == 'MAX' else 'SUM'}({name})" for name, how, _ in _PLAIN])
    where = "x.local_date BETWEEN :first AND :last" + (" AND x.queue = :queue" if with_queue else "")
    return _rollups("SELECT x.local_date AS d, x.queue AS q, x.local_hour AS h, x.category AS c, "
                    + ", ".join(cells) + f" FROM calls x INDEXED BY calls_report WHERE {where}"
                    " GROUP BY d, q, h, c", rolled)  # fmt: skip


def _rollups(cube: str, columns: str) -> str:
    """SQL: the cube (cells by date, queue, hour, category) summed up per scope."""
    scopes = [f"SELECT 'total', NULL, {columns} FROM cube"] + [
        f"SELECT '{scope}', {key}, {columns} FROM cube GROUP BY {key}" for scope, key in _KEYS.items()
    ]
    return f"WITH cube AS MATERIALIZED ({cube}) " + " UNION ALL ".join(scopes)


def _unpack(values: list[Any], packing: tuple[int, int]) -> dict[str, Any]:
    """One rolled-up row of the SQL above -> {count name: value}."""
    bits = packing[0]
    words, where = _layout(packing)
    out = {name: ((values[word] or 0) >> (bits * slot)) & ((1 << bits) - 1)
           for name, word, slot in where}  # fmt: skip
    for (name, _, _), value in zip(_PLAIN, values[len(words):], strict=True):
        out[name] = value if value is not None or name == "longest" else 0
    return out


# Repeat contacts, along calls_repeat (it covers the query: no table reads): of the
# calls whose window has closed, those the same caller followed up within the window,
# about the same category after an agent handled it, about anything after an
# information message. The next call of a caller is a seek next door in the index.
_NEXT = ("(SELECT MIN(m.started_at) FROM calls m INDEXED BY calls_repeat WHERE m.caller_hash ="
         " n.caller_hash{} AND m.started_at > n.started_at)")
_FOLLOWED = f"""SELECT n.local_date AS d, n.queue AS q, n.local_hour AS h, n.category AS c,
CASE WHEN n.category IS NOT NULL AND (n.queue_outcome = 'answered' OR n.callback_completed = 1)
 THEN CASE WHEN n.handed_off = 1 THEN 1 ELSE
 julianday({_NEXT.format(" AND m.category = n.category")}) - julianday(n.started_at) <= :days END
 END AS repeated,
CASE WHEN n."end" = 'hangup' AND n.queue_outcome IS NULL THEN IFNULL(julianday({_NEXT.format("")})
 - julianday(n.started_at) > :days, 1) END AS served
FROM calls n INDEXED BY calls_repeat WHERE n.caller_hash >= :lo AND n.caller_hash < :hi
AND n.started_at <= :closed_before AND n.local_date BETWEEN :first AND :last"""
# (LIMIT -1 OFFSET 0 below keeps SQLite from inlining the subquery, which would make
# every seek twice: once to filter, once to sum)
_HASH_HALVES = (("", "8"), ("8", "\U0010ffff"))  # hex hashes split evenly; any text is covered


@functools.cache
def _followed_sql(with_queue: bool) -> str:
    rows = _FOLLOWED + (" AND n.queue = :queue" if with_queue else "") + " LIMIT -1 OFFSET 0"
    return _rollups(f"SELECT d, q, h, c, SUM(repeated) AS repeated, SUM(served) AS served FROM"
                    f" ({rows}) WHERE repeated OR served GROUP BY d, q, h, c",
                    "SUM(repeated), SUM(served)")  # fmt: skip


def _followed(connections: _Connections, with_queue: bool, params: dict[str, Any]) -> list[tuple]:
    rows = connections.query(_followed_sql(with_queue), params)
    return [(scope, key, {"repeated": r or 0, "ivr_served": s or 0}) for scope, key, r, s in rows]


# --------------------------------------------------------------------------- agents

# Agent events per UTC hour by the state each starts and the one it ends (prev_state);
# and each agent's state when the period starts. _occupancy does the rest.
_AGENT_SQL = """SELECT substr(at, 1, 13) AS hour, state, prev_state, COUNT(*), SUM(julianday(at))
FROM agent_events WHERE substr(at, 1, 13) >= :first AND substr(at, 1, 13) < :last
AND at < :until GROUP BY 1, 2, 3"""
_AGENTS_SQL = """WITH RECURSIVE a(agent) AS (SELECT MIN(agent) FROM agent_events UNION ALL
SELECT (SELECT MIN(agent) FROM agent_events WHERE agent > a.agent) FROM a WHERE agent IS NOT NULL)
SELECT (SELECT state FROM agent_events e WHERE e.agent = a.agent AND e.at < :start
        ORDER BY e.at DESC, e.id DESC LIMIT 1) FROM a WHERE agent IS NOT NULL"""


# --------------------------------------------------------------------------- the API


def compute(
    db_path: str | Path,
    date_from: date | str,
    date_to: date | str,
    *,
    queue: str | None = None,
    service_level_s: float = 60,
    short_abandon_s: float = 5,
    abandons_in_service_level: bool = True,
    repeat_window_days: int = 7,
    misroute_window_s: float = 60.0,
    as_of: datetime,
) -> dict[str, Any]:
    """The KPIs of the local days ``date_from``..``date_to`` (inclusive, Stockholm time).

    ``as_of`` is "now": repeat-contact windows that have not closed by then are pending,
    and agent time is counted up to it. The result holds every name in
    :data:`KPI_NAMES`, the same for each queue, category, local hour (0-23) and local
    date under ``by_queue``, ``by_category``, ``by_hour`` and ``by_day``, the messages
    (``messages``) and agent transfers (``agent_transfers``: per queue and per menu choice, with
    misroutes within ``misroute_window_s``), and the ``parameters`` it was computed with.
    """
    first = local_day(date_from, "date_from", MetricsError)
    last = local_day(date_to, "date_to", MetricsError)
    if last < first:
        raise MetricsError(f"date_to {last} is before date_from {first}")
    if not isinstance(as_of, datetime) or as_of.utcoffset() is None:
        raise MetricsError("as_of must be a datetime with a timezone")
    if misroute_window_s <= 0:
        raise MetricsError("misroute_window_s must be > 0")
    if service_level_s < 0 or short_abandon_s < 0 or repeat_window_days < 1:
        raise MetricsError("service_level_s and short_abandon_s must be >= 0, "
                           "repeat_window_days >= 1")  # fmt: skip
    path = Path(db_path)
    _check_schema(path)
    params = {"sl": service_level_s, "short": short_abandon_s, "days": repeat_window_days,
              "closed_before": _iso(as_of - timedelta(days=repeat_window_days)), "queue": queue}
    bounds = {"first": first.isoformat(), "last": last.isoformat()}
    with _Connections(path, []) as connections, ThreadPoolExecutor(WORKERS) as pool:
        # the longest jobs first, so that the two threads finish together
        occupancy = pool.submit(_occupancy, connections, first, last, as_of, queue is None)
        jobs = [pool.submit(_followed, connections, queue is not None, {**params, **bounds,
                                                                        "lo": lo, "hi": hi})
                for lo, hi in _HASH_HALVES]  # fmt: skip
        sql = ("SELECT local_date, COUNT(*) FROM calls INDEXED BY calls_report WHERE local_date"
               " BETWEEN :first AND :last" + (" AND queue = :queue" if queue is not None else "")
               + " GROUP BY local_date")  # fmt: skip
        per_day = connections.query(sql, {**bounds, "queue": queue})
        jobs += [pool.submit(_calls_slice, connections, queue is not None, params, a, b)
                 for a, b in _slices(per_day)]
        result = _assemble([row for job in jobs for row in job.result()], occupancy.result(),
                           first, last, queue)  # fmt: skip
        messages = message_figures(connections, first, last, as_of, queue)
        transfers = transfer_figures(connections, first, last, queue, misroute_window_s)
    parameters = {
        "date_from": first.isoformat(), "date_to": last.isoformat(), "queue": queue,
        "service_level_s": service_level_s, "short_abandon_s": short_abandon_s,
        "abandons_in_service_level": abandons_in_service_level,
        "repeat_window_days": repeat_window_days, "misroute_window_s": misroute_window_s,
        "as_of": _iso(as_of),
        "service_level_variant": "answered-or-late-abandoned" if abandons_in_service_level
        else "answered-only",
    }  # fmt: skip
    return {**_kpis(result["total"], abandons_in_service_level),
            **{scope: {key: _kpis(sums, abandons_in_service_level)
                       for key, sums in result[scope].items()} for scope in SCOPES},
            "messages": messages, "agent_transfers": transfers, "parameters": parameters}  # fmt: skip


# --------------------------------------------------------------------------- transfers

TRANSFER_NAMES = ("transfers", "to_queue", "to_directory", "to_number", "attended", "failed", "misroutes")
_TRANSFER_CALLS = """SELECT DISTINCT call_id FROM events INDEXED BY events_transfers WHERE at >= :start
AND at < :end AND kind IN ('transfer_started', 'queue_transferred')"""
_TRANSFER_EVENTS = """SELECT call_id, seq, at, kind, node, data FROM events WHERE call_id IN ({calls})
ORDER BY call_id, seq"""


def transfer_figures(connections: _Connections, first: date, last: date, queue: str | None,
                     misroute_window_s: float) -> dict[str, Any]:
    """Agent transfers started in the period (by the transfer's time), per queue the call was
    answered in and per menu choice, with misroutes (:func:`ivr.transfer_report.transfer_report`;
    ``docs/metrics.md``): the figures in :data:`TRANSFER_NAMES` under ``totals``,
    ``by_queue`` and ``by_menu_choice``. The legs' talk times are left out
    (``ivr.transfer_report`` has them per call). With ``queue``: the calls whose final
    queue it is."""
    params: dict[str, Any] = {"start": _iso(_local_midnight(first)),
                              "end": _iso(_local_midnight(last + timedelta(days=1)))}
    sql = _TRANSFER_CALLS
    if queue is not None:
        sql += " AND call_id IN (SELECT call_id FROM calls WHERE queue = :queue)"
        params["queue"] = queue
    rows = connections.query(_TRANSFER_EVENTS.format(calls=sql), params)  # one pass, (call_id, seq) index
    calls = [[{"call_id": c, "seq": seq, "at": at, "kind": kind, "node": node, "data": _json(data)}
              for c, seq, at, kind, node, data in events]
             for _, events in itertools.groupby(rows, key=operator.itemgetter(0))]
    report = transfer_report(calls, misroute_window_s=misroute_window_s)
    for scope in ("by_queue", "by_menu_choice"):  # answers are the call KPIs' business
        report[scope] = {k: {n: v[n] for n in TRANSFER_NAMES} for k, v in report[scope].items()}
    return {"totals": {n: report["totals"][n] for n in TRANSFER_NAMES}, "by_queue": report["by_queue"],
            "by_menu_choice": report["by_menu_choice"]}


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def _slices(per_day: list[tuple[str, int]]) -> list[tuple[date, date]]:
    """Consecutive days with room to spare under the narrow packing's limit."""
    slices: list[list[Any]] = []
    for day, count in per_day:
        if slices and slices[-1][2] + count <= SLICE_CALLS:
            slices[-1][1:] = [date.fromisoformat(day), slices[-1][2] + count]
        else:
            slices.append([date.fromisoformat(day), date.fromisoformat(day), count])
    return [(a, b) for a, b, _ in slices]


def _calls_slice(connections: _Connections, with_queue: bool, params: dict[str, Any], first: date,
                 last: date, packing: tuple[int, int] | None = None) -> list[tuple[str, Any, dict]]:
    """The rolled-up rows of the local days first..last: (scope, key, counts). A slice
    with too many calls for its packing runs again wider, or in halves."""
    packing = packing or _NARROW
    rows = connections.query(_calls_sql(packing, with_queue),
                             {**params, "first": first.isoformat(), "last": last.isoformat()})
    calls = next((row[2 + len(_layout(packing)[0])] for row in rows if row[0] == "total"), 0)
    if calls >= 1 << packing[0]:
        if packing == _NARROW:
            return _calls_slice(connections, with_queue, params, first, last, _WIDE)
        if first == last:
            raise MetricsError(f"{calls} calls on {first}: more than this report can count")
        middle = first + (last - first) // 2
        return (_calls_slice(connections, with_queue, params, first, middle, packing)
                + _calls_slice(connections, with_queue, params, middle + timedelta(days=1), last,
                               packing))  # fmt: skip
    return [(scope, key, _unpack(values, packing)) for scope, key, *values in rows]


# --------------------------------------------------------------------------- assembling


def _assemble(rows: Iterable[tuple[str, Any, dict[str, Any]]], occupancy: dict[str, dict],
              first: date, last: date, queue: str | None) -> dict[str, Any]:  # fmt: skip
    """Merge the slices' rolled-up counts into the result (raw sums; shares come later)."""
    def empty() -> dict[str, Any]:
        return dict.fromkeys(_SUMS, 0) | {"longest": None}

    totals = empty()
    scopes: dict[str, dict[Any, dict]] = {scope: {} for scope in SCOPES}
    scopes["by_hour"] = {h: empty() for h in range(24)}
    scopes["by_day"] = {d.isoformat(): empty() for d in _days(first, last)}
    if queue is not None:
        scopes["by_queue"][queue] = empty()
    for scope, key, counts in rows:
        if scope == "total":
            target = totals
        else:
            key = NONE_KEY if key is None and scope in ("by_queue", "by_category") else key
            target = scopes[scope].setdefault(key, empty())
        for name, value in counts.items():
            if name != "longest":
                target[name] += value
            elif value is not None:
                target[name] = value if target[name] is None else max(target[name], value)
    totals["occupancy"] = occupancy["total"]
    for scope in SCOPES:
        for key, sums in scopes[scope].items():
            sums["occupancy"] = occupancy.get(scope, {}).get(key)
    return {"total": totals, **{s: dict(sorted(scopes[s].items(), key=lambda i: (i[0] == NONE_KEY, i[0])))
                                for s in SCOPES}}  # fmt: skip


def _kpis(s: dict[str, Any], abandons_in_sl: bool) -> dict[str, Any]:
    """The KPIs from one scope's sums (docs/metrics.md has each formula in words)."""
    late, surveyed = s["abandoned_late"] if abandons_in_sl else 0, s["survey_yes"] + s["survey_no"]
    return {
        "calls": s["calls"], "offered": s["reached"] - s["short"], "answered": s["answered"],
        "abandoned": s["abandoned_all"] - s["short"], "short_abandoned": s["short"],
        "overflowed": s["overflowed"], "closed": s["closed"],
        "service_level": _share(s["answered_in_time"], s["wait_n"] + late),
        "asa_s": _mean(s["wait_sum"], s["wait_n"]), "aht_s": _mean(s["handle_sum"], s["handle_n"]),
        "longest_wait_s": None if s["longest"] is None else round(s["longest"], 1),
        "transfers": s["transfers"], "callbacks_requested": s["callbacks_requested"],
        "callbacks_completed": s["callbacks_completed"],
        "occupancy": None if s["occupancy"] is None else _share(*s["occupancy"]),
        "handled": s["handled"], "handed_off": s["handed_off"],
        "fcr_coded": _share(s["resolved"], s["coded"]),
        "uncoded": s["handled"] - s["coded"],
        "fcr_repeat": _share(s["repeat_closed"] - s["repeated"], s["repeat_closed"]),
        "fcr_repeat_pending": s["repeat_pending"], "fcr_repeat_excluded": s["repeat_excluded"],
        "fcr_survey": _share(s["survey_yes"], surveyed), "survey_answers": surveyed,
        "ivr_self_service": _share(s["ivr_served"], s["calls"]),
        "ivr_self_service_pending": s["ivr_pending"],
    }  # fmt: skip


def _share(part: float, whole: float) -> float | None:
    return None if not whole else round(part / whole, 4)


def _mean(total: float, count: int) -> float | None:
    return None if not count else round(total / count, 1)


# --------------------------------------------------------------------------- messages

MESSAGE_NAMES = (
    "messages", "voice_messages", "open", "closed", "callback_median_s", "callback_p90_s",
    "promises_kept", "promises_broken", "promises_pending", "delivered", "delivered_late",
    "undelivered", "unaddressed",
)  # fmt: skip
_MESSAGES_SQL = """SELECT target_unit, source, created_at, promised_by, closed_at, delivery,
attempts, delivered_at FROM messages WHERE created_at >= :start AND created_at < :end"""


def message_figures(connections: _Connections, first: date, last: date, as_of: datetime,
                    queue: str | None = None) -> dict[str, Any]:
    """Messages created in the period, in total and per unit (the target's unit at creation).

    As of ``as_of``: a message is closed when its callback was registered by then. Time to
    callback is closed_at - created_at over closed messages: the median, and the 90th
    percentile by nearest rank (the smallest time at or above 90 % of them). A promise is
    broken when the callback came after promised_by, or none had come by as_of although
    promised_by had passed; kept when it came in time; pending otherwise. Delivery: late
    is delivered after at least one failed attempt; undelivered has an e-mail address but
    no successful attempt yet; unaddressed has no e-mail address to send to.
    """
    params = {"start": _iso(_local_midnight(first)), "end": _iso(_local_midnight(last + timedelta(days=1)))}
    sql = _MESSAGES_SQL
    if queue is not None:
        sql += " AND call_id IN (SELECT call_id FROM calls WHERE queue = :queue)"
        params["queue"] = queue
    now = _iso(as_of)
    groups: dict[str, list[tuple]] = {}
    rows = connections.query(sql, params)
    for row in rows:
        groups.setdefault(row[0] or NONE_KEY, []).append(row)
    by_unit = {unit: _message_kpis(groups[unit], now)
               for unit in sorted(groups, key=lambda u: (u == NONE_KEY, u))}  # fmt: skip
    return {**_message_kpis(rows, now), "by_unit": by_unit}


def _message_kpis(rows: list[tuple], now: str) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(MESSAGE_NAMES, 0)
    waits = []
    for _unit, source, created, promised, closed, delivery, attempts, delivered_at in rows:
        out["messages"] += 1
        out["voice_messages"] += source == "voicemail"
        done = closed is not None and closed <= now
        if done:
            out["closed"] += 1
            waits.append((_parse(closed) - _parse(created)).total_seconds())
        else:
            out["open"] += 1
        if promised is not None:
            if done:
                out["promises_kept" if closed <= promised else "promises_broken"] += 1
            else:
                out["promises_broken" if now > promised else "promises_pending"] += 1
        if delivery == "delivered" and delivered_at is not None and delivered_at <= now:
            out["delivered"] += 1
            out["delivered_late"] += attempts > 1
        elif delivery == "unaddressed":
            out["unaddressed"] += 1
        else:
            out["undelivered"] += 1
    waits.sort()
    out["callback_median_s"] = round(statistics.median(waits), 1) if waits else None
    out["callback_p90_s"] = round(waits[math.ceil(0.9 * len(waits)) - 1], 1) if waits else None
    return out


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- agent time


def _occupancy(connections: _Connections, first: date, last: date, as_of: datetime,
               all_queues: bool = True) -> dict[str, Any]:
    """(busy seconds, logged-in seconds) for the period, per local day and local hour.

    An agent is busy while talking or in wrap-up, logged in while available, offered,
    talking or in wrap-up (not paused, not offline), up to ``as_of``. Every agent event
    starts one state and ends the one before it (``prev_state``), so the number of
    agents in a state only changes at events: per UTC hour, the time in a state is
    ``n0 * length + sum over its ends of (t - a) - sum over its starts of (t - a)``.
    """
    start, end = _local_midnight(first), _local_midnight(last + timedelta(days=1))
    until = min(end, as_of.astimezone(UTC))
    if until <= start or not all_queues:  # agent time belongs to no single queue
        return {"total": None}
    states = [r[0] for r in connections.query(_AGENTS_SQL, {"start": _iso(start)})]
    rows = connections.query(_AGENT_SQL, {"first": _iso(start)[:13], "until": _iso(until),
                                          "last": _iso(until + timedelta(hours=1))[:13]})
    hours: dict[str, list[float]] = {}  # UTC hour -> [d busy, d in, busy t sum, in t sum]
    for hour, state, prev, count, jd_sum in rows:
        acc = hours.setdefault(hour, [0, 0, 0.0, 0.0])
        for index, group in ((0, BUSY), (1, LOGGED_IN)):
            sign = (state in group) - (prev in group)  # +1 starts, -1 ends an interval
            acc[index] += sign * count
            acc[index + 2] += sign * jd_sum
    n_busy = sum(s in BUSY for s in states)
    n_in = sum(s in LOGGED_IN for s in states)
    total, by_day, by_hour = [0.0, 0.0], {}, {}
    moment = start
    while moment < until:
        nxt = min(moment + timedelta(hours=1), until)
        length, jd_end = (nxt - moment).total_seconds(), _julian(nxt)
        d_busy, d_in, t_busy, t_in = hours.get(_iso(moment)[:13], (0, 0, 0.0, 0.0))
        # time in state up to the hour's end: those in it all hour, plus each start
        # until the end, minus each end until the end
        busy = n_busy * length + (d_busy * jd_end - t_busy) * 86400
        logged = n_in * length + (d_in * jd_end - t_in) * 86400
        n_busy, n_in = n_busy + d_busy, n_in + d_in
        local = moment.astimezone(STOCKHOLM)
        for acc in (total, by_day.setdefault(local.date().isoformat(), [0.0, 0.0]),
                    by_hour.setdefault(local.hour, [0.0, 0.0])):  # fmt: skip
            acc[0] += busy
            acc[1] += logged
        moment = nxt
    return {"total": _pair(total), "by_day": {k: _pair(v) for k, v in by_day.items()},
            "by_hour": {k: _pair(v) for k, v in by_hour.items()}}  # fmt: skip


def _pair(acc: list[float]) -> tuple[float, float] | None:
    """(busy, logged in), or None when nobody was logged in (no denominator)."""
    return None if acc[1] <= 0.5 else (max(acc[0], 0.0), acc[1])


# --------------------------------------------------------------------------- plumbing


class _Connections(threading.local):
    """One read-only connection per worker thread, all closed at the end."""

    def __init__(self, path: Path, opened: list[sqlite3.Connection]) -> None:
        self.path, self.opened, self.conn = path, opened, None  # run again in each thread

    def __enter__(self) -> _Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self.opened:
            conn.close()

    def query(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        if self.conn is None:
            self.conn = _connect(self.path)
            self.opened.append(self.conn)  # list.append is atomic
        return self.conn.execute(sql, params).fetchall()


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise MetricsError(f"{path}: no such event log")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               check_same_thread=False)  # fmt: skip
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as exc:
        raise MetricsError(f"{path}: cannot be read: {exc}") from exc
    return conn


def _check_schema(path: Path) -> None:
    conn = _connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise MetricsError(f"{path}: not an event log ({exc})") from exc
    finally:
        conn.close()
    if version != SCHEMA_VERSION:
        raise MetricsError(f"{path}: event log schema {version}, reports need {SCHEMA_VERSION} "
                           "(open it once with this version of ivr to migrate it)")  # fmt: skip


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=STOCKHOLM).astimezone(UTC)


def _iso(moment: datetime) -> str:
    """The event log's form of a time: UTC with milliseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _julian(moment: datetime) -> float:
    return moment.timestamp() / 86400.0 + 2440587.5
