"""The ``mailgate`` command (SPEC §4)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import structlog

from mailgate import config as config_module
from mailgate import log as log_setup
from mailgate.errors import EX_TEMPFAIL, Outcome, storage_outcome

log = structlog.get_logger(__name__)


class State:
    def __init__(self, config_option: str | None) -> None:
        self.config_path = config_module.config_path(config_option)
        self._config: config_module.Config | None = None

    @property
    def config(self) -> config_module.Config:
        if self._config is None:
            try:
                self._config = config_module.load(self.config_path)
            except config_module.ConfigError as exc:
                fail(str(exc), code=EX_TEMPFAIL if "no such configuration" in str(exc) else 2)
            log_setup.setup(self._config.logging.format, self._config.logging.level)
        return self._config

    def runtime(self, *, migrate: bool = True, rules: bool = True) -> Any:
        from mailgate.rules import RulesError
        from mailgate.runtime import build

        try:
            return build(self.config, migrate=migrate, with_rules=rules)
        except RulesError as exc:
            # Each problem names its file (rules or agents) and line.
            fail("the configuration has problems:\n" + "\n".join(str(p) for p in exc.problems), code=2)


def fail(message: str, *, code: int = 1) -> NoReturn:
    click.echo(f"mailgate: {message}", err=True)
    sys.exit(code)


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_option",
    metavar="CONFIG",
    help="Configuration file (default: $MAILGATE_CONFIG, else ./config/mailgate.yaml).",
)
@click.pass_context
def main(ctx: click.Context, config_option: str | None) -> None:
    """mailgate: a helpdesk that lives in your mail.

    Mail to the helpdesk address becomes a ticket; replies stay on it; rules
    route it; requesters and agents answer from their own mail client.
    """
    log_setup.setup("auto", "warning")
    ctx.obj = State(config_option)


# -- the daemon --------------------------------------------------------------


@main.command()
@pass_state
def run(state: State) -> None:
    """Run the daemon in the foreground (SIGTERM stops, SIGHUP reloads)."""
    from mailgate.daemon import run as run_daemon

    sys.exit(run_daemon(state.runtime(), str(state.config_path.resolve())))


@main.command(hidden=True)
@pass_state
def worker(state: State) -> None:
    """The processing worker that `mailgate run` starts (internal)."""
    import os
    import socket

    from mailgate.daemon import make_outbox_worker
    from mailgate.worker import WAKE_FD_ENV, die_with_parent, run_worker

    fd = os.environ.get(WAKE_FD_ENV)
    if fd is None:
        fail("this command is started by `mailgate run`, not by hand")
    die_with_parent(int(os.environ.get("MAILGATE_PARENT_PID", os.getppid())))
    runtime = state.runtime()
    sys.exit(run_worker(runtime, socket.socket(fileno=int(fd)), make_outbox_worker(runtime)))


@main.command()
@pass_state
def doctor(state: State) -> None:
    """Check configuration, database, rules, relay and queues; say what to fix."""
    from mailgate.doctor import run_doctor

    # No runtime first: that would migrate and create files the doctor should inspect.
    sys.exit(run_doctor(state.config, sys.stdout, source=state.config_path))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: State) -> None:
    """Apply pending database migrations."""
    from mailgate.store.db import current_revision, make_engine, upgrade

    engine = make_engine(state.config.database_url)
    applied = upgrade(engine)
    click.echo(f"schema {'upgraded to' if applied else 'already at'} {current_revision(engine)}")


# -- getting mail in ---------------------------------------------------------


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sender", help="Envelope sender (Postfix: ${sender}); default: Return-Path or From.")
@click.option("--recipient", "recipients", multiple=True, help="Envelope recipient; repeatable.")
@pass_state
def ingest(state: State, file: Path | None, sender: str | None, recipients: tuple[str, ...]) -> None:
    """Take one raw message from FILE or standard input (for MTA pipes).

    Exit 0: stored (the message is safe); 65: refused for good; 75: try again later.
    """
    from mailgate.ingest.files import pipe_item
    from mailgate.pipeline import Processor
    from mailgate.store.inbound import InboundStore

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
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_state
def import_(state: State, path: Path, no_progress: bool) -> None:
    """Import every message of an mbox file or a Maildir folder."""
    from tqdm import tqdm

    from mailgate.ingest.files import count_messages, read_mailbox
    from mailgate.pipeline import Processor
    from mailgate.store.inbound import InboundStore

    runtime = state.runtime()
    total = count_messages(path)
    store = InboundStore(runtime.sessions)
    stored = skipped = 0
    batch: list[Any] = []
    counts: dict[str, int] = {}
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
            bar.update(len(batch))
            batch.clear()

        for item in read_mailbox(path, runtime.config.helpdesk.address):
            batch.append(item)
            if len(batch) >= 200:
                flush()
        if batch:
            flush()
    summary = ", ".join(f"{n} {state_name}" for state_name, n in sorted(counts.items()))
    click.echo(
        f"imported {stored} of {total} messages ({skipped} already imported): {summary or 'nothing new'}"
    )


# -- rules -------------------------------------------------------------------


@main.group()
def rules() -> None:
    """Validate the rules file and try it on saved mails."""


@rules.command("check")
@pass_state
def rules_check(state: State) -> None:
    """Validate the rules and agents files; print every problem as file:line:column: reason.

    With an agents file, rules that name a queue it does not define are errors too.
    """
    from mailgate.rules import RulesError
    from mailgate.rules.cli import run_check
    from mailgate.runtime import make_directory, make_templates

    config = state.config
    known_queues: set[str] | None = None
    status = 0
    if config.agents is not None:
        try:
            directory = make_directory(config)
        except RulesError as exc:
            for problem in exc.problems:
                click.echo(str(problem))
            status = 1
        else:
            known_queues = {queue.name for queue in directory.queues} or None
            click.echo(f"{config.path(config.agents)}: OK, {len(directory.queues)} queues")
    if config.rules is None:
        click.echo("no rules file configured (key `rules:`); the default is one queue, priority normal")
        sys.exit(status)
    templates = make_templates(config).names()
    sys.exit(run_check(config.path(config.rules), known_queues, templates, sys.stdout) or status)


@rules.command("test")
@click.argument("mails", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def rules_test(state: State, mails: tuple[Path, ...], as_json: bool) -> None:
    """Show what the rules would do with saved mails (.eml files or folders of them).

    For one mail: every rule in order, whether it matched and which condition
    decided, the resulting fields, and which acknowledgement would go out or
    why none. For a folder: one line per mail.
    """
    from mailgate.rules import RuleContext
    from mailgate.rules.cli import run_test
    from mailgate.threading.subject import find_tags

    config = state.config

    def context(message: Any, envelope: Any) -> RuleContext:
        # Without a database at hand, a mail that answers something is a reply.
        is_reply = bool(
            message.in_reply_to
            or message.references
            or find_tags(message.subject, config.helpdesk.ref_prefix)
        )
        return RuleContext(
            is_reply=is_reply,
            our_addresses=config.our_addresses,
            now=envelope.received_at,
            trusted_authserv_ids=frozenset(config.trusted_authserv_ids),
        )

    from mailgate import guard

    own = guard.OwnIdentity(config.our_addresses, config.helpdesk.domain, config.helpdesk.address)

    def guard_check(message: Any, envelope: Any, raw: bytes) -> tuple[str, bool, tuple[str, ...]]:
        verdict = guard.check(message, envelope, own, raw)
        return verdict.kind, verdict.may_auto_reply, verdict.reasons

    rules_path = config.path(config.rules) if config.rules else None
    sys.exit(run_test(rules_path, list(mails), as_json, context, sys.stdout, guard_check))


# -- tickets -----------------------------------------------------------------


@main.group()
def tickets() -> None:
    """List and show tickets."""


@tickets.command("list")
@click.option("--status", help="Only tickets with this status (new, open, pending, resolved, closed).")
@click.option("--queue", help="Only tickets in this queue.")
@click.option("--limit", default=200, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_state
def tickets_list(state: State, status: str | None, queue: str | None, limit: int, as_json: bool) -> None:
    """List tickets, newest first."""
    from sqlalchemy import select

    from mailgate.store.models import Ticket
    from mailgate.store.tickets import ticket_dict

    runtime = state.runtime(rules=False)
    with runtime.sessions() as session:
        query = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
        if status:
            query = query.where(Ticket.status == status)
        if queue:
            query = query.where(Ticket.queue == queue)
        rows = [ticket_dict(t) for t in session.scalars(query)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no tickets" + (f" with status {status}" if status else ""))
        return
    table(
        ["REF", "STATUS", "PRIORITY", "QUEUE", "REQUESTER", "CREATED", "SUBJECT"],
        [
            [
                r["ref"],
                r["status"],
                r["priority"],
                r["queue"],
                r["requester"],
                _short_time(r["created_at"]),
                r["subject"],
            ]
            for r in rows
        ],
    )


@tickets.command("show")
@click.argument("ticket")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with its articles.")
@pass_state
def tickets_show(state: State, ticket: str, as_json: bool) -> None:
    """Show one ticket (by id or reference, e.g. 12 or HD-12) with its articles."""
    from sqlalchemy import select

    from mailgate.store.models import Event
    from mailgate.store.tickets import article_dict, ticket_dict

    runtime = state.runtime(rules=False)
    with runtime.sessions() as session:
        found = _find_ticket(session, ticket, runtime.config.helpdesk.ref_prefix)
        if found is None:
            fail(f"no ticket {ticket} (see `mailgate tickets list`)")
        data = ticket_dict(found)
        data["articles"] = [article_dict(a) for a in found.articles]
        data["events"] = [
            {"kind": e.kind, "detail": e.detail, "created_at": e.created_at.isoformat()}
            for e in session.scalars(select(Event).where(Event.ticket_id == found.id).order_by(Event.id))
        ]
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"[{data['ref']}] {data['subject']}")
    for key in ("status", "priority", "queue", "category", "requester", "assignee", "created_at"):
        if data.get(key):
            click.echo(f"  {key:<10} {data[key]}")
    for article in data["articles"]:
        arrow = "<-" if article["direction"] == "in" else "->"
        flag = " (internal)" if article["visibility"] == "internal" else ""
        click.echo(
            f"\n{arrow} {_short_time(article['created_at'])} {article['sender']}{flag} [{article['kind']}]"
        )
        click.echo(f"   {article['subject']}")
        for line in (article["body_text"] or "").strip().splitlines()[:40]:
            click.echo(f"   | {line}")


@tickets.command("set")
@click.argument("ticket")
@click.option("--status", type=click.Choice(["new", "open", "pending", "resolved", "closed"]))
@click.option("--priority", type=click.Choice(["low", "normal", "high", "urgent"]))
@click.option("--assign", help="An agent's name or address from agents.yaml, or 'nobody'.")
@click.option("--queue", help="A queue from agents.yaml.")
@click.option("--tag", help="Add these tags (space-separated).")
@pass_state
def tickets_set(
    state: State,
    ticket: str,
    status: str | None,
    priority: str | None,
    assign: str | None,
    queue: str | None,
    tag: str | None,
) -> None:
    """Change a ticket with the same effects and mails as an agent's #commands."""
    from mailgate.agents.admin import AdminError, set_ticket

    runtime = state.runtime()
    number = ticket.upper().removeprefix(f"{runtime.config.helpdesk.ref_prefix.upper()}-").lstrip("#")
    if not number.isdigit():
        fail(f"no ticket {ticket} (give 12 or HD-12)")
    options = {"status": status, "priority": priority, "assign": assign, "queue": queue, "tag": tag}
    try:
        changed = set_ticket(runtime, int(number), options)
    except AdminError as exc:
        fail(str(exc))
    click.echo(
        f"{changed.ref}: status {changed.status}, priority {changed.priority}, queue {changed.queue}, "
        f"assignee {changed.assignee or '-'}"
    )


