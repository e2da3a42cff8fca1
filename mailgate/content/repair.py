"""Repairs to the raw header block before the stdlib parser sees it.

compat32's feed parser ends the header block at the first line that is not
``Name: value`` or a continuation, and reads everything after it as body.
Real mail breaks that rule: relays that lose the indentation of a folded
``Received`` line, and forwarders that put a banner line before the headers.
"""

from __future__ import annotations

import re

_EOL = rb"(?:\r\n|\r|\n)"
# RFC 5322 section 2.2: a field name is printable ASCII except ":" and space.
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_WELL_FORMED = re.compile(
    rb"(?:From [^\r\n]*"
    + _EOL
    + rb")?(?:[!-9;-~]+[ \t]*:[^\r\n]*"
    + _EOL
    + rb"(?:[ \t][^\r\n]*"
    + _EOL
    + rb")*)*"
    + _EOL
)
_LINE = re.compile(rb"[^\r\n]*" + _EOL + rb"|[^\r\n]+$")
# How many banner lines before the first header we are willing to drop.
MAX_BANNER_LINES = 3
# Header blocks larger than this are not repaired (they are parsed as they are).
MAX_REPAIR_BYTES = 1024 * 1024


def header_block_end(raw: bytes) -> int | None:
    """Where a well-formed header block (with its blank line) ends, or None if it is not."""
    match = _WELL_FORMED.match(raw)
    return match.end() if match else None


def repair_headers(raw: bytes, defects: list[str]) -> bytes:
    """``raw`` with stray lines in the header block made continuations or dropped."""
    if _WELL_FORMED.match(raw):
        return raw
    window = raw[:MAX_REPAIR_BYTES]
    lines = _LINE.findall(window)
    if not lines:
        return raw
    start = 0
    if lines[0].startswith(b"From "):
        start = 1
    # A banner line or two before the first real header (forwarding tools write them).
    first_header = next(
        (
            i
            for i in range(start, min(len(lines), start + MAX_BANNER_LINES + 1))
            if _HEADER_LINE.match(lines[i])
        ),
        None,
    )
    if first_header is None:
        return raw
    if first_header > start:
        defects.append("text before the header block dropped")
    # The block ends at the first empty line; the last real header line bounds repairs.
    end = next((i for i in range(first_header, len(lines)) if not lines[i].strip(b"\r\n")), len(lines))
    last_header = max(
        (i for i in range(first_header, end) if _HEADER_LINE.match(lines[i])), default=first_header
    )
    out = lines[:start]
    repaired = False
    for index in range(first_header, len(lines)):
        line = lines[index]
        continuation = first_header < index < last_header and line[:1] not in (b" ", b"\t")
        if continuation and not _HEADER_LINE.match(line):
            line = b" " + line
            repaired = True
        out.append(line)
    if repaired:
        defects.append("header lines without indentation joined to the header above")
    return b"".join(out) + raw[len(window) :]
