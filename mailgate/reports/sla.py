"""The report's service-level section: targets met and missed, per priority and queue.

Judged from what each ticket stored: its due moments and when the target
was met (first public agent reply, resolution). A target still open and not
yet due is neither met nor breached; still open and past due is breached.
Medians are of counted (business) seconds, stored when the target was met,
so the report needs no calendar and agrees with the clock the desk ran on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from statistics import median
from typing import Any

from mailgate.sla.due import breaches, clock_of

TARGETS = (
    ("first_response", "first_response_due", "first_response_at", "first_response_seconds"),
    ("resolution", "resolution_due", "resolved_at", "resolution_seconds"),
)


class _Row:
    """A report row's fields as attributes, which clock_of reads."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _judge(ticket: dict[str, Any], end: datetime) -> dict[str, str | None]:
    """ "met", "breached" or None (not decided yet, or no target) per target."""
    missed = breaches(clock_of(_Row(ticket)), end)
    verdicts: dict[str, str | None] = {}
    for name, due, done, _ in TARGETS:
        if ticket[due] is None:
            verdicts[name] = None
        elif name in missed:
            verdicts[name] = "breached"
        elif ticket[done] is not None or (name == "resolution" and ticket["closed_at"] is not None):
            verdicts[name] = "met"
        else:
            verdicts[name] = None
    return verdicts


def _summary(tickets: list[dict[str, Any]], verdicts: list[dict[str, str | None]]) -> dict[str, Any]:
    found: dict[str, Any] = {"tickets": len(tickets)}
    for name, _, _, seconds in TARGETS:
        met = sum(1 for v in verdicts if v[name] == "met")
        breached = sum(1 for v in verdicts if v[name] == "breached")
        counted = [t[seconds] for t in tickets if t[seconds] is not None]
        found[name] = {
            "met": met,
            "breached": breached,
            "share_met": round(met / (met + breached), 3) if met + breached else None,
            "median_business_seconds": round(median(counted)) if counted else None,
        }
    return found


def sla_section(
    created: list[dict[str, Any]], end: datetime, priority_order: Callable[[str], tuple[int, str]]
) -> dict[str, Any]:
    """Compliance of the tickets created in the period that have a service level."""
    tickets = [t for t in created if t["sla"]]
    if not tickets:
        return {
            "configured": False,
            "note": "no ticket created in this period has a service level "
            "(service_levels: in the rules file, see docs/sla.md)",
            "by_priority": [],
            "by_queue": [],
        }
    verdicts = [_judge(t, end) for t in tickets]
    groups: dict[str, defaultdict[str, list[int]]] = {
        "priority": defaultdict(list),
        "queue": defaultdict(list),
    }
    for index, ticket in enumerate(tickets):
        for key in groups:
            groups[key][ticket[key]].append(index)

    def rows(key: str, order: Callable[[str], Any]) -> list[dict[str, Any]]:
        return [
            {key: name, **_summary([tickets[i] for i in members], [verdicts[i] for i in members])}
            for name, members in sorted(groups[key].items(), key=lambda item: order(item[0]))
        ]

    return {
        "configured": True,
        "levels": sorted({t["sla"] for t in tickets}),
        "total": _summary(tickets, verdicts),
        "by_priority": rows("priority", priority_order),
        "by_queue": rows("queue", lambda name: name),
    }
