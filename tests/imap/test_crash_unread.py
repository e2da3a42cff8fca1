"""kill -9 between storing IMAP mail and flagging it: nothing stays unread (issue 10).

Flag mode leaves processed mail in the folder and marks it \\Seen. A daemon
killed after its commit and before its STORE +FLAGS leaves stored messages
unread. The restarted daemon must flag them on its first pass: before, it
left them for ``finish_grace_seconds`` as if another instance owned them,
and a daemon restarted more often than that never flagged them at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from email import message_from_bytes
from email.utils import format_datetime
from typing import Any

import pytest

from tests.conftest import DaemonProcess, wait_until
from tests.imap.conftest import Mailbox

pytestmark = pytest.mark.dovecot

# Figures for the report: MAILGATE_IMAP_KILLS=8 MAILGATE_IMAP_MESSAGES=320.
KILLS = int(os.environ.get("MAILGATE_IMAP_KILLS", "3"))
MESSAGES = int(os.environ.get("MAILGATE_IMAP_MESSAGES", "20"))
BATCH = max(1, MESSAGES // (KILLS + 2))


def _request(n: int) -> bytes:
    return (
        f"From: Person {n} <person{n}@example.org>\r\n"
        "To: helpdesk@example.com\r\n"
        f"Subject: request {n}\r\n"
        f"Message-ID: <crash-unread-{n}@example.org>\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "The coffee machine on floor 2 is leaking.\r\n"
    ).encode()


def _run_until_killed(daemon: DaemonProcess) -> None:
    """Start the daemon and wait for the crash point to SIGKILL it (maybe before it is ready)."""
    with contextlib.suppress(AssertionError):  # killed before daemon.ready
        daemon.start(timeout=30)
    wait_until(lambda: daemon.process is not None and daemon.process.poll() is not None, timeout=60)
    assert daemon.process is not None
    assert -9 == daemon.process.returncode


def _acks_by_request(daemon: DaemonProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for raw in daemon.acks():
        key = str(message_from_bytes(raw)["In-Reply-To"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_kills_between_store_and_flag_leave_no_ticket_unread(daemon_factory: Any, mailbox: Mailbox) -> None:
    """After kill -9s right after IMAP commits and a restart, every stored mail is \\Seen, once a ticket."""
    mailbox.append(*(_request(n) for n in range(MESSAGES)))
    account = {
        "name": "support",
        "host": "127.0.0.1",
        "port": mailbox.server.imap_port,
        "security": "none",
        "username": mailbox.user,
        "password": mailbox.password,
        "address": "helpdesk@example.com",
        "batch_size": BATCH,
        # Long enough that only the first pass after the restart can flag
        # what the killed runs stored: waiting out a grace is no fix.
        "finish_grace_seconds": 600,
    }
    daemon = daemon_factory(
        imap=[account],
        limits={"auto_replies_per_hour": 10_000, "auto_replies_per_day": 10_000},
        env={"MAILGATE_CRASH_AT": "imap-stored"},
        start=False,
    )
    for _ in range(KILLS):
        # Each run dies right after committing its first batch, before the flag.
        _run_until_killed(daemon)
    stored_unread = mailbox.count("INBOX", "UNSEEN")
    assert MESSAGES - KILLS * BATCH <= stored_unread  # the kills really left stored mail unread

    daemon.env = {}
    daemon.start(timeout=30)
    ids = [f"<crash-unread-{n}@example.org>" for n in range(MESSAGES)]
    # A loaded machine answers a few requests a second: wait in proportion.
    wait_until(lambda: len(daemon.acks()) >= MESSAGES, timeout=60 + 2 * MESSAGES, interval=0.5)
    unread = mailbox.count("INBOX", "UNSEEN")
    with contextlib.suppress(AssertionError):
        wait_until(lambda: 0 == mailbox.count("INBOX", "UNSEEN"), timeout=20)
    print(
        f"\n{KILLS} kills over {MESSAGES} IMAP messages: {unread} unread when all were answered, "
        f"{mailbox.count('INBOX', 'UNSEEN')} unread 20 s later"
    )
    assert 0 == mailbox.count("INBOX", "UNSEEN")
    time.sleep(0.5)  # a second acknowledgement, if any, would be written by now
    assert {message_id: 1 for message_id in ids} == _acks_by_request(daemon)
    listed = daemon.cli("tickets", "list", "--json", "--limit", str(MESSAGES + 10))
    assert MESSAGES == len(json.loads(listed.stdout))
    assert MESSAGES == mailbox.count("INBOX")
    assert 0 == daemon.stop()
