"""The parse stage: raw bytes in, a ParsedMessage out, never an exception.

We parse with compat32 (plain strings, ~30x faster than ``policy.default``)
and decode headers ourselves in :mod:`mailgate.content.headers`. Anything
odd is recorded in ``ParsedMessage.defects`` instead of raised, because a
mail that crashes the parser would otherwise be lost or retried forever.
"""

from __future__ import annotations

import re
from email._policybase import Compat32
from email.message import Message
from email.parser import BytesParser

from mailgate.content.body import MAX_DEPTH, extract_body
from mailgate.content.headers import (
    decode_header_value,
    normalise_message_id,
    parse_addresses,
    parse_date,
    parse_msgids,
)
from mailgate.content.html import sanitise
from mailgate.content.repair import header_block_end, repair_headers
from mailgate.content.reply import trim_reply
from mailgate.content.transfer import raw_headers, raw_payload
from mailgate.message import Address, ParsedMessage

__all__ = ["parse"]

# The stdlib feed parser recurses once per nested multipart or message/*
# part and hits RecursionError near 1,000 levels, after quadratic time. We
# count container declarations first and refuse to parse the MIME structure
# of a message that has far more than we would ever descend into.
_CONTAINER = re.compile(rb"content-type:[ \t]*(?:multipart|message)/", re.IGNORECASE)
MAX_CONTAINERS = 4 * MAX_DEPTH
MAX_HEADERS = 10_000
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)
_PLAIN_CHARSETS = {"us-ascii", "ascii", "utf-8", "utf8"}


