"""The ``kb`` command address: an agent mails search words, gets the best articles privately.

``helpdesk+kb@example.com`` (``kb.address``) is ours but never opens a
ticket. Searches are answered only for an authenticated agent, judged as
for ``#commands`` in replies (SPEC §1, agent journey 3): the From address is
a known agent's, the mail went to an address signed for that agent, and a
trusted ``Authentication-Results`` header (when configured) shows DKIM or
DMARC passing. The signed address, ``helpdesk+kb-<mac>@example.com``, is
the Reply-To of every answer, so an agent replies to search again; the
first time, a mail to the plain address gets a short refusal with the
agent's own signed address, sent to the agent's directory address (never to
a Reply-To), so nobody but the agent learns it. Mail from anyone who is not
an agent is quarantined unanswered, machine mail is dropped unanswered: a
stranger learns nothing and no loop can start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, select

from mailgate.agents.auth import sender_verified
from mailgate.agents.commands import split_commands
from mailgate.agents.directory import Agent
from mailgate.config import Config
from mailgate.guard import GuardVerdict
from mailgate.kb.model import LANGUAGES
from mailgate.message import Address, Envelope, ParsedMessage
from mailgate.outbox.compose import OutgoingMail
from mailgate.service.runtime import Runtime
from mailgate.store.models import Outbox
from mailgate.threading.subject import ticket_subject
from mailgate.threading.tokens import ReplyKeys
from mailgate.tickets.notify import automatic_mail_permission, queue_without_ticket

log = structlog.get_logger(__name__)

_MAC_BYTES = 10
_MAC = re.compile(r"^[a-z2-7]{16}$")
# Words of a query from a body: the first line that says something, this long at most.
_MAX_QUERY = 200
MAX_MATCHES = 5


def base_address(config: Config) -> str | None:
    """The configured ``kb.address``, else the helpdesk's ``+kb`` address; None without a kb."""
    if config.kb is None:
        return None
    if config.kb.address:
        return config.kb.address.strip().lower()
    local, _, domain = config.helpdesk.address.rpartition("@")
    return f"{local}+kb@{domain}"


def _separator(local: str) -> str:
    # helpdesk+kb -> helpdesk+kb-<mac>; kb -> kb+<mac>.
    return "-" if "+" in local else "+"


def _mac(key: bytes, agent_address: str) -> str:
    digest = hmac.new(key, f"kb:{agent_address.strip().lower()}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:_MAC_BYTES]).decode("ascii").lower()


def signed_address(config: Config, keys: ReplyKeys, agent_address: str) -> str:
    """The kb address that authenticates ``agent_address`` (and nobody else)."""
    base = base_address(config)
    assert base is not None
    local, _, domain = base.rpartition("@")
    return f"{local}{_separator(local)}{_mac(keys.signing, agent_address)}@{domain}"


@dataclass(frozen=True)
class KbMail:
    """A mail to the kb address: the address it came to and the MAC it carried, if any."""

    address: str
    mac: str | None


def kb_mail(runtime: Runtime, message: ParsedMessage, envelope: Envelope) -> KbMail | None:
    """The kb address this mail came to, when it came to that and to nothing else of ours."""
    base = base_address(runtime.config)
    if base is None:
        return None
    local, _, domain = base.rpartition("@")
    prefix = local + _separator(local)
    delivered = [a.lower().strip("<>") for a in envelope.rcpt_tos]
    candidates = delivered or [a.email.lower() for a in (*message.to, *message.cc) if a.email]
    found: KbMail | None = None
    others = False
    for address in candidates:
        a_local, _, a_domain = address.rpartition("@")
        if a_domain == domain and a_local == local:
            found = found or KbMail(address, None)
        elif a_domain == domain and a_local.startswith(prefix) and _MAC.match(a_local[len(prefix) :]):
            found = KbMail(address, a_local[len(prefix) :])
        elif delivered or runtime.is_our_address(address):
            others = True
    # Also sent to the helpdesk itself: a request like any other, the kb address a bystander.
    return None if others else found


def _signed_for(keys: ReplyKeys, mac: str | None, agent: Agent) -> bool:
    if mac is None:
        return False
    return any(hmac.compare_digest(_mac(key, a), mac) for key in keys.keys for a in agent.addresses)


def queries(message: ParsedMessage, prefix: str) -> tuple[list[str], list[str]]:
    """The searches asked for and the problems: ``#kb search WORDS`` lines, else the words themselves.

    The body comes first (``#kb search`` lines at its top, else its first
    line); a subject holding ``#kb search WORDS`` or plain words is used
    when the body says nothing.
    """
    commands = split_commands(message.new_text)
    found: list[str] = []
    problems: list[str] = []
    for command in commands.commands:
        verb, _, rest = command.value.partition(" ")
        if command.name == "kb" and verb.lower() == "search" and rest.strip():
            found.append(rest.strip())
        elif command.name == "kb" and verb.lower() == "search":
            problems.append(f"{command.line}: #kb search needs words, e.g. #kb search vpn 809")
        else:
            problems.append(
                f"{command.line}: only #kb search WORDS (or just the words) works at this address; "
                "other commands go in a reply to a ticket"
            )
    if found or problems:
        return found, problems
    first = next((line.strip() for line in commands.text.splitlines() if line.strip()), "")
    if not first and message.subject:
        subject = ticket_subject(message.subject, prefix).strip()
        first = "" if subject == "(no subject)" else subject
    first = re.sub(r"^#kb\s+search\b", "", first, flags=re.IGNORECASE).strip()
    if not first:
        return [], ["the mail holds no words to search for; write e.g. vpn 809"]
    return [first[:_MAX_QUERY]], []


def search(runtime: Runtime, query: str, language: str) -> list[dict[str, Any]]:
    """Best matches in any language (an agent may search Dutch words from an English desk).

    Each article keeps its best score over the languages; titles are in the agent's language.
    """
    best: dict[str, tuple[float, Any]] = {}
    index = runtime.kb.index
    for lang in dict.fromkeys((language, *LANGUAGES)):
        for match in index.search(query, lang, limit=MAX_MATCHES):
            if match.article.id not in best or match.score > best[match.article.id][0]:
                best[match.article.id] = (match.score, match.article)
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:MAX_MATCHES]
    return [
        {"id": article_id, "title": article.title(language), "score": round(score, 1)}
        for article_id, (score, article) in ranked
    ]


