"""Who is the requester of a new ticket, and why? (issue 15)

The requester is who gets the acknowledgement and the agents' answers. It
is usually the From address, but not always: a website's contact form
sends ``From: Website <noreply@www.example.org>`` with the visitor in
``Reply-To``; a mailing list that rewrites From for DMARC ("Jan via
IT-users <it-users@lists.example>") keeps the person in
``X-Original-From`` or ``Reply-To``; an agent forwards a user's mail; a
secretary sends on behalf of someone (``Sender`` differs from ``From``).

Sources are tried in an order the rules file can change (``requester:``
in a rule or in ``defaults:``); the first that names a usable person wins,
and ``from`` is always the last resort. Each source records why it took or
passed, so ``mailgate rules test`` and the ticket's events explain it.

What this never does: a ``Reply-To`` or a forward is never a credential.
This runs only for a *new* ticket; threading and agent commands look at
the From address and the signed reply address alone (threading/resolve.py,
agents/auth.py), and every reply address is bound to the requester chosen
here. A forward names the requester only when an authenticated agent sent
it (tickets/forwarder.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import getaddresses

from mailgate.content.forward import Forwarded
from mailgate.message import Address, ParsedMessage
from mailgate.rules.actions import DEFAULT_REQUESTER_ORDER, REQUESTER_SOURCES
from mailgate.tickets.forwarder import ForwarderCheck

SOURCES = REQUESTER_SOURCES
DEFAULT_ORDER = DEFAULT_REQUESTER_ORDER

# Local parts nobody reads answers to: the guard's noreply and daemon names
# (guard/rules.py) and the null sender.
_NOREPLY = re.compile(
    r"(no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply|^mailer[-_]?daemon$|^post[-_]?master$"
    r"|^bounces?$|^nobody$)"
)
# Role and system mailboxes: a person may read them, but they do not name one
# (RFC 2142's role names, and what web servers and forms send from).
_ROLE = re.compile(
    r"^(info|contact|contactform|office|admin|administrator|webmaster|hostmaster|www|www-data"
    r"|wordpress|website|web|webform|forms?|mailer|notifications?|notify|alerts?|system|root"
    r"|apache|nginx|daemon|service|services|sales|marketing|newsletter|hello|team|support"
    r"|helpdesk|servicedesk|it|noc|abuse|security|monitoring|nagios|zabbix|jira|jenkins|cron)$"
)


@dataclass(frozen=True)
class Policy:
    """The order to try, and who chose it (for the explanation)."""

    order: tuple[str, ...] = DEFAULT_ORDER
    chosen_by: str = "the defaults"
    # An order the admin wrote: ``reply_to`` then counts whenever Reply-To
    # names one person, not only when From is a noreply or role address.
    explicit: bool = False


@dataclass(frozen=True)
class RequesterChoice:
    """The requester of a new ticket, where it came from, and every reason."""

    address: Address | None
    source: str  # one of SOURCES
    reasons: tuple[str, ...]
    # Why nobody can be mailed at this address ("noreply address"), or None.
    unmailable: str | None = None
    # The forward that named the requester, and the agent who sent it.
    forward: Forwarded | None = None
    forwarded_by: str | None = None

    @property
    def email(self) -> str:
        return self.address.email if self.address is not None else ""

    def summary(self) -> str:
        who = self.email or "(nobody)"
        flag = f"; CANNOT BE MAILED: {self.unmailable}" if self.unmailable else ""
        return f"{who} (from {self.source}){flag}"

    def as_dict(self) -> dict[str, object]:
        return {
            "address": self.email or None,
            "name": self.address.name if self.address is not None else "",
            "source": self.source,
            "reasons": list(self.reasons),
            "unmailable": self.unmailable,
            "forwarded_by": self.forwarded_by,
        }


def unmailable_reason(address: str, is_ours: Callable[[str], bool]) -> str | None:
    """Why no mail to ``address`` would reach a person, or None."""
    if not address or "@" not in address:
        return "no address to answer"
    local = address.rpartition("@")[0].lower()
    if _NOREPLY.search(local):
        return f"{address} is a noreply or system address"
    if is_ours(address):
        return f"{address} is one of our own addresses"
    return None


def is_role(address: str) -> bool:
    local = address.rpartition("@")[0].lower().split("+", 1)[0]
    return bool(_ROLE.match(local))


def choose(
    message: ParsedMessage,
    policy: Policy,
    *,
    forward: Forwarded | None,
    forwarder: ForwarderCheck | None,
    is_ours: Callable[[str], bool],
) -> RequesterChoice:
    """Try each source of ``policy.order``, then From; the first usable person wins."""
    order = (*policy.order, "from") if "from" not in policy.order else policy.order
    reasons: list[str] = [f"order: {', '.join(order)} ({policy.chosen_by})"]
    sender = message.sender
    email = sender.email if sender is not None else ""
    why_not = unmailable_reason(email, is_ours)
    for source in order:
        if source == "from":
            if why_not is None:
                return _from_from(message, email, reasons)
            reasons.append(f"From {email or '(none)'} not used: {why_not}")
            continue
        found = _SOURCE[source](message, policy, forward, forwarder, is_ours, reasons)
        if found is not None:
            return RequesterChoice(
                found,
                source,
                tuple(reasons),
                None,
                forward if source == "forward" else None,
                forwarder.agent if source == "forward" and forwarder is not None else None,
            )
    # Nobody can be mailed: the ticket still opens, under From, and is flagged.
    reasons.append(
        f"no source names a person who can be mailed; the requester stays From {email or '(none)'}"
    )
    return RequesterChoice(sender, "from", tuple(reasons), why_not)


def _from_from(message: ParsedMessage, email: str, reasons: list[str]) -> RequesterChoice:
    on_behalf = _other_sender(message)
    if on_behalf is not None:
        reasons.append(
            f"Sender {on_behalf} sent it on behalf of From {email} (a rule with `requester: sender` "
            "would answer the Sender)"
        )
    reasons.append(f"From {email}")
    return RequesterChoice(message.sender, "from", tuple(reasons))


Source = Callable[
    [ParsedMessage, Policy, "Forwarded | None", "ForwarderCheck | None", Callable[[str], bool], list[str]],
    "Address | None",
]


def _usable(address: Address, is_ours: Callable[[str], bool], *, person: bool = True) -> str | None:
    """Why ``address`` cannot be the requester, or None."""
    why = unmailable_reason(address.email, is_ours)
    if why is None and person and is_role(address.email):
        why = f"{address.email} is a role address, not a person"
    return why


def _from_forward(
    message: ParsedMessage,
    policy: Policy,
    forward: Forwarded | None,
    forwarder: ForwarderCheck | None,
    is_ours: Callable[[str], bool],
    reasons: list[str],
) -> Address | None:
    if forward is None:
        return None
    original = forward.sender
    if forwarder is None or not forwarder.authenticated:
        why = forwarder.reason if forwarder is not None else "the forwarder is not known"
        reasons.append(
            f"forward ({forward.style}) of {original.email if original else 'an unknown sender'} "
            f"not followed: {why}; no one can open a ticket in someone else's name"
        )
        return None
    if original is None:
        reasons.append(f"forward ({forward.style}) names no original sender address")
        return None
    why_not = _usable(original, is_ours, person=False)
    if why_not is not None:
        reasons.append(f"forward ({forward.style}) of {original.email} not followed: {why_not}")
        return None
    reasons.append(
        f"forwarded ({forward.style}) by agent {forwarder.agent} ({forwarder.reason}); "
        f"the original is from {original.email}"
    )
    return original


def list_address(message: ParsedMessage) -> str:
    """The list's posting address from ``List-Post: <mailto:…>`` (RFC 2369), or ""."""
    post = message.header("List-Post") or ""
    found = re.search(r"mailto:([^>?\s]+)", post, re.IGNORECASE)
    return found.group(1).lower() if found else ""


