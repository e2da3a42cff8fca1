"""What an admin watches: quarantine, outbox, suppressions."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from mailgate.cli import State, emit, fail, main, pass_state, short_time
from mailgate.log import get_logger

log = get_logger(__name__)


@main.group()
def quarantine() -> None:
    """Messages kept aside with a reason; inspect and replay them."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def quarantine_list(state: State, as_json: bool) -> None:
    """List quarantined messages with their reasons."""
    from sqlalchemy import select

    from mailgate.store.models import Inbound

    runtime = state.runtime(rules=False)
    with runtime.sessions() as session:
        rows = [
            {
                "id": r.id,
                "received_at": r.received_at.isoformat(),
                "source": r.source,
                # A string, as before; "" is the null sender <> unless
                # mail_from_known says that nothing recorded one.
                "mail_from": r.mail_from or "",
                "mail_from_known": r.mail_from is not None,
                "size": r.size,
                "attempts": r.attempts,
                "reason": r.reason,
            }
            for r in session.scalars(
                select(Inbound).where(Inbound.state == "quarantined").order_by(Inbound.id)
            )
        ]
    emit(
        rows,
        as_json=as_json,
        empty="quarantine is empty",
        headers=["ID", "RECEIVED", "SOURCE", "FROM", "SIZE", "REASON"],
        cells=lambda r: [
            r["id"],
            short_time(r["received_at"]),
            r["source"],
            _envelope_sender(r["mail_from"], r["mail_from_known"]),
            r["size"],
            r["reason"],
        ],
    )


@quarantine.command("show")
@click.argument("inbound_id", type=int)
@click.option("--raw", is_flag=True, help="Print the whole raw message.")
@pass_state
def quarantine_show(state: State, inbound_id: int, raw: bool) -> None:
    """Show a quarantined message's reason and headers (or --raw)."""
    from mailgate.ingest.files import header_block
    from mailgate.store.models import Inbound

    runtime = state.runtime(rules=False)
    with runtime.sessions() as session:
        row = session.get(Inbound, inbound_id)
        if row is None or row.state != "quarantined":
            fail(f"no quarantined message {inbound_id} (see `mailgate quarantine list`)")
        click.echo(f"id {row.id}, {row.size} bytes from {row.source}, {row.attempts} attempts")
        click.echo(f"reason: {row.reason}\n")
        sys.stdout.buffer.write(row.raw if raw else header_block(row.raw) + b"\n")


@quarantine.command("retry")
@click.argument("inbound_id", type=int)
@pass_state
def quarantine_retry(state: State, inbound_id: int) -> None:
    """Process a quarantined message again (after fixing rules or code)."""
    from mailgate.store.db import transaction
    from mailgate.store.models import Inbound
    from mailgate.tickets.pipeline import Processor

    runtime = state.runtime()
    with transaction(runtime.sessions) as session:
        row = session.get(Inbound, inbound_id)
        if row is None or row.state != "quarantined":
            fail(f"no quarantined message {inbound_id} (see `mailgate quarantine list`)")
        row.state, row.attempts, row.lease_until, row.lease_owner = "pending", 0, None, None
    for result in Processor(runtime).process_pending(only_ids=[inbound_id]):
        click.echo(f"{result.state}: {result.reason}")


@quarantine.command("drop")
@click.argument("inbound_id", type=int)
@pass_state
def quarantine_drop(state: State, inbound_id: int) -> None:
    """Mark a quarantined message as dropped (the raw message is kept)."""
    from mailgate.store.db import transaction
    from mailgate.store.models import Inbound

    runtime = state.runtime(rules=False)
    with transaction(runtime.sessions) as session:
        row = session.get(Inbound, inbound_id)
        if row is None or row.state != "quarantined":
            fail(f"no quarantined message {inbound_id}")
        row.state = "dropped"
        row.reason = f"dropped by admin at {datetime.now(UTC).isoformat()}; was: {row.reason}"
    click.echo(f"dropped {inbound_id}")


@main.group()
def outbox() -> None:
    """Outgoing mail and its delivery state."""


@outbox.command("list")
@click.option(
    "--state",
    "wanted",
    type=click.Choice(["queued", "sent", "failed", "all"]),
    default="all",
    show_default=True,
)
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def outbox_list(state: State, wanted: str, limit: int, as_json: bool) -> None:
    """List outgoing mail, newest first, with attempts and last error."""
    from sqlalchemy import select

    from mailgate.store.models import Outbox

    runtime = state.runtime(rules=False)
    with runtime.sessions() as session:
        query = select(Outbox).order_by(Outbox.id.desc()).limit(limit)
        if wanted != "all":
            query = query.where(Outbox.state == wanted)
        rows = [
            {
                "id": r.id,
                "ticket_id": r.ticket_id,
                "kind": r.kind,
                "rcpt": r.rcpt,
                "state": r.state,
                "attempts": r.attempts,
                "message_id": r.message_id,
                "last_error": r.last_error,
                "created_at": r.created_at.isoformat(),
                "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                "next_attempt_at": r.next_attempt_at.isoformat(),
            }
            for r in session.scalars(query)
        ]
    emit(
        rows,
        as_json=as_json,
        empty="outbox is empty",
        headers=["ID", "TICKET", "KIND", "TO", "STATE", "TRIES", "LAST ERROR"],
        cells=lambda r: [
            r["id"],
            r["ticket_id"],
            r["kind"],
            r["rcpt"],
            r["state"],
            r["attempts"],
            r["last_error"] or "",
        ],
    )


@main.group()
def suppressions() -> None:
    """Addresses that bounced hard and get no automatic mail."""


@suppressions.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def suppressions_list(state: State, as_json: bool) -> None:
    """List suppressed addresses with the bounce that put them there."""
    from sqlalchemy import select

    from mailgate.store.models import Suppression

    runtime = state.runtime(rules=False)
    with runtime.sessions() as session:
        rows = [
            {"address": r.address, "reason": r.reason, "created_at": r.created_at.isoformat()}
            for r in session.scalars(select(Suppression).order_by(Suppression.created_at))
        ]
    emit(
        rows,
        as_json=as_json,
        empty="no suppressed addresses",
        headers=["ADDRESS", "SINCE", "REASON"],
        cells=lambda r: [r["address"], short_time(r["created_at"]), r["reason"]],
    )


@suppressions.command("clear")
@click.argument("address")
@pass_state
def suppressions_clear(state: State, address: str) -> None:
    """Mail ADDRESS again (after the requester fixed their mailbox)."""
    from sqlalchemy import delete

    from mailgate.store.db import transaction
    from mailgate.store.models import Suppression

    runtime = state.runtime(rules=False)
    with transaction(runtime.sessions) as session:
        # A DELETE returns a CursorResult, which knows how many rows went.
        removed = session.execute(delete(Suppression).where(Suppression.address == address.lower())).rowcount  # type: ignore[attr-defined]
    if not removed:
        fail(f"{address} is not suppressed (see `mailgate suppressions list`)")
    click.echo(f"{address} will get automatic mail again")


def _envelope_sender(mail_from: str, known: bool) -> str:
    """How the table shows an envelope sender: the address, ``<>`` or ``(unknown)``."""
    if not known:
        return "(unknown)"
    return mail_from or "<>"
