"""Agents work from their mail client: notifications out, replies and notes in.

Everything here runs inside the processing transaction of the message that
caused it, so a notification or relay exists exactly when its article does.
Internal notes are addressed from the directory only, never from anything
the incoming mail says, so no header can steer one to a requester.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection

from mailgate.agents.auth import AgentCheck
from mailgate.agents.commands import Changes, Commands, interpret, split_commands
from mailgate.agents.directory import Agent, Queue
from mailgate.kb import mailflow as kb
from mailgate.message import Address, ParsedMessage
from mailgate.service.runtime import Runtime
from mailgate.sla import track as sla_track
from mailgate.store.writes import (
    TicketView,
    add_participants,
    first_message,
    insert_event,
    last_message_from,
    ticket_times,
    touch_ticket,
    update_ticket,
    watchers,
)
from mailgate.threading.tokens import reply_address
from mailgate.tickets import lifecycle
from mailgate.tickets.articles import Incoming, store_incoming
from mailgate.tickets.merge import check_merge, merge_by_command
from mailgate.tickets.notify import automatic_mail_permission, enqueue, render_to

log = structlog.get_logger(__name__)


def attachment_list(message: ParsedMessage) -> list[dict[str, Any]]:
    return [
        {"filename": a.filename or "(unnamed)", "content_type": a.content_type, "size": a.size}
        for a in message.attachments
        if not a.inline
    ]


def _agents_for(runtime: Runtime, ticket: TicketView) -> list[Agent]:
    """The assignee when there is one, else every member of the ticket's queue."""
    directory = runtime.directory
    assignee = directory.agent_for(ticket.assignee) if ticket.assignee else None
    return [assignee] if assignee is not None else list(directory.members(ticket.queue))


def _agent_mail(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    agent: Agent,
    template: str,
    now: datetime,
    *,
    kind: str,
    extra: dict[str, Any],
    in_reply_to: str | None,
) -> None:
    queue = runtime.directory.queue(ticket.queue)
    comment = None
    if queue is not None and queue.comment_address and "+" not in queue.comment_address:
        comment = reply_address(queue.comment_address, runtime.keys, ticket.id, agent.address)
    mail = render_to(
        runtime,
        ticket,
        template,
        Address(agent.address, agent.name),
        kind=kind,
        extra={**extra, "agent": {"name": agent.name, "email": agent.address}, "comment_address": comment},
        in_reply_to=in_reply_to,
        references=(in_reply_to,) if in_reply_to else (),
        auto_submitted="auto-generated",
        language=agent.language,
    )
    # Agent mail is internal: it may quote notes and must never count as a
    # public answer to the requester.
    enqueue(conn, runtime, ticket.id, mail, automatic=False, now=now, visibility="internal")


def notify_agents(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    message: ParsedMessage,
    now: datetime,
    *,
    event: str,
) -> int:
    """Tell the assignee (or the queue) about a new ticket or a requester's reply."""
    recipients = _agents_for(runtime, ticket)
    sender = message.sender or Address(ticket.requester, ticket.requester_name)
    extra = {
        "event": event,
        "article": {
            "sender": sender.email,
            "sender_name": sender.name,
            "text": message.new_text,
            "attachments": attachment_list(message),
        },
    }
    for agent in recipients:
        _agent_mail(
            conn,
            runtime,
            ticket,
            agent,
            "agent_notify",
            now,
            kind="notify",
            extra=extra,
            in_reply_to=message.message_id,
        )
    return len(recipients)


def _notice(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    incoming: Incoming,
    problems: list[str],
    now: datetime,
) -> str:
    """One short answer to the sender saying why nothing was done (never to a machine)."""
    message = incoming.message
    permission = automatic_mail_permission(conn, runtime, incoming.verdict, message.sender, now)
    if permission.refused is not None or message.sender is None:
        return f"no notice: {permission.refused}"
    agent = runtime.directory.agent_for(message.sender.email)
    mail = render_to(
        runtime,
        ticket,
        "command_rejected",
        message.sender,
        kind="notice",
        extra={"problems": problems, "original_subject": message.subject},
        in_reply_to=message.message_id,
        language=agent.language if agent else None,
    )
    enqueue(conn, runtime, ticket.id, mail, automatic=True, now=now, visibility="internal")
    return "notice sent"


