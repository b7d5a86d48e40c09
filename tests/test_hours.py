"""Opening hours: weekly intervals, Swedish holidays and eves, exceptions, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from ivr.hours import (
    STOCKHOLM,
    HoursError,
    Interval,
    Schedule,
    format_intervals,
    known_eves,
    parse_intervals,
)

HELSINKI = ZoneInfo("Europe/Helsinki")


def hours(value: str) -> tuple[Interval, ...]:
    return parse_intervals(value, "test")


def office(**kwargs: object) -> Schedule:
    """Mon-Thu 08:00-16:30, Fri 08:00-15:00, weekends closed (like config.toml)."""
    week = ["08:00-16:30"] * 4 + ["08:00-15:00", "closed", "closed"]
    return Schedule(name="office", weekly=tuple(hours(d) for d in week), **kwargs)  # type: ignore[arg-type]


def every_day(value: str = "08:00-16:00", **kwargs: object) -> Schedule:
    return Schedule(name="all", weekly=(hours(value),) * 7, **kwargs)  # type: ignore[arg-type]


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=STOCKHOLM)  # type: ignore[misc]


# --------------------------------------------------------------------------- parsing


def test_parse_single_interval() -> None:
    assert hours("08:00-16:30") == (Interval(time(8), time(16, 30)),)


def test_parse_several_intervals_sorted_and_round_trip() -> None:
    parsed = hours(" 13:00-16:30 ,08:00-12:00")
    assert parsed == (Interval(time(8), time(12)), Interval(time(13), time(16, 30)))
    assert format_intervals(parsed) == "08:00-12:00, 13:00-16:30"


def test_parse_closed_and_end_of_day() -> None:
    assert hours("closed") == ()
    assert hours("Closed") == ()
    assert format_intervals(hours("20:00-24:00")) == "20:00-24:00"


def test_touching_intervals_are_allowed() -> None:
    assert len(hours("08:00-12:00, 12:00-13:00")) == 2


@pytest.mark.parametrize("value", ["8-16", "08:00", "08:00-16:60", "24:00-24:00", "25:00-26:00",
                                   "08:00-12:00,", "", "08.00-16.00", "öppet"])
def test_parse_rejects_bad_form(value: str) -> None:
    with pytest.raises(HoursError) as e:
        parse_intervals(value, "hours.office.monday")
    assert str(e.value) == f'hours.office.monday: expected "HH:MM-HH:MM", got "{value}"'


@pytest.mark.parametrize("value", ["16:30-08:00", "08:00-08:00"])
def test_parse_rejects_start_not_before_end(value: str) -> None:
    with pytest.raises(HoursError) as e:
        parse_intervals(value, "x.friday")
    assert str(e.value) == (f'x.friday: expected "HH:MM-HH:MM" with the start before the end, '
                            f'got "{value}"')


def test_parse_rejects_overlap() -> None:
    with pytest.raises(HoursError) as e:
        parse_intervals("08:00-12:00, 11:30-16:00", "x.monday")
    assert str(e.value) == ('x.monday: expected intervals that do not overlap, '
                            'got "08:00-12:00, 11:30-16:00"')


def test_schedule_rejects_unknown_eve_listing_valid_ones() -> None:
    with pytest.raises(HoursError) as e:
        office(closed_eves=frozenset({"påskafton"}))
    message = str(e.value)
    assert 'unknown eve "påskafton"' in message
    for eve in ("midsommarafton", "julafton", "nyårsafton", "valborgsmässoafton"):
        assert f'"{eve}"' in message


def test_known_eves_come_from_the_holidays_package() -> None:
    assert {"midsommarafton", "julafton", "nyårsafton", "trettondagsafton",
            "valborgsmässoafton"} <= known_eves()
    assert "påskdagen" not in known_eves()


# --------------------------------------------------------------------------- weekdays


def test_weekday_edges() -> None:
    s = office()
    assert s.status(local(2026, 3, 10, 7, 59, 59)) == "closed"  # Tuesday
    assert s.status(local(2026, 3, 10, 8, 0)) == "open"
    assert s.status(local(2026, 3, 10, 16, 29, 59)) == "open"
    assert s.status(local(2026, 3, 10, 16, 30)) == "closed"
    assert s.status(local(2026, 3, 13, 14, 59)) == "open"  # Friday
    assert s.status(local(2026, 3, 13, 15, 0)) == "closed"


def test_normal_saturday_and_sunday_are_closed_not_holiday() -> None:
    assert office().status(local(2026, 3, 14, 10)) == "closed"
    assert office().status(local(2026, 3, 15, 10)) == "closed"
    assert office().holiday_name(date(2026, 3, 14)) is None


def test_lunch_break() -> None:
    s = every_day("08:00-12:00, 13:00-16:30")
    assert s.status(local(2026, 3, 10, 11, 59)) == "open"
    assert s.status(local(2026, 3, 10, 12, 0)) == "closed"
    assert s.status(local(2026, 3, 10, 12, 59)) == "closed"
    assert s.status(local(2026, 3, 10, 13, 0)) == "open"


def test_open_until_midnight() -> None:
    s = every_day("20:00-24:00")
    assert s.status(local(2026, 3, 10, 23, 59, 59, 999999)) == "open"
    assert s.status(local(2026, 3, 11, 0, 0)) == "closed"


# --------------------------------------------------------------------------- holidays


@pytest.mark.parametrize(("day", "name"), [
    (date(2026, 6, 19), "Midsommarafton"),
    (date(2026, 12, 24), "Julafton"),
    (date(2026, 12, 31), "Nyårsafton"),
    (date(2026, 1, 1), "Nyårsdagen"),
    (date(2026, 4, 3), "Långfredagen"),
    (date(2026, 5, 14), "Kristi himmelsfärdsdag"),
    (date(2026, 6, 6), "Nationaldagen"),  # a Saturday
    (date(2026, 12, 26), "Annandag jul"),  # a Saturday
])
def test_holidays_and_closed_eves(day: date, name: str) -> None:
    s = office()
    assert s.status(datetime.combine(day, time(10))) == "holiday"
    assert s.holiday_name(day) == name


def test_ordinary_sunday_is_not_a_holiday() -> None:
    # the holidays package counts every Sunday unless include_sundays=False
    assert every_day().status(local(2026, 3, 8, 10)) == "open"


def test_public_holidays_can_be_ignored() -> None:
    s = office(public_holidays=False)
    assert s.status(local(2026, 5, 14, 10)) == "open"  # Kristi himmelsfärdsdag, Thursday
    assert s.status(local(2026, 6, 19, 10)) == "holiday"  # midsommarafton still closed


def test_eves_not_listed_keep_weekly_hours() -> None:
    s = office(closed_eves=frozenset({"julafton"}))
    assert s.status(local(2026, 6, 19, 10)) == "open"  # midsommarafton, a Friday
    assert s.status(local(2026, 12, 24, 10)) == "holiday"
    assert s.status(local(2026, 12, 31, 10)) == "open"


def test_closed_eves_match_case_insensitively() -> None:
    assert office(closed_eves=frozenset({"JulAfton"})).status(local(2026, 12, 24, 10)) == "holiday"


def test_closed_dates_are_holiday_named_stangt() -> None:
    s = office(closed_dates=frozenset({date(2026, 12, 28)}))
    assert s.status(local(2026, 12, 28, 10)) == "holiday"
    assert s.holiday_name(date(2026, 12, 28)) == "Stängt"
    assert s.status(local(2026, 12, 29, 10)) == "open"


def test_reduced_date_replaces_weekly_hours() -> None:
    s = office(reduced={date(2026, 3, 10): hours("10:00-12:00")})
    assert s.status(local(2026, 3, 10, 9)) == "closed"
    assert s.status(local(2026, 3, 10, 11)) == "open"
    assert s.status(local(2026, 3, 10, 12)) == "closed"
    assert s.status(local(2026, 3, 11, 9)) == "open"


def test_reduced_date_can_open_a_weekend() -> None:
    s = office(reduced=((date(2026, 3, 14), hours("10:00-14:00")),))
    assert s.status(local(2026, 3, 14, 11)) == "open"


def test_reduced_before_holidays_on_valborgsmassoafton() -> None:
    # 2026-04-30 (Thursday) is "Valborgsmässoafton (från kl. 14.00)" in the bank category
    s = office(reduced_before_holidays=hours("08:00-14:00"))
    assert s.status(local(2026, 4, 30, 13, 59)) == "open"
    assert s.status(local(2026, 4, 30, 14, 0)) == "closed"
    assert s.status(local(2026, 4, 29, 15)) == "open"  # an ordinary Wednesday
    assert office().status(local(2026, 4, 30, 15)) == "open"  # without the option


def test_reduced_date_beats_reduced_before_holidays() -> None:
    s = office(reduced_before_holidays=hours("08:00-14:00"),
               reduced={date(2026, 4, 30): hours("08:00-13:00")})
    assert s.status(local(2026, 4, 30, 13, 30)) == "closed"


def test_reduced_before_holidays_does_not_open_weekends() -> None:
    # 2028-12-23 (Saturday) is "Dag före Julafton (från kl. 14.00)"
    s = office(reduced_before_holidays=hours("08:00-14:00"))
    assert s.status(local(2028, 12, 23, 10)) == "closed"


def test_holiday_beats_reduced() -> None:
    s = office(reduced={date(2026, 12, 24): hours("08:00-12:00")})
    assert s.status(local(2026, 12, 24, 10)) == "holiday"


# --------------------------------------------------------------------------- time zones


def test_dst_spring_forward_day() -> None:
    s = every_day("08:00-16:00")  # 2026-03-29 (Sunday); CEST (+02) from 01:00 UTC
    assert s.status(datetime(2026, 3, 29, 6, 30, tzinfo=UTC)) == "open"  # 08:30 local
    assert s.status(datetime(2026, 3, 29, 5, 30, tzinfo=UTC)) == "closed"  # 07:30 local
    assert s.status(datetime(2026, 3, 29, 13, 59, tzinfo=UTC)) == "open"  # 15:59 local
    assert s.status(datetime(2026, 3, 29, 14, 0, tzinfo=UTC)) == "closed"  # 16:00 local


def test_dst_fall_back_day() -> None:
    s = every_day("08:00-16:00")  # 2026-10-25; CET (+01) from 01:00 UTC
    assert s.status(datetime(2026, 10, 25, 7, 30, tzinfo=UTC)) == "open"  # 08:30 local
    assert s.status(datetime(2026, 10, 25, 6, 30, tzinfo=UTC)) == "closed"  # 07:30 local
    assert s.status(datetime(2026, 10, 25, 14, 59, tzinfo=UTC)) == "open"  # 15:59 local
    assert s.status(datetime(2026, 10, 25, 15, 0, tzinfo=UTC)) == "closed"  # 16:00 local


def test_naive_is_local_and_aware_is_converted() -> None:
    s = office()
    assert s.status(datetime(2026, 3, 10, 8, 30)) == "open"  # naive: Stockholm wall time
    assert s.status(datetime(2026, 3, 10, 8, 30, tzinfo=UTC)) == "open"  # 09:30 local
    assert s.status(datetime(2026, 3, 10, 7, 30, tzinfo=UTC)) == "open"  # 08:30 local
    assert s.status(datetime(2026, 3, 10, 6, 30, tzinfo=UTC)) == "closed"  # 07:30 local
    assert s.status(datetime(2026, 3, 10, 8, 30, tzinfo=HELSINKI)) == "closed"  # 07:30 local


def test_holiday_is_judged_on_the_local_date() -> None:
    # 23:30 UTC on 2026-06-18 is 01:30 on midsommarafton in Stockholm
    assert office().status(datetime(2026, 6, 18, 23, 30, tzinfo=UTC)) == "holiday"


def test_other_time_zone() -> None:
    s = Schedule(name="fi", timezone=HELSINKI, weekly=(hours("08:00-16:00"),) * 7)
    assert s.status(datetime(2026, 3, 10, 6, 30, tzinfo=UTC)) == "open"  # 08:30 in Helsinki
    assert s.status(datetime(2026, 3, 10, 7, 30)) == "closed"  # naive: Helsinki wall time


# --------------------------------------------------------------------------- next_open


def test_next_open_when_open_is_now() -> None:
    at = local(2026, 3, 10, 9, 15)
    assert office().next_open(at) == at


def test_next_open_later_today_and_tomorrow() -> None:
    assert office().next_open(local(2026, 3, 10, 6, 0)) == local(2026, 3, 10, 8, 0)
    assert office().next_open(local(2026, 3, 10, 17, 0)) == local(2026, 3, 11, 8, 0)
    lunch = every_day("08:00-12:00, 13:00-16:30")
    assert lunch.next_open(local(2026, 3, 10, 12, 15)) == local(2026, 3, 10, 13, 0)


def test_next_open_across_a_weekend() -> None:
    result = office().next_open(datetime(2026, 3, 13, 14, 30, tzinfo=UTC))  # Fri 15:30 local
    assert result == local(2026, 3, 16, 8, 0)
    assert result is not None and result.tzinfo is STOCKHOLM


def test_next_open_across_christmas() -> None:
    # 23 Dec Wed after closing; 24 julafton, 25 juldagen, 26 annandag jul, 27 Sunday
    assert office().next_open(local(2026, 12, 23, 17, 0)) == local(2026, 12, 28, 8, 0)
    shut = office(closed_dates=frozenset({date(2026, 12, 28)}))
    assert shut.next_open(local(2026, 12, 23, 17, 0)) == local(2026, 12, 29, 8, 0)


def test_next_open_across_new_year() -> None:
    # 31 nyårsafton, 1 nyårsdagen, 2-3 weekend, 5 Jan is a half-day (trettondagsafton)
    assert office().next_open(local(2026, 12, 30, 17, 0)) == local(2027, 1, 4, 8, 0)


def test_next_open_none_when_never_open() -> None:
    assert Schedule(name="shut").next_open(local(2026, 3, 10, 9)) is None


def test_next_open_across_dst_change_keeps_local_time() -> None:
    result = office().next_open(local(2026, 3, 27, 17, 0))  # Friday before the switch
    assert result == local(2026, 3, 30, 8, 0)
    assert result is not None and result.utcoffset() == local(2026, 6, 1).utcoffset()


# --------------------------------------------------------------------------- values


def test_schedule_is_frozen_and_hashable() -> None:
    s = office(reduced={date(2026, 3, 10): hours("10:00-12:00")})
    with pytest.raises(AttributeError):
        s.name = "other"  # type: ignore[misc]
    assert hash(s) == hash(office(reduced={date(2026, 3, 10): hours("10:00-12:00")}))
    assert s == office(reduced={date(2026, 3, 10): hours("10:00-12:00")})
    with pytest.raises(TypeError):
        s.reduced[date(2026, 3, 11)] = ()  # type: ignore[index]


def test_schedule_needs_seven_days() -> None:
    with pytest.raises(ValueError, match="7 days"):
        Schedule(name="x", weekly=((),) * 5)


def test_holiday_tables_are_built_once_per_year(monkeypatch: pytest.MonkeyPatch) -> None:
    s = office()
    s.status(local(2026, 1, 1, 10))  # warm the 2026 table

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("holidays.Sweden constructed per call")

    monkeypatch.setattr("ivr.hours.holidays.Sweden", fail)
    fresh = office(closed_dates=frozenset({date(2026, 2, 2)}))
    for day in range(1, 29):
        for s_ in (s, fresh):
            s_.status(local(2026, 2, day, 10))
    assert fresh.status(local(2026, 2, 2, 10)) == "holiday"
