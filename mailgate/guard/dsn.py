"""Delivery reports: which recipients failed, how badly, for which message.

RFC 3464 gives bounces a machine-readable ``message/delivery-status`` part
with one block of fields per recipient. Many servers still send free text
(qmail, old Exim and Postfix, Exchange "Undeliverable", webmail providers),
so when there is no such part the explanation text is read best-effort by
:mod:`mailgate.guard.bounce_text`.

A recipient is a *hard* bounce when the status is a permanent 5.x.x failure
(RFC 3463 §3.1), except 5.2.2 "mailbox full": full mailboxes empty again,
and some servers report them as permanent while they are not.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import HeaderParser

from mailgate.guard import bounce_text

__all__ = ["DeliveryReport", "DsnRecipient", "is_hard", "parse_dsn"]


@dataclass(frozen=True)
class DsnRecipient:
    """One recipient a delivery report speaks about."""

    address: str  # lower-cased
    action: str  # RFC 3464 §2.3.3: failed, delayed, delivered, relayed, expanded
    status: str  # RFC 3463 enhanced code "5.1.1", or "" when unknown
    diagnostic: str  # the remote server's words, whitespace collapsed
    hard: bool  # a permanent failure: do not mail this address again


@dataclass(frozen=True)
class DeliveryReport:
    """What a bounce tells us about a message we sent."""

    recipients: tuple[DsnRecipient, ...]
    original_message_id: str | None  # "<id@host>", as ParsedMessage.message_id


# Status codes "class.subject.detail" (RFC 3463 §2); the look-arounds keep
# the tail of an IP address or a version number from matching.
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPORT_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers")
_ORIGINAL_HEADERS_TYPES = ("text/rfc822-headers", "message/global-headers")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")


def is_hard(status: str, action: str = "failed") -> bool:
    """True for a permanent failure that should stop further mail."""
    if action.lower() not in ("failed", ""):
        return False
    # RFC 3463 §3.3: 5.2.2 is "mailbox full", which is usually temporary.
    return status.startswith("5.") and status != "5.2.2"


def parse_dsn(raw: bytes) -> DeliveryReport | None:
    """Read a bounce; None when ``raw`` reports no recipients at all."""
    message = email.message_from_bytes(raw, policy=policy.compat32)
    recipients = tuple(_standard_recipients(message))
    original_id = _attached_message_id(message)
    if not recipients:
        explanation = "\n".join(_explanation_texts(message))
        if original_id is None:
            original_id = bounce_text.inline_message_id(explanation)
        recipients = tuple(_text_recipients(message, explanation))
    if not recipients:
        return None
    return DeliveryReport(recipients=recipients, original_message_id=original_id)


def _parts(message: Message) -> Iterator[Message]:
    """Every part of the bounce itself, not descending into attached mail."""
    yield message
    if message.get_content_type() in _ORIGINAL_TYPES:
        return
    payload = message.get_payload()
    if message.is_multipart() and isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from _parts(part)


def _text_of(part: Message) -> str:
    """The decoded text of a leaf part; never raises on bad charsets."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        # An unknown charset name ("iso-gb2312" …) must not lose the text.
        return payload.decode("latin-1")


def _field_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The blank-line separated field groups of a delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        # The stdlib parser already split message/delivery-status into one
        # pseudo-message per group (RFC 3464 §2.1).
        blocks = [part for part in payload if isinstance(part, Message)]
        return [[(k, str(v)) for k, v in block.items()] for block in blocks]
    return field_blocks_from_text(_text_of(part))


