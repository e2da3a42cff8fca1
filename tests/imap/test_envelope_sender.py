"""Unknown is not null: IMAP mail without Return-Path is answered, ``<>`` is not (issue 10).

A message a client uploaded or moved into the helpdesk folder, or that a
server stored without writing Return-Path, carries no envelope sender at
all. It is an ordinary request until its headers say otherwise; only a
``Return-Path: <>`` that something recorded marks a notification.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime
from email import message_from_bytes
from email.utils import format_datetime, getaddresses
from typing import Any

import pytest

from tests.conftest import ticket_count, tickets_json, wait_until
from tests.imap.conftest import Mailbox

pytestmark = pytest.mark.dovecot

# Figures for the report: MAILGATE_IMAP_REQUESTS=100.
REQUESTS = int(os.environ.get("MAILGATE_IMAP_REQUESTS", "5"))


def _request(sender: str, subject: str, return_path: str | None) -> bytes:
    """A person's plain request; ``return_path`` None leaves the header out."""
    lines = [f"Return-Path: {return_path}"] if return_path is not None else []
    lines += [
        f"From: {sender.split('@')[0].title()} <{sender}>",
        "To: helpdesk@example.com",
        f"Subject: {subject}",
        f"Message-ID: <{subject.replace(' ', '.')}.{time.monotonic_ns()}@example.org>",
        f"Date: {format_datetime(datetime.now(UTC))}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Hello, my laptop does not start since this morning. Can you help?",
        "",
    ]
    return "\r\n".join(lines).encode()


def _ack_recipients(daemon: Any) -> list[str]:
    return sorted(
        address.lower()
        for raw in daemon.acks()
        for _, address in getaddresses([str(message_from_bytes(raw)["To"])])
    )


def test_appended_mail_without_return_path_is_acknowledged_and_a_recorded_null_is_not(
    daemon_factory: Any, mailbox: Mailbox
) -> None:
    """Five requests APPENDed without Return-Path get their acknowledgement; one with `<>` does not."""
    daemon = daemon_factory(
        imap=[
            {
                "name": "support",
                "host": "127.0.0.1",
                "port": mailbox.server.imap_port,
                "security": "none",
                "username": mailbox.user,
                "password": mailbox.password,
                "address": "helpdesk@example.com",
            }
        ]
    )
    daemon.wait_for("imap.connected", timeout=15)
    # The recorded null first: by the time the later requests are answered,
    # an acknowledgement to it would have been queued before theirs.
    mailbox.append(_request("dora@example.org", "null sender", "<>"))
    people = sorted(f"person{n}@example.org" for n in range(REQUESTS))
    mailbox.append(*(_request(person, f"no return path {n}", None) for n, person in enumerate(people)))
    wait_until(lambda: ticket_count(daemon.config_path) == REQUESTS + 1, timeout=30 + REQUESTS)
    assert REQUESTS + 1 == len(tickets_json(daemon.config_path))
    with contextlib.suppress(AssertionError):
        wait_until(lambda: len(daemon.acks()) >= REQUESTS, timeout=30 + REQUESTS)
    time.sleep(2.5)  # one more acknowledgement, if any, would be written by now
    answered = len(set(_ack_recipients(daemon)) & set(people))
    print(f"\nIMAP mail without Return-Path acknowledged: {answered} of {REQUESTS}")
    assert people == _ack_recipients(daemon)
    assert 0 == daemon.stop()
