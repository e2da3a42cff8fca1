"""``mailgate ingest`` (MTA pipe) and ``mailgate import`` (mbox, Maildir).

Both store raw messages durably first, exactly like the SMTP listener, and
only then process them. A pipe delivery's exit code follows sysexits: 0
once the message is committed, 75 (try again) when it cannot be stored, 65
(refuse for good) only for input that can never be a message.
"""

from __future__ import annotations

import hashlib
import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from mailgate.ingest.delivery_order import header_time, maildir_name_time, mbox_from_line_time
from mailgate.message import Envelope
from mailgate.store.inbound import InboundItem

# The first Return-Path field with its folded continuation lines: the one
# the last delivery agent wrote on top (RFC 5321 §4.4).
# Lines may end in CRLF, LF or (old Mac mail in the wild) a bare CR.
_RETURN_PATH = re.compile(
    rb"^Return-Path:([^\r\n]*(?:(?:\r\n?|\n)[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE
)
_FOLD = re.compile(rb"(?:\r\n?|\n)[ \t]")
# qmail writes this reverse-path on the double bounces it sends.
_QMAIL_NULL = "#@[]"


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\n\n")
    end_crlf = raw.find(b"\r\n\r\n")
    candidates = [e for e in (end, end_crlf) if e >= 0]
    return raw[: min(candidates)] if candidates else raw[:65536]


def return_path(raw: bytes) -> str | None:
    """The reverse-path a delivery agent recorded in Return-Path.

    ``""`` when it recorded the null path ``<>``; None when there is no
    Return-Path, or one with nothing in it: only ``<>`` says "null", an
    empty field says nothing (see :class:`mailgate.message.Envelope`).
    """
    match = _RETURN_PATH.search(header_block(raw))
    if match is None:
        return None
    return reverse_path(_FOLD.sub(b" ", match.group(1)).decode("utf-8", "replace"))


def reverse_path(value: str) -> str | None:
    """One unfolded Return-Path value as :func:`return_path` reads it."""
    value = value.strip()
    if value.startswith("<"):
        inside, closed, _ = value[1:].partition(">")
        if not closed:
            return None
        address = inside.strip()
        return "" if address == _QMAIL_NULL else address
    return value.split()[0] if value else None


def envelope_sender(raw: bytes) -> str | None:
    """The envelope sender when no MTA told us: the recorded Return-Path, else unknown.

    Never read from From: a person's From can be folded, encoded or absent,
    and guessing wrong there turned ordinary requests into "bounces". With
    the sender unknown, the guard and the requester lookup read From and
    Sender themselves, with a real header parser.
    """
    recorded = return_path(raw)
    return None if recorded is None else recorded.lower()


def pipe_item(raw: bytes, sender: str | None, recipients: tuple[str, ...], default_rcpt: str) -> InboundItem:
    """A message an MTA pipes to us; ``sender`` is its ``--sender`` ("" for ``<>``), if given."""
    return InboundItem(
        raw=raw,
        envelope=Envelope(
            mail_from=(sender if sender is not None else envelope_sender(raw)),
            rcpt_tos=recipients or (default_rcpt,),
            source="pipe",
            received_at=datetime.now(UTC),
        ),
    )


def count_messages(path: Path) -> int:
    if path.is_dir():
        return sum(1 for sub in ("new", "cur") if (path / sub).is_dir() for _ in (path / sub).iterdir())
    box = mailbox.mbox(path, create=False)
    try:
        return sum(1 for _ in box.iterkeys())
    finally:
        box.close()


def read_mailbox(path: Path, default_rcpt: str, *, source: str = "import") -> Iterator[InboundItem]:
    """Every message of a Maildir folder or mbox file, in delivery order,
    keyed by its bytes.

    The key makes an import idempotent: running it again after an
    interruption stores nothing twice. Each item's ``received_at`` is the
    message's delivery time (see ``delivery_order``), so that age limits and
    a history import see when the mail really came in.
    """
    if path.is_dir():
        yield from _read_maildir(mailbox.Maildir(path, factory=None, create=False), default_rcpt, source)
        return
    box = mailbox.mbox(path, create=False)
    try:
        # File order is delivery order: an mbox is only ever appended to.
        for key in box.iterkeys():
            try:
                message = box.get_message(key)
                raw = box.get_bytes(key)
            except (OSError, KeyError):
                continue
            when = mbox_from_line_time(message.get_from()) or header_time(header_block(raw))
            yield _import_item(raw, default_rcpt, received_at=when, source=source)
    finally:
        box.close()


def _read_maildir(box: mailbox.Maildir, default_rcpt: str, source: str) -> Iterator[InboundItem]:
    """A Maildir's messages sorted by delivery time: the file name's, else the headers'."""
    timed: list[tuple[datetime, str]] = []
    for key in box.iterkeys():
        when = maildir_name_time(key)
        if when is None:
            when = _maildir_header_time(box, key)
        # No time anywhere: after everything that has one, in name order.
        timed.append((when or _NO_TIME, key))
    timed.sort()
    for when, key in timed:
        try:
            raw = box.get_bytes(key)
        except (OSError, KeyError):
            continue
        yield _import_item(raw, default_rcpt, received_at=None if when is _NO_TIME else when, source=source)


_NO_TIME = datetime.max.replace(tzinfo=UTC)


def _maildir_header_time(box: mailbox.Maildir, key: str) -> datetime | None:
    try:
        with box.get_file(key) as file:
            return header_time(header_block(file.read(65536)))
    except (OSError, KeyError):
        return None


def _import_item(
    raw: bytes, default_rcpt: str, *, received_at: datetime | None = None, source: str = "import"
) -> InboundItem:
    now = datetime.now(UTC)
    return InboundItem(
        raw=raw,
        envelope=Envelope(
            mail_from=envelope_sender(raw),
            rcpt_tos=(default_rcpt,),
            source=source,
            # A name or header dated in the future is a wrong clock, not a delivery.
            received_at=min(received_at or now, now),
        ),
        source_key=hashlib.sha256(raw).hexdigest(),
    )
