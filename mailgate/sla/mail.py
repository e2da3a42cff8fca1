"""Internal mail from the timers: one mail to one person, listing tickets.

An escalation or a digest is about many tickets at once, so it belongs to
none: no article, one outbox row, written in the caller's transaction next
to the mark that says it happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from mailgate.message import Address
from mailgate.outbox.compose import OutgoingMail, compose, new_message_id
from mailgate.service.runtime import Runtime
from mailgate.tickets.notify import queue_rows


@dataclass(frozen=True)
class Person:
    """Someone a timer writes to: an agent, or a queue's escalation address."""

    address: str
    name: str
    language: str


def send(
    conn: Connection,
    runtime: Runtime,
    person: Person,
    template: str,
    context: dict[str, Any],
    *,
    kind: str,
    ticket_id: int | None,
    now: datetime,
) -> str:
    """Render ``template`` for ``person`` and queue it; returns the Message-ID."""
    helpdesk = runtime.config.helpdesk
    rendered = runtime.templates.render(
        template,
        {"helpdesk": {"name": helpdesk.name, "address": helpdesk.address}, **context},
        language=person.language,
    )
    mail = OutgoingMail(
        kind=kind,
        message_id=new_message_id(helpdesk.domain, ticket_id),
        from_name=helpdesk.name,
        from_address=helpdesk.address,
        to=(Address(person.address, person.name),),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        auto_submitted="auto-generated",
        language=rendered.language,
    )
    raw = compose(mail, loop_value=helpdesk.address, now=now)
    # Internal mail, caused by the clock: not counted against a requester's auto-reply limits.
    queue_rows(conn, runtime, ticket_id, None, mail, raw, [person.address.lower()], automatic=False, now=now)
    return mail.message_id
