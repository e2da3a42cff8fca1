"""Is this mail really from the agent it names? (SPEC §2 promise 5)

Three checks, all required: the From address is a known agent's (main or
alternate); the mail went to a reply address issued to that agent for this
ticket (the MAC binds ticket and agent, see ``threading.tokens``); and, when
our own border MTA left a trusted ``Authentication-Results`` header, it says
DMARC passed or a DKIM signature of the sender's domain verified. A From
header alone is trivially forged, so it is never enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.agents.directory import Agent, Directory
from mailgate.message import ParsedMessage
from mailgate.rules.auth import trusted_results
from mailgate.threading.resolve import ThreadDecision


@dataclass(frozen=True)
class AgentCheck:
    agent: Agent | None
    authenticated: bool
    reason: str


def _aligned(domain: str, signer: str) -> bool:
    signer = signer.lower().lstrip("@").rpartition("@")[2]
    return bool(signer) and (domain == signer or domain.endswith("." + signer))


def sender_verified(message: ParsedMessage, trusted_ids: frozenset[str]) -> tuple[bool, str]:
    """DKIM/DMARC, judged only from headers our own authserv-ids wrote."""
    if not trusted_ids:
        return True, "no trusted Authentication-Results configured"
    results = trusted_results(message.header_all("Authentication-Results"), trusted_ids)
    if not results:
        return True, "no trusted Authentication-Results header present"
    domain = (message.sender.email if message.sender else "").rpartition("@")[2]
    if any(r.result == "pass" for r in results.get("dmarc", ())):
        return True, "DMARC pass"
    for result in results.get("dkim", ()):
        signer = result.properties.get("header.d") or result.properties.get("header.i") or ""
        if result.result == "pass" and _aligned(domain, signer):
            return True, f"DKIM pass for {signer}"
    return False, f"no DKIM or DMARC pass for {domain or 'the sender'} in the trusted Authentication-Results"


def check_agent(
    message: ParsedMessage, thread: ThreadDecision, directory: Directory, trusted_ids: frozenset[str]
) -> AgentCheck:
    agent = directory.agent_for(message.sender.email if message.sender else None)
    if agent is None:
        return AgentCheck(None, False, "the sender is not an agent")
    if not thread.authenticated_token or thread.token_holder not in agent.addresses:
        return AgentCheck(
            agent, False, "the mail did not go to a reply address issued to you for this ticket"
        )
    verified, why = sender_verified(message, trusted_ids)
    if not verified:
        return AgentCheck(agent, False, why)
    return AgentCheck(agent, True, f"reply address issued to {thread.token_holder}; {why}")
