"""Build outgoing mail: headers in code, bodies from templates.

Every header value passes :func:`header_value`, which refuses CR and LF,
and names and subjects are folded to one line before they get there, so no
data from a requester can add a header or start the body. The message is
written out directly: ``email.policy.SMTP`` turns every header into objects
and cost about 8 ms per acknowledgement, most of the processing budget; the
structure here is always the same (text, or text + HTML alternatives, both
quoted-printable UTF-8), so writing it costs a twentieth of that.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import encode_rfc2231, format_datetime, formataddr

from mailgate.message import Address, Attachment

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
    # Files sent along (an agent's relayed reply keeps its attachments).
    attachments: tuple[Attachment, ...] = ()


def one_line(value: str) -> str:
    return " ".join(value.split())


def header_value(value: str) -> str:
    """A header value as we will send it: refused if it could break a line."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"header value with a line break refused: {value[:60]!r}")
    return value


def encoded_text(value: str) -> str:
    """Unstructured text (Subject): ASCII as is, anything else as RFC 2047 words.

    Encoded words are at most 75 characters (RFC 2047 §2), so a long subject
    becomes several, folded onto continuation lines.
    """
    text = header_value(one_line(value))
    if text.isascii():
        return text
    return Header(text, "utf-8").encode(linesep="\r\n")


def encoded_address(address: Address) -> str:
    name = one_line(address.name)
    try:
        return header_value(formataddr((name, address.email), charset="utf-8"))
    except (UnicodeError, ValueError):
        return header_value(address.email)


def new_message_id(domain: str, ticket_id: int | None = None) -> str:
    stamp = f"t{ticket_id}." if ticket_id is not None else ""
    return f"<mg.{stamp}{secrets.token_hex(10)}@{domain}>"


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (RFC 2045 §6.7)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return b"\r\n".join(binascii.b2a_qp(line.encode("utf-8")) for line in lines)


def _text_part(body: str, subtype: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii") + _qp(body)


def compose(mail: OutgoingMail, *, loop_value: str, now: datetime | None = None) -> bytes:
    headers: list[tuple[str, str]] = [
        ("From", encoded_address(Address(mail.from_address, mail.from_name))),
        ("To", ", ".join(encoded_address(a) for a in mail.to)),
    ]
    if mail.cc:
        headers.append(("Cc", ", ".join(encoded_address(a) for a in mail.cc)))
    headers += [
        ("Subject", encoded_text(mail.subject)),
        ("Date", format_datetime(now or datetime.now(UTC))),
        ("Message-ID", header_value(mail.message_id)),
    ]
    if mail.reply_to:
        headers.append(("Reply-To", header_value(mail.reply_to)))
    if mail.in_reply_to:
        headers.append(("In-Reply-To", header_value(mail.in_reply_to)))
    references = [*mail.references]
    if mail.in_reply_to and mail.in_reply_to not in references:
        references.append(mail.in_reply_to)
    if references:
        # Keep the header a sane size on long threads: first + last ten.
        kept = references[:1] + references[-10:] if len(references) > 11 else references
        headers.append(("References", header_value(" ".join(kept))))
    if mail.auto_submitted:
        headers.append(("Auto-Submitted", header_value(mail.auto_submitted)))
        # Asks Exchange/Outlook not to send out-of-office replies to us.
        headers.append(("X-Auto-Response-Suppress", "All"))
    headers.append((LOOP_HEADER, header_value(loop_value)))
    headers.append(("Content-Language", header_value(mail.language)))
    headers.append(("MIME-Version", "1.0"))
    block = "".join(f"{name}: {_fold(value)}\r\n" for name, value in headers).encode("ascii")
    files = [a for a in mail.attachments if a.content]
    if not files:
        return block + _body(mail)
    # multipart/mixed: the readable body first, then each file (RFC 2046 §5.1.3).
    boundary = f"=_mg_{secrets.token_hex(12)}"
    parts = [_body(mail), *(_file_part(a) for a in files)]
    return (
        block
        + f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode("ascii")
        + b"".join(f"--{boundary}\r\n".encode("ascii") + part + b"\r\n" for part in parts)
        + f"--{boundary}--\r\n".encode("ascii")
    )


def _body(mail: OutgoingMail) -> bytes:
    """The readable part: plain text, or text and HTML as alternatives."""
    if not mail.html:
        return _text_part(mail.text, "plain") + b"\r\n"
    # The boundary is random and cannot occur in QP-encoded parts (RFC 2045
    # §6.7 output never contains "=_" followed by our token).
    boundary = f"=_mg_{secrets.token_hex(12)}"
    return (
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii")
        + f"--{boundary}\r\n".encode("ascii")
        + _text_part(mail.text, "plain")
        + f"\r\n--{boundary}\r\n".encode("ascii")
        + _text_part(mail.html, "html")
        + f"\r\n--{boundary}--\r\n".encode("ascii")
    )


def _file_part(attachment: Attachment) -> bytes:
    name = one_line(attachment.filename) or "attachment"
    # RFC 2231 for names that are not plain ASCII; quotes and backslashes never
    # reach the header unescaped.
    if name.isascii() and '"' not in name and "\\" not in name:
        disposition = f'attachment; filename="{name}"'
    else:
        disposition = f"attachment; filename*={encode_rfc2231(name, 'utf-8')}"
    content_type = attachment.content_type if "/" in attachment.content_type else "application/octet-stream"
    head = (
        f"Content-Type: {header_value(one_line(content_type))}\r\n"
        f"Content-Disposition: {header_value(disposition)}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode("ascii", "replace") + base64.encodebytes(attachment.content).replace(b"\n", b"\r\n")


def _fold(value: str, width: int = 78) -> str:
    """Fold a long header value at spaces (RFC 5322 §2.2.3); short ones as is."""
    if len(value) <= width or "\r\n" in value:
        return value
    lines, current = [], ""
    for word in value.split(" "):
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\r\n ".join(lines)
