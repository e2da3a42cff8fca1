"""SQL forms of due.py's questions, for listing and reporting many tickets at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, or_

from mailgate.store.models import Ticket


def open_due() -> ColumnElement[datetime]:
    """The nearest due moment of a target still open (NULL when none)."""
    return case(
        (
            and_(Ticket.status.in_(("new", "open", "pending")), Ticket.next_reply_due.is_not(None)),
            Ticket.next_reply_due,
        ),
        (
            and_(
                Ticket.status.in_(("new", "open", "pending")),
                Ticket.first_response_at.is_(None),
                Ticket.first_response_due.is_not(None),
            ),
            Ticket.first_response_due,
        ),
        (Ticket.status.in_(("new", "open", "pending")), Ticket.resolution_due),
        else_=None,
    )


def breached_clause(now: datetime) -> ColumnElement[bool]:
    """Tickets that missed a target, judged as due.breaches() judges one (a pause stops the clock)."""
    at = func.coalesce(Ticket.sla_paused_at, now)
    return or_(
        and_(
            Ticket.first_response_due.is_not(None),
            func.coalesce(Ticket.first_response_at, at) > Ticket.first_response_due,
        ),
        and_(Ticket.next_reply_due.is_not(None), at > Ticket.next_reply_due),
        and_(
            Ticket.resolution_due.is_not(None),
            func.coalesce(Ticket.resolved_at, Ticket.closed_at, at) > Ticket.resolution_due,
        ),
    )
