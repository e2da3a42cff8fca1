"""The guard's rules: one small predicate per sign of machine-made mail.

Each rule looks at one thing and returns a human-readable reason when it
fires, or None. The reasons end up in the verdict, so the logs and
``mailgate rules test`` can say *why* no acknowledgement went out. Rules are
grouped by the kind of mail they reveal; :func:`mailgate.guard.check` runs
them all and picks the most specific kind.

The subject rules live in :mod:`mailgate.guard.subjects`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr
from functools import cached_property
from typing import TYPE_CHECKING

from mailgate.message import Envelope, ParsedMessage

if TYPE_CHECKING:
    from mailgate.guard import OwnIdentity

# Local parts that only machines send from. RFC 2142 §4 reserves postmaster;
# "mailer-daemon" is the traditional bounce sender of sendmail and friends.
# Verizon's gateways write "post_master".
_DAEMON_LOCAL = re.compile(r"^(mailer[-_]?daemon|mail[-_]?daemon|post[-_]?master|mdaemon)$")
_NOREPLY_LOCAL = re.compile(r"(no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply)")

# Domains of challenge-response anti-spam services: their mail asks us to
# "confirm you are human" and answering it would confirm every spammer too.
_CHALLENGE_DOMAINS = ("boxbe.com", "spamarrest.com", "mailblocks.com", "sendio.com")


@dataclass(frozen=True)
class Clues:
    """What every rule may look at, computed once per message."""

    message: ParsedMessage
    envelope: Envelope
    own: OwnIdentity
    sender: str  # lower-cased From address, "" when missing
    content_type: str  # lower-cased "maintype/subtype"
    report_type: str  # lower-cased report-type parameter, "" when absent

    @cached_property
    def own_text(self) -> str:
        """The start of the body down to the first quoted history, lower-cased.

        The body rules (:mod:`mailgate.guard.notices`) read only this. It is
        not the parse stage's ``new_text``: that trimmer takes a block of
        "To:"/"Subject:" lines for a quote header, and challenge mail quotes
        the challenged message's headers just so. Here only ">" lines and
        the separators that mail clients write above a quoted or forwarded
        mail ("-----Original Message-----", "From: …") end the text.
        """
        return text_before_history(self.message.text[:4096]).lower()

    @cached_property
    def text_head(self) -> str:
        """The first few kilobytes of the body, lower-cased: the body rules' cheap keyword test."""
        return self.message.text[:4096].lower()


def gather_clues(message: ParsedMessage, envelope: Envelope, own: OwnIdentity) -> Clues:
    """Read the values several rules share, once."""
    sender = message.sender.email.lower() if message.sender else ""
    # A throwaway stdlib Message parses the Content-Type parameters exactly as
    # the MIME rules want (quoting, comments, case), without the whole mail.
    holder = Message()
    raw_type = message.header("Content-Type")
    if raw_type:
        holder["Content-Type"] = raw_type
    report_type = holder.get_param("report-type", "")
    return Clues(
        message=message,
        envelope=envelope,
        own=own,
        sender=sender,
        content_type=holder.get_content_type().lower(),
        report_type=report_type.strip().lower() if isinstance(report_type, str) else "",
    )


# Where a client starts the quoted or forwarded mail: Outlook's "-----
# Original Message-----" (and its Dutch and German), forwarding markers, and
# a "From:" header line as Outlook and Notes write above the quoted mail.
_HISTORY = re.compile(
    r"^[ \t]*(-{2,}[ \t]*(original message|oorspronkelijk bericht|urspr\u00fcngliche nachricht"
    r"|forwarded message|doorgestuurd bericht|weitergeleitete nachricht)"
    r"|(from|van|von|de)[ \t]*:[ \t]*\S)",
    re.IGNORECASE | re.MULTILINE,
)


def text_before_history(text: str) -> str:
    """``text`` without ">"-quoted lines and cut where quoted history starts."""
    found = _HISTORY.search(text)
    head = text[: found.start()] if found else text
    return "\n".join(line for line in head.splitlines() if not line.lstrip().startswith(">"))


def local_part(address: str) -> str:
    """The part of ``address`` before the last "@", lower-cased."""
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


def _header_is_set(clues: Clues, name: str) -> str | None:
    """The first value of ``name`` unless absent, empty or a plain "no"."""
    for value in clues.message.header_all(name):
        if value.strip().lower() not in ("", "no", "false", "0", "none"):
            return value.strip()
    return None


# -- bounces: RFC 3464 delivery status notifications and their imitators ----


def null_return_path(clues: Clues) -> str | None:
    """RFC 5321 §4.5.5 and RFC 3834 §3.3: notifications use MAIL FROM:<>.

    Only a null sender something recorded counts; an unknown one (IMAP mail
    without Return-Path) is no sign of a machine (issue 10).
    """
    if clues.envelope.null_sender:
        return "empty envelope sender MAIL FROM:<> (RFC 5321 §4.5.5): a notification"
    return None


