"""Decoding header values: unfolding, RFC 2047 encoded words, addresses, ids, dates.

The stdlib's ``policy.default`` header objects are ~30x slower than compat32
strings, and ``email.header.decode_header`` is quadratic on long values (a
1 MB subject takes seconds), so we decode the raw compat32 strings here with
one linear regular-expression pass.
"""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime

from mailgate.content.charsets import decode_bytes, surrogates_to_text
from mailgate.message import Address

# One decoded header value is cut here: a 1 MB subject is an attack or a bug,
# and every later stage (threading, rules) would pay for it again.
MAX_HEADER_CHARS = 32 * 1024

# RFC 2047 section 2: =?charset?encoding?encoded-text?=, with an optional
# RFC 2231 language suffix (charset*lang). Real clients put spaces inside
# Q-encoded text, so the text part only excludes "?".
_ENCODED_WORD = re.compile(r"=\?([^?\s*]{1,64})(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r\n|\r|\n")
_PLACEHOLDER = re.compile("\ue000([0-9]+)\ue001")
_MSGID = re.compile(r"<([^<>\s]+)>")


def unfold(value: str) -> str:
    """Undo RFC 5322 section 2.2.3 folding: drop the line breaks, keep the whitespace."""
    if "\n" in value or "\r" in value:
        value = _FOLD.sub("", value)
    return value


def _word_bytes(encoding: str, text: str) -> tuple[bytes, bool]:
    """The bytes of one encoded word's text, and whether decoding had to be lenient."""
    raw = text.encode("ascii", "surrogateescape")
    if encoding in "qQ":
        # RFC 2047 section 4.2: "_" is a space in Q encoding.
        return binascii.a2b_qp(raw, header=True), False
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
    lenient = len(cleaned) % 4 == 1 or cleaned != raw.rstrip(b"=")
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned), lenient
    except binascii.Error:
        return b"", True


def decode_header_value(raw: str, defects: list[str] | None = None, hint: str | None = None) -> str:
    """Decode one raw (compat32) header value to text; problems go to ``defects``.

    ``hint`` is the charset to try for raw 8-bit bytes that are not UTF-8
    (usually the message's body charset).
    """
    value = unfold(raw)
    if "\x00" in value:
        value = value.replace("\x00", "")
    if len(value) > MAX_HEADER_CHARS:
        value = value[:MAX_HEADER_CHARS]
        if defects is not None:
            defects.append(f"header value truncated to {MAX_HEADER_CHARS} characters")
    if "=?" not in value:
        if value.isascii():
            return value.strip()
        text, guessed = surrogates_to_text(value, hint)
        if guessed and defects is not None:
            defects.append("8-bit header not in UTF-8, decoded by guess")
        return text.strip()
    return _decode_words(value, defects, hint).strip()


def _decode_words(value: str, defects: list[str] | None, hint: str | None) -> str:
    """Decode a value holding encoded words, joining words split inside one character."""
    # Each piece is (charset or None for plain text, payload).
    pieces: list[tuple[str | None, bytes | str]] = []
    pos = 0
    lenient = False
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        # RFC 2047 section 6.2: whitespace between adjacent encoded words is dropped.
        if between and not (between.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, between))
        charset, encoding, text = match.groups()
        data, was_lenient = _word_bytes(encoding, text)
        lenient = lenient or was_lenient
        charset = charset.lower()
        if pieces and pieces[-1][0] == charset:
            # Clients split multi-byte characters across words; join bytes first.
            previous = pieces[-1][1]
            assert isinstance(previous, bytes)
            pieces[-1] = (charset, previous + data)
        else:
            pieces.append((charset, data))
        pos = match.end()
    if pos < len(value):
        pieces.append((None, value[pos:]))
    out: list[str] = []
    guessed_any = False
    for charset, payload in pieces:
        if charset is None:
            assert isinstance(payload, str)
            text, guessed = (payload, False) if payload.isascii() else surrogates_to_text(payload, hint)
        else:
            assert isinstance(payload, bytes)
            text, guessed = decode_bytes(payload, charset)
        guessed_any = guessed_any or guessed
        out.append(text)
    if defects is not None:
        if lenient:
            defects.append("malformed base64 in encoded word")
        if guessed_any:
            defects.append("header charset missing or wrong, decoded by guess")
    return "".join(out)


# The common shapes: 'a@b', 'Name <a@b>', '"Last, First" <a@b>', comma-separated.
# Anything else (comments, groups, escapes, encoded words) goes to getaddresses.
_SIMPLE_ADDRESS = re.compile(
    r'\s*(?:(?:"([^"\\]*)"|([^",<>()\\;:@]*?))\s*<([^<>\s",;:()\\]+@[^<>\s",;:()\\]+)>'
    r'|([^<>\s",;:()\\]+@[^<>\s",;:()\\]+))\s*(?:,|$)'
)