def _from_list(
    message: ParsedMessage,
    policy: Policy,
    forward: Forwarded | None,
    forwarder: ForwarderCheck | None,
    is_ours: Callable[[str], bool],
    reasons: list[str],
) -> Address | None:
    if message.header("List-Id") is None and message.header("List-Post") is None:
        return None
    sender = message.sender
    posting = list_address(message)
    munged = sender is not None and (
        (posting and sender.email == posting) or " via " in f" {sender.name.lower()} "
    )
    original = [message.header("X-Original-From"), message.header("X-Original-Sender")]
    if not munged and not any(original):
        reasons.append("list mail, but From is not rewritten: the poster is From")
        return None
    # X-Original-From (Mailman, Google Groups) names the poster; a munging
    # list also puts them in Reply-To, or in Cc when replies go to the list.
    candidates: list[tuple[str, Address]] = [
        (name, Address(email.lower(), display))
        for name, value in (("X-Original-From", original[0]), ("X-Original-Sender", original[1]))
        if value
        for display, email in getaddresses([value])
        if email
    ]
    candidates += [("Reply-To", a) for a in message.reply_to]
    candidates += [("Cc", a) for a in message.cc]
    for name, address in candidates:
        if address.email in (posting, sender.email if sender else ""):
            continue
        if _usable(address, is_ours) is None:
            reasons.append(
                f"list mail with From rewritten to {sender.email if sender else '(none)'} (DMARC): "
                f"the poster is {name} {address.email}"
            )
            return address
    reasons.append("list mail with From rewritten, but no header names the poster")
    return None


