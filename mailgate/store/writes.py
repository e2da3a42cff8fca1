"""The processing stage's reads and writes, as prebuilt Core statements.

This runs for every message. Building a statement per call (``insert(t).
values(**kw)``) cost SQLAlchemy about 0.8 ms for cache-key work, against
0.1 ms for a statement built once at import and executed with a parameter
dict, and 0.6 ms for an ORM flush; so the hot path uses the module-level
statements below and passes plain values around. The ORM models stay the
schema and serve the CLI and reports.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Executable, Table, bindparam, case, func, select

from mailgate.store.models import Article, Event, Inbound, Outbox, Participant, Suppression, Ticket

# Declarative models type __table__ as FromClause; these are Tables.
TICKETS = cast(Table, Ticket.__table__)
ARTICLES = cast(Table, Article.__table__)
EVENTS = cast(Table, Event.__table__)
PARTICIPANTS = cast(Table, Participant.__table__)
OUTBOX = cast(Table, Outbox.__table__)
INBOUND = cast(Table, Inbound.__table__)
SUPPRESSIONS = cast(Table, Suppression.__table__)


@dataclass(frozen=True)
class TicketView:
    """A ticket as the pipeline and templates see it."""

    id: int
    ref: str
    subject: str
    status: str
    priority: str
    queue: str
    category: str | None
    language: str
    requester: str
    requester_name: str
    assignee: str | None
    tags: tuple[str, ...] = ()
    # Set on a ticket merged into another (see tickets/merge.py).
    merged_into_id: int | None = None


_TICKET_VIEW = select(
    TICKETS.c.id,
    TICKETS.c.ref,
    TICKETS.c.subject,
    TICKETS.c.status,
    TICKETS.c.priority,
    TICKETS.c.queue,
    TICKETS.c.category,
    TICKETS.c.language,
    TICKETS.c.requester,
    TICKETS.c.requester_name,
    TICKETS.c.assignee,
    TICKETS.c.tags,
    TICKETS.c.merged_into_id,
).where(TICKETS.c.id == bindparam("b_id"))
_INSERT_TICKET = TICKETS.insert().returning(TICKETS.c.id)
_SET_REF = TICKETS.update().where(TICKETS.c.id == bindparam("b_id")).values(ref=bindparam("b_ref"))
_TOUCH_TICKET = (
    TICKETS.update().where(TICKETS.c.id == bindparam("b_id")).values(updated_at=bindparam("b_now"))
)
_INSERT_ARTICLE = ARTICLES.insert().returning(ARTICLES.c.id)
_INSERT_EVENT = EVENTS.insert()
_INSERT_PARTICIPANT = PARTICIPANTS.insert()
_KNOWN_PARTICIPANTS = select(PARTICIPANTS.c.address).where(
    PARTICIPANTS.c.ticket_id == bindparam("b_id"),
    PARTICIPANTS.c.address.in_(bindparam("b_addresses", expanding=True)),
)
_IS_PARTICIPANT = select(PARTICIPANTS.c.id).where(
    PARTICIPANTS.c.ticket_id == bindparam("b_id"), PARTICIPANTS.c.address == bindparam("b_address")
)
_BY_MESSAGE_ID = select(ARTICLES.c.message_id, ARTICLES.c.ticket_id).where(
    ARTICLES.c.message_id.in_(bindparam("b_ids", expanding=True))
)
# Suppression and both counts in one statement: it runs before every automatic mail.
_AUTOMATIC_STANDING = select(
    select(SUPPRESSIONS.c.reason).where(SUPPRESSIONS.c.address == bindparam("b_rcpt")).scalar_subquery(),
    func.coalesce(func.sum(case((OUTBOX.c.created_at >= bindparam("b_hour_ago"), 1), else_=0)), 0),
    func.count(OUTBOX.c.id),
).where(
    OUTBOX.c.rcpt == bindparam("b_rcpt"),
    OUTBOX.c.automatic.is_(True),
    OUTBOX.c.created_at >= bindparam("b_day_ago"),
)
_FINISH_INBOUND = (
    INBOUND.update()
    .where(INBOUND.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        reason=bindparam("b_reason"),
        lease_until=None,
        processed_at=bindparam("b_now"),
    )
)
_INSERT_OUTBOX = OUTBOX.insert().returning(OUTBOX.c.id)
_SET_RETURN_PATH = (
    OUTBOX.update().where(OUTBOX.c.id == bindparam("b_id")).values(mail_from=bindparam("b_mail_from"))
)


_DEFERRED = "mailgate.deferred_writes"


@contextmanager
def deferred_writes(conn: Connection) -> Iterator[None]:
    """Gather event rows and inbound state changes, and write them at the end.

    Nothing in a processing transaction reads them back, so each becomes one
    executemany per batch instead of a statement per message (SQLAlchemy's
    cost is per statement). On an exception nothing is written: the caller's
    transaction is rolled back anyway.
    """
    pending: dict[Executable, list[dict[str, Any]]] = {}
    conn.info[_DEFERRED] = pending
    try:
        yield
        for statement, rows in pending.items():
            conn.execute(statement, rows)
    finally:
        conn.info.pop(_DEFERRED, None)


def _write(conn: Connection, statement: Executable, params: dict[str, Any]) -> None:
    pending = conn.info.get(_DEFERRED)
    if pending is None:
        conn.execute(statement, params)
    else:
        pending.setdefault(statement, []).append(params)


def ticket_view(conn: Connection, ticket_id: int) -> TicketView | None:
    row = conn.execute(_TICKET_VIEW, {"b_id": ticket_id}).first()
    if row is None:
        return None
    values = row._asdict()
    values["tags"] = tuple(values["tags"] or ())
    return TicketView(**values)


def insert_ticket(conn: Connection, prefix: str, **values: Any) -> TicketView:
    """A new ticket; its reference is made from the id the insert returns."""
    values.setdefault("tags", [])
    values.setdefault("category", None)
    values.setdefault("assignee", None)
    # The reference needs the id; a unique placeholder fills the gap.
    ticket_id = conn.execute(_INSERT_TICKET, {"ref": f"new-{uuid.uuid4().hex}", **values}).scalar_one()
    ref = f"{prefix}-{ticket_id}"
    conn.execute(_SET_REF, {"b_id": ticket_id, "b_ref": ref})
    return TicketView(
        id=ticket_id,
        ref=ref,
        subject=values["subject"],
        status=values["status"],
        priority=values["priority"],
        queue=values["queue"],
        category=values["category"],
        language=values["language"],
        requester=values["requester"],
        requester_name=values.get("requester_name", ""),
        assignee=values["assignee"],
        tags=tuple(values["tags"]),
    )


def touch_ticket(conn: Connection, ticket_id: int, now: datetime) -> None:
    conn.execute(_TOUCH_TICKET, {"b_id": ticket_id, "b_now": now})


def update_ticket(conn: Connection, ticket_id: int, **values: Any) -> None:
    """Rare changes (status, routing on a reply): built per call."""
    conn.execute(TICKETS.update().where(TICKETS.c.id == ticket_id).values(**values))


def insert_article(conn: Connection, **values: Any) -> int:
    return int(conn.execute(_INSERT_ARTICLE, values).scalar_one())


def insert_event(
    conn: Connection, ticket_id: int | None, kind: str, created_at: datetime, **detail: Any
) -> None:
    _write(
        conn,
        _INSERT_EVENT,
        {"ticket_id": ticket_id, "kind": kind, "detail": detail, "created_at": created_at},
    )


def add_participants(
    conn: Connection, ticket_id: int, people: Iterable[tuple[str, str]], *, new_ticket: bool
) -> None:
    """Record (address, role) pairs once each; a new ticket needs no lookup first."""
    wanted: dict[str, str] = {}
    for address, role in people:
        if address:
            wanted.setdefault(address.lower(), role)
    if not wanted:
        return
    if not new_ticket:
        known = set(
            conn.execute(_KNOWN_PARTICIPANTS, {"b_id": ticket_id, "b_addresses": list(wanted)}).scalars()
        )
        wanted = {a: r for a, r in wanted.items() if a not in known}
    if wanted:
        conn.execute(
            _INSERT_PARTICIPANT,
            [{"ticket_id": ticket_id, "address": a, "role": r} for a, r in wanted.items()],
        )


def automatic_mail_standing(conn: Connection, rcpt: str, now: datetime) -> tuple[str | None, int, int]:
    """Why ``rcpt`` is suppressed (or None), and the automatic mails queued to
    it in the last hour and the last day."""
    params = {
        "b_rcpt": rcpt.lower(),
        "b_hour_ago": now - timedelta(hours=1),
        "b_day_ago": now - timedelta(days=1),
    }
    reason, hour, day = conn.execute(_AUTOMATIC_STANDING, params).one()
    return reason, int(hour), int(day)


def finish_inbound(conn: Connection, inbound_id: int, state: str, reason: str, now: datetime) -> None:
    _write(
        conn, _FINISH_INBOUND, {"b_id": inbound_id, "b_state": state, "b_reason": reason[:2000], "b_now": now}
    )


def insert_outbox(conn: Connection, **values: Any) -> int:
    return int(conn.execute(_INSERT_OUTBOX, values).scalar_one())


def set_return_path(conn: Connection, outbox_id: int, mail_from: str) -> None:
    conn.execute(_SET_RETURN_PATH, {"b_id": outbox_id, "b_mail_from": mail_from})


class CoreTicketLookup:
    """The threading stage's view of the database (see TicketLookup)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._seen: dict[int, TicketView] = {}

    def ticket_for_message_ids(self, message_ids: list[str]) -> int | None:
        wanted = [m for m in message_ids if m][:100]
        if not wanted:
            return None
        by_id: dict[str, set[int]] = {}
        for message_id, ticket_id in self._conn.execute(_BY_MESSAGE_ID, {"b_ids": wanted}):
            by_id.setdefault(message_id, set()).add(int(ticket_id))
        # Different mails may share a Message-ID (issue 10): an id that names
        # one ticket is better evidence than an earlier one that names
        # several; among several, the newest ticket, so the choice is stable.
        for message_id in wanted:
            if len(by_id.get(message_id, ())) == 1:
                return next(iter(by_id[message_id]))
        for message_id in wanted:
            if message_id in by_id:
                return max(by_id[message_id])
        return None

    def ticket_exists(self, ticket_id: int) -> bool:
        # Read whole and kept: the handler needs this ticket next (``view``).
        found = self._current(ticket_id)
        if found is not None:
            self._seen[ticket_id] = found
        return found is not None

    def view(self, ticket_id: int) -> TicketView | None:
        """The ticket, from the threading stage's own read when it made one.

        A ticket merged into another answers as that other ticket: its reply
        addresses and subject tag keep working and lead there.
        """
        return self._seen.get(ticket_id) or self._current(ticket_id)

    def is_participant(self, ticket_id: int, address: str) -> bool:
        current = self._current(ticket_id)
        if current is None:
            return False
        return (
            self._conn.execute(_IS_PARTICIPANT, {"b_id": current.id, "b_address": address.lower()}).first()
            is not None
        )

    def _current(self, ticket_id: int) -> TicketView | None:
        found = ticket_view(self._conn, ticket_id)
        # Merges are flattened (tickets/merge.py), so one hop is the rule;
        # the bound only guards against a hand-edited loop.
        for _ in range(5):
            if found is None or found.merged_into_id is None:
                return found
            found = ticket_view(self._conn, found.merged_into_id)
        return None


