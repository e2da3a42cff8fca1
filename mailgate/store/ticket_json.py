"""Tickets and articles as the CLI prints them (the JSON shapes of SPEC §4).

The processing stage writes through mailgate.store.writes; this module only
turns stored rows into plain dictionaries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailgate.store.models import Article, Ticket


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
        "merged_into_id": ticket.merged_into_id,
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
