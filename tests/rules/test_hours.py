"""Business hours: day ranges, time ranges, holidays and time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from mailgate.rules.hours import HoursError, build, load_zone, parse_days, parse_ranges


def test_day_ranges_include_both_ends_and_wrap() -> None:
    """mon-fri is five days; fri-mon wraps over the weekend."""
    assert ([0, 1, 2, 3, 4], [4, 5, 6, 0], [5, 6]) == (
        parse_days("mon-fri"),
        parse_days("fri-mon"),
        parse_days("sat, sun"),
    )


def test_time_ranges_allow_lunch_breaks_and_midnight() -> None:
    """Several ranges, 24:00 and closed are understood."""
    assert ([(time(8, 30), time(12, 0)), (time(13, 0), time(17, 0))], [], time.max) == (
        parse_ranges("08:30-12:00, 13:00-17:00"),
        parse_ranges("closed"),
        parse_ranges("18:00-24:00")[0][1],
    )


@pytest.mark.parametrize("bad", ["9-5", "17:00-08:00", "25:00-26:00", "08:61-09:00"])
def test_bad_time_ranges_are_refused(bad: str) -> None:
    """Ranges that are not HH:MM-HH:MM, or end before they start, are errors."""
    with pytest.raises(HoursError):
        parse_ranges(bad)


def test_holidays_are_closed() -> None:
    """A holiday is outside hours even at ten in the morning."""
    hours = build(
        "office", load_zone("Europe/Amsterdam"), {"mon-fri": "08:00-17:00"}, frozenset({date(2026, 12, 25)})
    )
    assert (False, True) == (
        hours.contains(datetime(2026, 12, 25, 9, 0, tzinfo=UTC)),
        hours.contains(datetime(2026, 12, 24, 9, 0, tzinfo=UTC)),
    )


def test_unknown_zone_is_refused() -> None:
    """A zone name that does not exist is an error naming it."""
    with pytest.raises(HoursError, match="Mars/Olympus"):
        load_zone("Mars/Olympus")