def handle_agent_mail(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    incoming: Incoming,
    check: AgentCheck,
    comment_queue: Queue | None,
    now: datetime,
) -> tuple[int, str]:
    """An agent's reply, note or commands, or a refusal; returns (article id, reason)."""
    commands = split_commands(incoming.message.new_text)
    internal = comment_queue is not None or commands.internal
    if check.agent is None or not check.authenticated:
        # Kept, but only as an internal record: it is not relayed and changes nothing.
        article_id = store_incoming(
            conn,
            runtime,
            ticket.id,
            incoming,
            visibility="internal",
            kind="unverified",
            text=incoming.message.new_text,
        )
        insert_event(conn, ticket.id, "agent_refused", now, article_id=article_id, reason=check.reason)
        why = "not an agent: kept as an internal record"
        if check.agent is not None:
            why = _notice(
                conn, runtime, ticket, incoming, [f"You could not be authenticated: {check.reason}."], now
            )
        touch_ticket(conn, ticket.id, now)
        return article_id, f"agent mail refused ({check.reason}); {why}"
    agent = check.agent
    changes = check_merge(
        conn, runtime.config.helpdesk.ref_prefix, ticket, interpret(commands, runtime.directory, agent.key)
    )
    kb_plan = kb.plan(commands, runtime.kb.kb, runtime.config.kb is not None)
    changes = replace(changes, errors=changes.errors + kb_plan.errors)
    if changes.errors:
        article_id = store_incoming(
            conn,
            runtime,
            ticket.id,
            incoming,
            visibility="internal",
            kind="refused",
            text=incoming.message.new_text,
        )
        insert_event(
            conn, ticket.id, "commands_refused", now, article_id=article_id, errors=list(changes.errors)
        )
        why = _notice(conn, runtime, ticket, incoming, list(changes.errors), now)
        return article_id, f"commands refused; {why}"
    article_id = store_incoming(
        conn,
        runtime,
        ticket.id,
        incoming,
        visibility="internal" if internal else "public",
        kind="note" if internal else "agent_reply",
        text=commands.text,
    )
    add_participants(conn, ticket.id, [(agent.address, "agent")], new_ticket=False)
    insert_event(
        conn,
        ticket.id,
        "agent_mail",
        now,
        article_id=article_id,
        agent=agent.key,
        internal=internal,
        commands=[c.line for c in commands.commands],
    )
    reply_text, reply_html = kb.reply_with_articles(commands.text, kb_plan.articles, ticket.language)
    relayed = replace(commands, text=reply_text)
    ticket = _relay_or_note(conn, runtime, ticket, incoming, agent, relayed, internal, now, html=reply_html)
    _kb_followups(conn, runtime, ticket, incoming, agent, commands, kb_plan, internal, now)
    ticket = apply_changes(conn, runtime, ticket, changes, now, by=agent.key)
    touch_ticket(conn, ticket.id, now)
    return article_id, "internal note" if internal else (
        "agent reply relayed" if relayed.text else "commands only"
    )


