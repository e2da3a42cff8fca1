"""kill -9 of the delivery worker mid-burst: at most one mail per kill goes out twice.

Issue 10, item 3: the outbox recorded a batch of up to 50 mails as sent only
after sending all of them, so one kill resent everything of its batch that
had already gone out. Now each mail is marked right after the relay's 250;
only the mail whose 250 was on the wire when the process died may go out
again, with its Message-ID unchanged.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from mailgate.outbox.deliver import OutboxWorker, RetryPolicy
from mailgate.outbox.sent_marks import SentJournal
from mailgate.outbox.transport import SmtpTransport
from mailgate.store.db import sqlite_file
from tests.conftest import HELPDESK, DaemonProcess, free_port, make_mail, wait_until
from tests.helpers import deliver
from tests.smtp_sink import Sink, SinkHandler

LIMITS = {"auto_replies_per_hour": 10_000, "auto_replies_per_day": 10_000}


class KillingHandler(SinkHandler):
    """A relay that SIGKILLs the delivery worker on chosen mails, before answering 250.

    That is the worst moment for the sender: the relay has the mail, the
    worker never hears so. It must be the only mail of the kill that comes
    again.
    """

    def __init__(self, kill_at: set[int]) -> None:
        super().__init__()
        self.kill_at = kill_at
        self.victim: int | None = None
        self.killed: list[int] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.messages) in self.kill_at and self.victim is not None:
            os.kill(self.victim, signal.SIGKILL)
            self.killed.append(self.victim)
        return answer


def _request(message_id: str) -> tuple[str, bytes]:
    requester = f"{message_id[1:-13]}@example.org"
    return requester, make_mail(message_id=message_id, sender=f"<{requester}>")


def _burst(daemon: DaemonProcess, ids: list[str], connections: int = 3) -> None:
    def client(chunk: list[str]) -> None:
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=60) as smtp:
            for message_id in chunk:
                requester, raw = _request(message_id)
                smtp.sendmail(requester, [HELPDESK], raw)

    threads = [threading.Thread(target=client, args=(ids[n::connections],)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _send_like_an_mta(port: int, ids: list[str], deadline: float) -> None:
    """Each mail until it is accepted: the daemon may die under the client."""
    for message_id in ids:
        requester, raw = _request(message_id)
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                    smtp.sendmail(requester, [HELPDESK], raw)
                break
            except (OSError, smtplib.SMTPException):
                assert time.monotonic() < deadline, f"{message_id} never accepted"
                time.sleep(0.1)


def _copies(sink: Sink) -> tuple[Counter[str], set[str]]:
    """Copies per acknowledgement Message-ID, and the requests acknowledged."""
    messages = [received.message for received in list(sink.messages)]
    return Counter(str(m["Message-ID"]) for m in messages), {str(m["In-Reply-To"]) for m in messages}


def _queued(daemon: DaemonProcess) -> list[Any]:
    listed = daemon.cli("outbox", "list", "--state", "queued", "--json")
    return list(json.loads(listed.stdout))


def _delivery_pid(daemon: DaemonProcess) -> int | None:
    ready = [line for line in daemon.events("worker.ready") if line.get("role") == "delivery"]
    return int(ready[-1]["pid"]) if ready else None


def test_three_kills_of_the_delivery_worker_resend_at_most_three_mails(daemon_factory: Any) -> None:
    """300 requests, the delivery worker killed -9 three times mid-batch: every
    request acknowledged, at most one second copy (same Message-ID) per kill."""
    handler = KillingHandler(kill_at={40, 140, 240})
    sink = Sink(free_port())
    sink.handler = sink.controller.handler = handler
    with sink:
        daemon = daemon_factory(outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}}, limits=LIMITS)
        daemon.wait_for("worker.ready", timeout=30, count=2)

        def follow_the_delivery_worker(stop: threading.Event) -> None:
            while not stop.wait(0.01):
                handler.victim = _delivery_pid(daemon)

        stop = threading.Event()
        follower = threading.Thread(target=follow_the_delivery_worker, args=(stop,), daemon=True)
        follower.start()
        ids = [f"<req{n:04d}-requester@example.org>" for n in range(300)]
        try:
            _burst(daemon, ids)
            wait_until(lambda: set(ids) <= _copies(sink)[1], timeout=180, interval=0.2)
            # A resend, if any, would have come by now (restarted workers
            # apply the journal before they lease anything).
            daemon.wait_for("worker.ready", timeout=30, count=5)
            wait_until(lambda: [] == _queued(daemon), timeout=30, interval=0.5)
        finally:
            stop.set()
        copies, acknowledged = _copies(sink)
        assert 3 == len(handler.killed)
        assert 3 == len(set(handler.killed))  # three different worker processes
        assert set(ids) == acknowledged
        assert 300 == len(copies)
        resent = {mid: n for mid, n in copies.items() if n > 1}
        # Each kill came before its mail's 250: that mail, and only it, went again.
        assert 3 == sum(n - 1 for n in resent.values()), resent
        assert 0 == daemon.stop()


@pytest.mark.parametrize(("point", "most_extra"), [("outbox-relayed", 1), ("outbox-sent", 0)])
def test_a_crash_right_after_the_250_resends_only_that_mail(
    daemon_factory: Any, sink: Sink, point: str, most_extra: int
) -> None:
    """The whole daemon killed on the 40th relayed mail, then restarted: only a mail
    whose 250 was not yet marked goes out again, however far its batch had got."""
    daemon = daemon_factory(
        outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}},
        limits=LIMITS,
        env={"MAILGATE_CRASH_AT": f"{point}:40"},
    )
    ids = [f"<crash{n:04d}-requester@example.org>" for n in range(100)]
    port = daemon.smtp_port
    clients = [
        threading.Thread(target=_send_like_an_mta, args=(port, ids[n::3], time.monotonic() + 120))
        for n in range(3)
    ]
    for client in clients:
        client.start()
    wait_until(lambda: daemon.process is not None and daemon.process.poll() is not None, timeout=60)
    assert -9 == daemon.process.returncode  # type: ignore[union-attr]
    assert sum(_copies(sink)[0].values()) >= 40

    daemon.env = {}
    daemon.start()
    for client in clients:
        client.join()
    wait_until(lambda: set(ids) <= _copies(sink)[1], timeout=120, interval=0.2)
    wait_until(lambda: [] == _queued(daemon), timeout=30, interval=0.5)
    copies, _ = _copies(sink)
    assert 100 == len(copies)
    assert most_extra == sum(copies.values()) - len(copies)
    assert 0 == daemon.stop()


class WitnessHandler(SinkHandler):
    """A relay that, on each mail, notes which rows a crash at that moment would keep as sent."""

    def __init__(self, marked: Callable[[], set[int]]) -> None:
        super().__init__()
        self._marked = marked
        self.marked_before: list[set[int]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.marked_before.append(self._marked())
        return await super().handle_DATA(server, session, envelope)


def test_each_mail_is_marked_before_the_next_one_is_sent(db_url: str, runtime_factory: Any) -> None:
    """One batch of five: when the relay gets mail k, mails 1..k-1 are already marked
    sent where the next worker looks (the database; on SQLite also the sent journal)."""
    runtime = runtime_factory(database={"url": db_url}, limits=LIMITS)
    for n in range(5):
        deliver(runtime, make_mail(message_id=f"<batch-{n}@example.org>", sender=f"<r{n}@example.org>"))
    witness_engine = create_engine(db_url.replace("sqlite:", "sqlite+pysqlite:"), poolclass=NullPool)
    database = sqlite_file(db_url)
    journal = SentJournal.for_database(database.resolve()) if database is not None else None

    def marked() -> set[int]:
        with witness_engine.connect() as conn:
            found = {
                int(row_id) for (row_id,) in conn.execute(text("SELECT id FROM outbox WHERE state = 'sent'"))
            }
        return found | set(journal.read_ids() if journal is not None else ())

    handler = WitnessHandler(marked)
    relay = Sink(free_port())
    relay.handler = relay.controller.handler = handler
    with (
        relay,
        OutboxWorker(runtime.lease_sessions, SmtpTransport("127.0.0.1", relay.port), RetryPolicy()) as worker,
    ):
        assert 5 == worker.deliver_due()
    witness_engine.dispose()
    ids = sorted(marked())
    assert 5 == len(ids)
    assert [set(ids[:k]) for k in range(5)] == handler.marked_before
