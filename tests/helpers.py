"""In-process pipeline driving for tests that need no listener."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

from sqlalchemy import select

from mailgate.message import Envelope
from mailgate.store.inbound import InboundItem, InboundStore
from mailgate.store.models import Outbox, Ticket
from mailgate.tickets.pipeline import Processor, Result


def deliver(
    runtime: Any,
    raw: bytes,
    mail_from: str = "alice@example.org",
    rcpts: tuple[str, ...] = ("helpdesk@example.com",),
) -> Result:
    """Store one message durably and process it, as the daemon would."""
    item = InboundItem(raw, Envelope(mail_from, rcpts, "smtp", datetime.now(UTC)))
    (row_id,) = InboundStore(runtime.sessions).accept([item])
    assert row_id is not None
    (result,) = Processor(runtime).process_pending(only_ids=[row_id])
    return result


def outbox_mails(runtime: Any) -> list[Message]:
    with runtime.sessions() as session:
        return [message_from_bytes(row.raw) for row in session.scalars(select(Outbox).order_by(Outbox.id))]


def ticket(runtime: Any, ticket_id: int) -> Ticket:
    with runtime.sessions() as session:
        found = session.get(Ticket, ticket_id)
        assert found is not None
        _ = found.articles
        return found


def ticket_count(runtime: Any) -> int:
    with runtime.sessions() as session:
        return len(list(session.scalars(select(Ticket.id))))


def as_an_mta_sends_it(raw: bytes) -> bytes:
    """``raw`` as an MTA relays it: CRLF line ends, and lines over 998 octets
    broken with CRLF SPACE as Postfix does (smtp_line_length_limit); SMTP
    allows no longer lines, and smtplib does not fix line ends of bytes."""
    out = []
    for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
        while len(line) > 998:
            out.append(line[:998])
            line = b" " + line[998:]
        out.append(line)
    return b"\r\n".join(out)


def settled_inbound_states(daemon: Any, count: int, timeout: float) -> dict[str, int]:
    """Wait until the daemon's database holds ``count`` inbound rows, none pending;
    then the number of rows in each state."""
    from sqlalchemy import create_engine, func

    from mailgate.store.models import Inbound
    from tests.conftest import wait_until

    engine = create_engine(f"sqlite:///{daemon.config_path.parent / 'mailgate.db'}")
    try:

        def states() -> dict[str, int]:
            with engine.connect() as connection:
                query = select(Inbound.state, func.count()).group_by(Inbound.state)
                return {state: number for state, number in connection.execute(query)}

        wait_until(lambda: sum(states().values()) == count and "pending" not in states(), timeout=timeout)
        return states()
    finally:
        engine.dispose()
