"""Warnings before a breach and escalation at it, each exactly once.

One scan is one transaction: read the tickets whose ``sla_next_at`` has
come (the index), decide which stages fell due, write a mark per stage, the
breach actions, and ONE mail per person listing all their tickets, then
move each ticket's ``sla_next_at`` on. A crash before the commit leaves
nothing (the next scan does it all again); after it, the marks' unique keys
make a repeat impossible. So a restart after downtime finds every stage that
fell due meanwhile and sends each person one mail, not a storm.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import structlog
from sqlalchemy import Connection, Table, bindparam, select

from mailgate import faults
from mailgate.rules.model import PRIORITIES
from mailgate.service.runtime import Runtime
from mailgate.sla import wording
from mailgate.sla.due import Clock, Stage, clock_of, next_look, stages
from mailgate.sla.mail import Person, send
from mailgate.sla.policy import ServiceLevel
from mailgate.sla.track import CLOCK_COLUMNS
from mailgate.store.models import SlaMark
from mailgate.store.writes import TICKETS, insert_event, update_ticket

log = structlog.get_logger(__name__)

MARKS = cast(Table, SlaMark.__table__)
BATCH = 500
_DUE = (
    select(
        *CLOCK_COLUMNS,
        TICKETS.c.ref,
        TICKETS.c.subject,
        TICKETS.c.queue,
        TICKETS.c.assignee,
        TICKETS.c.tags,
    )
    .where(TICKETS.c.sla_next_at <= bindparam("b_now"))
    .order_by(TICKETS.c.sla_next_at)
    .limit(BATCH)
)
# Several daemons on one PostgreSQL: each takes different tickets.
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True, of=TICKETS)
_MARKED = select(MARKS.c.key).where(MARKS.c.key.in_(bindparam("b_keys", expanding=True)))


@dataclass(frozen=True)
class Escalation:
    """One stage that fired, for the mail that lists it."""

    ticket_id: int
    ref: str
    subject: str
    priority: str
    queue: str
    assignee: str | None
    stage: Stage
    zone: Any


@dataclass(frozen=True)
class ScanResult:
    fired: int
    mails: int
    more: bool


def scan(conn: Connection, runtime: Runtime, now: datetime) -> ScanResult:
    """Fire every stage due by ``now``, in the caller's transaction."""
    query = _DUE_LOCKED if conn.dialect.name == "postgresql" else _DUE
    found = list(conn.execute(query, {"b_now": now}))
    rows = [row._asdict() for row in found]
    if not rows:
        return ScanResult(0, 0, False)
    levels = runtime.rules.service_levels
    fired: list[Escalation] = []
    plans: list[tuple[dict[str, Any], Clock, ServiceLevel, list[Stage]]] = []
    for row, stored in zip(rows, found, strict=True):
        state = clock_of(stored)
        level = levels.get(state.sla or "")
        if level is None:
            # The level was removed from the rules file: nothing left to watch.
            update_ticket(conn, state.id, sla_next_at=None)
            continue
        plans.append((row, state, level, [s for s in stages(level, state) if s.at <= now]))
    keys = [stage.key(state.id) for _, state, _, due in plans for stage in due]
    done = set(conn.execute(_MARKED, {"b_keys": keys}).scalars()) if keys else set()
    for row, state, level, due in plans:
        breached = {stage.target for stage in due if stage.level == "breach"}
        for stage in due:
            key = stage.key(state.id)
            if key in done:
                continue
            # A warning whose breach is also due (the daemon was down) is
            # recorded but not sent: the breach says more.
            skipped = stage.level == "warning" and stage.target in breached
            kind = "skipped" if skipped else stage.level
            conn.execute(
                MARKS.insert(),
                {"key": key, "ticket_id": state.id, "kind": kind, "created_at": now,
                 "detail": {"target": stage.target, "due": stage.due.isoformat()}},
            )  # fmt: skip
            if skipped:
                continue
            insert_event(
                conn, state.id, f"sla_{stage.level}", now, target=stage.target, due=stage.due.isoformat()
            )
            fired.append(
                Escalation(
                    state.id, row["ref"], row["subject"], state.priority, row["queue"], row["assignee"],
                    stage, level.display_zone,
                )
            )  # fmt: skip
            if stage.level == "breach" and level.on_breach.any:
                row = _breach_actions(conn, level, row, now, stage.target)
        update_ticket(conn, state.id, sla_next_at=next_look(level, state, after=now))
    mails = _mail_people(conn, runtime, fired, now)
    if fired:
        faults.crash_point("sla.escalation_queued")
        log.info("sla.escalated", stages=len(fired), mails=mails)
    return ScanResult(len(fired), mails, len(rows) == BATCH)