def empty_from(clues: Clues) -> str | None:
    """Some gateways (McAfee) write "From: <>" on their bounces."""
    for value in clues.message.header_all("From"):
        if value.strip() in ("<>", "< >", ""):
            return f"From: {value.strip() or '(empty)'}: a null sender"
    return None


def daemon_sender(clues: Clues) -> str | None:
    """Bounces come from mailer-daemon or postmaster (RFC 2142 §4)."""
    # "From: MAILER-DAEMON (Mail Delivery System)" has no domain, so the
    # parse stage may find no sender address; read the header itself too.
    from_headers = [parseaddr(value)[1] for value in clues.message.header_all("From")]
    for address in (clues.sender, clues.envelope.mail_from, *from_headers):
        if address and _DAEMON_LOCAL.match(local_part(address)):
            return f"sender {address.lower()} is a mail system daemon"
    return None


def delivery_status_report(clues: Clues) -> str | None:
    """RFC 3464 §2: a DSN is multipart/report; report-type=delivery-status."""
    if clues.content_type != "multipart/report":
        return None
    if clues.report_type in ("delivery-status", ""):
        kind = clues.report_type or "no report-type"
        return f"Content-Type: multipart/report ({kind}): a delivery status notification"
    return None


def failed_recipients_header(clues: Clues) -> str | None:
    """Exim adds X-Failed-Recipients to every bounce it writes."""
    value = _header_is_set(clues, "X-Failed-Recipients")
    return f"X-Failed-Recipients: {value} (Exim bounce)" if value else None


# -- feedback loops: RFC 5965 abuse reports -----------------------------------


def feedback_report(clues: Clues) -> str | None:
    """RFC 5965 §2: an ARF report is multipart/report; report-type=feedback-report."""
    if clues.content_type == "multipart/report" and clues.report_type == "feedback-report":
        return "Content-Type: multipart/report; report-type=feedback-report (RFC 5965 ARF)"
    return None


def microsoft_complaint(clues: Clues) -> str | None:
    """Microsoft's JMRP complaints predate ARF: plain multipart/mixed from staff@hotmail.com."""
    if clues.sender == "staff@hotmail.com":
        return "sender staff@hotmail.com sends Microsoft JMRP complaints"
    if clues.message.subject.strip().lower().startswith("complaint about message from"):
        return "subject 'complaint about message from …' (Microsoft JMRP complaint)"
    return None


# -- auto-replies: RFC 3834 and the vendor headers that predate it ------------


def other_report(clues: Clues) -> str | None:
    """Read receipts (RFC 8098) and other reports are machine-made."""
    if clues.content_type != "multipart/report":
        return None
    if clues.report_type in ("delivery-status", "", "feedback-report"):
        return None
    if clues.report_type == "disposition-notification":
        return "Content-Type: multipart/report; report-type=disposition-notification (read receipt)"
    return f"Content-Type: multipart/report; report-type={clues.report_type}"


def auto_submitted(clues: Clues) -> str | None:
    """RFC 3834 §5: any Auto-Submitted value but "no" means an automaton."""
    for value in clues.message.header_all("Auto-Submitted"):
        keyword = value.split(";", 1)[0].strip().lower()
        if keyword and keyword != "no":
            return f"Auto-Submitted: {keyword} (RFC 3834)"
    return None


# Vendor headers that only automatic mail carries. Outlook and Exchange put
# X-Auto-Response-Suppress on their out-of-office and rule-generated mail
# (MS-OXCMAIL §2.2.3.2.14); X-MS-Exchange-Inbox-Rules-Loop is stamped by
# Exchange inbox rules; X-FC-MachineGenerated is FirstClass; the others are
# vacation programs and hosting control panels.
_AUTO_HEADERS = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Auto-Response-Suppress",
    "X-MS-Exchange-Inbox-Rules-Loop",
    "X-MS-Exchange-Generated-Message-Source",
    "X-Autogenerated",
    "X-AutoReply-From",
    "X-Mail-Autoreply",
    "X-FC-MachineGenerated",
    "X-Vacation",
)


def auto_reply_header(clues: Clues) -> str | None:
    """A vendor header that marks out-of-office and rule-generated mail."""
    for name in _AUTO_HEADERS:
        value = _header_is_set(clues, name)
        if value:
            return f"{name}: {value}"
    return None


def apple_vacation(clues: Clues) -> str | None:
    """iCloud Mail's vacation replies carry X-Apple-Action: VACATION and no RFC 3834 header.

    sisimai's RFC 3834 detector lists it beside Auto-Submitted.
    """
    for value in clues.message.header_all("X-Apple-Action"):
        if value.strip().lower() == "vacation":
            return "X-Apple-Action: VACATION (iCloud vacation reply)"
    return None


