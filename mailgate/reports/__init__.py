"""`mailgate report`: how the helpdesk is doing, from the tickets themselves.

Everything is computed from what the pipeline already records: a ticket's
``created_at``, ``first_response_at`` (an agent's first public reply),
``resolved_at``, ``csat_rating``, its articles and its ``status_changed``
events. A report is a plain dict (the JSON output); render.py turns it into
a table, CSV or an HTML page.

Definitions:

* first response: from the ticket's creation to the first public agent reply
* resolution: from creation to the ticket's (latest) resolution
* first-contact resolution: a resolved ticket that got exactly one public
  agent reply and was never reopened
* backlog: tickets new, open or pending at the end of the period
* SLA compliance (reports/sla.py): for tickets created in the period that
  have a service level, each target met or breached against the due moment
  stored on the ticket, and the median counted (business) time
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from mailgate.reports.kb import kb_report
from mailgate.reports.sla import sla_section
from mailgate.rules.model import OPEN_STATUSES, PRIORITIES
from mailgate.store.models import Article, Event, Ticket

OPEN = OPEN_STATUSES
AGE_BUCKETS = (
    (timedelta(days=1), "under 1 day"),
    (timedelta(days=3), "1-3 days"),
    (timedelta(days=7), "3-7 days"),
)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @staticmethod
    def last_days(days: int, now: datetime | None = None) -> Period:
        end = now or datetime.now(UTC)
        return Period(end - timedelta(days=days), end)


def _seconds(values: list[float]) -> dict[str, Any]:
    """Count, median and 90th percentile of durations in seconds."""
    if not values:
        return {"count": 0, "median_seconds": None, "p90_seconds": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return {"count": len(ordered), "median_seconds": round(median(ordered)), "p90_seconds": round(p90)}


def build_report(conn: Connection, period: Period, *, queue: str | None = None) -> dict[str, Any]:
    """The report for tickets created or resolved in ``period`` (and the backlog at its end)."""
    start, end = period.start, period.end
    wanted = or_(
        and_(Ticket.created_at >= start, Ticket.created_at < end),
        and_(Ticket.resolved_at >= start, Ticket.resolved_at < end),
        Ticket.status.in_(OPEN),
    )
    query = select(
        Ticket.id,
        Ticket.status,
        Ticket.priority,
        Ticket.queue,
        Ticket.category,
        Ticket.created_at,
        Ticket.first_response_at,
        Ticket.resolved_at,
        Ticket.closed_at,
        Ticket.csat_rating,
        Ticket.sla,
        Ticket.first_response_due,
        Ticket.next_reply_due,
        Ticket.resolution_due,
        Ticket.sla_paused_at,
        Ticket.sla_paused_seconds,
        Ticket.first_response_seconds,
        Ticket.resolution_seconds,
    ).where(wanted)
    if queue is not None:
        query = query.where(Ticket.queue == queue)
    tickets = [row._asdict() for row in conn.execute(query)]
    ids = [ticket["id"] for ticket in tickets]
    replies = _agent_replies(conn, ids)
    reopened = _reopened(conn, ids)

    created = [t for t in tickets if start <= t["created_at"] < end]
    resolved = [t for t in tickets if t["resolved_at"] is not None and start <= t["resolved_at"] < end]
    backlog = [t for t in tickets if t["status"] in OPEN and t["created_at"] < end]
    last_day = (end - timedelta(microseconds=1)).date()
    return {
        "period": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "first_day": start.date().isoformat(),
            "last_day": last_day.isoformat(),
            "queue": queue,
        },
        "totals": {"created": len(created), "resolved": len(resolved), "backlog": len(backlog)},
        "by_priority": _by_priority(created, resolved),
        "by_queue": _grouped(created, resolved, backlog, "queue"),
        "by_category": _grouped(created, resolved, backlog, "category"),
        "first_contact_resolution": _fcr(resolved, replies, reopened),
        "csat": _csat(resolved),
        "knowledge_base": kb_report(conn, ids, resolved, replies, reopened, start, end),
        "backlog_age": _backlog_age(backlog, end),
        "daily": _daily(created, resolved, period),
        "sla": sla_section(created, end, _priority_order),
    }


def _agent_replies(conn: Connection, ids: list[int]) -> Counter[int]:
    found: Counter[int] = Counter()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = (
            select(Article.ticket_id, func.count())
            .where(
                Article.ticket_id.in_(chunk),
                Article.kind == "agent_reply",
                Article.visibility == "public",
            )
            .group_by(Article.ticket_id)
        )
        found.update({ticket_id: number for ticket_id, number in conn.execute(query)})
    return found


def _reopened(conn: Connection, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = select(Event.ticket_id, Event.detail).where(
            Event.ticket_id.in_(chunk), Event.kind == "status_changed"
        )
        for ticket_id, detail in conn.execute(query):
            if (
                isinstance(detail, dict)
                and detail.get("previous") in ("resolved", "closed")
                and detail.get("status") in OPEN
                and ticket_id is not None
            ):
                found.add(ticket_id)
    return found


def _by_priority(created: list[dict[str, Any]], resolved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    responses: defaultdict[str, list[float]] = defaultdict(list)
    resolutions: defaultdict[str, list[float]] = defaultdict(list)
    counts: Counter[str] = Counter(t["priority"] for t in created)
    for ticket in created:
        if ticket["first_response_at"] is not None:
            waited = (ticket["first_response_at"] - ticket["created_at"]).total_seconds()
            responses[ticket["priority"]].append(waited)
    for ticket in resolved:
        took = (ticket["resolved_at"] - ticket["created_at"]).total_seconds()
        resolutions[ticket["priority"]].append(took)
    names = sorted(set(counts) | set(resolutions), key=_priority_order)
    return [
        {
            "priority": name,
            "created": counts.get(name, 0),
            "unanswered": counts.get(name, 0) - len(responses.get(name, [])),
            "first_response": _seconds(responses.get(name, [])),
            "resolution": _seconds(resolutions.get(name, [])),
        }
        for name in names
    ]


def _priority_order(name: str) -> tuple[int, str]:
    known = PRIORITIES[::-1]  # most urgent first
    return (known.index(name) if name in known else len(known), name)


def _grouped(
    created: list[dict[str, Any]], resolved: list[dict[str, Any]], backlog: list[dict[str, Any]], key: str
) -> list[dict[str, Any]]:
    def label(ticket: dict[str, Any]) -> str:
        return str(ticket[key] or "(none)")

    made, done, waiting = (Counter(label(t) for t in rows) for rows in (created, resolved, backlog))
    names = sorted(set(made) | set(done) | set(waiting))
    return [
        {key: name, "created": made[name], "resolved": done[name], "backlog": waiting[name]} for name in names
    ]


def _fcr(resolved: list[dict[str, Any]], replies: Counter[int], reopened: set[int]) -> dict[str, Any]:
    first_contact = [t for t in resolved if replies[t["id"]] == 1 and t["id"] not in reopened]
    rate = len(first_contact) / len(resolved) if resolved else None
    return {
        "resolved": len(resolved),
        "first_contact": len(first_contact),
        "rate": None if rate is None else round(rate, 3),
    }


def _csat(resolved: list[dict[str, Any]]) -> dict[str, Any]:
    ratings = [t["csat_rating"] for t in resolved if t["csat_rating"] is not None]
    return {
        "ratings": len(ratings),
        "response_rate": round(len(ratings) / len(resolved), 3) if resolved else None,
        "average": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "distribution": {str(score): ratings.count(score) for score in range(1, 6)},
    }


def _backlog_age(backlog: list[dict[str, Any]], end: datetime) -> dict[str, int]:
    ages: Counter[str] = Counter()
    for ticket in backlog:
        age = end - ticket["created_at"]
        ages[next((name for limit, name in AGE_BUCKETS if age < limit), "over 7 days")] += 1
    return {name: ages[name] for _, name in AGE_BUCKETS} | {"over 7 days": ages["over 7 days"]}


def _daily(
    created: list[dict[str, Any]], resolved: list[dict[str, Any]], period: Period
) -> list[dict[str, Any]]:
    made = Counter(t["created_at"].date().isoformat() for t in created)
    done = Counter(t["resolved_at"].date().isoformat() for t in resolved)
    days = []
    day, last = period.start.date(), (period.end - timedelta(microseconds=1)).date()
    while day <= last:
        key = day.isoformat()
        days.append({"day": key, "created": made[key], "resolved": done[key]})
        day += timedelta(days=1)
    return days
