"""Named business hours: weekly opening times in a time zone, minus holidays.

A rule asks "did this mail arrive within office hours?"; the answer depends
on the office's wall clock, not the server's, so every schedule carries its
own IANA time zone and daylight saving is zoneinfo's problem, not ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class HoursError(ValueError):
    """A business-hours entry that cannot be understood."""


@dataclass(frozen=True)
class BusinessHours:
    """One named schedule; ``opening[weekday]`` lists (start, end) times."""

    name: str
    zone: ZoneInfo
    opening: tuple[tuple[tuple[time, time], ...], ...]
    # Left out of repr: a country's calendar for ten years is a few hundred dates.
    holidays: frozenset[date] = field(repr=False)

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) falls within opening hours."""
        local = moment.astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        clock = local.time().replace(tzinfo=None)
        return any(start <= clock < end for start, end in self.opening[local.weekday()])

    def describe(self, moment: datetime) -> str:
        """The local time as a rule explanation shows it."""
        local = moment.astimezone(self.zone)
        return f"{local:%a %Y-%m-%d %H:%M} {self.zone.key}"


def parse_days(spec: str) -> list[int]:
    """``"mon-fri"``, ``"sat,sun"`` or ``"wed"`` as weekday numbers (Monday 0)."""
    weekdays: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise HoursError(f"unknown day {part!r}; use mon, tue, wed, thu, fri, sat, sun")
        start, end = DAYS.index(first), DAYS.index(last or first)
        # "fri-mon" wraps over the weekend, as people mean it.
        span = (end - start) % 7
        weekdays.extend((start + offset) % 7 for offset in range(span + 1))
    return weekdays


def parse_ranges(spec: str) -> list[tuple[time, time]]:
    """``"08:30-12:00, 13:00-17:30"`` as (start, end) pairs; ``"closed"`` as none."""
    if spec.strip().lower() == "closed":
        return []
    ranges: list[tuple[time, time]] = []
    for part in spec.split(","):
        match = _RANGE.match(part)
        if not match:
            raise HoursError(f'expected a time range like "08:30-17:00", got {part.strip()!r}')
        start_h, start_m, end_h, end_m = (int(group) for group in match.groups())
        if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59:
            raise HoursError(f"no such time in {part.strip()!r}")
        start = time(start_h, start_m)
        # "24:00" closes at midnight; time() has no 24, so use the last microsecond.
        end = time.max if (end_h, end_m) >= (24, 0) else time(end_h, end_m)
        if end <= start:
            raise HoursError(f"range {part.strip()!r} ends before it starts")
        ranges.append((start, end))
    return ranges


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or HoursError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise HoursError(f"unknown time zone {name!r} (use an IANA name like Europe/Amsterdam)") from error


def build(name: str, zone: ZoneInfo, days: dict[str, str], holidays: frozenset[date]) -> BusinessHours:
    """A schedule from validated pieces; later day entries override earlier ones."""
    opening: list[tuple[tuple[time, time], ...]] = [() for _ in DAYS]
    for day_spec, range_spec in days.items():
        ranges = tuple(parse_ranges(range_spec))
        for weekday in parse_days(day_spec):
            opening[weekday] = ranges
    return BusinessHours(name, zone, tuple(opening), holidays)


def country_holidays(spec: str, years: range) -> frozenset[date]:
    """Public holidays of a country (``NL``) or region (``DE-BY``) for ``years``.

    The dates come from the maintained ``holidays`` package (MIT), so a
    moving feast like Easter Monday or Ascension is never hand-typed wrong.
    """
    import holidays as holiday_library

    country, _, region = spec.strip().upper().replace("/", "-").partition("-")
    try:
        found = holiday_library.country_holidays(country, subdiv=region or None, years=list(years))
    except NotImplementedError as error:
        raise HoursError(
            f'no holiday calendar for country "{country}" (use a code like NL, BE, DE)'
        ) from error
    except Exception as error:  # the library raises a bare NotImplementedError or KeyError per version
        raise HoursError(f'no holiday calendar for "{spec}": {error}') from error
    return frozenset(found.keys())
