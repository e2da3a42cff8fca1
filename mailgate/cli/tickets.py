"""Tickets for admins: `tickets list/show/set`, and `templates preview`."""

from __future__ import annotations

import json
from typing import Any

import click

from mailgate.cli import State, fail, main, pass_state, short_time, table
from mailgate.log import get_logger

log = get_logger(__name__)


@main.group()
def tickets() -> None:
    """List, show, change and merge tickets."""


@tickets.command("list")
@click.option("--status", help="Only tickets with this status (new, open, pending, resolved, closed).")
@click.option("--queue", help="Only tickets in this queue.")
@click.option("--breached", is_flag=True, help="Only tickets that missed a service-level target.")
@click.option(
    "--due-within", metavar="DURATION", help='Only open tickets with a target due within this, e.g. "4h".'
)
@click.option("--sort", type=click.Choice(["newest", "due"]), default="newest", show_default=True,
              help="newest first, or the earliest open due moment first.")  # fmt: skip
@click.option("--limit", default=200, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_state
def tickets_list(
    state: State,
    status: str | None,
    queue: str | None,
    breached: bool,
    due_within: str | None,
    sort: str,
    limit: int,
    as_json: bool,
) -> None:
    """List tickets, newest first (or by due moment with --sort due)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from mailgate.sla.durations import duration
    from mailgate.sla.query import breached_clause, open_due
    from mailgate.store.models import Ticket
    from mailgate.store.ticket_json import ticket_dict

    now = datetime.now(UTC)
    runtime = state.runtime(rules=False)
    with runtime.sessions() as session:
        query = select(Ticket).limit(limit)
        if sort == "due":
            query = query.where(open_due().is_not(None)).order_by(open_due(), Ticket.id)
        else:
            query = query.order_by(Ticket.id.desc())
        if status:
            query = query.where(Ticket.status == status)
        if queue:
            query = query.where(Ticket.queue == queue)
        if breached:
            query = query.where(breached_clause(now))
        if due_within:
            seconds = duration(due_within)
            if seconds is None:
                fail(f'--due-within: expected a duration like "30m", "4h" or "2d", got {due_within!r}')
            query = query.where(open_due() <= now + timedelta(seconds=seconds))
        rows = [ticket_dict(t, now) for t in session.scalars(query)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no tickets" + (f" with status {status}" if status else ""))
        return
    table(
        ["REF", "STATUS", "PRIORITY", "QUEUE", "REQUESTER", "CREATED", "DUE", "SUBJECT"],
        [
            [
                r["ref"],
                r["status"],
                r["priority"],
                r["queue"],
                r["requester"],
                short_time(r["created_at"]),
                _due_cell(r),
                r["subject"],
            ]
            for r in rows
        ],
    )


def _due_cell(row: dict[str, Any]) -> str:
    """The nearest open target's due moment (UTC), "BREACHED" when one was missed."""
    if row["breached"]:
        return "BREACHED " + ",".join(row["breached_targets"])
    if row["status"] not in ("new", "open", "pending"):
        return ""
    due = row["next_reply_due"] or (row["first_response_due"] if not row["first_response_at"] else None)
    return short_time(due or row["resolution_due"]) + (" (paused)" if row["sla_paused"] else "")


@tickets.command("show")
@click.argument("ticket")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with its articles.")
@pass_state
def tickets_show(state: State, ticket: str, as_json: bool) -> None:
    """Show one ticket (by id or reference, e.g. 12 or HD-12) with its articles."""
    from sqlalchemy import select

    from mailgate.store.models import Event
    from mailgate.store.ticket_json import article_dict, ticket_dict

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
    if data["sla"]:
        click.echo(f"  {'sla':<10} {data['sla']}" + (" (paused while pending)" if data["sla_paused"] else ""))
        for key in ("first_response_due", "next_reply_due", "resolution_due"):
            if data[key]:
                click.echo(f"  {key.removesuffix('_due').replace('_', ' ') + ' due':<19} {data[key]}")
        click.echo(f"  {'breached':<10} {', '.join(data['breached_targets']) or 'no'}")
    for article in data["articles"]:
        arrow = "<-" if article["direction"] == "in" else "->"
        flag = " (internal)" if article["visibility"] == "internal" else ""
        click.echo(
            f"\n{arrow} {short_time(article['created_at'])} {article['sender']}{flag} [{article['kind']}]"
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


@tickets.command("merge")
@click.argument("source")
@click.argument("target")
@pass_state
def tickets_merge(state: State, source: str, target: str) -> None:
    """Merge ticket SOURCE into ticket TARGET (e.g. HD-12 HD-7).

    SOURCE's articles, participants and Message-IDs move to TARGET, so
    further replies thread there; SOURCE is closed with a "merged into"
    event, and mail to its reply addresses or with its subject tag lands on
    TARGET. Nobody is mailed. An agent does the same by mail with
    "#merge TARGET" in a reply on SOURCE.
    """
    from mailgate.agents.admin import AdminError, merge

    runtime = state.runtime()
    try:
        merged = merge(runtime, source, target)
    except AdminError as exc:
        fail(str(exc))
    click.echo(f"{merged.source_ref} merged into {merged.target_ref}: {merged.articles} articles moved")


def _find_ticket(session: Any, text: str, prefix: str) -> Any:
    from mailgate.store.models import Ticket

    number = text.upper().removeprefix(f"{prefix.upper()}-").lstrip("#")
    return session.get(Ticket, int(number)) if number.isdigit() else None


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