class _RawHeaders(Compat32):
    """compat32, but header lookups return the raw string.

    compat32 wraps values holding 8-bit bytes in ``Header`` objects that
    decode them as "unknown-8bit" with replacement characters, losing the
    bytes we want to decode ourselves (as UTF-8, or in the body's charset).
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_POLICY = _RawHeaders()
# One ParsedMessage carries at most this many defect strings.
MAX_DEFECTS = 100


def _header_pairs(message: Message, defects: list[str], hint: str | None) -> tuple[tuple[str, str], ...]:
    """All headers in order, decoded, with folding undone."""
    pairs = []
    fields = raw_headers(message)
    if len(fields) > MAX_HEADERS:
        defects.append(f"{len(fields)} headers, only the first {MAX_HEADERS} kept")
        fields = fields[:MAX_HEADERS]
    for name, value in fields:
        name_text = (
            name if name.isascii() else name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        )
        pairs.append((name_text, decode_header_value(str(value), defects, hint)))
    return tuple(pairs)


def _raw_all(message: Message, name: str) -> list[str]:
    """Every raw value of header ``name``, as strings."""
    return [str(value) for value in message.get_all(name, [])]


def _raw_first(message: Message, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


# RFC 5322 section 2.2: "name: value" and continuation lines starting with
# whitespace; the value keeps its line breaks as compat32 keeps them.
_FIELD = re.compile(r"^([!-9;-~]+)[ \t]*:[ \t]*([^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*)", re.MULTILINE)
_CONTAINER_TYPE = re.compile(r"^\s*(?:multipart|message)/", re.IGNORECASE)


def _parse_simple(raw: bytes) -> Message | None:
    """A compat32 Message for a single-part message, without the feed parser.

    The stdlib feed parser costs ~200 us per message on our hosts, most of
    it spent line by line; a well-formed header block followed by one body
    is most mail a helpdesk sees, and a regular expression reads it in a
    tenth of the time. Anything else (multipart, message/*, broken headers)
    returns None and goes through the real parser.
    """
    end = header_block_end(raw)
    if end is None:
        return None
    block = raw[:end].decode("ascii", "surrogateescape")
    if "\r" in block and block.count("\r") != block.count("\r\n"):
        return None  # bare CR line ends (old Mac mail): leave them to the feed parser
    message = Message(policy=_POLICY)
    if block.startswith("From "):
        first_line_end = min((i for i in (block.find("\n"), block.find("\r")) if i >= 0), default=len(block))
        message.set_unixfrom(block[:first_line_end])
        block = block[first_line_end:].lstrip("\r\n")
    fields = _FIELD.findall(block)
    for name, value in fields:
        if name.lower() == "content-type" and _CONTAINER_TYPE.match(value):
            return None
    # The same (name, raw value) pairs the feed parser would have stored.
    message._headers = list(fields)  # type: ignore[attr-defined]  # compat32 internals, untyped
    message.set_payload(raw[end:].decode("ascii", "surrogateescape"))
    return message


def _parse_structure(raw: bytes, defects: list[str]) -> Message:
    """The compat32 tree of ``raw``; headers only when the MIME structure is hostile."""
    simple = _parse_simple(raw)
    if simple is not None:
        return simple
    parser = BytesParser(policy=_POLICY)
    if len(_CONTAINER.findall(raw)) > MAX_CONTAINERS:
        defects.append(f"more than {MAX_CONTAINERS} MIME containers, body kept as text")
        message = parser.parsebytes(raw, headersonly=True)
        message.set_type("text/plain")
        return message
    try:
        return parser.parsebytes(raw)
    except RecursionError:
        defects.append("MIME structure too deep for the parser, body kept as text")
        message = parser.parsebytes(raw, headersonly=True)
        message.set_type("text/plain")
        return message


def _charset_hint(message: Message) -> str | None:
    """The first declared charset other than ASCII/UTF-8, to read raw 8-bit headers with."""
    stack = [message]
    for _ in range(50):
        if not stack:
            break
        part = stack.pop(0)
        found = _CHARSET_PARAM.search(str(part.get("content-type", "")))
        if found and found.group(1).lower() not in _PLAIN_CHARSETS:
            return found.group(1).lower()
        payload = raw_payload(part)
        if isinstance(payload, list):
            stack.extend(child for child in payload if isinstance(child, Message))
    return None


def _dedupe(defects: list[str]) -> tuple[str, ...]:
    """Defects in first-seen order, each once, at most MAX_DEFECTS."""
    return tuple(dict.fromkeys(defects))[:MAX_DEFECTS]


def _parse(raw: bytes, max_attachment_bytes: int) -> ParsedMessage:
    defects: list[str] = []
    message = _parse_structure(repair_headers(raw, defects), defects)
    defects.extend(type(defect).__name__ for defect in message.defects)
    hint = _charset_hint(message)
    headers = _header_pairs(message, defects, hint)
    reply_to = parse_addresses(_raw_all(message, "reply-to"), defects, hint)
    sender: Address | None = None
    # RFC 5322 section 3.6.2: From names the author, Sender the agent that
    # sent it; spam and some gateways send neither usable, but a Reply-To.
    for name in ("from", "sender"):
        # Bounces come "From: MAILER-DAEMON (Mail Delivery System)"; keep
        # such local-only senders so the guard stage can recognise them.
        found = parse_addresses(_raw_all(message, name), defects, hint, local_ok=True)
        if found:
            # A junk first From ("From: [??????]") must not hide a real address.
            sender = next((address for address in found if "@" in address.email), found[0])
            break
    if sender is None and reply_to:
        sender = reply_to[0]
        defects.append("no usable From or Sender, Reply-To used as sender")
    subject_raw = _raw_first(message, "subject")
    first_line = raw[: raw.find(b"\n") + 1]
    linesep = "\r\n" if first_line.endswith(b"\r\n") else "\n"
    body = extract_body(message, max_attachment_bytes, hint, linesep)
    defects.extend(body.defects)
    text, reply_source = body.texts()
    html = sanitise(body.html, defects) if body.html is not None else None
    return ParsedMessage(
        message_id=normalise_message_id(_raw_first(message, "message-id")),
        in_reply_to=parse_msgids(_raw_first(message, "in-reply-to")),
        references=parse_msgids(" ".join(_raw_all(message, "references"))),
        subject=decode_header_value(subject_raw, defects, hint) if subject_raw else "",
        sender=sender,
        to=parse_addresses(_raw_all(message, "to"), defects, hint),
        cc=parse_addresses(_raw_all(message, "cc"), defects, hint),
        reply_to=reply_to,
        date=parse_date(_raw_first(message, "date")),
        headers=headers,
        text=text,
        new_text=trim_reply(reply_source),
        html=html,
        attachments=tuple(body.attachments),
        size=len(raw),
        defects=_dedupe(defects),
    )


def _fallback(raw: bytes, error: BaseException) -> ParsedMessage:
    """A minimal ParsedMessage when parsing failed outright: the raw text as body."""
    text = raw[: 1024 * 1024].decode("utf-8", "replace").replace("\r\n", "\n")
    return ParsedMessage(
        message_id=None,
        in_reply_to=(),
        references=(),
        subject="",
        sender=None,
        to=(),
        cc=(),
        reply_to=(),
        date=None,
        headers=(),
        text=text,
        new_text=text,
        html=None,
        attachments=(),
        size=len(raw),
        defects=(f"parse failed: {type(error).__name__}: {str(error)[:200]}",),
    )


def parse(raw: bytes, *, max_attachment_bytes: int = 25 * 1024 * 1024) -> ParsedMessage:
    """Parse one raw RFC 5322 message; never raises, problems go to ``defects``."""
    try:
        return _parse(bytes(raw), max_attachment_bytes)
    except (MemoryError, KeyboardInterrupt):
        raise
    except BaseException as error:  # the contract is "never raise"
        return _fallback(raw, error)
