"""Attachment contents, stored once per SHA-256 whatever how many mails carry them.

The article keeps the list (name, type, size, hash, inline cid); the bytes
go to ``attachment_blobs`` keyed by hash, so a logo in every signature or a
form forwarded a hundred times is stored once. Per-file and per-message
limits keep a 30 MB scan from filling the database; what is not kept is
still listed, with why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select

from mailgate.config import Limits
from mailgate.message import Attachment
from mailgate.store.models import AttachmentBlob

BLOBS = cast(Table, AttachmentBlob.__table__)
_KNOWN = select(BLOBS.c.sha256).where(BLOBS.c.sha256.in_(bindparam("b_hashes", expanding=True)))


def store_attachments(
    conn: Connection, attachments: Sequence[Attachment], limits: Limits
) -> list[dict[str, Any]]:
    """Store new contents and return the article's attachment list."""
    listed: list[dict[str, Any]] = []
    budget = limits.max_attachments_bytes_per_message
    wanted: dict[str, bytes] = {}
    for attachment in attachments:
        entry: dict[str, Any] = {
            "filename": attachment.filename,
            "content_type": attachment.content_type,
            "size": attachment.size,
            "sha256": attachment.sha256,
            "content_id": attachment.content_id,
            "inline": attachment.inline,
            "stored": False,
        }
        if not attachment.content and attachment.size:
            entry["reason"] = "over the parse limit; listed only"
        elif attachment.size > limits.max_attachment_bytes:
            entry["reason"] = f"over limits.max_attachment_bytes ({limits.max_attachment_bytes})"
        elif attachment.size > budget:
            entry["reason"] = "over limits.max_attachments_bytes_per_message"
        else:
            budget -= attachment.size
            wanted[attachment.sha256] = attachment.content
            entry["stored"] = True
        listed.append(entry)
    if wanted:
        known = set(conn.execute(_KNOWN, {"b_hashes": list(wanted)}).scalars())
        fresh = [{"sha256": h, "size": len(c), "content": c} for h, c in wanted.items() if h not in known]
        if fresh:
            conn.execute(BLOBS.insert(), fresh)
    return listed


def load_attachment(conn: Connection, sha256: str) -> bytes | None:
    return conn.execute(select(BLOBS.c.content).where(BLOBS.c.sha256 == sha256)).scalar()
