"""Opening hours: weekly intervals, Swedish public holidays, eves and exception dates.

Pure: nothing here reads a clock or a file; the moment to judge is always passed in.
A :class:`Schedule` answers one question for the call engine, ``status(at)``:

* ``"holiday"`` -- the office is shut all day: a Swedish public holiday (from the
  ``holidays`` package), one of the eves the municipality closes on (midsommarafton,
  julafton, nyårsafton by default) or one of the schedule's ``closed_dates``. This is
  the day's status even when the office would have been closed anyway (a Saturday),
  so a flow can say "we are closed for the holiday".
* ``"open"`` -- the local time is inside the day's intervals. The day's intervals are,
  most specific first: an explicit ``reduced`` date, ``reduced_before_holidays`` on
  the half-days before holidays (only on weekdays that have hours at all), the weekly
  hours.
* ``"closed"`` -- anything else.

Holiday tables are built once per year and cached, and each schedule remembers how
it resolved each day, so a status check costs a dict lookup and a few comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

STOCKHOLM = ZoneInfo("Europe/Stockholm")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_CLOSED_EVES = frozenset({"midsommarafton", "julafton", "nyårsafton"})
CLOSED_DATE_NAME = "Stängt"
SEARCH_DAYS = 30  # how far ahead next_open looks

Status = Literal["open", "closed", "holiday"]

_HALF_DAY_SUFFIX = " (från kl. 14.00)"
_INTERVAL = re.compile(r"(\d{1,2}):(\d{2})\s*[-\u2013]\s*(\d{1,2}):(\d{2})")
_END_OF_DAY = time.max  # how "24:00" is stored: the end of the day, inclusive


class HoursError(ValueError):
    """A malformed opening-hours value; the message names where it came from."""


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """Local wall-clock hours ``[start, end)``; an end of "24:00" means until midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("Interval times must be naive (local wall-clock) times")
        if not self.start < self.end:
            raise ValueError(f"Interval start must be before end: {self}")

    def __contains__(self, t: time) -> bool:
        return self.start <= t and (t < self.end or self.end == _END_OF_DAY)

    def __str__(self) -> str:
        end = "24:00" if self.end == _END_OF_DAY else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"


def _clock(hour: str, minute: str, *, end: bool) -> time | None:
    h, m = int(hour), int(minute)
    if end and (h, m) == (24, 0):
        return _END_OF_DAY
    if h > 23 or m > 59:
        return None
    return time(h, m)


def parse_intervals(value: str, where: str) -> tuple[Interval, ...]:
    """Parse ``"08:00-16:30"``, ``"08:00-12:00, 13:00-16:30"`` or ``"closed"`` (-> ``()``).

    The intervals come back sorted; they must not overlap (touching is fine).
    """
    if value.strip().lower() == "closed":
        return ()
    bad_form = HoursError(f'{where}: expected "HH:MM-HH:MM", got "{value}"')
    intervals: list[Interval] = []
    for part in value.split(","):
        match = _INTERVAL.fullmatch(part.strip())
        if match is None:
            raise bad_form
        start = _clock(match[1], match[2], end=False)
        end = _clock(match[3], match[4], end=True)
        if start is None or end is None:
            raise bad_form
        if not start < end:
            raise HoursError(f'{where}: expected "HH:MM-HH:MM" with the start before the end, '
                             f'got "{value}"')
        intervals.append(Interval(start, end))
    intervals.sort()
    for before, after in zip(intervals, intervals[1:], strict=False):
        if after.start < before.end:
            raise HoursError(f'{where}: expected intervals that do not overlap, got "{value}"')
    return tuple(intervals)


def format_intervals(intervals: Iterable[Interval]) -> str:
    """The inverse of :func:`parse_intervals`."""
    return ", ".join(str(i) for i in intervals) or "closed"


# --------------------------------------------------------------------------- holidays


@dataclass(frozen=True, slots=True)
class _Year:
    public: Mapping[date, str]  # public holidays (Sundays only when they are named days)
    eves: Mapping[date, tuple[tuple[str, str], ...]]  # date -> ((key, name), ...)
    half_days: frozenset[date]  # bank half-days, "... (från kl. 14.00)"


def _names(table: holidays.HolidayBase) -> Iterable[tuple[date, str]]:
    for day, names in table.items():
        for name in names.split("; "):
            yield day, name


def _eve_key(name: str) -> str | None:
    """``"Valborgsmässoafton (från kl. 14.00)"`` -> ``"valborgsmässoafton"``; None if no eve."""
    base = name.removesuffix(_HALF_DAY_SUFFIX)
    if base.lower().endswith("afton") and not base.startswith("Dag före"):
        return base.lower()
    return None


@lru_cache(maxsize=64)
def _year(year: int) -> _Year:
    def sweden(category: str) -> holidays.HolidayBase:
        return holidays.Sweden(years=year, include_sundays=False, categories=(category,),
                               language="sv")

    public = dict(_names(sweden("public")))
    eves: dict[date, dict[str, str]] = {}
    half_days: set[date] = set()
    for category in ("de_facto", "bank"):
        for day, name in _names(sweden(category)):
            if (key := _eve_key(name)) is not None:
                eves.setdefault(day, {})[key] = name.removesuffix(_HALF_DAY_SUFFIX)
            if name.endswith(_HALF_DAY_SUFFIX):
                half_days.add(day)
    return _Year(
        public=MappingProxyType(public),
        eves=MappingProxyType({d: tuple(names.items()) for d, names in eves.items()}),
        half_days=frozenset(half_days),
    )