def _from_reply_to(
    message: ParsedMessage,
    policy: Policy,
    forward: Forwarded | None,
    forwarder: ForwarderCheck | None,
    is_ours: Callable[[str], bool],
    reasons: list[str],
) -> Address | None:
    if not message.reply_to:
        return None
    sender = message.sender
    email = sender.email if sender is not None else ""
    if not policy.explicit:
        from_why = unmailable_reason(email, is_ours) or (
            f"{email} is a role address" if is_role(email) else None
        )
        if from_why is None:
            reasons.append(
                f"Reply-To {', '.join(a.email for a in message.reply_to)} not used: From {email} is a "
                "person (a rule with `requester: reply_to` would use it)"
            )
            return None
    else:
        from_why = f"{policy.chosen_by} says Reply-To first"
    if len(message.reply_to) != 1:
        reasons.append(f"Reply-To names {len(message.reply_to)} addresses, not one person")
        return None
    candidate = message.reply_to[0]
    if candidate.email == email:
        return None
    why_not = _usable(candidate, is_ours)
    if why_not is not None:
        reasons.append(f"Reply-To not used: {why_not}")
        return None
    reasons.append(f"Reply-To {candidate.email} names one person ({from_why})")
    return candidate


def _other_sender(message: ParsedMessage) -> str | None:
    """The Sender header's address when it differs from From (RFC 5322 §3.6.2)."""
    value = message.header("Sender")
    pairs = getaddresses([value]) if value else []
    if not pairs or not pairs[0][1]:
        return None
    email = pairs[0][1].lower()
    return None if message.sender is not None and email == message.sender.email else email


def _from_sender(
    message: ParsedMessage,
    policy: Policy,
    forward: Forwarded | None,
    forwarder: ForwarderCheck | None,
    is_ours: Callable[[str], bool],
    reasons: list[str],
) -> Address | None:
    email = _other_sender(message)
    if email is None:
        return None
    candidate = Address(email)
    why_not = _usable(candidate, is_ours, person=False)
    if why_not is not None:
        reasons.append(f"Sender not used: {why_not}")
        return None
    reasons.append(f"Sender {candidate.email} sent it on behalf of From ({policy.chosen_by} says Sender)")
    return candidate


_SOURCE: dict[str, Source] = {
    "forward": _from_forward,
    "list": _from_list,
    "reply_to": _from_reply_to,
    "sender": _from_sender,
}
