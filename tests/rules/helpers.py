"""Small factories for rules tests: messages, envelopes and contexts by hand."""

from __future__ import annotations

from datetime import UTC, datetime

from mailgate.message import Address, Attachment, Envelope, ParsedMessage
from mailgate.rules import RuleContext

MONDAY_MORNING = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HELPDESK = "helpdesk@example.com"


def message(
    subject: str = "Printer broken",
    sender: str | None = "ann@example.org",
    body: str = "It does not print.",
    to: tuple[str, ...] = (HELPDESK,),
    cc: tuple[str, ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
    attachments: tuple[Attachment, ...] = (),
    size: int = 2000,
    name: str = "",
) -> ParsedMessage:
    """A ParsedMessage as the parse stage would make it."""
    return ParsedMessage(
        message_id="<t@example.org>",
        in_reply_to=(),
        references=(),
        subject=subject,
        sender=Address(sender, name) if sender is not None else None,
        to=tuple(Address(address) for address in to),
        cc=tuple(Address(address) for address in cc),
        reply_to=(),
        date=None,
        headers=(("Subject", subject), *headers),
        text=body,
        new_text=body,
        html=None,
        attachments=attachments,
        size=size,
    )


def envelope(rcpt: tuple[str, ...] = (HELPDESK,), at: datetime = MONDAY_MORNING) -> Envelope:
    """An SMTP envelope delivered to the helpdesk."""
    return Envelope("ann@example.org", rcpt, "smtp", at)


def context(**overrides: object) -> RuleContext:
    """A context for a new message at a Monday morning, our address known."""
    values: dict[str, object] = {
        "our_addresses": frozenset({HELPDESK}),
        "now": MONDAY_MORNING,
        "trusted_authserv_ids": frozenset({"mx.example.com"}),
    }
    values.update(overrides)
    return RuleContext(**values)  # type: ignore[arg-type]  # keys checked by RuleContext


def attachment(filename: str, content_type: str, inline: bool = False) -> Attachment:
    """An attachment with placeholder content."""
    return Attachment(filename, content_type, 1000, "0" * 64, inline=inline)
