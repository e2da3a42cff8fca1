"""The outbox: durable rows, retries with backoff, permanent failures on record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from mailgate.outbox.deliver import OutboxWorker, RetryPolicy
from mailgate.outbox.transport import SmtpTransport
from mailgate.store.models import Event, Outbox
from tests.conftest import free_port, make_mail, run_cli, ticket_json
from tests.helpers import deliver


def _worker(runtime: Any, port: int, policy: RetryPolicy | None = None) -> OutboxWorker:
    return OutboxWorker(
        runtime.sessions,
        SmtpTransport("127.0.0.1", port, timeout=5),
        policy or RetryPolicy(first_seconds=60),
    )


def _rows(runtime: Any) -> list[Outbox]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def _make_due(runtime: Any) -> None:
    with runtime.sessions.begin() as session:
        session.execute(update(Outbox).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_temporary_failure_retries_with_the_same_message_id(runtime_factory: Any, sink: Any) -> None:
    """A 451 at RCPT defers the mail with backoff; the retry delivers it once, same Message-ID."""
    runtime = runtime_factory()
    deliver(runtime, make_mail())
    sink.faults.append(("rcpt", "451 4.3.0 try again later"))
    with _worker(runtime, sink.port) as worker:
        assert 1 == worker.deliver_due()
        (row,) = _rows(runtime)
        assert "queued" == row.state
        assert 1 == row.attempts
        assert row.last_error is not None and row.last_error.startswith("451")
        assert row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=40)
        assert 0 == worker.deliver_due()  # not due yet

        _make_due(runtime)
        assert 1 == worker.deliver_due()
        (row,) = _rows(runtime)
        assert "sent" == row.state
        (received,) = sink.wait(1)
        assert row.message_id == received.message["Message-ID"]
        assert [row.rcpt] == received.rcpt_tos
        assert received.mail_from.startswith("helpdesk+bounce-")


def test_permanent_failure_is_recorded_on_the_ticket_and_listed(runtime_factory: Any, sink: Any) -> None:
    """A 550 fails the row at once, adds a ticket event, and shows in `outbox list`."""
    runtime = runtime_factory()
    result = deliver(runtime, make_mail())
    sink.faults.append(("rcpt", "550 5.1.1 no such user"))
    with _worker(runtime, sink.port) as worker:
        worker.deliver_due()

    (row,) = _rows(runtime)
    assert "failed" == row.state
    assert row.last_error is not None and row.last_error.startswith("550")
    with runtime.sessions() as session:
        events = [e.kind for e in session.scalars(select(Event).where(Event.ticket_id == result.ticket_id))]
    assert "delivery_failed" in events
    listed = json.loads(run_cli(runtime.config.base_dir / "mailgate.yaml", "outbox", "list", "--json").stdout)
    assert "failed" == listed[0]["state"]
    assert listed[0]["last_error"].startswith("550")
    assert [] == sink.messages


def test_relay_down_defers_and_gives_up_after_the_deadline(runtime_factory: Any) -> None:
    """With the relay unreachable the mail waits; past give-up time it fails, recorded."""
    runtime = runtime_factory()
    deliver(runtime, make_mail())
    closed_port = free_port()
    with _worker(runtime, closed_port, RetryPolicy(first_seconds=1, give_up_after_seconds=3600)) as worker:
        worker.deliver_due()
        (row,) = _rows(runtime)
        assert "queued" == row.state and "cannot reach" in (row.last_error or "")

        with runtime.sessions.begin() as session:
            session.execute(
                update(Outbox).values(
                    created_at=datetime.now(UTC) - timedelta(hours=2),
                    next_attempt_at=datetime.now(UTC),
                )
            )
        worker.deliver_due()
        (row,) = _rows(runtime)
        assert "failed" == row.state
        assert (row.last_error or "").startswith("gave up after 2 attempts")


def test_data_stage_4xx_then_success(runtime_factory: Any, sink: Any) -> None:
    """A 452 after DATA is temporary too; nothing arrives until the retry succeeds."""
    runtime = runtime_factory()
    deliver(runtime, make_mail())
    sink.faults.append(("data", "452 4.3.1 mailbox full for now"))
    with _worker(runtime, sink.port) as worker:
        worker.deliver_due()
        assert [] == sink.messages
        _make_due(runtime)
        worker.deliver_due()
        assert 1 == len(sink.wait(1))
        assert "sent" == _rows(runtime)[0].state


def test_backoff_grows_and_is_capped() -> None:
    """Each retry waits about twice as long, never more than the cap (jitter ±20%)."""
    policy = RetryPolicy(first_seconds=30, max_seconds=600)
    delays = [policy.next_delay(n) for n in range(1, 8)]
    assert 24 <= delays[0] <= 36
    assert 48 <= delays[1] <= 72
    assert all(d <= 720 for d in delays)
    assert 480 <= delays[-1]


def test_daemon_delivers_through_the_relay(daemon_factory: Any, sink: Any) -> None:
    """With outbound.smtp configured, the running daemon sends the acknowledgement to the relay."""
    daemon = daemon_factory(outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}})
    daemon.send(make_mail(message_id="<relay@example.org>"))
    (received,) = sink.wait(1)
    assert "<relay@example.org>" == received.message["In-Reply-To"]
    assert ["alice@example.org"] == received.rcpt_tos


def test_the_delivery_worker_retries_a_4xx_until_it_goes_through(daemon_factory: Any, sink: Any) -> None:
    """Through the daemon's own delivery process: deferred with backoff, then sent once, same Message-ID."""
    relay = {"smtp": {"host": "127.0.0.1", "port": sink.port}, "retry_first_seconds": 1}
    daemon = daemon_factory(outbound=relay)
    sink.faults.append(("rcpt", "451 4.3.0 try again later"))
    daemon.send(make_mail(message_id="<retry-me@example.org>"))
    deferred = daemon.wait_for("outbox.deferred", timeout=15)
    (received,) = sink.wait(1, timeout=20)
    assert deferred["message_id"] == received.message["Message-ID"]
    assert "<retry-me@example.org>" == received.message["In-Reply-To"]
    sent = daemon.wait_for("outbox.sent", timeout=10)
    assert 2 == sent["attempts"]
    assert 0 == daemon.stop()


def test_the_delivery_worker_records_a_5xx_on_the_ticket(daemon_factory: Any, sink: Any) -> None:
    """Through the daemon's own delivery process: a permanent refusal is failed, listed and on the ticket."""
    daemon = daemon_factory(outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}})
    sink.faults.append(("rcpt", "550 5.1.1 no such user"))
    daemon.send(make_mail(message_id="<refused@example.org>"))
    daemon.wait_for("outbox.failed", timeout=15)
    listed = json.loads(daemon.cli("outbox", "list", "--json").stdout)
    assert ["failed"] == [row["state"] for row in listed]
    assert listed[0]["last_error"].startswith("550")
    events = ticket_json(daemon.config_path, 1)["events"]
    assert ["550"] == [e["detail"]["error"][:3] for e in events if e["kind"] == "delivery_failed"]
    assert 0 == daemon.stop()