def field_blocks_from_text(text: str) -> list[list[tuple[str, str]]]:
    """Split RFC 822 style "Name: value" groups separated by blank lines."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
        elif line[0] in " \t" and current:
            name, value = current[-1]
            current[-1] = (name, f"{value} {line.strip()}")
        elif match := _FIELD.match(line):
            current.append((match.group(1), match.group(2).strip()))
    if current:
        blocks.append(current)
    return blocks


def _standard_recipients(message: Message) -> Iterator[DsnRecipient]:
    """Recipients from RFC 3464 per-recipient field groups."""
    seen: set[str] = set()
    for part in _parts(message):
        content_type = part.get_content_type()
        if content_type in _REPORT_TYPES:
            blocks = _field_blocks(part)
        elif content_type == "text/plain" and "final-recipient:" in _text_of(part).lower():
            # A few servers send the status fields as text/plain.
            blocks = field_blocks_from_text(_text_of(part))
        else:
            continue
        for block in blocks:
            recipient = _recipient_from_fields(block)
            if recipient and recipient.address not in seen:
                seen.add(recipient.address)
                yield recipient


def _recipient_from_fields(block: list[tuple[str, str]]) -> DsnRecipient | None:
    """One per-recipient group (RFC 3464 §2.3) as a DsnRecipient."""
    fields: dict[str, str] = {}
    for name, value in block:
        fields.setdefault(name.lower(), value)
    typed = fields.get("final-recipient") or fields.get("original-recipient")
    if not typed:
        return None
    # "rfc822; user@example.com": the address type comes first (§2.3.2).
    address = typed.split(";", 1)[-1].strip().strip("<>").strip().lower()
    if "@" not in address:
        return None
    action = fields.get("action", "").split()[0].lower() if fields.get("action") else ""
    diagnostic = " ".join(fields.get("diagnostic-code", "").split())
    if ";" in diagnostic[:12]:
        # "smtp; 550 5.1.1 …": drop the diagnostic type (§2.3.6).
        diagnostic = diagnostic.split(";", 1)[1].strip()
    status = _best_status(fields.get("status", ""), diagnostic, action)
    return DsnRecipient(address, action, status, diagnostic, is_hard(status, action))


def _best_status(status_field: str, diagnostic: str, action: str) -> str:
    """The Status field, refined by the diagnostic when it only says X.0.0."""
    match = ENHANCED_STATUS.search(status_field)
    status = ".".join(match.groups()) if match else ""
    from_diagnostic = ENHANCED_STATUS.search(diagnostic)
    if from_diagnostic:
        detailed = ".".join(from_diagnostic.groups())
        # Many MTAs put 5.0.0 in Status and the real reason in the text.
        if not status or (status.endswith(".0.0") and detailed[0] == status[0]):
            status = detailed
    if not status:
        status = bounce_text.status_from_reply_code(diagnostic)
    if not status and action == "failed":
        status = "5.0.0"
    elif not status and action == "delayed":
        status = "4.0.0"
    return bounce_text.refine_mailbox_full(status, diagnostic)


def _attached_message_id(message: Message) -> str | None:
    """The Message-ID of the returned original (RFC 3462 third part)."""
    for part in _parts(message):
        content_type = part.get_content_type()
        if content_type not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            headers: Message = payload[0]
        elif content_type in _ORIGINAL_HEADERS_TYPES or isinstance(payload, str):
            headers = HeaderParser(policy=policy.compat32).parsestr(_text_of(part))
        else:
            continue
        found = bounce_text.clean_message_id(headers.get("Message-ID"))
        if found:
            return found
    return None


def _explanation_texts(message: Message) -> Iterator[str]:
    """The human-readable text parts of the bounce, not the returned mail."""
    for part in _parts(message):
        if part.get_content_maintype() == "text" and not part.is_multipart():
            if part.get_content_type() in _ORIGINAL_HEADERS_TYPES:
                continue
            text = _text_of(part)
            if part.get_content_subtype() == "html":
                text = bounce_text.html_to_text(text)
            yield text


def _text_recipients(message: Message, explanation: str) -> Iterator[DsnRecipient]:
    """Best-effort recipients of a free-text bounce."""
    ignore = {
        address.lower()
        for name in ("From", "To", "Sender", "Return-Path")
        for address in bounce_text.addresses_in(str(message.get(name, "")))
    }
    failed_header = ", ".join(str(v) for v in message.get_all("X-Failed-Recipients", []))
    for found in bounce_text.failed_recipients(explanation, failed_header, ignore):
        action = "delayed" if found.status.startswith("4.") else "failed"
        yield DsnRecipient(
            found.address, action, found.status, found.diagnostic, is_hard(found.status, action)
        )