# -- agents and lifecycle (rarer than new mail, but on every agent reply) ------

_TICKET_TIMES = select(
    TICKETS.c.first_response_at,
    TICKETS.c.resolved_at,
    TICKETS.c.closed_at,
    TICKETS.c.csat_rating,
).where(TICKETS.c.id == bindparam("b_id"))
_LAST_FROM = (
    select(ARTICLES.c.message_id)
    .where(
        ARTICLES.c.ticket_id == bindparam("b_id"),
        ARTICLES.c.direction == "in",
        ARTICLES.c.sender == bindparam("b_sender"),
        ARTICLES.c.message_id.is_not(None),
    )
    .order_by(ARTICLES.c.id.desc())
    .limit(1)
)
_FIRST_MESSAGE = (
    select(ARTICLES.c.message_id)
    .where(ARTICLES.c.ticket_id == bindparam("b_id"), ARTICLES.c.message_id.is_not(None))
    .order_by(ARTICLES.c.id)
    .limit(1)
)
_WATCHERS = (
    select(PARTICIPANTS.c.address)
    .where(PARTICIPANTS.c.ticket_id == bindparam("b_id"), PARTICIPANTS.c.role == "cc")
    .order_by(PARTICIPANTS.c.id)
)
_QUIET_TICKETS = (
    select(TICKETS.c.id)
    .where(TICKETS.c.status == bindparam("b_status"), TICKETS.c.updated_at < bindparam("b_before"))
    .limit(500)
)
_QUIET_TICKETS_LOCKED = _QUIET_TICKETS.with_for_update(skip_locked=True)