def precedence_auto_reply(clues: Clues) -> str | None:
    """RFC 3834 §3.1.8 (historic): Precedence: auto_reply marks a vacation reply."""
    values = clues.message.header_all("Precedence") + clues.message.header_all("X-Precedence")
    for value in values:
        if value.strip().lower() == "auto_reply":
            return "Precedence: auto_reply"
    return None


# -- lists and bulk mail ------------------------------------------------------


def list_headers(clues: Clues) -> str | None:
    """RFC 2369 and RFC 2919: List-* headers mark mailing-list traffic."""
    # X-ML-Name and X-MLServer are fml's, the Japanese list manager.
    names = ("List-Id", "List-Unsubscribe", "List-Post", "Mailing-List", "X-Mailing-List")
    for name in (*names, "X-ML-Name", "X-MLServer"):
        if clues.message.header(name) is not None:
            return f"{name} header: mailing-list mail (RFC 2369/2919)"
    return None


def precedence_list(clues: Clues) -> str | None:
    """Precedence: list is set by list managers."""
    for value in clues.message.header_all("Precedence"):
        if value.strip().lower() == "list":
            return "Precedence: list"
    return None


def precedence_bulk(clues: Clues) -> str | None:
    """Precedence: bulk/junk is set by bulk senders and vacation programs."""
    values = clues.message.header_all("Precedence") + clues.message.header_all("X-Precedence")
    for value in values:
        keyword = value.strip().lower()
        if keyword in ("bulk", "junk"):
            return f"Precedence: {keyword}"
    return None


def noreply_sender(clues: Clues) -> str | None:
    """An address named noreply/do-not-reply says nobody reads answers."""
    for address in (clues.sender, clues.envelope.mail_from):
        if address and _NOREPLY_LOCAL.search(local_part(address)):
            return f"sender {address} does not accept replies"
    return None


# -- our own mail coming back -------------------------------------------------


def without_detail(address: str) -> str:
    """``helpdesk+token@example.com`` -> ``helpdesk@example.com`` (RFC 5233)."""
    local, _, domain = address.lower().strip().strip("<>").rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def own_loop_header(clues: Clues) -> str | None:
    """Our own X-Mailgate-Loop header: this is mail we sent, come back."""
    ours = clues.own.loop_header_value.strip().lower()
    for value in clues.message.header_all("X-Mailgate-Loop"):
        if value.strip().lower() == ours:
            return f"X-Mailgate-Loop: {value.strip()} is ours"
    return None


# mailgate.outbox.compose.new_message_id makes "<mg.t<ticket>.<hex>@domain>".
OWN_MESSAGE_ID_PREFIX = "mg."


def own_message_id(clues: Clues) -> str | None:
    """A Message-ID of the shape we generate (``<mg.…@our domain>``) was made by us.

    The domain alone is not enough: an IT helpdesk's requesters are mostly
    colleagues whose own mail servers put the company domain in their
    Message-IDs, and they must get answers.
    """
    message_id = (clues.message.message_id or "").strip().strip("<>").lower()
    domain = clues.own.message_id_domain.strip().lower()
    local, _, id_domain = message_id.rpartition("@")
    if domain and id_domain == domain and local.startswith(OWN_MESSAGE_ID_PREFIX):
        return f"Message-ID <{message_id}> is one of ours"
    return None


def own_sender(clues: Clues) -> str | None:
    """Mail from one of our own addresses (reply tokens and VERP included)."""
    ours = clues.own.bare_addresses
    for address in (clues.sender, clues.envelope.mail_from):
        if address and "@" in address and without_detail(address) in ours:
            return f"sender {address} is one of our own addresses"
    return None


# -- challenge-response anti-spam systems -------------------------------------


def challenge_sender(clues: Clues) -> str | None:
    """Challenge services (Boxbe, SpamArrest …) ask us to prove we are human."""
    for address in (clues.sender, clues.envelope.mail_from or ""):
        domain = address.rpartition("@")[2].lower()
        if any(domain == d or domain.endswith("." + d) for d in _CHALLENGE_DOMAINS):
            return f"sender {address} is a challenge-response service"
    # Bluebottle sends its challenges from the protected user's own address,
    # which is also a person's address, so only its request header counts.
    for name, _ in clues.message.headers:
        if name.lower().startswith(("x-boxbe", "x-spamarrest", "x-bluebottle-request")):
            return f"{name} header: challenge-response service"
    # TMDA, the classic self-hosted challenge system, names itself here.
    agent = clues.message.header("X-Delivery-Agent") or ""
    if "tmda" in agent.lower():
        return f"X-Delivery-Agent: {agent} (TMDA challenge)"
    return None


HeaderRule = Callable[[Clues], "str | None"]
