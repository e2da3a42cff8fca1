"""Hostile and broken mail through the whole pipeline: bounded, never a crash."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from mailgate.store.models import Inbound
from mailgate.tickets.pipeline import Processor
from tests.conftest import make_mail, run_cli
from tests.helpers import deliver, outbox_mails


def nested(depth: int) -> bytes:
    head = b"From: a@example.org\r\nTo: helpdesk@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    parts = []
    for level in range(depth):
        parts.append(f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode())
    body = b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    closing = b"".join(f"\r\n--b{level}--\r\n".encode() for level in reversed(range(depth)))
    return head + b"".join(parts) + body + closing


HOSTILE = {
    "1000-level MIME nesting": nested(1000),
    "10,000 headers": b"".join(f"X-H{n}: v\r\n".encode() for n in range(10_000)) + make_mail(),
    "1 MB subject": make_mail(subject="A" * 1_000_000),
    "NUL bytes and bare CR": make_mail(body="line\x00one\rline two\r\rthree\n"),
    "8-bit header bytes": make_mail().replace(
        b"Subject: Printer", b"Subject: Dr\xfccker \xe2\x82\xac kaputt"
    ),
    "lying charset": make_mail().replace(b"charset=utf-8", b"charset=x-unknown-klingon")
    + "é ü".encode("latin-1"),
    "broken base64": make_mail(
        headers={"Content-Transfer-Encoding": "base64"}, body="!!!not*base64@@@\n===\n"
    ),
    "no headers at all": b"just some bytes without any header\r\n",
    "binary garbage": bytes(range(256)) * 40,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_mail_gets_a_clear_outcome_quickly(runtime_factory: Any, name: str) -> None:
    """Each hostile mail is stored as a ticket (or given a stated outcome) in bounded time, no crash."""
    runtime = runtime_factory()
    started = time.monotonic()
    result = deliver(runtime, HOSTILE[name])
    elapsed = time.monotonic() - started
    assert result.state in {"done", "bounce", "quarantined"}, result.reason
    assert elapsed < 10, f"{name} took {elapsed:.1f}s"


def test_a_message_that_keeps_failing_is_quarantined_and_can_be_replayed(
    runtime_factory: Any, tmp_path: Path
) -> None:
    """After max_attempts failures the message is quarantined with its last error, and replays after a fix."""
    templates = tmp_path / "templates" / "en"
    templates.mkdir(parents=True)
    (templates / "ack.txt").write_text(
        "{% block subject %}{{ no_such_value }}{% endblock %}{% block body %}x{% endblock %}"
    )
    runtime = runtime_factory(templates=str(tmp_path / "templates"), limits={"max_attempts": 3})
    first = deliver(runtime, make_mail(message_id="<poison@example.org>"))
    assert "failed" == first.state
    assert "UndefinedError" in first.reason
    processor = Processor(runtime)
    for _ in range(3):
        with runtime.sessions.begin() as session:
            session.execute(update(Inbound).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
        processor.process_pending()
    with runtime.sessions() as session:
        (row,) = session.scalars(select(Inbound))
    assert "quarantined" == row.state
    assert "processing failed 3 times" in (row.reason or "")
    assert "UndefinedError" in (row.reason or "")

    # The admin fixes the template and replays it: one ticket, one acknowledgement.
    (templates / "ack.txt").unlink()
    replay = run_cli(runtime.config.base_dir / "mailgate.yaml", "quarantine", "retry", str(row.id))
    assert 0 == replay.returncode, replay.stderr
    assert b"done" in replay.stdout
    assert 1 == len(outbox_mails(runtime))


def test_hostile_mail_over_smtp_through_a_real_daemon(daemon_factory: Any) -> None:
    """Every hostile mail above, relayed by an MTA to the running daemon: all 250, all given
    an outcome, no worker dies and nothing is logged as an error."""
    import smtplib

    from tests.conftest import HELPDESK
    from tests.helpers import as_an_mta_sends_it, settled_inbound_states

    daemon = daemon_factory()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=30) as client:
        for name in sorted(HOSTILE):
            assert {} == client.sendmail("a@example.org", [HELPDESK], as_an_mta_sends_it(HOSTILE[name])), name
    states = settled_inbound_states(daemon, len(HOSTILE), timeout=60)
    assert set(states) <= {"done", "quarantined"}
    assert 0 == daemon.stop()
    assert [] == [line for line in daemon.lines if line.get("event") == "worker.died"]
    assert [] == [line for line in daemon.lines if line.get("level") == "error"]
