"""Attachments: stored once by content hash, with per-file and per-message limits."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from sqlalchemy import func, select

from mailgate.store.models import Article, AttachmentBlob
from mailgate.tickets.attachment_store import load_attachment
from tests.conftest import make_mail
from tests.helpers import deliver


def with_attachment(name: str, content: bytes, message_id: str) -> bytes:
    encoded = base64.encodebytes(content).decode()
    body = (
        "--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        f'--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
    )
    head = make_mail(message_id=message_id).split(b"\r\n\r\n", 1)[0]
    head = head.replace(
        b"Content-Type: text/plain; charset=utf-8", b'Content-Type: multipart/mixed; boundary="b1"'
    )
    return head + b"\r\n\r\n" + body.encode()


def test_same_attachment_in_two_mails_is_stored_once(runtime_factory: Any) -> None:
    """Two mails carrying the same PDF store its bytes once, and both articles list it."""
    runtime = runtime_factory()
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 40
    deliver(runtime, with_attachment("scan.pdf", pdf, "<a1@example.org>"))
    deliver(runtime, with_attachment("copy.pdf", pdf, "<a2@example.org>"))
    digest = hashlib.sha256(pdf).hexdigest()
    with runtime.sessions() as session:
        assert 1 == session.scalar(select(func.count()).select_from(AttachmentBlob))
        listed = [a.attachments for a in session.scalars(select(Article).where(Article.direction == "in"))]
        assert pdf == load_attachment(session.connection(), digest)
    assert [["scan.pdf"], ["copy.pdf"]] == [[entry["filename"] for entry in item] for item in listed]
    assert all(entry["stored"] and digest == entry["sha256"] for item in listed for entry in item)


def test_attachment_over_the_limit_is_listed_not_kept(runtime_factory: Any) -> None:
    """A file over limits.max_attachment_bytes is listed on the article with the reason, not stored."""
    runtime = runtime_factory(limits={"max_attachment_bytes": 1000})
    deliver(runtime, with_attachment("big.pdf", b"x" * 5000, "<big@example.org>"))
    with runtime.sessions() as session:
        (article,) = session.scalars(select(Article).where(Article.direction == "in"))
        assert 0 == session.scalar(select(func.count()).select_from(AttachmentBlob))
    (entry,) = article.attachments
    assert entry["stored"] is False
    assert "max_attachment_bytes" in entry["reason"]