@lru_cache(maxsize=1)
def known_eves() -> frozenset[str]:
    """Eve names (lower case) a schedule may close on, as the ``holidays`` package has them."""
    return frozenset(key for year in range(2024, 2032)
                     for names in _year(year).eves.values() for key, _ in names)


def unknown_eves_message(unknown: Iterable[str]) -> str:
    names = ", ".join(f'"{name}"' for name in sorted(unknown))
    valid = ", ".join(f'"{name}"' for name in sorted(known_eves()))
    return f"unknown eve {names}; expected one of {valid}"


# --------------------------------------------------------------------------- schedules


_ALL_CLOSED: tuple[tuple[Interval, ...], ...] = ((),) * 7


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """Opening hours in one time zone. Construct with keywords; see the module docstring."""

    name: str
    timezone: ZoneInfo = STOCKHOLM
    weekly: tuple[tuple[Interval, ...], ...] = _ALL_CLOSED  # Monday..Sunday
    closed_dates: frozenset[date] = frozenset()
    reduced: Mapping[date, tuple[Interval, ...]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)
    public_holidays: bool = True
    closed_eves: frozenset[str] = DEFAULT_CLOSED_EVES
    reduced_before_holidays: tuple[Interval, ...] | None = None
    _days: dict[date, tuple[Interval, ...] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        weekly = tuple(tuple(day) for day in self.weekly)
        if len(weekly) != 7:
            raise ValueError(f"Schedule {self.name}: weekly needs 7 days, got {len(weekly)}")
        eves = frozenset(eve.lower() for eve in self.closed_eves)
        if unknown := eves - known_eves():
            raise HoursError(f"Schedule {self.name}: {unknown_eves_message(unknown)}")
        reduced = self.reduced.items() if isinstance(self.reduced, Mapping) else self.reduced
        set_ = object.__setattr__
        set_(self, "weekly", weekly)
        set_(self, "closed_eves", eves)
        set_(self, "closed_dates", frozenset(self.closed_dates))
        set_(self, "reduced", MappingProxyType({d: tuple(i) for d, i in sorted(reduced)}))
        if self.reduced_before_holidays is not None:
            set_(self, "reduced_before_holidays", tuple(self.reduced_before_holidays))

    # ------------------------------------------------------------------ queries

    def status(self, at: datetime) -> Status:
        """Open, closed or holiday at ``at`` (aware: converted; naive: local time)."""
        local = self._local(at)
        intervals = self._hours(local.date())
        if intervals is None:
            return "holiday"
        now = local.time()
        return "open" if any(now in interval for interval in intervals) else "closed"

    def hours_on(self, day: date) -> tuple[Interval, ...] | None:
        """The day's intervals after holidays and exceptions; None on a holiday."""
        return self._hours(day)

    def holiday_name(self, day: date) -> str | None:
        """Why the office is shut all day: the Swedish name, "Stängt" for closed_dates."""
        year = _year(day.year)
        if self.public_holidays and day in year.public:
            return year.public[day]
        for key, name in year.eves.get(day, ()):
            if key in self.closed_eves:
                return name
        return CLOSED_DATE_NAME if day in self.closed_dates else None

    def next_open(self, at: datetime) -> datetime | None:
        """When the office is next open (``at`` itself if open), aware in ``self.timezone``.

        Looks at today and the next 30 days; None if no opening is found.
        """
        local = self._local(at)
        now = local.replace(tzinfo=None)
        for offset in range(SEARCH_DAYS + 1):
            day = local.date() + timedelta(days=offset)
            for interval in self._hours(day) or ():
                start = datetime.combine(day, interval.start)
                if start > now:
                    return self._aware(start)
                if offset == 0 and now.time() in interval:
                    return local
        return None

    # ------------------------------------------------------------------ internals

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            return at.replace(tzinfo=self.timezone)
        return at.astimezone(self.timezone)

    def _aware(self, wall: datetime) -> datetime:
        """A local wall-clock time as an aware datetime; a time skipped by DST moves on."""
        aware = wall.replace(tzinfo=self.timezone)
        return aware.astimezone(UTC).astimezone(self.timezone)

    def _hours(self, day: date) -> tuple[Interval, ...] | None:
        try:
            return self._days[day]
        except KeyError:
            pass
        if len(self._days) > 4096:
            self._days.clear()
        hours = self._resolve(day)
        self._days[day] = hours
        return hours

    def _resolve(self, day: date) -> tuple[Interval, ...] | None:
        if self.holiday_name(day) is not None:
            return None
        if day in self.reduced:
            return self.reduced[day]
        weekly = self.weekly[day.weekday()]
        if (self.reduced_before_holidays is not None and weekly
                and day in _year(day.year).half_days):
            return self.reduced_before_holidays
        return weekly
