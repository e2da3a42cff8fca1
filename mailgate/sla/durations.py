"""Durations as admins write them: ``30m``, ``4h``, ``1.5h``, ``2d``."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*$", re.I)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int | None:
    """Seconds, or None when ``text`` is not a duration (d = 24 counted hours)."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return round(float(match[1]) * _UNIT[match[2].lower()])
