"""IMAP through the whole daemon: a mail appended to the mailbox is acknowledged."""

from __future__ import annotations

import json
import statistics
import time
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tickets_json, wait_until
from tests.imap.conftest import Mailbox, make_message


@pytest.mark.dovecot
def test_appended_mail_is_acknowledged_within_two_seconds(daemon_factory: Any, mailbox: Mailbox) -> None:
    """With IDLE, APPEND -> ticket -> acknowledgement takes under 2 s (median of 5), and the mail is moved."""
    daemon = daemon_factory(imap=[_account(mailbox, move_to="Processed", address="helpdesk@example.com")])
    daemon.wait_for("imap.connected", timeout=15)
    latencies = []
    for n in range(5):
        started = time.monotonic()
        mailbox.append(make_message(f"imap e2e {n}", sender=f"user{n}@example.org"))
        wait_until(lambda n=n: len(daemon.acks()) > n, timeout=15, interval=0.01)
        latencies.append(time.monotonic() - started)
    median = statistics.median(latencies)
    print(
        f"\nIMAP append -> acknowledgement: median {median * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    assert median < 2.0
    assert 5 == len(tickets_json(daemon.config_path))
    subjects = sorted(str(message_from_bytes(raw)["Subject"]) for raw in daemon.acks())
    assert "[HD-1] imap e2e 0" == subjects[0]
    status_file = daemon.config_path.parent / "var" / "status.json"
    account = wait_until(lambda: _account_stored(status_file, 5), timeout=15)
    assert account["state"] in {"idle", "fetching"}
    assert account["last_error"] is None
    wait_until(lambda: 5 == mailbox.count("Processed"), timeout=10)
    assert 0 == mailbox.count("INBOX")
    assert 0 == daemon.stop()


def _account_stored(status_file: Path, count: int) -> dict[str, Any] | None:
    """The support account's published status once it has stored ``count`` mails."""
    try:
        state = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None
    (account,) = state["imap"]
    return account if account["stored"] >= count else None


@pytest.mark.dovecot
def test_doctor_shows_each_account_and_a_failing_one(daemon_factory: Any, mailbox: Mailbox) -> None:
    """`mailgate doctor` reports each IMAP account's state from the daemon, FAIL for a bad password."""
    good = _account(mailbox)
    daemon = daemon_factory(imap=[good, {**good, "name": "sales", "password": "wrong"}])
    daemon.wait_for("imap.auth_failed", timeout=15)
    status_file = daemon.config_path.parent / "var" / "status.json"
    wait_until(lambda: _states(status_file) == {"support": "idle", "sales": "auth_failed"}, timeout=15)
    result = daemon.cli("doctor")
    out = result.stdout.decode()
    assert 1 == result.returncode  # the failing account is a FAIL
    assert "OK    daemon: running" in out
    assert "OK    imap support: idle" in out
    assert "FAIL  imap sales: auth_failed" in out
    assert "wrong" not in out  # no secret in the output


def _states(status_file: Path) -> dict[str, str]:
    try:
        return {a["name"]: a["state"] for a in json.loads(status_file.read_text())["imap"]}
    except (OSError, ValueError, KeyError):
        return {}


def _account(mailbox: Mailbox, **extra: str) -> dict[str, Any]:
    """The `imap:` entry of the configuration for this test mailbox."""
    return {
        "name": "support",
        "host": "127.0.0.1",
        "port": mailbox.server.imap_port,
        "security": "none",
        "username": mailbox.user,
        "password": mailbox.password,
        **extra,
    }
