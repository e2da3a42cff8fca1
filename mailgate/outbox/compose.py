"""Build outgoing mail: headers in code, bodies from templates.

``email.policy.SMTP`` refuses CR/LF inside header values, and names and
subjects are folded to one line before they get there, so no data from a
requester can add a header.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from datetime import UTC, datetime

from mailgate.message import Address

LOOP_HEADER = "X-Mailgate-Loop"


@dataclass(frozen=True)
class OutgoingMail:
    kind: str  # ack, relay, status, ...
    message_id: str
    from_name: str
    from_address: str
    to: tuple[Address, ...]
    subject: str
    text: str
    html: str | None = None
    cc: tuple[Address, ...] = ()
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # RFC 3834 §5: "auto-replied" for answers to a message, "auto-generated"
    # for mail we start ourselves; None for a human's relayed words.
    auto_submitted: str | None = "auto-replied"
    language: str = "en"


def one_line(value: str) -> str:
    return " ".join(value.split())


def new_message_id(domain: str, ticket_id: int | None = None) -> str:
    stamp = f"t{ticket_id}." if ticket_id is not None else ""
    return f"<mg.{stamp}{secrets.token_hex(10)}@{domain}>"


def _header_address(address: Address) -> HeaderAddress | str:
    try:
        return HeaderAddress(display_name=one_line(address.name), addr_spec=address.email)
    except (ValueError, IndexError):
        # An address the header registry cannot represent is sent bare.
        return address.email


def compose(mail: OutgoingMail, *, loop_value: str, now: datetime | None = None) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = HeaderAddress(display_name=one_line(mail.from_name), addr_spec=mail.from_address)
    message["To"] = [_header_address(a) for a in mail.to]
    if mail.cc:
        message["Cc"] = [_header_address(a) for a in mail.cc]
    message["Subject"] = one_line(mail.subject)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = mail.message_id
    if mail.reply_to:
        message["Reply-To"] = mail.reply_to
    if mail.in_reply_to:
        message["In-Reply-To"] = mail.in_reply_to
    references = [*mail.references]
    if mail.in_reply_to and mail.in_reply_to not in references:
        references.append(mail.in_reply_to)
    if references:
        # Keep the header a sane size on long threads: first + last ten.
        kept = references[:1] + references[-10:] if len(references) > 11 else references
        message["References"] = " ".join(kept)
    if mail.auto_submitted:
        message["Auto-Submitted"] = mail.auto_submitted
        # Asks Exchange/Outlook not to send out-of-office replies to us.
        message["X-Auto-Response-Suppress"] = "All"
    message[LOOP_HEADER] = loop_value
    message["Content-Language"] = mail.language
    message.set_content(mail.text, cte="quoted-printable")
    if mail.html:
        message.add_alternative(mail.html, subtype="html", cte="quoted-printable")
    return message.as_bytes()
