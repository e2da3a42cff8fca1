"""Ticket storage used by the processing stage, the CLI and reports.

Plain functions over a Session; the caller owns the transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.store.models import Article, Event, Outbox, Participant, Ticket


class SqlTicketLookup:
    """The threading stage's view of the database (see TicketLookup)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def ticket_for_message_ids(self, message_ids: list[str]) -> int | None:
        wanted = [m for m in message_ids if m][:100]
        if not wanted:
            return None
        rows = self._session.execute(
            select(Article.message_id, Article.ticket_id).where(Article.message_id.in_(wanted))
        ).all()
        by_id = {message_id: ticket_id for message_id, ticket_id in rows}
        for message_id in wanted:
            if message_id in by_id:
                return int(by_id[message_id])
        return None

    def ticket_exists(self, ticket_id: int) -> bool:
        return self._session.get(Ticket, ticket_id) is not None

    def is_participant(self, ticket_id: int, address: str) -> bool:
        return (
            self._session.scalar(
                select(Participant.id).where(
                    Participant.ticket_id == ticket_id, Participant.address == address.lower()
                )
            )
            is not None
        )


def article_with_key(session: Session, dedupe_key: str) -> Article | None:
    return session.scalar(select(Article).where(Article.dedupe_key == dedupe_key))


def add_participant(session: Session, ticket_id: int, address: str, role: str) -> None:
    address = address.lower()
    if not address:
        return
    exists = session.scalar(
        select(Participant.id).where(Participant.ticket_id == ticket_id, Participant.address == address)
    )
    if exists is None:
        session.add(Participant(ticket_id=ticket_id, address=address, role=role))


def add_event(session: Session, ticket_id: int | None, kind: str, **detail: Any) -> None:
    session.add(Event(ticket_id=ticket_id, kind=kind, detail=detail))


def automatic_mail_counts(session: Session, rcpt: str, now: datetime) -> tuple[int, int]:
    """Automatic mails queued to ``rcpt`` in the last hour and the last day."""
    rcpt = rcpt.lower()

    def since(delta: timedelta) -> int:
        return int(
            session.scalar(
                select(func.count(Outbox.id)).where(
                    Outbox.rcpt == rcpt, Outbox.automatic.is_(True), Outbox.created_at >= now - delta
                )
            )
            or 0
        )

    return since(timedelta(hours=1)), since(timedelta(days=1))


def ticket_dict(ticket: Ticket) -> dict[str, Any]:
    """The JSON shape of SPEC §4 for one ticket."""
    return {
        "id": ticket.id,
        "ref": ticket.ref,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "queue": ticket.queue,
        "category": ticket.category,
        "tags": list(ticket.tags or []),
        "language": ticket.language,
        "requester": ticket.requester,
        "requester_name": ticket.requester_name,
        "assignee": ticket.assignee,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "first_response_at": _iso(ticket.first_response_at),
        "resolved_at": _iso(ticket.resolved_at),
        "closed_at": _iso(ticket.closed_at),
        "csat_rating": ticket.csat_rating,
        "linked_ticket_id": ticket.linked_ticket_id,
    }


def article_dict(article: Article) -> dict[str, Any]:
    return {
        "id": article.id,
        "direction": article.direction,
        "visibility": article.visibility,
        "kind": article.kind,
        "sender": article.sender,
        "sender_name": article.sender_name,
        "recipients": list(article.recipients or []),
        "message_id": article.message_id,
        "subject": article.subject,
        "body_text": article.body_text,
        "threaded_by": article.threaded_by,
        "created_at": _iso(article.created_at),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()
