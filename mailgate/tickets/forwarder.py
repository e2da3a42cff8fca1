"""May this forward open a ticket in someone else's name? Only an authenticated agent's.

A From header is trivially forged, so an agent's forward counts only when
the agent is authenticated the way their ``#commands`` are (SPEC §1,
agents/auth.py): a signed address issued to that agent, plus DKIM/DMARC
from a trusted ``Authentication-Results`` when one is configured. A new
ticket has no reply address yet, so each agent has a personal *forward
address*, ``helpdesk+t0-<mac>@…``: the same HMAC as a reply address, for
"ticket 0", bound to the agent's main address (``mailgate agents
forward-address`` prints it). Without it, a DKIM or DMARC pass for the
agent's domain from our own border MTA is enough on its own: then the
agent may forward to the plain helpdesk address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailgate.agents.auth import sender_verified
from mailgate.agents.directory import Directory
from mailgate.message import Envelope, ParsedMessage
from mailgate.threading.tokens import ReplyKeys, plus_tokens, reply_address, verify_token

# The ticket number a forward address is signed for: no ticket has it.
FORWARD_TICKET = 0


@dataclass(frozen=True)
class ForwarderCheck:
    """Who forwarded, and whether their forward may name the requester."""

    agent: str | None  # the agent's key, when the From is an agent's
    authenticated: bool
    reason: str


def forward_address(helpdesk_address: str, keys: ReplyKeys, agent_address: str) -> str:
    """The agent's personal address for forwarding mail to the helpdesk."""
    return reply_address(helpdesk_address, keys, FORWARD_TICKET, agent_address)


def check_forwarder(
    message: ParsedMessage,
    envelope: Envelope,
    directory: Directory,
    keys: ReplyKeys,
    helpdesk_address: str,
    trusted_ids: frozenset[str],
    token_bases: Sequence[str] = (),
) -> ForwarderCheck:
    sender = message.sender.email if message.sender else ""
    agent = directory.agent_for(sender)
    if agent is None:
        return ForwarderCheck(None, False, f"{sender or 'the sender'} is not an agent")
    recipients = [*envelope.rcpt_tos, *(a.email for a in (*message.to, *message.cc))]
    tokens = [t for base in (helpdesk_address, *token_bases) for t in plus_tokens(base, recipients)]
    issued = any(verify_token(keys, token, agent.address) == FORWARD_TICKET for token in tokens)
    verified, why = sender_verified(message, trusted_ids)
    if issued and verified:
        return ForwarderCheck(
            agent.key, True, f"sent to the forward address issued to {agent.address}; {why}"
        )
    if issued:
        return ForwarderCheck(agent.key, False, why)
    # Without the forward address, only a positive pass from our own MTA
    # proves the From; "nothing configured" proves nothing.
    if verified and why.startswith(("DMARC pass", "DKIM pass")):
        return ForwarderCheck(agent.key, True, f"{why} from a trusted Authentication-Results")
    return ForwarderCheck(
        agent.key,
        False,
        f"not sent to {agent.key}'s forward address (see `mailgate agents forward-address`) "
        "and no trusted DKIM/DMARC pass",
    )
