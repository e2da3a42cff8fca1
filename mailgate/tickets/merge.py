"""One conversation on two tickets becomes one: SOURCE is merged into TARGET.

Used by agents (``#merge HD-12``), admins (``mailgate tickets merge``) and
threading itself (``rehome.py``: a reply that came in before the mail it
answers). Everything that lets mail find a ticket moves to the target: the
articles (and with them every Message-ID we know, ours and theirs), the
participants, the outbox rows, the Message-IDs the source still waits for.
The source is closed with a ``merged_into`` event and keeps pointing at the
target (``tickets.merged_into_id``), so its reply addresses and subject tag
lead there (``CoreTicketLookup``). Nobody is mailed about a merge.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, delete, func, select, update

from mailgate.agents.commands import Changes
from mailgate.store.models import AwaitedMessage
from mailgate.store.writes import (
    ARTICLES,
    OUTBOX,
    PARTICIPANTS,
    TICKETS,
    TicketView,
    add_participants,
    insert_event,
    ticket_view,
)

AWAITED = cast(Table, AwaitedMessage.__table__)


class MergeRefused(Exception):
    """Why these two tickets cannot be merged; the text is shown to whoever asked."""


@dataclass(frozen=True)
class Merged:
    source_ref: str
    target_ref: str
    articles: int
    reason: str


def find_ticket(conn: Connection, text: str, prefix: str) -> TicketView | None:
    """A ticket named as ``12``, ``#12`` or ``HD-12`` (any case)."""
    number = text.strip().upper().removeprefix(f"{prefix.upper()}-").lstrip("#")
    return ticket_view(conn, int(number)) if number.isdigit() and len(number) < 12 else None


def merge_problem(
    source: TicketView | None, target: TicketView | None, source_name: str, target_name: str
) -> str | None:
    """None when SOURCE may be merged into TARGET, else why not."""
    if source is None:
        return f"no ticket {source_name}"
    if target is None:
        return f"no ticket {target_name}"
    if source.id == target.id:
        return f"{source.ref} cannot be merged into itself"
    if source.merged_into_id is not None:
        return f"{source.ref} was already merged into ticket {source.merged_into_id}"
    if target.merged_into_id is not None:
        return f"{target.ref} was merged into ticket {target.merged_into_id}; merge into that one"
    return None


def merge_tickets(
    conn: Connection,
    source: TicketView,
    target: TicketView,
    now: datetime,
    *,
    by: str,
    reason: str,
    keep_earliest: bool = False,
) -> Merged:
    """Move everything of ``source`` to ``target`` and close ``source``.

    ``keep_earliest``: the target takes the source's creation time when that
    is earlier (a re-homed conversation began with the earlier mail), so
    reports measure from the first mail.
    """
    problem = merge_problem(source, target, source.ref, target.ref)
    if problem is not None:
        raise MergeRefused(problem)
    moved = conn.execute(
        update(ARTICLES).where(ARTICLES.c.ticket_id == source.id).values(ticket_id=target.id)
    ).rowcount
    conn.execute(update(OUTBOX).where(OUTBOX.c.ticket_id == source.id).values(ticket_id=target.id))
    people = conn.execute(
        select(PARTICIPANTS.c.address, PARTICIPANTS.c.role)
        .where(PARTICIPANTS.c.ticket_id == source.id)
        .order_by(PARTICIPANTS.c.id)
    ).all()
    # The source's requester is someone the target's conversation now
    # includes, not its requester: they join as a copied participant.
    add_participants(
        conn,
        target.id,
        [(address, "cc" if role == "requester" else role) for address, role in people],
        new_ticket=False,
    )
    conn.execute(delete(PARTICIPANTS).where(PARTICIPANTS.c.ticket_id == source.id))
    _move_awaited(conn, source.id, target.id)
    # Tickets merged into the source before now lead to the target directly.
    conn.execute(
        update(TICKETS).where(TICKETS.c.merged_into_id == source.id).values(merged_into_id=target.id)
    )
    conn.execute(
        update(TICKETS)
        .where(TICKETS.c.id == source.id)
        .values(status="closed", closed_at=now, updated_at=now, merged_into_id=target.id)
    )
    target_values: dict[str, object] = {"updated_at": now}
    if keep_earliest:
        first = conn.execute(
            select(func.min(TICKETS.c.created_at)).where(TICKETS.c.id.in_([source.id, target.id]))
        ).scalar_one()
        target_values["created_at"] = first
    conn.execute(update(TICKETS).where(TICKETS.c.id == target.id).values(**target_values))
    insert_event(
        conn,
        source.id,
        "merged_into",
        now,
        into=target.ref,
        into_id=target.id,
        by=by,
        reason=reason,
        articles=moved,
    )
    insert_event(
        conn,
        target.id,
        "merged",
        now,
        source=source.ref,
        source_id=source.id,
        by=by,
        reason=reason,
        articles=moved,
    )
    return Merged(source.ref, target.ref, int(moved), reason)


def _move_awaited(conn: Connection, source_id: int, target_id: int) -> None:
    """The source's awaited Message-IDs become the target's (once each)."""
    already = select(AWAITED.c.message_id).where(AWAITED.c.ticket_id == target_id).scalar_subquery()
    conn.execute(delete(AWAITED).where(AWAITED.c.ticket_id == source_id, AWAITED.c.message_id.in_(already)))
    conn.execute(update(AWAITED).where(AWAITED.c.ticket_id == source_id).values(ticket_id=target_id))


def check_merge(conn: Connection, prefix: str, ticket: TicketView, changes: Changes) -> Changes:
    """An agent's ``#merge X`` refused up front, with the other commands, when X cannot take ``ticket``."""
    if changes.merge_into is None or changes.errors:
        return changes
    target = find_ticket(conn, changes.merge_into, prefix)
    problem = merge_problem(ticket, target, ticket.ref, changes.merge_into)
    if problem is None:
        return changes
    return replace(changes, errors=(f"#merge {changes.merge_into}: {problem}",))


def merge_by_command(
    conn: Connection, prefix: str, ticket: TicketView, target_name: str, now: datetime, *, by: str
) -> Merged:
    """``#merge HD-12`` from an authenticated agent: this ticket goes into HD-12."""
    target = find_ticket(conn, target_name, prefix)
    if target is None:
        raise MergeRefused(f"no ticket {target_name}")
    return merge_tickets(conn, ticket, target, now, by=by, reason=f"#merge {target.ref} by {by}")
