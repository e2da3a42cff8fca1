"""Outlook's winmail.dat (application/ms-tnef): the attachments inside it.

Outlook sends rich-text mail as one TNEF blob that other clients show as a
useless "winmail.dat". The format is documented in Microsoft's [MS-OXTNEF]:
a signature, then attributes of (level, id, length, data, checksum). Each
attachment starts with attAttachRendData and carries its bytes in
attAttachData, its 8.3 name in attAttachTitle, and MAPI properties (the
long filename and MIME type) in attAttachment. We read only those; every
length is checked against the buffer, so a hostile blob cannot make us
read past its end or loop.
"""

from __future__ import annotations

import mimetypes
import struct
from dataclasses import dataclass

TNEF_SIGNATURE = 0x223E9F78
LEVEL_ATTACHMENT = 0x02

# Attribute ids ([MS-OXTNEF] section 2.1.3.3), with their type in the high word.
ATT_ATTACH_DATA = 0x0006800F
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACHMENT = 0x00069005

# MAPI property ids we want from attAttachment ([MS-OXPROPS]).
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_MIME_TAG = 0x370E
PR_ATTACH_DATA_BIN = 0x3701

# MAPI property types and the size of one fixed-size value, padded to 4.
PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT = 0x001E, 0x001F, 0x0102, 0x000D
_FIXED_SIZES = {
    0x0002: 4,
    0x0003: 4,
    0x0004: 4,
    0x0005: 8,
    0x0006: 8,
    0x0007: 8,
    0x000A: 4,
    0x000B: 4,
    0x0014: 8,
    0x0040: 8,
    0x0048: 16,
    0x0001: 0,
}
MULTI_VALUED = 0x1000

MAX_ATTACHMENTS = 500


class TnefError(ValueError):
    """The blob is not TNEF or is cut short."""


@dataclass
class _Attachment:
    title: str = ""
    long_name: str = ""
    mime_type: str = ""
    data: bytes | None = None


def is_tnef(content_type: str, filename: str) -> bool:
    """Whether a part is a TNEF blob, by type or by Outlook's fixed filename."""
    return content_type in ("application/ms-tnef", "application/vnd.ms-tnef") or (
        filename.lower() == "winmail.dat"
    )


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if offset + size > len(data):
        raise TnefError("TNEF data cut short")
    return struct.unpack_from(fmt, data, offset)


def _text(raw: bytes, unicode: bool) -> str:
    """A MAPI string value without its terminating NULs."""
    if unicode:
        return raw.decode("utf-16-le", "replace").rstrip("\x00")
    return raw.split(b"\x00", 1)[0].decode("cp1252", "replace")


def _read_mapi_props(data: bytes) -> dict[int, bytes | str]:
    """The string and binary properties of a MAPI property stream, by property id."""
    props: dict[int, bytes | str] = {}
    (count,) = _unpack("<I", data, 0)
    offset = 4
    for _ in range(min(count, 10_000)):
        prop_type, prop_id = _unpack("<HH", data, offset)
        offset += 4
        if prop_id >= 0x8000:
            # Named property: a GUID, then a numeric id or a UTF-16 name.
            (kind,) = _unpack("<I", data, offset + 16)
            offset += 20
            if kind == 0:
                offset += 4
            else:
                (name_length,) = _unpack("<I", data, offset)
                offset += 4 + name_length + (-name_length % 4)
        multi = bool(prop_type & MULTI_VALUED)
        base_type = prop_type & ~MULTI_VALUED
        if base_type in (PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT):
            (values,) = _unpack("<I", data, offset)
            offset += 4
            for index in range(min(values, 10_000)):
                (length,) = _unpack("<I", data, offset)
                offset += 4
                if offset + length > len(data):
                    raise TnefError("MAPI value cut short")
                value = data[offset : offset + length]
                offset += length + (-length % 4)
                if index == 0 and not multi:
                    if base_type == PT_BINARY:
                        props[prop_id] = value
                    elif base_type != PT_OBJECT:
                        props[prop_id] = _text(value, base_type == PT_UNICODE)
        elif base_type in _FIXED_SIZES:
            size = _FIXED_SIZES[base_type]
            if multi:
                (values,) = _unpack("<I", data, offset)
                offset += 4 + size * min(values, 10_000)
            else:
                offset += size
        else:
            raise TnefError(f"unknown MAPI property type {prop_type:#x}")
        if offset > len(data):
            raise TnefError("MAPI properties cut short")
    return props


def _attributes(data: bytes) -> list[tuple[int, int, bytes]]:
    """Every (level, attribute id, data) of a TNEF blob."""
    (signature,) = _unpack("<I", data, 0)
    if signature != TNEF_SIGNATURE:
        raise TnefError("not a TNEF blob")
    offset = 6  # signature and the 16-bit legacy key
    found = []
    while offset < len(data):
        level, attribute, length = _unpack("<BII", data, offset)
        offset += 9
        if offset + length + 2 > len(data):
            raise TnefError("TNEF attribute cut short")
        found.append((level, attribute, data[offset : offset + length]))
        offset += length + 2  # the data and its 16-bit checksum
    return found


def unpack_tnef(data: bytes, defects: list[str]) -> list[tuple[str, str, bytes]] | None:
    """The (filename, content type, bytes) attachments in a TNEF blob, or None if unreadable.

    An empty list means a valid blob without attachments (a rich-text body only).
    """
    try:
        attributes = _attributes(data)
    except TnefError as error:
        defects.append(f"winmail.dat unreadable ({error}), kept as it is")
        return None
    attachments: list[_Attachment] = []
    for level, attribute, value in attributes:
        if level != LEVEL_ATTACHMENT:
            continue
        if attribute == ATT_ATTACH_REND_DATA or not attachments:
            if len(attachments) >= MAX_ATTACHMENTS:
                break
            attachments.append(_Attachment())
        current = attachments[-1]
        if attribute == ATT_ATTACH_TITLE:
            current.title = _text(value, unicode=False)
        elif attribute == ATT_ATTACH_DATA:
            current.data = value
        elif attribute == ATT_ATTACHMENT:
            try:
                props = _read_mapi_props(value)
            except TnefError as error:
                defects.append(f"winmail.dat attachment properties unreadable ({error})")
                continue
            for prop_id in (PR_ATTACH_LONG_FILENAME, PR_ATTACH_FILENAME):
                name = props.get(prop_id)
                if isinstance(name, str) and name and not current.long_name:
                    current.long_name = name
            mime = props.get(PR_ATTACH_MIME_TAG)
            if isinstance(mime, str):
                current.mime_type = mime.strip().lower()
            binary = props.get(PR_ATTACH_DATA_BIN)
            if current.data is None and isinstance(binary, bytes):
                current.data = binary
    unpacked = []
    for index, attachment in enumerate(attachments):
        if attachment.data is None:
            continue
        name = attachment.long_name or attachment.title or f"attachment{index + 1}"
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
        mime = attachment.mime_type
        if "/" not in mime:
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        unpacked.append((name, mime, attachment.data))
    return unpacked
