"""Outlook's winmail.dat (application/ms-tnef): placeholder until the decoder lands."""

from __future__ import annotations


def is_tnef(content_type: str, filename: str) -> bool:
    """Whether a part is a TNEF blob, by type or by Outlook's fixed filename."""
    return content_type in ("application/ms-tnef", "application/vnd.ms-tnef") or (
        filename.lower() == "winmail.dat"
    )


def unpack_tnef(data: bytes, defects: list[str]) -> list[tuple[str, str, bytes]] | None:
    """The attachments inside a TNEF blob, or None when it cannot be read."""
    return None