def _answer_id(config: Config, dedupe_key: str, agent: Agent) -> str:
    """The answer's Message-ID, derived from the request: a redelivered request finds it sent."""
    digest = hashlib.sha256(f"kb-answer:{dedupe_key}:{agent.address}".encode()).hexdigest()[:32]
    return f"<kb.{digest}@{config.helpdesk.domain}>"


def _send(
    conn: Connection,
    runtime: Runtime,
    agent: Agent,
    template: str,
    context: dict[str, Any],
    message: ParsedMessage,
    message_id: str,
    now: datetime,
    *,
    automatic: bool,
) -> str:
    """One private mail to the agent's directory address: "sent", "already sent" or "withheld"."""
    if conn.execute(select(Outbox.id).where(Outbox.message_id == message_id).limit(1)).first():
        return "already sent"
    helpdesk = runtime.config.helpdesk
    signed = signed_address(runtime.config, runtime.keys, agent.address)
    rendered = runtime.templates.render(
        template,
        {"helpdesk": {"name": helpdesk.name, "address": helpdesk.address}, "kb_address": signed, **context},
        language=agent.language,
        queue=None,
    )
    mail = OutgoingMail(
        kind=template,
        message_id=message_id,
        from_name=helpdesk.name,
        from_address=helpdesk.address,
        to=(Address(agent.address, agent.name),),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        reply_to=signed,
        in_reply_to=message.message_id,
        references=(*message.references, *((message.message_id,) if message.message_id else ())),
        language=rendered.language,
    )
    queued = queue_without_ticket(conn, runtime, mail, [agent.address], automatic=automatic, now=now)
    return "sent" if queued else "withheld"


def answer(
    conn: Connection,
    runtime: Runtime,
    found: KbMail,
    message: ParsedMessage,
    verdict: GuardVerdict,
    dedupe_key: str,
    now: datetime,
) -> tuple[str, str]:
    """Search for an authenticated agent, or refuse; returns (inbound state, reason)."""
    sender = message.sender.email if message.sender else ""
    if not verdict.may_auto_reply:
        # An out-of-office answering our results, a bounce, our own mail: never answered.
        return "dropped", f"{verdict.kind} mail to the kb address {found.address}: not answered"
    agent = runtime.directory.agent_for(sender)
    if agent is None:
        who = sender or "nobody"
        return "quarantined", f"mail to the kb address {found.address} from {who}, not an agent"
    message_id = _answer_id(runtime.config, dedupe_key, agent)
    problems: list[str] = []
    if not _signed_for(runtime.keys, found.mac, agent):
        problems.append(
            "Searches are answered only at your own kb address (below): "
            + ("this one was not issued to you." if found.mac else "the plain address cannot tell it is you.")
        )
    else:
        verified, why = sender_verified(message, runtime.trusted_authserv_ids)
        if not verified:
            problems.append(f"You could not be authenticated: {why}.")
    words, query_problems = queries(message, runtime.config.helpdesk.ref_prefix)
    if problems:
        # Only to the directory address, rate-limited: a forged From gets its victim one short note.
        permission = automatic_mail_permission(conn, runtime, verdict, Address(agent.address), now)
        if permission.refused is not None:
            why = f"no notice: {permission.refused}"
            return "quarantined", f"kb address: {agent.key} not authenticated; {why}"
        notice = {"problems": problems, "original_subject": message.subject or ""}
        template = "kb_address_refused"
        sent = _send(conn, runtime, agent, template, notice, message, message_id, now, automatic=True)
        log.info("kb.address_refused", agent=agent.key, reason=problems[0])
        return "quarantined", f"kb address: {agent.key} not authenticated ({problems[0]}); notice {sent}"
    found_ids: dict[str, list[str]] = {}
    results: list[dict[str, Any]] = []
    for query in words:
        matches = search(runtime, query, agent.language)
        found_ids[query] = [m["id"] for m in matches]
        results.append({"query": query, "matches": matches})
    context: dict[str, Any] = {"searches": results, "problems": query_problems, "language": agent.language}
    sent = _send(conn, runtime, agent, "kb_address", context, message, message_id, now, automatic=False)
    summary = "; ".join(f"{q!r}: {', '.join(ids) or 'nothing'}" for q, ids in found_ids.items())
    log.info("kb.address_search", agent=agent.key, searches=summary or None, problems=query_problems or None)
    return "done", f"kb search by {agent.key}, answer {sent}: {summary or '; '.join(query_problems)}"
