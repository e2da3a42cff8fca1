"""Outgoing mail from the helpdesk: render, compose, store, queue.

Each outgoing mail is stored as an outbound article (so replies to it thread
by its Message-ID) and as one outbox row per recipient, in the caller's
transaction: the mail exists durably exactly when the change that caused it
does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from mailgate.guard import GuardVerdict
from mailgate.guard.ratelimit import automatic_mail_allowed
from mailgate.guard.verp import verp_address
from mailgate.message import Address
from mailgate.outbox.compose import OutgoingMail, compose, new_message_id
from mailgate.service.runtime import Runtime
from mailgate.store.writes import (
    TicketView,
    automatic_mail_standing,
    insert_article,
    insert_event,
    insert_outbox,
    set_return_path,
)
from mailgate.threading.tokens import reply_address

_WITHHELD = "mailgate.mail_withheld"


@contextmanager
def mail_withheld(conn: Connection, reason: str) -> Iterator[None]:
    """No mail at all leaves while this is open: each one that would have is
    recorded as a ``mail_withheld`` event with ``reason`` instead.

    A history import (``mailgate import --as history``) records what happened
    long ago; acknowledgements, relays, notices and agent notifications for
    it would reach people about matters long settled. Checking here, where
    every outgoing mail is queued, covers every road at once.
    """
    conn.info[_WITHHELD] = reason
    try:
        yield
    finally:
        conn.info.pop(_WITHHELD, None)


def _withheld(conn: Connection, ticket_id: int | None, mail: OutgoingMail, now: datetime) -> bool:
    reason = conn.info.get(_WITHHELD)
    if reason is None:
        return False
    rcpts = [a.email.lower() for a in (*mail.to, *mail.cc)]
    insert_event(conn, ticket_id, "mail_withheld", now, mail=mail.kind, to=rcpts, reason=reason)
    return True


@dataclass(frozen=True)
class Permission:
    """May an automatic mail go to an address now, and if not, why."""

    refused: str | None
    # The moment for the one "no more automatic replies today" notice.
    limit_notice: bool = False


def automatic_mail_permission(
    conn: Connection, runtime: Runtime, verdict: GuardVerdict, sender: Address | None, now: datetime
) -> Permission:
    """The one check before any automatic mail to the sender of a message (SPEC §2 promise 3).

    Machines (bounces, auto-replies, lists, our own mail: the guard's
    verdict) get nothing at all, nor does mail without a sender; a
    hard-bounced address gets nothing until an admin clears it; any other
    gets at most the configured number per hour and per day.
    """
    if not verdict.may_auto_reply:
        return Permission(f"{verdict.kind}: {'; '.join(verdict.reasons)}")
    if sender is None:
        return Permission("no sender address to answer")
    bounced, hour, day = automatic_mail_standing(conn, sender.email, now)
    if bounced is not None:
        return Permission(
            f"address suppressed after a bounce ({bounced}); clear with `mailgate suppressions clear`"
        )
    rate = automatic_mail_allowed(hour, day, runtime.rate_limits)
    return Permission(None if rate.allowed else rate.reason, rate.send_limit_notice)


def ticket_context(runtime: Runtime, ticket: TicketView) -> dict[str, Any]:
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
    ticket: TicketView,
    template: str,
    recipient: Address,
    *,
    kind: str,
    extra: Mapping[str, Any] | None = None,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    auto_submitted: str | None = "auto-replied",
    language: str | None = None,
    from_name: str | None = None,
    cc: tuple[Address, ...] = (),
    reply_base: str | None = None,
) -> OutgoingMail:
    """One templated mail to one recipient, with a reply address bound to them.

    ``language`` overrides the ticket's (an agent reads their own language);
    ``from_name`` replaces the helpdesk's display name (a relayed agent reply:
    "Alice via IT Helpdesk") while the address stays the helpdesk's.
    """
    context = {**ticket_context(runtime, ticket), **(extra or {})}
    rendered = runtime.templates.render(
        template,
        context,
        language=language or ticket.language,
        queue=runtime.directory.template_folder(ticket.queue),
    )
    helpdesk = runtime.config.helpdesk
    return OutgoingMail(
        kind=kind,
        message_id=new_message_id(helpdesk.domain, ticket.id),
        from_name=from_name or helpdesk.name,
        from_address=helpdesk.address,
        to=(recipient,),
        cc=cc,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=reply_address(reply_base or helpdesk.address, runtime.keys, ticket.id, recipient.email),
        in_reply_to=in_reply_to,
        references=references,
        auto_submitted=auto_submitted,
        language=rendered.language,
    )


def enqueue(
    conn: Connection,
    runtime: Runtime,
    ticket_id: int,
    mail: OutgoingMail,
    *,
    automatic: bool,
    now: datetime,
    visibility: str = "public",
) -> int | None:
    """Store ``mail`` as an outbound article and queue it, one row per recipient
    (None: withheld, see ``mail_withheld``)."""
    if _withheld(conn, ticket_id, mail, now):
        return None
    raw = compose(mail, loop_value=runtime.config.helpdesk.address, now=now)
    recipients = list(dict.fromkeys(a.email.lower() for a in (*mail.to, *mail.cc)))
    article_id = insert_article(
        conn,
        ticket_id=ticket_id,
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
        attachments=[],
        threaded_by="",
        created_at=now,
    )
    queue_rows(conn, runtime, ticket_id, article_id, mail, raw, recipients, automatic=automatic, now=now)
    return article_id


def queue_rows(
    conn: Connection,
    runtime: Runtime,
    ticket_id: int | None,
    article_id: int | None,
    mail: OutgoingMail,
    raw: bytes,
    recipients: list[str],
    *,
    automatic: bool,
    now: datetime,
) -> None:
    helpdesk = runtime.config.helpdesk.address
    for rcpt in recipients:
        outbox_id = insert_outbox(
            conn,
            ticket_id=ticket_id,
            article_id=article_id,
            kind=mail.kind,
            message_id=mail.message_id,
            mail_from=helpdesk,
            rcpt=rcpt,
            raw=raw,
            automatic=automatic,
            state="queued",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        # VERP (one return path per outbox row) tells us which mail to which
        # recipient bounced, without trusting anything the bounce says.
        set_return_path(conn, outbox_id, verp_address(helpdesk, outbox_id, runtime.keys.signing))


def send_notice(
    conn: Connection,
    runtime: Runtime,
    template: str,
    recipient: Address,
    context: Mapping[str, Any],
    *,
    language: str,
    queue: str | None,
    in_reply_to: str | None,
    now: datetime,
) -> str:
    """A mail that belongs to no ticket (a rejection notice); returns its Message-ID.

    It has no reply address of its own: an answer to it reaches the helpdesk
    address and is a new request like any other.
    """
    helpdesk = runtime.config.helpdesk
    rendered = runtime.templates.render(
        template,
        {"helpdesk": {"name": helpdesk.name, "address": helpdesk.address}, **context},
        language=language,
        queue=queue,
    )
    mail = OutgoingMail(
        kind="notice",
        message_id=new_message_id(helpdesk.domain),
        from_name=helpdesk.name,
        from_address=helpdesk.address,
        to=(recipient,),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        in_reply_to=in_reply_to,
        language=rendered.language,
    )
    queue_without_ticket(conn, runtime, mail, [recipient.email.lower()], automatic=True, now=now)
    return mail.message_id


def queue_without_ticket(
    conn: Connection,
    runtime: Runtime,
    mail: OutgoingMail,
    recipients: list[str],
    *,
    automatic: bool,
    now: datetime,
) -> bool:
    """Queue a mail that belongs to no ticket (a notice, a kb search answer);
    False when it was withheld (see ``mail_withheld``)."""
    if _withheld(conn, None, mail, now):
        return False
    raw = compose(mail, loop_value=runtime.config.helpdesk.address, now=now)
    queue_rows(conn, runtime, None, None, mail, raw, recipients, automatic=automatic, now=now)
    return True
