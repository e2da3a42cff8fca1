"""One message as the rules see it: each derived value computed at most once.

A thousand rules may all ask for the lower-cased subject or the sender's
domain; computing those once per message, and the costly ones (language,
Authentication-Results) only when some rule asks, is what keeps routing fast.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property

from mailgate.message import Attachment, Envelope, ParsedMessage, header_sender
from mailgate.rules.auth import MethodResult, trusted_results
from mailgate.rules.language import detect_language
from mailgate.rules.model import RuleContext

# Regexes written by admins run against text written by strangers; capping the
# text bounds the time a careless pattern can burn on a huge mail.
MAX_TEXT = 100_000


def split_plus(address: str) -> tuple[str, str | None]:
    """``helpdesk+printer@x`` as (``helpdesk@x``, ``printer``); no tag gives None."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, None
    base, plus, tag = local.partition("+")
    if not plus:
        return address, None
    return f"{base}@{domain}", tag


class MessageView:
    """Cached, normalised facts about one message for condition tests."""

    def __init__(self, message: ParsedMessage, envelope: Envelope, context: RuleContext) -> None:
        self.message = message
        self.envelope = envelope
        self.context = context
        # From; without one the envelope sender, else (unknown) the Sender header.
        fallback = envelope.mail_from or header_sender(message)
        sender = message.sender.email if message.sender is not None else fallback
        self.from_address = (sender or "").strip().lower()
        self.from_domain = self.from_address.rpartition("@")[2] if "@" in self.from_address else ""
        self.subject = message.subject or ""
        self.subject_lower = self.subject.lower()

    @cached_property
    def from_name(self) -> str:
        return self.message.sender.name if self.message.sender is not None else ""

    @cached_property
    def from_name_lower(self) -> str:
        return self.from_name.lower()

    @cached_property
    def body(self) -> str:
        # What the sender wrote, not the quoted history: a requester quoting an
        # old "urgent" mail should not make a new reply urgent.
        text = self.message.new_text.strip() or self.message.text
        return text[:MAX_TEXT]

    @cached_property
    def body_lower(self) -> str:
        return self.body.lower()

    @cached_property
    def to(self) -> tuple[str, ...]:
        return tuple(address.email.lower() for address in self.message.to)

    @cached_property
    def cc(self) -> tuple[str, ...]:
        return tuple(address.email.lower() for address in self.message.cc)

    @cached_property
    def _ours(self) -> tuple[tuple[str, str | None], ...]:
        # The envelope says where the mail was delivered, so it is always
        # ours; To and Cc name many addresses, only the ones we own count.
        ours = self.context.our_addresses
        seen: dict[str, tuple[str, str | None]] = {}
        candidates = [rcpt.lower() for rcpt in self.envelope.rcpt_tos]
        for address in (*self.to, *self.cc):
            if address not in candidates:
                candidates.append(address)
        for index, address in enumerate(candidates):
            base, tag = split_plus(address)
            from_envelope = index < len(self.envelope.rcpt_tos)
            if from_envelope or base in ours or address in ours:
                seen.setdefault(address, (base, tag))
        return tuple(seen.values())

    @cached_property
    def recipients(self) -> tuple[str, ...]:
        """Our addresses the mail came to, without their plus tags."""
        return tuple(dict.fromkeys(base for base, _ in self._ours))

    @cached_property
    def plus_tags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(tag for _, tag in self._ours if tag))

    @cached_property
    def headers(self) -> dict[str, list[str]]:
        table: dict[str, list[str]] = {}
        for name, value in self.message.headers:
            # Folding leaves stray spaces; "equals" should not trip over them.
            table.setdefault(name.lower(), []).append(value.strip())
        return table

    @cached_property
    def headers_lower(self) -> dict[str, tuple[str, ...]]:
        return {name: tuple(value.lower() for value in values) for name, values in self.headers.items()}

    @cached_property
    def attachments(self) -> tuple[Attachment, ...]:
        # Inline parts are mostly logos in signatures; counting them would
        # make "has an attachment" true for half of all business mail.
        return tuple(part for part in self.message.attachments if not part.inline)

    @cached_property
    def language(self) -> str | None:
        if self.context.language:
            return self.context.language.lower()
        return detect_language(f"{self.subject}\n{self.body}")

    @cached_property
    def auth(self) -> dict[str, tuple[MethodResult, ...]]:
        return trusted_results(
            self.headers.get("authentication-results", ()), self.context.trusted_authserv_ids
        )

    @cached_property
    def now(self) -> datetime:
        moment = self.context.now or self.envelope.received_at
        # A naive clock would be read in the server's zone; say UTC explicitly.
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
