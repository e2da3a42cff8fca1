"""The morning digest: one mail per agent (and escalation address) on working days.

Sent once per person and day: the mark ``digest:<day>:<address>`` is written
with the outbox row, so a restart at 10:00 sends the day's digest it missed,
once, and never yesterday's.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from mailgate.rules.model import OPEN_STATUSES
from mailgate.service.runtime import Runtime
from mailgate.sla import clock, wording
from mailgate.sla.due import breaches, clock_of, open_targets
from mailgate.sla.escalate import MARKS
from mailgate.sla.mail import Person, send
from mailgate.sla.policy import DigestPlan
from mailgate.store.models import Ticket

log = structlog.get_logger(__name__)

LIST_LIMIT = 25


def digest_day(plan: DigestPlan, now: datetime) -> date | None:
    """Today (office calendar) when it is a working day and the digest hour has come."""
    local = now.astimezone(plan.hours.zone)
    if clock.is_working_day(plan.hours, local.date()) and local.time() >= plan.at:
        return local.date()
    return None


def next_digest(plan: DigestPlan, now: datetime) -> datetime | None:
    """The next digest moment after ``now``."""
    day = now.astimezone(plan.hours.zone).date()
    for offset in range(370):
        candidate = day + timedelta(days=offset)
        moment = datetime.combine(candidate, plan.at, tzinfo=plan.hours.zone)
        if moment > now and clock.is_working_day(plan.hours, candidate):
            return moment
    return None


def _queues_of(runtime: Runtime, agent_key: str) -> tuple[str, ...]:
    directory = runtime.directory
    return tuple(
        q.name for q in directory.queues if any(a.key == agent_key for a in directory.members(q.name))
    )


def send_digests(session: Session, runtime: Runtime, plan: DigestPlan, day: date, now: datetime) -> int:
    """Each person's digest for ``day`` not sent yet; returns how many went out."""
    conn = session.connection()
    directory = runtime.directory
    people: list[tuple[Person, tuple[str, ...], str | None]] = [
        (Person(a.address, a.name, a.language), _queues_of(runtime, a.key), a.address)
        for a in directory.agents
        if a.digest
    ]
    people += [
        (Person(q.escalation, "", runtime.config.helpdesk.language), (q.name,), None)
        for q in directory.queues
        if q.escalation
    ]
    sent = 0
    for person, queues, assignee in people:
        key = f"digest:{day.isoformat()}:{person.address}"
        if conn.execute(select(MARKS.c.id).where(MARKS.c.key == key)).first() is not None:
            continue
        context = _context(session, plan, person, queues, assignee, now)
        conn.execute(
            MARKS.insert(),
            {"key": key, "ticket_id": None, "kind": "digest", "created_at": now,
             "detail": {"tickets": context["count"]}},
        )  # fmt: skip
        # An empty digest is noise: marked (so not sent later today), not mailed.
        if context["count"]:
            send(conn, runtime, person, "sla_digest", context, kind="sla_digest", ticket_id=None, now=now)
            sent += 1
    if sent:
        log.info("sla.digests_sent", day=day.isoformat(), mails=sent)
    return sent


def _context(
    session: Session,
    plan: DigestPlan,
    person: Person,
    queues: tuple[str, ...],
    assignee: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The person's tickets, sorted into the digest's sections."""
    mine = Ticket.assignee == assignee if assignee else Ticket.queue.in_(queues)
    unassigned = and_(Ticket.assignee.is_(None), Ticket.queue.in_(queues)) if queues else None
    wanted = or_(mine, unassigned) if unassigned is not None and assignee else mine
    query = (
        select(Ticket).where(Ticket.status.in_(OPEN_STATUSES), wanted).order_by(Ticket.created_at).limit(500)
    )
    zone, lang = plan.hours.zone, person.language
    today = now.astimezone(zone).date()
    sections: dict[str, list[dict[str, Any]]] = {
        "breached": [], "due_today": [], "open": [], "waiting": [], "unassigned": []
    }  # fmt: skip
    oldest = None
    for ticket in session.scalars(query):
        state = clock_of(ticket)
        due = min((moment for _, moment in open_targets(state)), default=None)
        item = {
            "ref": ticket.ref,
            "subject": ticket.subject,
            "priority": ticket.priority,
            "status": ticket.status,
            "queue": ticket.queue,
            "due": wording.moment(due, zone, lang, now) if due else "",
            "since": wording.moment(ticket.created_at, zone, lang, now),
        }
        if ticket.status == "pending":
            sections["waiting"].append(item)
        elif breaches(state, now):
            sections["breached"].append(item)
        elif due is not None and due.astimezone(zone).date() == today:
            sections["due_today"].append(item)
        elif ticket.assignee is None and assignee:
            sections["unassigned"].append(item)
        else:
            sections["open"].append(item)
        if ticket.status != "pending" and oldest is None:
            oldest = item
    count = sum(len(items) for items in sections.values())
    return {
        "recipient": {"name": person.name, "email": person.address},
        "day": wording.moment(now, zone, lang).rsplit(" ", 1)[0],
        "count": count,
        "oldest": oldest,
        **{name: items[:LIST_LIMIT] for name, items in sections.items()},
        "more": {name: max(0, len(items) - LIST_LIMIT) for name, items in sections.items()},
    }
