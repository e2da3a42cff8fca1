"""Plain values that travel down the message's road.

Every stage takes and returns these frozen dataclasses, so each stage can be
tested without sockets, clocks or a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.utils import getaddresses
from functools import cached_property


@dataclass(frozen=True)
class Address:
    """One mailbox: the lower-cased address and the decoded display name."""

    email: str
    name: str = ""

    def __str__(self) -> str:
        return self.email


@dataclass(frozen=True)
class Attachment:
    """One attachment or inline part, decoded."""

    filename: str
    content_type: str
    size: int
    sha256: str
    content: bytes = field(repr=False, default=b"")
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class Envelope:
    """How a message reached us: SMTP envelope, or the source it was read from.

    ``mail_from`` keeps apart what a person would keep apart:

    - an address: the reverse-path an MTA recorded (SMTP ``MAIL FROM``, or
      the ``Return-Path`` header a delivery agent wrote);
    - ``""``: the null reverse-path, recorded as such (``MAIL FROM:<>``,
      ``Return-Path: <>``). RFC 5321 §4.5.5 and RFC 3834 §3.3 reserve it
      for notifications: bounces and auto-replies;
    - ``None``: nobody recorded one. Mail a client uploaded or moved into an
      IMAP folder, a server that stores no ``Return-Path``, a saved file
      imported, ``mailgate ingest`` without ``--sender``. Unknown is not
      null: whoever decides reads the From and Sender headers instead.
    """

    mail_from: str | None
    rcpt_tos: tuple[str, ...]
    source: str  # "smtp", "lmtp", "pipe", "import", "imap:<account>"
    received_at: datetime

    @property
    def null_sender(self) -> bool:
        """The envelope sender was recorded as null (``<>``): a notification."""
        return self.mail_from is not None and self.mail_from.strip() in ("", "<>")

    @property
    def sender_known(self) -> bool:
        """Something recorded the envelope sender (an address, or null)."""
        return self.mail_from is not None


@dataclass(frozen=True)
class ParsedMessage:
    """What the parse stage knows about one raw message.

    Header values are decoded (RFC 2047) text; addresses are lower-cased.
    ``text`` is the best-effort full body text (quotes *not* stripped);
    ``new_text`` is the part the sender wrote themselves (quotes and
    signature stripped), used for display.
    """

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    headers: tuple[tuple[str, str], ...]
    text: str
    new_text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    size: int
    defects: tuple[str, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, list[str]]:
        # The guard alone asks for some thirty headers per message: one pass
        # over the headers instead of one per question.
        table: dict[str, list[str]] = {}
        for key, value in self.headers:
            table.setdefault(key.lower(), []).append(value)
        return table

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self._by_name.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        return list(self._by_name.get(name.lower(), ()))


def header_sender(message: ParsedMessage) -> str | None:
    """Who the headers say sent it: the Sender address, else From; None without either.

    Used where the envelope sender is unknown (see :class:`Envelope`): RFC
    5322 §3.6.2 names Sender the mailbox responsible for the transmission,
    the nearest thing in the headers to an envelope sender.
    """
    for name in ("Sender", "From"):
        for value in message.header_all(name):
            for _, address in getaddresses([value]):
                if "@" in address:
                    return address.strip().lower()
    return None