def _simple_addresses(
    raw_values: list[str], defects: list[str], hint: str | None
) -> tuple[Address, ...] | None:
    """Addresses by one regular expression, or None when the header needs the full parser.

    getaddresses costs ~100 us per header; most headers are one plain mailbox.
    """
    found: list[Address] = []
    for raw in raw_values:
        value = unfold(raw).strip()
        if not value or "=?" in value or len(value) > 4096:
            return None
        position = 0
        for match in _SIMPLE_ADDRESS.finditer(value):
            if match.start() != position:
                return None
            position = match.end()
            quoted, bare, angle, plain = match.groups()
            email = angle or plain or ""
            name = quoted if quoted is not None else (bare or "")
            if not email.isascii():
                email = surrogates_to_text(email, hint)[0]
            if not name.isascii():
                name = decode_header_value(name, defects, hint)
            found.append(Address(email=email.lower(), name=name.strip()))
        if position != len(value):
            return None
    return tuple(found[:1000])


def parse_addresses(
    raw_values: list[str], defects: list[str], hint: str | None = None, local_ok: bool = False
) -> tuple[Address, ...]:
    """Addresses from raw header values; display names decoded after splitting.

    Splitting before decoding matters: a name may hold a comma that is not a
    list separator, quoted or (against RFC 2047 section 5, but common) inside
    an unquoted encoded word such as ``=?iso-8859-1?Q?B=FCrling,=20Andreas?=``.
    Entries without an "@" ("To: Recipients", "undisclosed-recipients:;")
    name no mailbox and are left out, unless ``local_ok`` allows a bare
    local part such as "MAILER-DAEMON".
    """
    simple = _simple_addresses(raw_values, defects, hint)
    if simple is not None:
        return simple
    words: list[str] = []

    def protect(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"\ue000{len(words) - 1}\ue001"

    cleaned = [_ENCODED_WORD.sub(protect, unfold(value)[:MAX_HEADER_CHARS]) for value in raw_values]
    try:
        pairs = getaddresses(cleaned)
    except Exception:  # the stdlib parser has raised on odd input before
        defects.append("address header could not be parsed")
        return ()
    found: list[Address] = []
    for name, addr in pairs:
        name = _PLACEHOLDER.sub(lambda match: words[int(match.group(1))], name)
        addr = _PLACEHOLDER.sub(lambda match: words[int(match.group(1))], addr)
        email = decode_header_value(addr, None, hint).strip().strip("<>").strip()
        display = decode_header_value(name, defects, hint).strip().strip("\"'").strip()
        if not email and "@" in display:
            # '"someone@example.com"' with no angle address: the name is the address.
            email, display = display, ""
        if not email or ("@" not in email and not local_ok) or len(found) >= 1000:
            continue
        found.append(Address(email=email.lower(), name=display))
    return tuple(found)


def parse_msgids(raw: str | None) -> tuple[str, ...]:
    """Message ids in ``<...>`` form from References/In-Reply-To, in order, deduplicated."""
    if not raw:
        return ()
    value = unfold(raw)[:MAX_HEADER_CHARS]
    ids = [f"<{found}>" for found in _MSGID.findall(value)]
    if not ids:
        # Some clients drop the angle brackets (RFC 5322 section 3.6.4 says they must not).
        ids = [f"<{token.strip('<>')}>" for token in value.split() if "@" in token]
    seen: set[str] = set()
    unique = []
    for msgid in ids:
        if msgid not in seen:
            seen.add(msgid)
            unique.append(msgid)
    return tuple(surrogates_to_text(msgid)[0] if not msgid.isascii() else msgid for msgid in unique)


def normalise_message_id(raw: str | None) -> str | None:
    """The first id of a Message-ID header in ``<...>`` form, or None when there is none."""
    if raw is None:
        return None
    value = unfold(raw).strip()[:MAX_HEADER_CHARS]
    match = _MSGID.search(value)
    if match:
        msgid = f"<{match.group(1)}>"
    else:
        token = value.split()[0].strip("<>") if value.split() else ""
        if not token:
            return None
        msgid = f"<{token}>"
    return msgid if msgid.isascii() else surrogates_to_text(msgid)[0]


def parse_date(raw: str | None) -> datetime | None:
    """A timezone-aware datetime from a Date header, or None when unreadable."""
    if not raw:
        return None
    value = unfold(raw).strip()[:200]
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        # RFC 5322 section 3.3: "-0000" means UTC with no local-time information.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
