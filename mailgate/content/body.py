"""Walking the MIME tree: which parts are the body, which are attachments.

The walk is bounded: it stops descending at ``MAX_DEPTH`` and after
``MAX_PARTS`` parts, recording a defect, so a hostile message cannot make
us recurse or loop without end.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from email._policybase import Compat32
from email.generator import BytesGenerator
from email.message import Message

from mailgate.content.attachments import (
    content_id,
    default_filename,
    make_attachment,
    raw_filename,
    unique_filename,
)
from mailgate.content.charsets import decode_bytes
from mailgate.content.headers import decode_header_value
from mailgate.content.html import document_to_text, html_to_text
from mailgate.content.html_quote import cut_quoted_html
from mailgate.content.tnef import is_tnef, unpack_tnef
from mailgate.content.transfer import decode_transfer, raw_headers, raw_payload
from mailgate.message import Attachment

MAX_DEPTH = 50
MAX_PARTS = 2000

_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


class _Verbatim(Compat32):
    """Writes headers back as they were parsed: no re-folding, no added space.

    compat32's own generator re-folds long values and writes "Name: " for an
    empty value, so an attached message would not come back byte for byte.
    """

    def _verbatim(self, name: str, value: str) -> str:
        text = str(value)
        if "\n" in text or "\r" in text:
            # Folded values keep their original line breaks; use ours.
            text = re.sub(r"\r\n|\r|\n", self.linesep, text)
        return f"{name}: {text}{self.linesep}" if text else f"{name}:{self.linesep}"

    def fold(self, name: str, value: str) -> str:
        return self._verbatim(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        return self._verbatim(name, value).encode("utf-8", "surrogateescape")


_VERBATIM = {"\n": _Verbatim(linesep="\n"), "\r\n": _Verbatim(linesep="\r\n")}


@dataclass
class Segment:
    """One piece of body in reading order: a plain version, an HTML version, or both."""

    plain: str | None = None
    html: str | None = None


@dataclass
class BodyParts:
    """What the walk found."""

    segments: list[Segment] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    parts_seen: int = 0

    @property
    def text(self) -> str:
        """The body text: each segment's plain version, else its HTML as text."""
        return self.texts()[0]

    def texts(self) -> tuple[str, str]:
        """The body text, and the text to trim for the reply.

        They differ only for a segment that is HTML alone: its reply is the
        HTML above the quote container (``html_quote``), turned into text,
        because the container marks the history exactly and the text does not.
        """
        texts: list[str] = []
        replies: list[str] = []
        for segment in self.segments:
            if segment.plain is not None and segment.plain.strip():
                texts.append(segment.plain)
                replies.append(segment.plain)
            elif segment.html is not None:
                whole = html_to_text(segment.html)
                texts.append(whole)
                above = cut_quoted_html(segment.html)
                above_text = document_to_text(above) if above is not None else ""
                # A forward or a bottom-posted reply has nothing above the
                # container; then the text trimmer decides on the whole.
                replies.append(above_text if above_text.strip() else whole)
            elif segment.plain is not None:
                texts.append(segment.plain)
                replies.append(segment.plain)
        return (
            "\n\n".join(text for text in texts if text).rstrip(),
            "\n\n".join(text for text in replies if text).rstrip(),
        )

    @property
    def html(self) -> str | None:
        """The HTML of all segments that have one, or None when none has."""
        htmls = [segment.html for segment in self.segments if segment.html is not None]
        return "\n".join(htmls) if htmls else None


def _normalise_text(text: str, defects: list[str]) -> str:
    """Unix line endings and no NUL characters (databases and terminals choke on them)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        defects.append("NUL characters removed from body")
        text = text.replace("\x00", "")
    return text


def _fields(part: Message) -> dict[str, str]:
    """The first raw value of each header of ``part``, by lower-cased name.

    ``Message.get`` lower-cases every header name on every call; one pass
    here makes the half-dozen look-ups per part cheap.
    """
    fields: dict[str, str] = {}
    for name, value in raw_headers(part):
        fields.setdefault(name.lower(), str(value))
    return fields


def _content_type(part: Message, fields: dict[str, str]) -> str:
    """The lower-cased type/subtype, with compat32's defaults for missing or invalid values."""
    value = fields.get("content-type")
    if value is None:
        return part.get_default_type()
    content_type = value.split(";", 1)[0].strip().lower()
    # RFC 2045 section 5.2: a syntactically invalid type means text/plain.
    if content_type.count("/") != 1:
        return "text/plain"
    return content_type


