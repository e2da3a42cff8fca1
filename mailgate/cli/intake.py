"""Getting mail in by hand or from an MTA: `ingest` and `import`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mailgate.cli import State, fail, main, pass_state
from mailgate.errors import EX_TEMPFAIL, Outcome, storage_outcome
from mailgate.log import get_logger

log = get_logger(__name__)


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--sender",
    help='Envelope sender (Postfix: ${sender}; "" is the null sender <>); '
    "default: the Return-Path header, else unknown (the From header decides).",
)
@click.option("--recipient", "recipients", multiple=True, help="Envelope recipient; repeatable.")
@pass_state
def ingest(state: State, file: Path | None, sender: str | None, recipients: tuple[str, ...]) -> None:
    """Take one raw message from FILE or standard input (for MTA pipes).

    Exit 0: stored (the message is safe); 65: refused for good; 75: try again later.
    """
    from mailgate.ingest.files import pipe_item
    from mailgate.store.inbound import InboundStore
    from mailgate.tickets.pipeline import Processor

    try:
        raw = file.read_bytes() if file else sys.stdin.buffer.read()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", code=EX_TEMPFAIL)
    config = state.config
    if not raw.strip():
        fail("empty message refused", code=Outcome.EMPTY.exit_code)
    if len(raw) > config.listen.max_message_bytes:
        fail(
            f"message of {len(raw)} bytes is over the limit of {config.listen.max_message_bytes}",
            code=Outcome.TOO_BIG.exit_code,
        )
    try:
        runtime = state.runtime()
        item = pipe_item(raw, sender, recipients, config.helpdesk.address)
        (row_id,) = InboundStore(runtime.sessions).accept([item])
    except Exception as exc:  # the MTA must keep the message and retry
        outcome = storage_outcome(exc)
        fail(f"cannot store the message, try again later: {exc}", code=outcome.exit_code)
    # The message is safe now; processing it here is a courtesy. If it fails,
    # the daemon retries it, so the MTA still hears "accepted".
    try:
        results = Processor(runtime).process_pending(only_ids=[row_id] if row_id else [])
        for result in results:
            click.echo(
                f"{result.state}: inbound {result.inbound_id}"
                + (f", ticket {result.ticket_id}" if result.ticket_id else "")
            )
    except Exception as exc:  # the message is stored; the daemon will process it
        log.error("ingest.process_failed", inbound_id=row_id, error=str(exc))


@main.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--as",
    "mode",
    type=click.Choice(["catch-up", "history"]),
    default="catch-up",
    show_default=True,
    help="catch-up: mail that should have reached the daemon, processed and answered as the daemon "
    "would (mail older than limits.ack_max_age_days is not acknowledged). history: past mail of a "
    "helpdesk you migrate; nobody is mailed, tickets keep the mail's own dates.",
)
@click.option(
    "--resolve-older-than",
    "resolve_days",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="DAYS",
    help="With --as history: threads whose last mail is older than DAYS come in resolved (0: all stay open).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_state
def import_(state: State, path: Path, mode: str, resolve_days: float, no_progress: bool) -> None:
    """Import every message of an mbox file or a Maildir folder, in delivery order.

    A Maildir is read in the order of its files' delivery times (the
    <seconds>. at the start of each name; else the Received or Date
    header), an mbox in file order. Replies that still come before the mail
    they answer are merged onto its ticket when it arrives. Running the same
    import again adds nothing.
    """
    from datetime import UTC, datetime, timedelta

    from tqdm import tqdm

    from mailgate.ingest.files import count_messages, read_mailbox
    from mailgate.store.db import transaction
    from mailgate.store.inbound import InboundStore
    from mailgate.tickets import history
    from mailgate.tickets.pipeline import Processor

    runtime = state.runtime()
    max_age = runtime.config.limits.ack_max_age_days
    source = history.HISTORY_SOURCE if mode == "history" else history.CATCH_UP_SOURCE
    click.echo(
        f"importing as {mode}: "
        + (
            "nobody is mailed; tickets keep the mail's dates"
            if mode == "history"
            else f"processed as the daemon would; mail older than {max_age:g} days is not acknowledged"
        ),
        err=True,
    )
    total = count_messages(path)
    store = InboundStore(runtime.sessions)
    stored = skipped = 0
    batch: list[Any] = []
    counts: dict[str, int] = {}
    ticket_ids: set[int] = set()
    processor = Processor(runtime, batch=200)
    with tqdm(total=total, unit="msg", desc="import", disable=no_progress, file=sys.stderr) as bar:

        def flush() -> None:
            nonlocal stored, skipped
            ids = store.accept(batch)
            new_ids = [i for i in ids if i is not None]
            stored += len(new_ids)
            skipped += len(ids) - len(new_ids)
            for start in range(0, len(new_ids), 200):
                for result in processor.process_pending(only_ids=new_ids[start : start + 200]):
                    counts[result.state] = counts.get(result.state, 0) + 1
                    if result.ticket_id is not None:
                        ticket_ids.add(result.ticket_id)
            bar.update(len(batch))
            batch.clear()

        for item in read_mailbox(path, runtime.config.helpdesk.address, source=source):
            batch.append(item)
            if len(batch) >= 200:
                flush()
        if batch:
            flush()
    summary = ", ".join(f"{n} {state_name}" for state_name, n in sorted(counts.items()))
    click.echo(
        f"imported {stored} of {total} messages ({skipped} already imported): {summary or 'nothing new'}"
    )
    if mode == "history" and resolve_days > 0 and ticket_ids:
        now = datetime.now(UTC)
        with transaction(runtime.sessions) as session:
            resolved = history.resolve_quiet_threads(
                session.connection(), ticket_ids, now - timedelta(days=resolve_days), now
            )
        click.echo(f"resolved {len(resolved)} tickets whose last mail is older than {resolve_days:g} days")
