"""The new-ticket road's requester step: choose, then open the ticket in their name.

handle.py calls ``decide`` before it opens a ticket and ``record`` after,
so the hub stays a list of roads. ``decide`` is pure apart from reading
the runtime's directory and keys; ``record`` writes in the caller's
transaction: the forwarder's note, the events and, for a requester nobody
can mail, the flag on the ticket and the mail to the agents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection

from mailgate.agents.directory import Directory
from mailgate.content.forward import Forwarded, find_forward
from mailgate.guard import GuardVerdict
from mailgate.message import Address, Envelope, ParsedMessage
from mailgate.rules import Decision
from mailgate.service.runtime import Runtime
from mailgate.store.writes import TicketView, add_participants, insert_article, insert_event, update_ticket
from mailgate.threading.tokens import ReplyKeys
from mailgate.tickets.forwarder import ForwarderCheck, check_forwarder
from mailgate.tickets.notify import enqueue, render_to
from mailgate.tickets.requester import Policy, RequesterChoice, choose, list_address

# The tag an unmailable requester's ticket carries, so `tickets list` shows it.
UNMAILABLE_TAG = "requester-unmailable"
# A cheap look before the line-by-line search: most new mail forwards nothing.
# Without a forward prefix in the subject only the forward separators count
# (content/forward.py), and each contains one of these words.
_FORWARD_WORDS = (
    "forward",
    "doorgestuurd",
    "weitergeleitet",
    "transféré",
    "réexpédié",
    "reenviado",
    "inoltrato",
    "encaminhada",
)
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|fw|doorst|wg|tr|trs|wtr|enc|rv|i)\s*:", re.IGNORECASE)


def _may_forward(message: ParsedMessage) -> bool:
    if _FORWARD_SUBJECT.match(message.subject):
        return True
    if any(a.content_type in ("message/rfc822", "message/global") for a in message.attachments):
        return True
    lowered = message.text.lower()
    return any(word in lowered for word in _FORWARD_WORDS)


@dataclass(frozen=True)
class NewRequester:
    """Who the new ticket is for, and the message to open it from."""

    choice: RequesterChoice
    # The mail as the ticket should show it: for an agent's forward the
    # original (its sender, subject and text); otherwise the mail itself
    # with the chosen requester as its sender.
    message: ParsedMessage
    # The guard's verdict as it bears on answering the chosen requester.
    verdict: GuardVerdict
    # Addresses never copied on answers: a replaced noreply From, the list.
    not_cc: frozenset[str]
    # The forward found in the mail, whether or not it named the requester.
    forward: Forwarded | None
    acknowledge: bool
    ack_reason: str = ""


def _parse(raw: bytes) -> ParsedMessage:
    from mailgate.parse import parse  # Imported late: the parse stage is heavy.

    return parse(raw)


def explain(
    message: ParsedMessage,
    envelope: Envelope,
    decision: Decision,
    *,
    directory: Directory,
    keys: ReplyKeys,
    helpdesk_address: str,
    trusted_ids: frozenset[str],
    is_ours: Callable[[str], bool],
) -> tuple[RequesterChoice, Forwarded | None]:
    """The requester by the rules' order, and any forward found (for ``rules test`` too)."""
    forward: Forwarded | None = None
    forwarder: ForwarderCheck | None = None
    if _may_forward(message):
        forward = find_forward(message, _parse)
    if forward is not None:
        forwarder = check_forwarder(
            message, envelope, directory, keys, helpdesk_address, trusted_ids, directory.token_bases
        )
    policy = Policy(decision.requester_order, decision.requester_by, decision.requester_explicit)
    return choose(message, policy, forward=forward, forwarder=forwarder, is_ours=is_ours), forward