def _charset(part: Message, fields: dict[str, str]) -> str | None:
    """The charset parameter, lower-cased, or None."""
    value = fields.get("content-type", "")
    if "charset*" in value.lower():
        # RFC 2231 extended parameter; rare enough for the stdlib's slow path.
        return part.get_content_charset()
    found = _CHARSET_PARAM.search(value)
    return found.group(1).lower() if found else None


def _disposition(fields: dict[str, str]) -> str | None:
    """ "inline", "attachment", another token, or None when there is no such header."""
    value = fields.get("content-disposition")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _decode_text(part: Message, fields: dict[str, str], data: bytes, subtype: str, defects: list[str]) -> str:
    """The text of a body part in its declared charset, or the best guess."""
    charset = _charset(part, fields)
    if charset is None and subtype == "html":
        found = _META_CHARSET.search(data[:4096])
        if found:
            charset = found.group(1).decode("ascii").lower()
    text, guessed = decode_bytes(data, charset)
    if guessed:
        defects.append(f"body charset {charset!r} missing or wrong, decoded by guess")
    return _normalise_text(text, defects)


def _unix_lines(data: bytes) -> bytes:
    """LF line endings: CRLF is the wire form of text (RFC 2046 section 4.1.1), not content."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def _is_textual(encoding: str) -> bool:
    """Whether line endings in this part are transport, not content.

    RFC 2045 section 2.7: 7bit and 8bit data are lines separated by CRLF,
    so the CRLF is how the lines travelled. Quoted-printable, base64,
    binary and uuencoded data can carry binary files and keep their bytes.
    """
    return encoding in ("", "7bit", "8bit")


def _line_ending(part: Message, default: str) -> str:
    """The line ending an attached message's own body text uses, or ``default``.

    Mail that passed through several systems mixes CRLF and LF; the inner
    message's text says how it was written.
    """
    inner = raw_payload(part)
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        # A folded header of the inner message shows its line ending best.
        for _name, value in raw_headers(inner[0]):
            if "\n" in value:
                return "\r\n" if "\r\n" in value else "\n"
    stack = [part]
    for _ in range(50):
        if not stack:
            break
        payload = raw_payload(stack.pop(0))
        if isinstance(payload, str) and "\n" in payload:
            return "\r\n" if "\r\n" in payload else "\n"
        if isinstance(payload, list):
            stack.extend(child for child in payload if isinstance(child, Message))
    return default


def _embedded_bytes(part: Message, linesep: str) -> bytes:
    """The body of a message/* part as bytes, regenerated verbatim from the parsed tree.

    ``linesep`` is the outer message's line ending, so an attached message
    keeps the line endings it arrived with.
    """
    payload = raw_payload(part)
    if not isinstance(payload, list):
        return decode_transfer(part, [])
    out = io.BytesIO()
    try:
        BytesGenerator(out, mangle_from_=False, policy=_VERBATIM[linesep]).flatten(part)
    except Exception:  # regenerating odd trees can fail; fall back to text
        return str(payload[0]).encode("utf-8", "surrogateescape") if payload else b""
    generated = out.getvalue()
    # Drop the part's own header block; what follows the first blank line is the body.
    eol = linesep.encode("ascii")
    starts_blank = generated.startswith(eol)
    body = generated[len(eol) :] if starts_blank else generated.partition(eol + eol)[2]
    return b"" if body == eol else body


class _Walker:
    """One walk over one message; keeps counters and limits in one place."""

    def __init__(self, max_attachment_bytes: int, hint: str | None, linesep: str) -> None:
        self.max_attachment_bytes = max_attachment_bytes
        self.hint = hint
        self.linesep = linesep
        self.found = BodyParts()
        self.filenames: set[str] = set()

    def visit(self, part: Message, depth: int, into: list[Segment]) -> None:
        """Sort ``part`` into body segments and attachments."""
        found = self.found
        found.parts_seen += 1
        if found.parts_seen > MAX_PARTS:
            if found.parts_seen == MAX_PARTS + 1:
                found.defects.append(f"more than {MAX_PARTS} MIME parts, rest ignored")
            return
        if depth > MAX_DEPTH:
            found.defects.append(f"MIME nesting deeper than {MAX_DEPTH}, rest ignored")
            return
        fields = _fields(part)
        content_type = _content_type(part, fields)
        maintype = content_type.split("/", 1)[0]
        if maintype == "message" and content_type != "message/partial":
            linesep = _line_ending(part, self.linesep) if content_type.endswith("rfc822") else "\n"
            self._attach(part, content_type, _embedded_bytes(part, linesep))
            return
        payload = raw_payload(part)
        if isinstance(payload, list):
            if content_type == "multipart/alternative":
                self._alternative(payload, depth, into)
            else:
                for child in payload:
                    if isinstance(child, Message):
                        self.visit(child, depth + 1, into)
            return
        if maintype == "multipart":
            # A multipart without a usable boundary: read the body as text.
            found.defects.append(f"{content_type} without parts, body read as text")
            content_type, maintype = "text/plain", "text"
        self._leaf(part, fields, content_type, maintype, into)

    def _alternative(self, children: list[Message], depth: int, into: list[Segment]) -> None:
        """RFC 2046 section 5.1.4: the same content several ways; keep one plain, one HTML."""
        merged = Segment()
        for child in children:
            if not isinstance(child, Message):
                continue
            inner: list[Segment] = []
            self.visit(child, depth + 1, inner)
            plains = [s.plain for s in inner if s.plain is not None]
            htmls = [s.html for s in inner if s.html is not None]
            if plains and merged.plain is None:
                merged.plain = "\n\n".join(plains)
            if htmls:
                # The last alternative is the sender's preferred one.
                merged.html = "\n".join(htmls)
        if merged.plain is not None or merged.html is not None:
            into.append(merged)

    def _leaf(
        self,
        part: Message,
        fields: dict[str, str],
        content_type: str,
        maintype: str,
        into: list[Segment],
    ) -> None:
        """A part without children: body text or an attachment."""
        defects = self.found.defects
        encoding = fields.get("content-transfer-encoding", "").strip().lower()
        data = decode_transfer(part, defects, encoding)
        disposition = _disposition(fields)
        # Parsing parameters is slow in the stdlib; most body parts have no name.
        may_have_name = disposition is not None or "name" in fields.get("content-type", "")
        filename = raw_filename(part, defects, self.hint) if may_have_name else ""
        subtype = content_type.split("/", 1)[1] if "/" in content_type else ""
        is_body = (
            maintype == "text"
            and subtype in ("plain", "html")
            and disposition != "attachment"
            and not filename
        )
        if (
            is_body
            and subtype == "html"
            and into
            and into[-1].plain is not None
            and (into[-1].html is not None)
        ):
            # HTML after a complete plain+HTML body in multipart/mixed is a
            # document Outlook attached without a name, not more body.
            is_body = False
        if is_body:
            text = _decode_text(part, fields, data, subtype, defects)
            into.append(Segment(html=text) if subtype == "html" else Segment(plain=text))
            return
        if is_tnef(content_type, filename):
            unpacked = unpack_tnef(data, defects)
            if unpacked is not None:
                for name, inner_type, inner_data in unpacked:
                    self._attach_data(name, inner_type, inner_data, None, False)
                return
        if _is_textual(encoding):
            data = _unix_lines(data)
        self._attach(part, content_type, data, filename)

    def _attach(self, part: Message, content_type: str, data: bytes, filename: str = "") -> None:
        """Record ``part`` as an attachment (inline when it is a cid: image)."""
        defects = self.found.defects
        cid = content_id(part)
        if not filename:
            filename = raw_filename(part, defects, self.hint)
        if not filename and content_type in ("message/rfc822", "message/global"):
            # Name an attached message after its subject, as mail clients do.
            inner = raw_payload(part)
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                subject = decode_header_value(str(inner[0].get("subject", "")), None, self.hint)
                filename = subject.replace("/", "_").replace("\\", "_")[:200]
                filename = filename + ".eml" if filename else ""
        if not filename:
            filename = default_filename(content_type, part, cid)
        disposition = part.get_content_disposition()
        inline = disposition == "inline" or (cid is not None and disposition != "attachment")
        self._attach_data(filename, content_type, data, cid, inline)

    def _attach_data(
        self, filename: str, content_type: str, data: bytes, cid: str | None, inline: bool
    ) -> None:
        filename = unique_filename(filename, self.filenames)
        self.filenames.add(filename)
        self.found.attachments.append(
            make_attachment(
                filename=filename,
                content_type=content_type,
                data=data,
                max_bytes=self.max_attachment_bytes,
                defects=self.found.defects,
                cid=cid,
                inline=inline,
            )
        )


def extract_body(
    message: Message, max_attachment_bytes: int, hint: str | None, linesep: str = "\n"
) -> BodyParts:
    """Body segments, attachments and defects of a parsed message.

    ``hint`` is the charset to try for 8-bit filenames that are not UTF-8;
    ``linesep`` the raw message's line ending ("\\n" or "\\r\\n").
    """
    walker = _Walker(max_attachment_bytes, hint, linesep if linesep in _VERBATIM else "\n")
    walker.visit(message, 0, walker.found.segments)
    return walker.found
