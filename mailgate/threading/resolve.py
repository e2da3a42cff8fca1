"""Which ticket does a message belong to? (SPEC §3 C4)

In order of trust: a signed reply address issued to this sender; a
Message-ID we have seen on a ticket (In-Reply-To, then References, newest
first); a subject tag, but only from someone already on that ticket — a tag
is a hint, not a credential; otherwise a new ticket. Every step says why it
decided, for the logs and ``rules test``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailgate.message import Envelope, ParsedMessage
from mailgate.threading.subject import find_tags
from mailgate.threading.tokens import ReplyKeys, plus_tokens, token_ticket, verify_token


class TicketLookup(Protocol):
    def ticket_for_message_ids(self, message_ids: list[str]) -> int | None: ...
    def ticket_exists(self, ticket_id: int) -> bool: ...
    def is_participant(self, ticket_id: int, address: str) -> bool: ...


@dataclass(frozen=True)
class ThreadDecision:
    ticket_id: int | None  # None: open a new ticket
    threaded_by: str  # reply-token | in-reply-to | references | subject-tag | new
    authenticated_token: bool  # the sender holds a reply address issued to them
    reasons: tuple[str, ...]
    # The address the reply token was issued to: the sender, or (for an agent
    # writing from an alternate address) the agent's main address.
    token_holder: str | None = None


def resolve(
    message: ParsedMessage,
    envelope: Envelope,
    *,
    helpdesk_address: str,
    ref_prefix: str,
    keys: ReplyKeys,
    lookup: TicketLookup,
    token_bases: Sequence[str] = (),
    identities: Callable[[str], Sequence[str]] | None = None,
) -> ThreadDecision:
    """Which ticket, and why; ``token_bases`` are further addresses (queue
    comment addresses) whose +detail may carry a reply token, and
    ``identities`` names every address a sender holds tokens for (an agent's
    alternates map to their main address)."""
    reasons: list[str] = []
    sender = message.sender.email if message.sender else ""
    holders = list(dict.fromkeys([sender, *(identities(sender) if identities and sender else ())]))

    recipients = [*envelope.rcpt_tos, *(a.email for a in (*message.to, *message.cc))]
    tokens = [t for base in (helpdesk_address, *token_bases) for t in plus_tokens(base, recipients)]
    for token in dict.fromkeys(tokens):
        # Ticket 0 is an agent's forward address (tickets/forwarder.py): no ticket to thread to.
        if not token_ticket(token):
            continue
        for holder in holders:
            ticket_id = verify_token(keys, token, holder)
            if ticket_id is not None and lookup.ticket_exists(ticket_id):
                reasons.append(f"reply address +{token} was issued to {holder} for ticket {ticket_id}")
                return ThreadDecision(ticket_id, "reply-token", True, tuple(reasons), holder)
        reasons.append(f"reply address +{token} not valid for sender {sender or '(none)'}")

    if message.in_reply_to:
        ticket_id = lookup.ticket_for_message_ids(list(message.in_reply_to))
        if ticket_id is not None:
            reasons.append(f"In-Reply-To {message.in_reply_to[0]} is on ticket {ticket_id}")
            return ThreadDecision(ticket_id, "in-reply-to", False, tuple(reasons))
    if message.references:
        # Newest reference last (RFC 5322 §3.6.4); try from the end.
        ticket_id = lookup.ticket_for_message_ids(list(reversed(message.references)))
        if ticket_id is not None:
            reasons.append(f"References name a message of ticket {ticket_id}")
            return ThreadDecision(ticket_id, "references", False, tuple(reasons))
    if message.in_reply_to or message.references:
        reasons.append("no In-Reply-To/References id is known")

    for ticket_id in find_tags(message.subject, ref_prefix):
        if not lookup.ticket_exists(ticket_id):
            reasons.append(f"subject tag {ref_prefix}-{ticket_id}: no such ticket")
        elif sender and lookup.is_participant(ticket_id, sender):
            reasons.append(f"subject tag {ref_prefix}-{ticket_id} from participant {sender}")
            return ThreadDecision(ticket_id, "subject-tag", False, tuple(reasons))
        else:
            reasons.append(
                f"subject tag {ref_prefix}-{ticket_id} ignored: {sender or 'sender'} "
                "is not a participant of that ticket"
            )

    reasons.append("new ticket")
    return ThreadDecision(None, "new", False, tuple(reasons))
