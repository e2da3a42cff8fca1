"""Outgoing mail from the helpdesk: render, compose, store, queue.

Each outgoing mail is stored as an outbound article (so replies to it thread
by its Message-ID) and as one outbox row per recipient, in the caller's
transaction: the mail exists durably exactly when the change that caused it
does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from mailgate.guard.verp import verp_address
from mailgate.message import Address
from mailgate.outbox.compose import OutgoingMail, compose, new_message_id
from mailgate.runtime import Runtime
from mailgate.store.models import Article, Outbox, Ticket
from mailgate.threading.tokens import reply_address


def ticket_context(runtime: Runtime, ticket: Ticket) -> dict[str, Any]:
    helpdesk = runtime.config.helpdesk
    return {
        "helpdesk": {"name": helpdesk.name, "address": helpdesk.address},
        "ticket": {
            "ref": ticket.ref,
            "subject": ticket.subject,
            "status": ticket.status,
            "priority": ticket.priority,
            "queue": ticket.queue,
            "category": ticket.category,
        },
        "requester": {"name": ticket.requester_name, "email": ticket.requester},
    }


def render_to(
    runtime: Runtime,
    ticket: Ticket,
    template: str,
    recipient: Address,
    *,
    kind: str,
    extra: Mapping[str, Any] | None = None,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    auto_submitted: str | None = "auto-replied",
) -> OutgoingMail:
    """One templated mail to one recipient, with a reply address bound to them."""
    context = {**ticket_context(runtime, ticket), **(extra or {})}
    rendered = runtime.templates.render(
        template, context, language=ticket.language, queue=ticket.queue
    )
    helpdesk = runtime.config.helpdesk
    return OutgoingMail(
        kind=kind,
        message_id=new_message_id(helpdesk.domain, ticket.id),
        from_name=helpdesk.name,
        from_address=helpdesk.address,
        to=(recipient,),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=reply_address(helpdesk.address, runtime.keys, ticket.id, recipient.email),
        in_reply_to=in_reply_to,
        references=references,
        auto_submitted=auto_submitted,
        language=rendered.language,
    )


def enqueue(
    session: Session,
    runtime: Runtime,
    ticket: Ticket,
    mail: OutgoingMail,
    *,
    automatic: bool,
    visibility: str = "public",
) -> Article:
    """Store ``mail`` as an outbound article and queue it, one row per recipient."""
    now = datetime.now(UTC)
    raw = compose(mail, loop_value=runtime.config.helpdesk.address, now=now)
    recipients = [a.email for a in (*mail.to, *mail.cc)]
    article = Article(
        ticket_id=ticket.id,
        direction="out",
        visibility=visibility,
        kind=mail.kind,
        sender=mail.from_address,
        sender_name=mail.from_name,
        recipients=recipients,
        message_id=mail.message_id,
        subject=mail.subject,
        body_text=mail.text,
        body_full=mail.text,
        created_at=now,
    )
    session.add(article)
    session.flush()
    rows = []
    for rcpt in dict.fromkeys(recipients):
        rows.append(
            Outbox(
                ticket_id=ticket.id,
                article_id=article.id,
                kind=mail.kind,
                message_id=mail.message_id,
                mail_from=runtime.config.helpdesk.address,
                rcpt=rcpt.lower(),
                raw=raw,
                automatic=automatic,
                created_at=now,
                next_attempt_at=now,
            )
        )
    session.add_all(rows)
    session.flush()
    for row in rows:
        # VERP (one return path per outbox row) tells us which mail to which
        # recipient bounced, without trusting anything the bounce says.
        row.mail_from = verp_address(runtime.config.helpdesk.address, row.id, runtime.keys.signing)
    return article
