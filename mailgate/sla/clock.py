"""Counting time in business hours: adding a target, measuring what elapsed.

``hours`` None means around the clock. Otherwise only the opening ranges of
the schedule count, in its own time zone, minus its holidays; the walk goes
day by day in the office's local calendar and measures each opening range
in UTC, so a range that spans a daylight-saving change counts the hours it
really had.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from mailgate.rules.hours import BusinessHours

# A schedule open for a few minutes a year still ends the walk: about ten years.
MAX_DAYS = 3660


def _day_ranges(hours: BusinessHours, day: date) -> list[tuple[datetime, datetime]]:
    """The opening ranges of one local day, as UTC moments."""
    if day in hours.holidays:
        return []
    found = []
    for start, end in hours.opening[day.weekday()]:
        opens = datetime.combine(day, start, tzinfo=hours.zone)
        if end == time.max:
            closes = datetime.combine(day + timedelta(days=1), time(0), tzinfo=hours.zone)
        else:
            closes = datetime.combine(day, end, tzinfo=hours.zone)
        found.append((opens.astimezone(UTC), closes.astimezone(UTC)))
    return found


def _forward(hours: BusinessHours, start: datetime) -> Iterator[tuple[datetime, datetime]]:
    first = start.astimezone(hours.zone).date() - timedelta(days=1)
    for offset in range(MAX_DAYS):
        for opens, closes in _day_ranges(hours, first + timedelta(days=offset)):
            if closes > start:
                yield max(opens, start), closes


def _backward(hours: BusinessHours, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    last = end.astimezone(hours.zone).date() + timedelta(days=1)
    for offset in range(MAX_DAYS):
        for opens, closes in reversed(_day_ranges(hours, last - timedelta(days=offset))):
            if opens < end:
                yield opens, min(closes, end)


def add(hours: BusinessHours | None, start: datetime, seconds: float) -> datetime:
    """The moment ``seconds`` of counted time after ``start`` (before it when negative)."""
    if hours is None or seconds == 0:
        return start + timedelta(seconds=seconds)
    left = abs(seconds)
    if seconds > 0:
        for opens, closes in _forward(hours, start):
            span = (closes - opens).total_seconds()
            if span >= left:
                return opens + timedelta(seconds=left)
            left -= span
    else:
        for opens, closes in _backward(hours, start):
            span = (closes - opens).total_seconds()
            if span >= left:
                return closes - timedelta(seconds=left)
            left -= span
    # Never open (or only for a moment each year): as good as never.
    return start + timedelta(days=MAX_DAYS if seconds > 0 else -MAX_DAYS)


def elapsed(hours: BusinessHours | None, start: datetime, end: datetime) -> float:
    """Seconds of counted time between ``start`` and ``end`` (0 when end is earlier)."""
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    total = 0.0
    for opens, closes in _forward(hours, start):
        if opens >= end:
            break
        total += (min(closes, end) - opens).total_seconds()
    return total


def is_working_day(hours: BusinessHours, day: date) -> bool:
    """Open at some time on ``day`` (a local date) and not a holiday."""
    return day not in hours.holidays and bool(hours.opening[day.weekday()])
