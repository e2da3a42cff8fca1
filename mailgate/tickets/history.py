"""The two jobs of ``mailgate import``: catching up, or migrating history.

Catching up (``--as catch-up``, source ``import``) is mail that should have
reached the daemon: it is processed exactly as the daemon would, and
acknowledged when it is young enough (``limits.ack_max_age_days``).
Migrating history (``--as history``, source ``import-history``) records
what happened long ago: no mail leaves for anyone (``notify.mail_withheld``),
every ticket, article and event is dated by the mail's own delivery time so
reports stay true, and threads quiet for long enough can come in resolved.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from mailgate.store.writes import TICKETS, insert_event, update_ticket

CATCH_UP_SOURCE = "import"
HISTORY_SOURCE = "import-history"
WITHHELD_REASON = "history import: nothing is sent for mail from the past"


def is_history(source: str) -> bool:
    return source == HISTORY_SOURCE


def too_old_to_acknowledge(
    received_at: datetime, written_at: datetime | None, now: datetime, max_age_days: float
) -> str | None:
    """Why a mail is too old for an automatic acknowledgement, or None.

    Its age runs from its delivery (an import's file name or headers, the
    moment a listener took it) or from its Date when that is earlier: an IMAP
    mailbox full of old unread mail, fetched today, is still old mail. A Date
    in the future says nothing.
    """
    moments = [received_at, *([written_at] if written_at is not None and written_at < received_at else [])]
    age = now - min(moments)
    limit = timedelta(days=max_age_days)
    if age <= limit:
        return None
    return (
        f"mail from {min(moments).isoformat(timespec='minutes')} is {age.days} days old, "
        f"over limits.ack_max_age_days ({max_age_days:g}): not acknowledged"
    )


def resolve_quiet_threads(
    conn: Connection, ticket_ids: Iterable[int], quiet_before: datetime, now: datetime
) -> list[int]:
    """Resolve the new or open tickets among ``ticket_ids`` whose last mail is
    older than ``quiet_before``; dated by that last mail, nobody is mailed."""
    ids = sorted(set(ticket_ids))
    resolved: list[int] = []
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(TICKETS.c.id, TICKETS.c.updated_at).where(
                TICKETS.c.id.in_(ids[start : start + 500]),
                TICKETS.c.status.in_(("new", "open")),
                TICKETS.c.merged_into_id.is_(None),
                TICKETS.c.updated_at < quiet_before,
            )
        ).all()
        for ticket_id, last in rows:
            update_ticket(conn, ticket_id, status="resolved", resolved_at=last)
            insert_event(
                conn,
                ticket_id,
                "status_changed",
                now,
                status="resolved",
                by="import",
                reason=f"history import: last mail on {last.date()}, before {quiet_before.date()}",
            )
            resolved.append(ticket_id)
    return resolved
