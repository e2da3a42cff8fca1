"""Content-Transfer-Encoding decoding that survives broken input (RFC 2045 section 6)."""

from __future__ import annotations

import binascii
import re
from email.message import Message

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]+")
_PADDING = re.compile(rb"=+")


def raw_payload(part: Message) -> object:
    """The payload compat32 stored: a str (surrogate-escaped bytes) or a list of parts.

    ``get_payload()`` decodes a str holding 8-bit bytes with the declared
    charset and replacement characters (and can raise doing so), so the
    bytes we want are only in the private attribute.
    """
    return getattr(part, "_payload", None)


def raw_headers(part: Message) -> list[tuple[str, str]]:
    """The (name, raw value) pairs compat32 keeps, in order, undecoded."""
    return list(getattr(part, "_headers", []))


def payload_bytes(part: Message) -> bytes:
    """The still-encoded body of a leaf part as bytes, as it was on the wire.

    compat32's BytesParser keeps 8-bit bytes as surrogate escapes in a str.
    """
    payload = raw_payload(part)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    if isinstance(payload, bytes):
        return payload
    return b""


def _decode_base64(raw: bytes, defects: list[str]) -> bytes:
    """Decode base64, ignoring junk characters and repairing padding."""
    cleaned = _NOT_BASE64.sub(b"", raw)
    # Some encoders concatenate separately padded chunks; decode them one by one.
    chunks = [chunk for chunk in _PADDING.split(cleaned) if chunk]
    if len(chunks) > 1 or len(cleaned) != len(raw.replace(b"\r", b"").replace(b"\n", b"")):
        defects.append("base64 body had junk characters or inner padding")
    out = bytearray()
    for chunk in chunks:
        if len(chunk) % 4 == 1:
            # A lone trailing character carries no full byte: the body was truncated.
            defects.append("base64 body truncated")
            chunk = chunk[:-1]
        try:
            out += binascii.a2b_base64(chunk + b"=" * (-len(chunk) % 4))
        except binascii.Error:
            defects.append("base64 body undecodable")
    return bytes(out)


def _decode_uu(raw: bytes, defects: list[str]) -> bytes:
    """Decode uuencoded data, with or without the "begin"/"end" lines.

    The stdlib's decoder insists on a "begin" line; some Mac clients of the
    2000s omit it, so every data line is decoded on its own.
    """
    out = bytearray()
    for line in raw.splitlines():
        if line.startswith((b"begin ", b"end")) or not line.strip():
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Encoders disagree on trailing padding; decode just the declared length.
            length = ((line[0] - 32) & 63) * 4 // 3 if line else 0
            try:
                out += binascii.a2b_uu(line[: length + 1])
            except binascii.Error:
                defects.append("uuencoded line undecodable")
    return bytes(out)


def transfer_encoding(part: Message) -> str:
    """The Content-Transfer-Encoding of a part, lower-cased, "" when absent."""
    return str(part.get("content-transfer-encoding", "")).strip().lower()


def decode_transfer(part: Message, defects: list[str], encoding: str | None = None) -> bytes:
    """The decoded body bytes of a leaf part; never raises.

    ``encoding`` is the part's Content-Transfer-Encoding when the caller has it already.
    """
    if encoding is None:
        encoding = transfer_encoding(part)
    raw = payload_bytes(part)
    if encoding == "base64":
        return _decode_base64(raw, defects)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    if encoding in ("x-uuencode", "uuencode", "uue", "x-uue"):
        return _decode_uu(raw, defects)
    if encoding not in ("", "7bit", "8bit", "binary"):
        defects.append(f"unknown Content-Transfer-Encoding {encoding[:40]!r}, kept raw")
    return raw