def _relay_or_note(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    incoming: Incoming,
    agent: Agent,
    commands: Commands,
    internal: bool,
    now: datetime,
    *,
    html: str | None = None,
) -> TicketView:
    if not commands.text:
        return ticket
    extra = {
        "reply": {"text": commands.text, "attachments": attachment_list(incoming.message)},
        "author": {"name": agent.name, "email": agent.address},
    }
    if internal:
        # The assignee and the whole queue see notes; each agent once, never the author.
        others = {a.key: a for a in (*_agents_for(runtime, ticket), *runtime.directory.members(ticket.queue))}
        others.pop(agent.key, None)
        for other in others.values():
            _agent_mail(
                conn,
                runtime,
                ticket,
                other,
                "internal_note",
                now,
                kind="note",
                extra=extra,
                in_reply_to=incoming.message.message_id,
            )
        return ticket
    helpdesk = runtime.config.helpdesk
    ours = runtime.is_our_address
    agent_for = runtime.directory.agent_for
    cc = tuple(
        Address(a)
        for a in watchers(conn, ticket.id)
        if a != ticket.requester and agent_for(a) is None and not ours(a)
    )
    last = last_message_from(conn, ticket.id, ticket.requester)
    first = first_message(conn, ticket.id)
    mail = render_to(
        runtime,
        ticket,
        "relay",
        Address(ticket.requester, ticket.requester_name),
        kind="relay",
        extra=extra,
        in_reply_to=last,
        references=tuple(dict.fromkeys(m for m in (first, last) if m)),
        auto_submitted=None,
        from_name=f"{agent.name} via {helpdesk.name}",
        cc=cc,
    )
    # The agent's files go along; inline images were part of their signature.
    files = tuple(a for a in incoming.message.attachments if a.content and not a.inline)
    if files:
        mail = replace(mail, attachments=files)
    if html is not None:
        # An answer with a knowledge-base article goes out with an HTML part too.
        mail = replace(mail, html=html)
    enqueue(conn, runtime, ticket.id, mail, automatic=False, now=now, visibility="public")
    first_reply = ticket_times(conn, ticket.id).first_response_at is None
    # Only here, a public reply relayed to the requester, meets a response target.
    sla_track.public_reply(conn, runtime, ticket.id, now, first=first_reply)
    if first_reply:
        update_ticket(conn, ticket.id, first_response_at=now)
        insert_event(conn, ticket.id, "first_response", now, agent=agent.key)
    if ticket.assignee is None:
        update_ticket(conn, ticket.id, assignee=agent.address)
        insert_event(conn, ticket.id, "assigned", now, assignee=agent.address, by="first reply")
        ticket = _with(ticket, assignee=agent.address)
    if ticket.status == "new":
        ticket = lifecycle.set_status(conn, runtime, ticket, "open", now, by=agent.key)
    return ticket


def _kb_followups(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    incoming: Incoming,
    agent: Agent,
    commands: Commands,
    plan: kb.KbPlan,
    internal: bool,
    now: datetime,
) -> None:
    """Record articles used, mail the agent their searches, write a draft."""
    for article in plan.articles:
        insert_event(conn, ticket.id, "kb_used", now, article=article.id, agent=agent.key, internal=internal)
    for query in plan.searches:
        language = agent.language or ticket.language
        matches = kb.search_matches(runtime, query, ticket.language)
        _agent_mail(
            conn,
            runtime,
            ticket,
            agent,
            "kb_search",
            now,
            kind="kb_search",
            extra={"query": query, "matches": matches, "language": ticket.language},
            in_reply_to=incoming.message.message_id,
        )
        insert_event(
            conn,
            ticket.id,
            "kb_search",
            now,
            query=query,
            agent=agent.key,
            found=[m["id"] for m in matches],
            language=language,
        )
    if plan.draft and runtime.config.kb is not None:
        from mailgate.kb.drafts import write_draft

        folder = runtime.config.path(runtime.config.kb.drafts_folder)
        path = write_draft(folder, ticket.ref, ticket.subject, ticket.language, commands.text, agent.key, now)
        insert_event(conn, ticket.id, "kb_draft", now, file=str(path), agent=agent.key)


def _with(ticket: TicketView, **values: Any) -> TicketView:
    return replace(ticket, **values)


def apply_changes(
    conn: Connection, runtime: Runtime, ticket: TicketView, changes: Changes, now: datetime, *, by: str
) -> TicketView:
    """Fields first, then the status (whose mail should show the new fields)."""
    fields: dict[str, Any] = {}
    if changes.priority:
        fields["priority"] = changes.priority
    if changes.queue:
        fields["queue"] = changes.queue
    if changes.assignee:
        fields["assignee"] = changes.assignee
    if changes.unassign:
        fields["assignee"] = None
    if changes.tags:
        fields["tags"] = sorted({*ticket.tags, *changes.tags})
    if fields:
        update_ticket(conn, ticket.id, **fields)
        insert_event(conn, ticket.id, "fields_changed", now, by=by, **{k: v for k, v in fields.items()})
        if "tags" in fields:
            fields["tags"] = tuple(fields["tags"])
        ticket = _with(ticket, **fields)
        if "priority" in fields or "queue" in fields:
            sla_track.refresh(conn, runtime, ticket.id, now, why=f"changed by {by}")
    if changes.status:
        ticket = lifecycle.set_status(conn, runtime, ticket, changes.status, now, by=by)
    if changes.merge_into:
        # Last: the fields and status above are recorded on the ticket being merged away.
        merge_by_command(conn, runtime.config.helpdesk.ref_prefix, ticket, changes.merge_into, now, by=by)
    return ticket
