"""Tickets and articles as the CLI prints them (the JSON shapes of SPEC §4).

The processing stage writes through mailgate.store.writes; this module only
turns stored rows into plain dictionaries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailgate.store.models import Article, Ticket


def ticket_dict(ticket: Ticket, now: datetime | None = None) -> dict[str, Any]:
    """The JSON shape of SPEC §4 for one ticket (``now`` judges open targets)."""
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
        **sla_fields(ticket, now or datetime.now(UTC)),
    }


def sla_fields(ticket: Ticket, now: datetime) -> dict[str, Any]:
    """``sla``, the due moments, and which targets are ``breached`` (docs/sla.md)."""
    from mailgate.sla.due import breaches, clock_of

    missed = breaches(clock_of(ticket), now)
    return {
        "sla": ticket.sla,
        "first_response_due": _iso(ticket.first_response_due),
        "next_reply_due": _iso(ticket.next_reply_due),
        "resolution_due": _iso(ticket.resolution_due),
        "sla_paused": ticket.sla_paused_at is not None,
        "breached": bool(missed),
        "breached_targets": missed,
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