def decide(
    runtime: Runtime,
    message: ParsedMessage,
    envelope: Envelope,
    verdict: GuardVerdict,
    decision: Decision,
) -> NewRequester:
    """Choose the requester of a new ticket by the rules' order (tickets/requester.py)."""
    choice, forward = explain(
        message,
        envelope,
        decision,
        directory=runtime.directory,
        keys=runtime.keys,
        helpdesk_address=runtime.config.helpdesk.address,
        trusted_ids=runtime.trusted_authserv_ids,
        is_ours=runtime.is_our_address,
    )
    sender = message.sender.email if message.sender is not None else ""
    not_cc = {sender} if choice.source != "from" and sender else set()
    if choice.source == "list":
        # The list itself is never copied on answers, only its poster gets them.
        not_cc |= {list_address(message)} - {""}
    effective = replace(message, sender=choice.address)
    acknowledge, ack_reason = True, ""
    if choice.forward is not None:
        original = choice.forward
        effective = replace(
            effective,
            subject=original.subject or message.subject,
            text=original.text,
            new_text=original.text,
            html=None,
            attachments=tuple(
                a for a in message.attachments if a.content_type not in ("message/rfc822", "message/global")
            ),
        )
        if not decision.acknowledge_forwards:
            acknowledge, ack_reason = False, "defaults.acknowledge_forwards is false: no acknowledgement"
    elif forward is not None:
        # Not followed, but the forwarded part stays readable on the ticket.
        effective = replace(effective, new_text=message.text.strip())
    answering = verdict
    if choice.source in ("reply_to", "sender") and verdict.kind == "noreply":
        # The guard refused to answer the noreply From; we answer someone else.
        answering = replace(
            verdict,
            kind="human",
            may_auto_reply=True,
            reasons=(*verdict.reasons, f"answering {choice.email} instead ({choice.source})"),
        )
    return NewRequester(choice, effective, answering, frozenset(not_cc), forward, acknowledge, ack_reason)


def record(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    who: NewRequester,
    inbound_id: int,
    received: ParsedMessage,
    now: datetime,
) -> None:
    """After the ticket exists: who it is for (event), the forwarder's note, any flag."""
    choice = who.choice
    # The mail's own From beside the choice: the request article is filed
    # under the requester, so this is where the real sender stays on record.
    received_from = received.sender.email if received.sender is not None else ""
    insert_event(conn, ticket.id, "requester", now, received_from=received_from, **choice.as_dict())
    if choice.forward is not None and choice.forwarded_by is not None:
        agent = runtime.directory.agent_named(choice.forwarded_by)
        if agent is not None:
            add_participants(conn, ticket.id, [(agent.address, "agent")], new_ticket=False)
        if choice.forward.note:
            # The agent's own lines are for colleagues, never for the requester.
            article_id = insert_article(
                conn,
                ticket_id=ticket.id,
                inbound_id=inbound_id,
                direction="in",
                visibility="internal",
                kind="note",
                sender=received.sender.email if received.sender else "",
                sender_name=received.sender.name if received.sender else "",
                recipients=[a.email for a in (*received.to, *received.cc)],
                message_id=None,
                subject=received.subject,
                body_text=choice.forward.note,
                body_full=received.text,
                attachments=[],
                threaded_by="",
                created_at=now,
            )
        else:
            article_id = None
        insert_event(
            conn,
            ticket.id,
            "forwarded",
            now,
            opened_by=choice.forwarded_by,
            original_sender=choice.email,
            style=choice.forward.style,
            note_article_id=article_id,
        )
    if choice.unmailable is not None:
        _flag_unmailable(conn, runtime, ticket, choice, received, now)


def _flag_unmailable(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    choice: RequesterChoice,
    received: ParsedMessage,
    now: datetime,
) -> None:
    """Nobody writes answers into the void: tag the ticket and tell its agents."""
    update_ticket(conn, ticket.id, tags=sorted({*ticket.tags, UNMAILABLE_TAG}))
    insert_event(conn, ticket.id, "requester_unmailable", now, reason=choice.unmailable)
    directory = runtime.directory
    # The assignee when there is one, else the queue: as for any new ticket.
    assignee = directory.agent_for(ticket.assignee) if ticket.assignee else None
    for agent in [assignee] if assignee is not None else directory.members(ticket.queue):
        mail = render_to(
            runtime,
            ticket,
            "requester_unmailable",
            Address(agent.address, agent.name),
            kind="notify",
            extra={
                "agent": {"name": agent.name, "email": agent.address},
                "problem": choice.unmailable,
                "reasons": list(choice.reasons),
                "original": {
                    "sender": received.sender.email if received.sender else "",
                    "reply_to": [a.email for a in received.reply_to],
                    "subject": received.subject,
                },
            },
            in_reply_to=received.message_id,
            auto_submitted="auto-generated",
            language=agent.language,
        )
        enqueue(conn, runtime, ticket.id, mail, automatic=False, now=now, visibility="internal")
