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

from mailgate.message import Envelope
from mailgate.store.inbound import InboundItem

_RETURN_PATH = re.compile(rb"^Return-Path:[ \t]*<?([^>\r\n]*)>?", re.IGNORECASE | re.MULTILINE)
_FROM = re.compile(rb"^From:[^\r\n]*?<?([\w.+'=-]+@[\w.-]+)>?", re.IGNORECASE | re.MULTILINE)


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\n\n")
    end_crlf = raw.find(b"\r\n\r\n")
    candidates = [e for e in (end, end_crlf) if e >= 0]
    return raw[: min(candidates)] if candidates else raw[:65536]


def return_path(raw: bytes) -> str | None:
    """The Return-Path the delivering MTA recorded ("" for ``<>``), None without one."""
    match = _RETURN_PATH.search(header_block(raw))
    return None if match is None else match.group(1).decode("utf-8", "replace").strip()


def envelope_sender(raw: bytes) -> str:
    """The envelope sender when no MTA told us: Return-Path, else From.

    An empty Return-Path (``<>``) is kept empty: it marks a bounce. With no
    Return-Path at all we use From, so that a plain saved message is not
    mistaken for a bounce.
    """
    headers = header_block(raw)
    recorded = return_path(headers)
    if recorded is not None:
        return recorded.lower()
    match = _FROM.search(headers)
    return match.group(1).decode("ascii", "replace").lower() if match else ""


def pipe_item(raw: bytes, sender: str | None, recipients: tuple[str, ...], default_rcpt: str) -> InboundItem:
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


def read_mailbox(path: Path, default_rcpt: str) -> Iterator[InboundItem]:
    """Every message of a Maildir folder or mbox file, keyed by its bytes.

    The key makes an import idempotent: running it again after an
    interruption stores nothing twice.
    """
    box: mailbox.Mailbox[mailbox.Message] = (
        mailbox.Maildir(path, factory=None, create=False)
        if path.is_dir()
        else mailbox.mbox(path, create=False)
    )
    try:
        for key in box.iterkeys():
            try:
                raw = box.get_bytes(key)
            except (OSError, KeyError):
                continue
            yield _import_item(raw, default_rcpt)
    finally:
        box.close()


def _import_item(raw: bytes, default_rcpt: str) -> InboundItem:
    return InboundItem(
        raw=raw,
        envelope=Envelope(
            mail_from=envelope_sender(raw),
            rcpt_tos=(default_rcpt,),
            source="import",
            received_at=datetime.now(UTC),
        ),
        source_key=hashlib.sha256(raw).hexdigest(),
    )
