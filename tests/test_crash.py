"""kill -9 at any moment, restart, count: nothing lost, nothing doubled."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import smtplib
import threading
import time
from email import message_from_bytes
from typing import Any

import pytest

from tests.conftest import HELPDESK, DaemonProcess, make_mail, tickets_json, wait_until


def _acks_by_request(daemon: DaemonProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for raw in daemon.acks():
        key = str(message_from_bytes(raw)["In-Reply-To"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _send_until_accepted(daemon: DaemonProcess, raw: bytes, deadline: float) -> int:
    """Send like an MTA: on any failure, wait and send the same message again."""
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as client:
                client.sendmail("alice@example.org", [HELPDESK], raw)
            return tries
        except (OSError, smtplib.SMTPException):
            time.sleep(0.05)
    raise AssertionError("message never accepted")


@pytest.mark.parametrize("point", ["inbound-committed", "spool-imported", "processed", "outbox-sent"])
def test_kill_at_a_chosen_point_then_restart(daemon_factory: Any, point: str) -> None:
    """SIGKILL right after a commit, before its effect is reported, loses and doubles nothing."""
    daemon = daemon_factory(env={"MAILGATE_CRASH_AT": point}, start=True)
    raw = make_mail(message_id=f"<crash-{point}@example.org>")
    # Killed before it could answer 250 (or just after): the client sends again.
    with contextlib.suppress(smtplib.SMTPException, OSError):
        daemon.send(raw)
    wait_until(lambda: daemon.process is not None and daemon.process.poll() is not None, timeout=15)
    assert -9 == daemon.process.returncode  # type: ignore[union-attr]

    daemon.env = {}
    daemon.start()
    if point == "inbound-committed":
        # Journaled but never imported: imported at start, before the listener opens.
        assert 1 == daemon.wait_for("spool.recovered")["stored"]
    if point == "spool-imported":
        # Imported, but the journal was not yet told: found stored already.
        assert 1 == daemon.wait_for("spool.recovered")["already_stored"]
    _send_until_accepted(daemon, raw, time.monotonic() + 20)  # the MTA retries
    wait_until(lambda: daemon.acks(), timeout=15)
    time.sleep(0.5)  # a second ack, if any, would be written by now
    assert {f"<crash-{point}@example.org>": 1} == _acks_by_request(daemon)
    tickets = tickets_json(daemon.config_path)
    assert 1 == len(tickets)
    assert 0 == daemon.stop()


def test_random_sigkills_mid_stream(daemon_factory: Any) -> None:
    """Three clients stream 90 requests while the daemon is killed -9 three times.

    Each request still ends as exactly one ticket with exactly one acknowledgement.
    """
    daemon = daemon_factory(limits={"auto_replies_per_hour": 1000, "auto_replies_per_day": 1000})
    ids = [f"<stream-{n}@example.org>" for n in range(90)]
    deadline = time.monotonic() + 120
    tries: list[int] = []

    def client(chunk: list[str]) -> None:
        for message_id in chunk:
            raw = make_mail(message_id=message_id, subject=f"request {message_id}")
            tries.append(_send_until_accepted(daemon, raw, deadline))

    threads = [threading.Thread(target=client, args=(ids[n::3],)) for n in range(3)]
    for thread in threads:
        thread.start()
    # Killed at chosen stages of the stream, not after a chosen time: a fast
    # daemon takes all 90 in a fraction of a second.
    rng = random.Random(7)
    for stage in (15, 40, 65):
        kill_after = stage + rng.randint(0, 10)
        wait_until(lambda kill_after=kill_after: len(tries) >= kill_after, timeout=60)
        daemon.kill()
        daemon.start()
    for thread in threads:
        thread.join()
    # The kills really interrupted the stream: some sends had to be retried.
    assert sum(tries) > len(ids)

    wait_until(lambda: len(_acks_by_request(daemon)) >= len(ids), timeout=60)
    time.sleep(0.5)
    acks = _acks_by_request(daemon)
    assert {message_id: 1 for message_id in ids} == acks
    tickets = tickets_json(daemon.config_path)
    assert len(ids) == len(tickets)
    assert 0 == daemon.stop()


@pytest.mark.parametrize("role", ["processing", "delivery"])
def test_a_killed_worker_is_restarted_and_mail_still_flows(daemon_factory: Any, role: str) -> None:
    """kill -9 of one worker process: the daemon restarts it; mail sent meanwhile is answered."""
    daemon = daemon_factory(start=True)
    # daemon.ready does not wait for the workers: on a loaded machine the
    # processing worker may still be importing when the listener opens.
    daemon.wait_for("worker.ready", timeout=30, count=2)
    ready = {line["role"]: line["pid"] for line in daemon.lines if line.get("event") == "worker.ready"}
    assert {"processing", "delivery"} == set(ready)
    os.kill(ready[role], signal.SIGKILL)
    daemon.wait_for("worker.died", timeout=10)
    # Accepted while the worker is down: it waits in the database.
    daemon.send(make_mail(message_id=f"<while-{role}-down@example.org>"))
    restarted = daemon.wait_for("worker.ready", timeout=20, count=3)
    assert role == restarted["role"] and ready[role] != restarted["pid"]
    wait_until(lambda: _acks_by_request(daemon) == {f"<while-{role}-down@example.org>": 1}, timeout=20)
    assert 0 == daemon.stop()


def test_without_worker_processes_everything_runs_in_the_daemon(daemon_factory: Any) -> None:
    """processing.workers: 0 keeps processing and delivery as threads of `mailgate run`."""
    daemon = daemon_factory(processing={"workers": 0})
    assert not [line for line in daemon.lines if line.get("event") == "worker.ready"]
    for n in range(3):
        daemon.send(make_mail(message_id=f"<inline-{n}@example.org>"))
    expected = {f"<inline-{n}@example.org>": 1 for n in range(3)}
    wait_until(lambda: _acks_by_request(daemon) == expected, timeout=20)
    assert 0 == daemon.stop()
