"""winmail.dat (TNEF) parts are unpacked into their real attachments."""

from __future__ import annotations

import base64
import struct

from mailgate.content.tnef import unpack_tnef
from mailgate.parse import parse


def attribute(level: int, attribute_id: int, data: bytes) -> bytes:
    """One TNEF attribute: level, id, length, data and checksum ([MS-OXTNEF] 2.1.3.1)."""
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BII", level, attribute_id, len(data)) + data + struct.pack("<H", checksum)


def unicode_property(prop_id: int, text: str) -> bytes:
    """A single PT_UNICODE MAPI property, padded to four bytes."""
    value = (text + "\x00").encode("utf-16-le")
    padding = b"\x00" * (-len(value) % 4)
    return struct.pack("<HHII", 0x001F, prop_id, 1, len(value)) + value + padding


def tnef_blob(files: list[tuple[str, str, bytes]]) -> bytes:
    """A TNEF blob holding ``files`` as (long name, MIME type, bytes), like Outlook writes."""
    blob = struct.pack("<IH", 0x223E9F78, 0x0001)
    blob += attribute(1, 0x00089006, b"\x01\x00\x00\x00")  # attTnefVersion-like message attribute
    for long_name, mime, data in files:
        blob += attribute(2, 0x00069002, b"\x01\x00" + b"\x00" * 12)  # attAttachRendData
        blob += attribute(2, 0x00018010, long_name[:8].encode("ascii", "replace") + b"\x00")
        blob += attribute(2, 0x0006800F, data)
        properties = unicode_property(0x3707, long_name) + unicode_property(0x370E, mime)
        # A fixed-size PT_LONG property before them, to exercise skipping.
        properties = struct.pack("<HHI", 0x0003, 0x0E21, 7) + properties
        blob += attribute(2, 0x00069005, struct.pack("<I", 3) + properties)
    return blob


def test_unpack_finds_long_names_types_and_bytes() -> None:
    """Each attachment comes out with its long filename, MIME type and exact bytes."""
    blob = tnef_blob(
        [
            ("Offerte maart 2024.pdf", "application/pdf", b"%PDF-1.4 offerte"),
            ("schermafdruk.png", "image/png", b"\x89PNG\r\n\x1a\nrest"),
        ]
    )
    defects: list[str] = []
    expected = [
        ("Offerte maart 2024.pdf", "application/pdf", b"%PDF-1.4 offerte"),
        ("schermafdruk.png", "image/png", b"\x89PNG\r\n\x1a\nrest"),
    ]
    assert expected == unpack_tnef(blob, defects)
    assert [] == defects


def test_truncated_blob_is_reported_not_raised() -> None:
    """A cut-short blob gives None and a defect."""
    blob = tnef_blob([("a.txt", "text/plain", b"hello world")])
    defects: list[str] = []
    assert unpack_tnef(blob[:-7], defects) is None
    assert 1 == len(defects)


def test_winmail_dat_part_is_replaced_by_its_attachments() -> None:
    """parse() swaps an application/ms-tnef part for the files inside it."""
    blob = tnef_blob([("Notulen overleg.docx", "", b"PK\x03\x04docx")])
    encoded = base64.encodebytes(blob)
    raw = (
        b"From: outlook@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nZie bijlage.\r\n"
        b"--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n"
        b"Content-Disposition: attachment; filename=winmail.dat\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b--\r\n"
    )
    (attachment,) = parse(raw).attachments
    assert ("Notulen overleg.docx", b"PK\x03\x04docx") == (attachment.filename, attachment.content)
    assert attachment.content_type.startswith("application/")


def test_unreadable_winmail_dat_is_kept_as_is() -> None:
    """A winmail.dat that is not TNEF stays an attachment, with a defect."""
    raw = (
        b"From: outlook@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n\r\nnot tnef\r\n--b--\r\n"
    )
    parsed = parse(raw)
    assert ["winmail.dat"] == [attachment.filename for attachment in parsed.attachments]
    assert any("winmail.dat unreadable" in defect for defect in parsed.defects)
