"""Business-time arithmetic with explicit moments: weekends, holidays, time zones, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from mailgate.rules import hours
from mailgate.sla import clock

AMS = ZoneInfo("Europe/Amsterdam")
NY = ZoneInfo("America/New_York")


def office(zone: ZoneInfo = AMS, holidays: frozenset[date] = frozenset()) -> hours.BusinessHours:
    return hours.build("office", zone, {"mon-fri": "09:00-17:00"}, holidays)


def test_target_spills_over_the_weekend() -> None:
    """4 business hours from Friday 15:00 end Monday 11:00 office time."""
    friday = datetime(2026, 12, 4, 15, 0, tzinfo=AMS)
    assert datetime(2026, 12, 7, 11, 0, tzinfo=AMS) == clock.add(office(), friday, 4 * 3600)


def test_holiday_is_skipped_like_a_weekend() -> None:
    """8 business hours from Thursday 24 Dec 17:00: Christmas Friday is closed, so Monday 28th 17:00."""
    christmas = office(holidays=frozenset({date(2026, 12, 25)}))
    thursday = datetime(2026, 12, 24, 17, 0, tzinfo=AMS)
    assert datetime(2026, 12, 28, 17, 0, tzinfo=AMS) == clock.add(christmas, thursday, 8 * 3600)


def test_country_holidays_come_from_the_library() -> None:
    """NL 2026 has Easter Monday 6 April and King's Day 27 April without typing them."""
    found = hours.country_holidays("NL", range(2026, 2027))
    assert {date(2026, 4, 6), date(2026, 4, 27)} <= found
    assert date(2026, 4, 7) not in found


def test_mail_arriving_at_night_starts_counting_at_opening() -> None:
    """A request at 23:00 Sunday with a 1h target is due Monday 10:00."""
    sunday = datetime(2026, 12, 6, 23, 0, tzinfo=AMS)
    assert datetime(2026, 12, 7, 10, 0, tzinfo=AMS) == clock.add(office(), sunday, 3600)


def test_the_office_time_zone_counts_not_the_servers() -> None:
    """The same UTC moment is after hours in Amsterdam but within them in New York."""
    moment = datetime(2026, 12, 7, 17, 30, tzinfo=UTC)  # 18:30 Amsterdam, 12:30 New York
    assert datetime(2026, 12, 8, 9, 30, tzinfo=AMS) == clock.add(office(AMS), moment, 1800)
    assert datetime(2026, 12, 7, 13, 0, tzinfo=NY) == clock.add(office(NY), moment, 1800)


def test_elapsed_counts_only_opening_hours() -> None:
    """Friday 16:00 to Monday 10:00 is two business hours."""
    start = datetime(2026, 12, 4, 16, 0, tzinfo=AMS)
    end = datetime(2026, 12, 7, 10, 0, tzinfo=AMS)
    assert 7200 == clock.elapsed(office(), start, end)


def test_backward_walk_finds_the_warning_moment() -> None:
    """One business hour before Monday 09:30 is Friday 16:30."""
    due = datetime(2026, 12, 7, 9, 30, tzinfo=AMS)
    assert datetime(2026, 12, 4, 16, 30, tzinfo=AMS) == clock.add(office(), due, -3600)


def test_around_the_clock_is_plain_arithmetic() -> None:
    """Without a calendar a target is wall-clock time, weekend or not."""
    friday = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
    assert datetime(2026, 12, 5, 3, 0, tzinfo=UTC) == clock.add(None, friday, 4 * 3600)


def test_daylight_saving_night_is_measured_in_real_hours() -> None:
    """A 24x7 calendar (00:00-24:00) across the spring change has 23 hours that Sunday."""
    always = hours.build("always", AMS, {"mon-sun": "00:00-24:00"}, frozenset())
    start = datetime(2026, 3, 29, 0, 0, tzinfo=AMS)
    end = datetime(2026, 3, 30, 0, 0, tzinfo=AMS)
    assert 23 * 3600 == clock.elapsed(always, start, end)
