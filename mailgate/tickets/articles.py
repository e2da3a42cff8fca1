"""An incoming mail stored as an article, the same way whoever sent it.

Requesters' mail (handle.py) and agents' replies and notes (agents/desk.py)
both land here, so every article keeps its original text beside the
trimmed one, and its attachments are stored once by content hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from mailgate.guard import GuardVerdict
from mailgate.message import ParsedMessage
from mailgate.service.runtime import Runtime
from mailgate.store.writes import insert_article
from mailgate.tickets.attachment_store import store_attachments


@dataclass(frozen=True)
class Incoming:
    """One message on its way to becoming an article."""

    inbound_id: int
    dedupe_key: str
    message: ParsedMessage
    verdict: GuardVerdict
    threaded_by: str
    received_at: datetime
    # From, or the envelope sender when the mail has no usable From.
    sender: str


def store_incoming(
    conn: Connection,
    runtime: Runtime,
    ticket_id: int,
    incoming: Incoming,
    *,
    visibility: str,
    kind: str,
    text: str,
) -> int:
    """Insert the article; ``text`` is what people see (quotes, commands removed)."""
    message = incoming.message
    return insert_article(
        conn,
        ticket_id=ticket_id,
        inbound_id=incoming.inbound_id,
        dedupe_key=incoming.dedupe_key,
        direction="in",
        visibility=visibility,
        kind=kind,
        sender=incoming.sender,
        sender_name=message.sender.name if message.sender else "",
        recipients=[a.email for a in (*message.to, *message.cc)],
        message_id=message.message_id,
        subject=message.subject,
        body_text=text,
        body_full=message.text,
        body_html=message.html,
        threaded_by=incoming.threaded_by,
        attachments=store_attachments(conn, message.attachments, runtime.config.limits),
        created_at=incoming.received_at,
    )
