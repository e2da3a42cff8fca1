"""What ``mailgate tickets set`` and ``mailgate templates preview`` do.

``tickets set`` goes through the same command interpretation and the same
lifecycle as an agent's mailed ``#commands``, so an admin's change has the
same timestamps, events and requester mails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailgate.agents.commands import Command, Commands, interpret
from mailgate.agents.desk import apply_changes
from mailgate.service.runtime import Runtime
from mailgate.store.db import transaction
from mailgate.store.writes import TicketView, ticket_view, touch_ticket
from mailgate.templates import RenderedMail
from mailgate.tickets.merge import Merged, MergeRefused, find_ticket, merge_problem, merge_tickets


class AdminError(Exception):
    """The change cannot be made; ``str()`` says why."""


def set_ticket(
    runtime: Runtime, ticket_id: int, options: dict[str, str | None], *, by: str = "cli"
) -> TicketView:
    """Apply ``--status/--priority/--assign/--queue/--tag`` to one ticket, or raise AdminError."""
    commands = Commands(
        tuple(Command(name, value, f"--{name} {value}") for name, value in options.items() if value),
        "",
    )
    if not commands.commands:
        raise AdminError("nothing to change: give --status, --priority, --assign, --queue or --tag")
    changes = interpret(commands, runtime.directory)
    if changes.errors:
        raise AdminError("; ".join(changes.errors))
    now = datetime.now(UTC)
    with transaction(runtime.sessions) as session:
        conn = session.connection()
        ticket = ticket_view(conn, ticket_id)
        if ticket is None:
            raise AdminError(f"no ticket {ticket_id}")
        ticket = apply_changes(conn, runtime, ticket, changes, now, by=by)
        touch_ticket(conn, ticket_id, now)
    return ticket


def merge(runtime: Runtime, source_name: str, target_name: str, *, by: str = "cli") -> Merged:
    """``tickets merge SOURCE TARGET``: SOURCE goes into TARGET, as an agent's ``#merge`` does."""
    prefix = runtime.config.helpdesk.ref_prefix
    with transaction(runtime.sessions) as session:
        conn = session.connection()
        source = find_ticket(conn, source_name, prefix)
        target = find_ticket(conn, target_name, prefix)
        problem = merge_problem(source, target, source_name, target_name)
        if problem is not None or source is None or target is None:
            raise AdminError(problem or "no such tickets")
        try:
            return merge_tickets(
                conn, source, target, datetime.now(UTC), by=by, reason=f"tickets merge by {by}"
            )
        except MergeRefused as exc:
            raise AdminError(str(exc)) from exc


SAMPLE: dict[str, Any] = {
    "helpdesk": {"name": "Example IT Helpdesk", "address": "helpdesk@example.com"},
    "ticket": {
        "ref": "HD-1042",
        "subject": "The printer on floor 3 jams",
        "status": "open",
        "priority": "normal",
        "queue": "general",
        "category": "hardware",
    },
    "requester": {"name": "Jan Jansen", "email": "jan@example.org"},
    "agent": {"name": "Alice Admin", "email": "alice@example.com"},
    "author": {"name": "Alice Admin", "email": "alice@example.com"},
    "event": "new",
    "article": {
        "sender": "jan@example.org",
        "sender_name": "Jan Jansen",
        "text": "Hello,\n\nthe printer on floor 3 jams on every page.\n\nJan\n",
        "attachments": [{"filename": "jam.jpg", "content_type": "image/jpeg", "size": 48213}],
    },
    "reply": {"text": "Hello Jan,\n\nplease send me the model number.\n", "attachments": []},
    "comment_address": "helpdesk-notes+t1042-abcdefghijklmnop@example.com",
    "problems": ["#priority sky: priority must be one of low, normal, high, urgent"],
    "original_subject": "Re: [HD-1042] The printer on floor 3 jams",
    "rating": 5,
    # requester_unmailable: the ticket's requester cannot be answered.
    "problem": "noreply@www.example.org is a noreply or system address",
    "reasons": ["order forward, list, reply_to, from from the defaults", "From noreply@www.example.org"],
    "original": {"sender": "noreply@www.example.org", "reply_to": [], "subject": "Contact form"},
    # Service levels (docs/sla.md): the acknowledgement's promise, escalations, the digest.
    "sla": {
        "level": "standard",
        "timezone": "Europe/Amsterdam",
        "business_hours": True,
        "first_response": {"target": "8 business hours", "due": "Monday 09:30", "due_iso": ""},
        "resolution": {"target": "40 business hours", "due": "Friday 7 August 16:00", "due_iso": ""},
    },
    "recipient": {"name": "Alice Admin", "email": "alice@example.com"},
    "breaches": 1,
    "warnings": 1,
    "items": [
        {"ref": "HD-1042", "subject": "The printer on floor 3 jams", "priority": "high", "queue": "general",
         "assignee": None, "target": "first_response", "level": "breach", "due": "today 09:30",
         "due_iso": ""},
        {"ref": "HD-1043", "subject": "VPN drops", "priority": "normal", "queue": "general",
         "assignee": "alice@example.com", "target": "resolution", "level": "warning", "due": "Monday 10:00",
         "due_iso": ""},
    ],
    "day": "Monday 3 August",
    "count": 2,
    "oldest": {"ref": "HD-1042", "subject": "The printer on floor 3 jams", "since": "Friday 31 July 14:02"},
    "breached": [{"ref": "HD-1042", "subject": "The printer on floor 3 jams", "priority": "high",
                  "status": "open", "queue": "general", "due": "today 09:30",
                  "since": "Friday 31 July 14:02"}],
    "due_today": [],
    "open": [],
    "waiting": [{"ref": "HD-1043", "subject": "VPN drops", "priority": "normal", "status": "pending",
                 "queue": "general", "due": "", "since": "Monday 10:00"}],
    "unassigned": [],
    "more": {"breached": 0, "due_today": 0, "open": 0, "waiting": 0, "unassigned": 0},
}  # fmt: skip


def preview(runtime: Runtime, name: str, *, language: str, queue: str | None = None) -> RenderedMail:
    folder = runtime.directory.template_folder(queue) if queue else None
    return runtime.templates.render(name, SAMPLE, language=language, queue=folder)