@dataclass(frozen=True)
class TicketTimes:
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    csat_rating: int | None


def ticket_times(conn: Connection, ticket_id: int) -> TicketTimes:
    return TicketTimes(*conn.execute(_TICKET_TIMES, {"b_id": ticket_id}).one())


def last_message_from(conn: Connection, ticket_id: int, sender: str) -> str | None:
    """The Message-ID of the newest mail ``sender`` wrote on this ticket."""
    found = conn.execute(_LAST_FROM, {"b_id": ticket_id, "b_sender": sender.lower()}).scalar()
    return str(found) if found else None


def first_message(conn: Connection, ticket_id: int) -> str | None:
    found = conn.execute(_FIRST_MESSAGE, {"b_id": ticket_id}).scalar()
    return str(found) if found else None


def watchers(conn: Connection, ticket_id: int) -> list[str]:
    """Cc participants: people copied on the conversation besides the requester."""
    return [str(a) for a in conn.execute(_WATCHERS, {"b_id": ticket_id}).scalars()]


def quiet_tickets(conn: Connection, status: str, before: datetime) -> list[int]:
    # Several instances on one PostgreSQL: each closes different tickets.
    query = _QUIET_TICKETS_LOCKED if conn.dialect.name == "postgresql" else _QUIET_TICKETS
    return [int(i) for i in conn.execute(query, {"b_status": status, "b_before": before}).scalars()]