def _find_ticket(session: Any, text: str, prefix: str) -> Any:
    from mailgate.store.models import Ticket

    number = text.upper().removeprefix(f"{prefix.upper()}-").lstrip("#")
    return session.get(Ticket, int(number)) if number.isdigit() else None


# -- queues an admin watches ------------------------------------------------------


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
                "mail_from": r.mail_from,
                "size": r.size,
                "attempts": r.attempts,
                "reason": r.reason,
            }
            for r in session.scalars(
                select(Inbound).where(Inbound.state == "quarantined").order_by(Inbound.id)
            )
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("quarantine is empty")
    else:
        table(
            ["ID", "RECEIVED", "SOURCE", "FROM", "SIZE", "REASON"],
            [
                [r["id"], _short_time(r["received_at"]), r["source"], r["mail_from"], r["size"], r["reason"]]
                for r in rows
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
    from mailgate.pipeline import Processor
    from mailgate.store.db import transaction
    from mailgate.store.models import Inbound

    runtime = state.runtime()
    with transaction(runtime.sessions) as session:
        row = session.get(Inbound, inbound_id)
        if row is None or row.state != "quarantined":
            fail(f"no quarantined message {inbound_id} (see `mailgate quarantine list`)")
        row.state, row.attempts, row.lease_until = "pending", 0, None
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
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("outbox is empty")
    else:
        table(
            ["ID", "TICKET", "KIND", "TO", "STATE", "TRIES", "LAST ERROR"],
            [
                [
                    r["id"],
                    r["ticket_id"],
                    r["kind"],
                    r["rcpt"],
                    r["state"],
                    r["attempts"],
                    r["last_error"] or "",
                ]
                for r in rows
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
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("no suppressed addresses")
    else:
        table(
            ["ADDRESS", "SINCE", "REASON"],
            [[r["address"], _short_time(r["created_at"]), r["reason"]] for r in rows],
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


# -- output helpers ----------------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]], max_width: int = 60) -> None:
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any, max_width: int) -> str:
    text = " ".join(str("" if value is None else value).split())
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _short_time(value: str | None) -> str:
    return "" if not value else value[:16].replace("T", " ")


if __name__ == "__main__":
    main()


@main.group()
def templates() -> None:
    """Look at the mail templates."""


@templates.command("preview")
@click.argument("name")
@click.option("--language", default="en", show_default=True, help="en, nl, or any language you added.")
@click.option("--queue", help="Use this queue's override, if it has one.")
@pass_state
def templates_preview(state: State, name: str, language: str, queue: str | None) -> None:
    """Render template NAME with sample data: subject, text and HTML."""
    from jinja2 import TemplateError

    from mailgate.agents.admin import preview

    runtime = state.runtime(migrate=False)
    if name not in runtime.templates.names():
        fail(f"no template {name!r}; known: {', '.join(sorted(runtime.templates.names()))}")
    try:
        rendered = preview(runtime, name, language=language, queue=queue)
    except TemplateError as exc:
        fail(f"template {name} cannot be rendered: {exc}")
    click.echo(f"Subject: {rendered.subject}\nContent-Language: {rendered.language}\n\n{rendered.text}")
    if rendered.html:
        click.echo("--- HTML ---\n" + rendered.html)