def _breach_actions(
    conn: Connection, level: ServiceLevel, row: dict[str, Any], now: datetime, target: str
) -> dict[str, Any]:
    """Raise the priority, move the queue, add the tag; the due times stay (the clock does not restart)."""
    actions = level.on_breach
    changes: dict[str, Any] = {}
    if actions.raise_priority and row["priority"] in PRIORITIES[:-1]:
        changes["priority"] = PRIORITIES[PRIORITIES.index(row["priority"]) + 1]
    if actions.queue and actions.queue != row["queue"]:
        changes["queue"] = actions.queue
    tags = list(row["tags"] or [])
    if actions.tag and actions.tag not in tags:
        changes["tags"] = sorted({*tags, actions.tag})
    if changes:
        update_ticket(conn, row["id"], **changes)
        insert_event(conn, row["id"], "fields_changed", now, by=f"sla breach of {target}", **changes)
    return {**row, **changes}


def _recipients(runtime: Runtime, escalation: Escalation) -> list[Person]:
    """The assignee, else the queue's agents; at a breach also the queue's escalation address."""
    directory = runtime.directory
    agent = directory.agent_for(escalation.assignee) if escalation.assignee else None
    agents = [agent] if agent is not None else list(directory.members(escalation.queue))
    people = [Person(a.address, a.name, a.language) for a in agents]
    queue = directory.queue(escalation.queue)
    if escalation.stage.level == "breach" and queue is not None and queue.escalation:
        people.append(Person(queue.escalation, "", runtime.config.helpdesk.language))
    return people


def _mail_people(conn: Connection, runtime: Runtime, fired: list[Escalation], now: datetime) -> int:
    """One mail per person, listing every stage that concerns them."""
    by_person: defaultdict[Person, list[Escalation]] = defaultdict(list)
    for escalation in fired:
        people = _recipients(runtime, escalation)
        if not people:
            insert_event(
                conn, escalation.ticket_id, "sla_unheard", now,
                reason=f"no assignee, no agents and no escalation address for queue {escalation.queue}",
            )  # fmt: skip
        for person in people:
            by_person[person].append(escalation)
    for person, items in by_person.items():
        items.sort(key=lambda e: (e.stage.level != "breach", e.stage.due))
        context = {
            "recipient": {"name": person.name, "email": person.address},
            "breaches": sum(1 for e in items if e.stage.level == "breach"),
            "warnings": sum(1 for e in items if e.stage.level == "warning"),
            "items": [_item(e, person.language, now) for e in items],
        }
        single = items[0].ticket_id if len({e.ticket_id for e in items}) == 1 else None
        send(
            conn, runtime, person, "sla_escalation", context, kind="sla_escalation", ticket_id=single, now=now
        )
    return len(by_person)


def _item(escalation: Escalation, language: str, now: datetime) -> dict[str, Any]:
    stage = escalation.stage
    return {
        "ref": escalation.ref,
        "subject": escalation.subject,
        "priority": escalation.priority,
        "queue": escalation.queue,
        "assignee": escalation.assignee,
        "target": stage.target,
        "level": stage.level,
        "due": wording.moment(stage.due, escalation.zone, language, now),
        "due_iso": stage.due.isoformat(),
    }
