"""Due moments and targets in the reader's language and the office's time zone.

"before Monday 09:30" / "vóór maandag 09:30": a requester reads the promise
in their own language and in office time, the clock the desk keeps; a date
is added when the moment is not within the coming week.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_DAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "nl": ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"),
}
_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
           "oktober", "november", "december"),
}  # fmt: skip
_TODAY = {"en": ("today", "tomorrow"), "nl": ("vandaag", "morgen")}
_UNITS = {
    "en": {
        "second": ("second", "seconds"),
        "minute": ("minute", "minutes"),
        "hour": ("hour", "hours"),
        "business": ("business hour", "business hours"),
    },
    "nl": {
        "second": ("seconde", "seconden"),
        "minute": ("minuut", "minuten"),
        "hour": ("uur", "uur"),
        "business": ("werkuur", "werkuren"),
    },
}


def _lang(language: str) -> str:
    return language if language in _DAYS else "en"


def moment(when: datetime, zone: ZoneInfo, language: str, now: datetime | None = None) -> str:
    """``Monday 09:30``, ``today 14:00``, or ``Monday 14 December 09:30`` further away."""
    lang = _lang(language)
    local = when.astimezone(zone)
    clock = f"{local:%H:%M}"
    if now is not None:
        today = now.astimezone(zone).date()
        if local.date() == today:
            return f"{_TODAY[lang][0]} {clock}"
        if local.date() == today + timedelta(days=1):
            return f"{_TODAY[lang][1]} {clock}"
        if today < local.date() < today + timedelta(days=7):
            return f"{_DAYS[lang][local.weekday()]} {clock}"
    return f"{_DAYS[lang][local.weekday()]} {local.day} {_MONTHS[lang][local.month - 1]} {clock}"


def target(seconds: int, business: bool, language: str) -> str:
    """``4 business hours``, ``30 minutes``, ``8 werkuren``, ``1 uur``."""
    lang = _lang(language)
    units = _UNITS[lang]
    if seconds < 60:
        amount, (one, many) = seconds, units["second"]
    elif seconds < 3600 or seconds % 3600:
        amount, (one, many) = round(seconds / 60), units["minute"]
    else:
        amount, (one, many) = seconds // 3600, units["business" if business else "hour"]
    return f"{amount} {one if amount == 1 else many}"
