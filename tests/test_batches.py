"""How processing shares SQLite's one write lock: slices, lease commits, hand-over.

The SMTP listener needs the write lock for every mail it accepts, so the
processor commits in short slices, leases and delivery marks commit without
an fsync, and the outbox rows a batch queued are leased in that batch's own
transaction and handed to the outbox worker only after the commit.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from mailgate.message import Envelope
from mailgate.outbox.deliver import OutboxWorker, RetryPolicy
from mailgate.outbox.transport import MaildirTransport
from mailgate.store.db import _write_lock, transaction
from mailgate.store.inbound import InboundItem, InboundStore
from mailgate.store.models import Event, Inbound, Outbox
from mailgate.store.writes import deferred_writes, insert_event
from mailgate.tickets import pipeline
from mailgate.tickets.pipeline import Processor
from tests.conftest import make_mail
from tests.helpers import outbox_mails


def _store(runtime: Any, count: int) -> list[int]:
    items = [
        InboundItem(
            make_mail(subject=f"Request {n}", sender=f"user{n}@example.org"),
            Envelope(f"user{n}@example.org", ("helpdesk@example.com",), "smtp", datetime.now(UTC)),
        )
        for n in range(count)
    ]
    ids = InboundStore(runtime.sessions).accept(items)
    assert None not in ids
    return [row_id for row_id in ids if row_id is not None]


def _outbox_worker(runtime: Any, folder: Path) -> OutboxWorker:
    return OutboxWorker(runtime.lease_sessions, MaildirTransport(folder), RetryPolicy())


def _count(runtime: Any, query: Any) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(query) or 0)


def test_lease_commits_skip_the_fsync_and_share_the_write_lock(runtime_factory: Any) -> None:
    runtime = runtime_factory()
    with runtime.sessions() as session:
        assert 2 == session.execute(text("PRAGMA synchronous")).scalar()  # FULL
    with runtime.lease_sessions() as session:
        assert 1 == session.execute(text("PRAGMA synchronous")).scalar()  # NORMAL
    # Two engines on one file are still one writer at a time.
    assert _write_lock(runtime.sessions) is _write_lock(runtime.lease_sessions)


def test_postgresql_has_one_kind_of_session(db_url: str, runtime_factory: Any) -> None:
    runtime = runtime_factory(database={"url": db_url})
    if db_url.startswith("sqlite"):
        assert runtime.lease_sessions is not runtime.sessions
    else:
        assert runtime.lease_sessions is runtime.sessions


def test_acks_are_leased_in_the_batch_and_handed_over(runtime_factory: Any, tmp_path: Path) -> None:
    runtime = runtime_factory()
    _store(runtime, 3)
    outbox = _outbox_worker(runtime, tmp_path / "sent")
    results = Processor(runtime, outbox=outbox).process_pending()
    assert ["done"] * 3 == [result.state for result in results]
    # Leased by the processing transaction itself: nobody else takes them.
    assert 3 == _count(runtime, select(func.count()).where(Outbox.lease_until.is_not(None)))
    assert 3 == outbox.deliver_due()
    assert 3 == len(list((tmp_path / "sent" / "new").iterdir()))
    assert 3 == _count(runtime, select(func.count()).where(Outbox.state == "sent"))
    assert 0 == outbox.deliver_due()


def test_a_failed_batch_hands_nothing_over(
    runtime_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch is rolled back, so its leased rows must not reach the outbox worker."""
    # One transaction for the whole batch, however slow the machine: a slice
    # that ended after the first message would commit and hand it over.
    monkeypatch.setattr(pipeline, "SLICE_SECONDS", 60.0)
    runtime = runtime_factory()
    ids = _store(runtime, 3)
    outbox = _outbox_worker(runtime, tmp_path / "sent")
    processor = Processor(runtime, outbox=outbox)
    handle = processor._handler.handle

    def failing_second(conn: Any, row_id: int, *args: Any) -> Any:
        if row_id == ids[1]:
            raise RuntimeError("disk on fire")
        return handle(conn, row_id, *args)

    monkeypatch.setattr(processor._handler, "handle", failing_second)
    results = processor.process_pending()
    assert ["done", "failed", "done"] == [result.state for result in results]
    assert [] == outbox._handed
    # The one-by-one path committed the other two; the outbox finds them itself.
    assert 2 == outbox.deliver_due()
    assert 2 == len(list((tmp_path / "sent" / "new").iterdir()))
    with runtime.sessions() as session:
        failed = session.get(Inbound, ids[1])
        assert failed is not None and "pending" == failed.state and "disk on fire" in (failed.reason or "")


def test_short_slices_still_process_every_message_once(
    runtime_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time to spare, every message gets a transaction of its own."""
    monkeypatch.setattr(pipeline, "SLICE_SECONDS", 0.0)
    runtime = runtime_factory()
    _store(runtime, 5)
    outbox = _outbox_worker(runtime, tmp_path / "sent")
    results = Processor(runtime, outbox=outbox).process_pending()
    assert 5 == len({result.ticket_id for result in results})
    assert 5 == _count(runtime, select(func.count()).where(Inbound.state == "done"))
    assert 5 == outbox.deliver_due()


def test_deferred_writes_land_at_the_end_or_not_at_all(runtime_factory: Any) -> None:
    runtime = runtime_factory()
    now = datetime.now(UTC)
    with transaction(runtime.sessions) as session:
        conn = session.connection()
        with deferred_writes(conn):
            insert_event(conn, None, "first", now)
            insert_event(conn, None, "second", now, detail="x")
            assert 0 == conn.execute(select(func.count()).select_from(Event)).scalar()
        assert 2 == conn.execute(select(func.count()).select_from(Event)).scalar()

    with pytest.raises(RuntimeError), transaction(runtime.sessions) as session:
        conn = session.connection()
        with deferred_writes(conn):
            insert_event(conn, None, "lost", now)
            raise RuntimeError("rolled back")
    kinds = set(_count_kinds(runtime))
    assert {"first", "second"} == kinds
    # Outside deferred_writes an event is written at once.
    with transaction(runtime.sessions) as session:
        conn = session.connection()
        insert_event(conn, None, "now", now)
        assert 1 == conn.execute(select(func.count()).where(Event.kind == "now")).scalar()


def _count_kinds(runtime: Any) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Event.kind)))


def test_a_slow_relay_outlasting_the_lease_still_gets_each_mail_once(runtime_factory: Any, sink: Any) -> None:
    """Rows still being sent when their lease ends are leased again by the next batch;
    they must not be handed over and sent a second time."""
    import threading
    import time
    from collections import Counter

    from mailgate.outbox.transport import SmtpTransport

    class SlowRelay(SmtpTransport):
        def send(self, outbox_id: int, mail_from: str, rcpt: str, raw: bytes) -> Any:
            time.sleep(0.4)
            return super().send(outbox_id, mail_from, rcpt, raw)

    runtime = runtime_factory()
    relay = SlowRelay("127.0.0.1", sink.port, timeout=10)
    outbox = OutboxWorker(runtime.lease_sessions, relay, RetryPolicy(), lease_seconds=0.3)
    processor = Processor(runtime, outbox=outbox)
    _store(runtime, 2)
    processor.process_pending()
    sending = threading.Thread(target=outbox.deliver_due)
    sending.start()
    time.sleep(0.5)  # the two leases have run out while the relay is still busy
    items = [
        InboundItem(
            make_mail(subject="Late request", sender="late@example.org"),
            Envelope("late@example.org", ("helpdesk@example.com",), "smtp", datetime.now(UTC)),
        )
    ]
    InboundStore(runtime.sessions).accept(items)
    processor.process_pending()
    sending.join()
    while outbox.deliver_due():
        pass
    outbox.close()
    sent = Counter(str(received.message["Message-ID"]) for received in sink.messages)
    assert 3 == len(sent)
    assert {1} == set(sent.values())


def _accept_together(runtime: Any, raws: list[tuple[bytes, str]]) -> None:
    items = [
        InboundItem(raw, Envelope(sender, ("helpdesk@example.com",), "smtp", datetime.now(UTC)))
        for raw, sender in raws
    ]
    assert None not in InboundStore(runtime.sessions).accept(items)


@pytest.mark.parametrize("way", ["one transaction", "a slice per message", "one by one after a failure"])
def test_duplicates_in_one_batch_make_one_ticket_each(
    runtime_factory: Any, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """The same Message-ID twice, and the same bytes without one twice, in a single batch."""
    runtime = runtime_factory()
    with_id = make_mail(message_id="<twice@example.org>", sender="ann@example.org")
    without_id = b"From: bea@example.org\r\nTo: helpdesk@example.com\r\nSubject: no id\r\n\r\nhello\r\n"
    _accept_together(
        runtime,
        [(with_id, "ann@example.org"), (with_id, "ann@example.org"),
         (without_id, "bea@example.org"), (without_id, "bea@example.org")],
    )  # fmt: skip
    processor = Processor(runtime)
    if way == "a slice per message":
        monkeypatch.setattr(pipeline, "SLICE_SECONDS", 0.0)
    if way == "one by one after a failure":
        handle, failed = processor._handler.handle, []

        def fail_once(conn: Any, row_id: int, *args: Any) -> Any:
            if not failed:
                failed.append(row_id)
                raise RuntimeError("a passing hiccup")
            return handle(conn, row_id, *args)

        monkeypatch.setattr(processor._handler, "handle", fail_once)
    while processor.process_pending():
        pass
    if way == "one by one after a failure":
        monkeypatch.setattr(processor._handler, "handle", handle)
        with runtime.sessions() as session:
            session.execute(text("UPDATE inbound SET lease_until = NULL"))
            session.commit()
        while processor.process_pending():
            pass
    assert 2 == _count(runtime, select(func.count()).select_from(Outbox))
    states = Counter(_states(runtime))
    assert {"done": 4} == dict(states)


@pytest.mark.parametrize("slice_seconds", [pipeline.SLICE_SECONDS, 0.0])
def test_the_daily_limit_holds_inside_one_batch(
    runtime_factory: Any, monkeypatch: pytest.MonkeyPatch, slice_seconds: float
) -> None:
    """Six requests from one address processed together: three answers, one notice, then silence."""
    monkeypatch.setattr(pipeline, "SLICE_SECONDS", slice_seconds)
    runtime = runtime_factory(limits={"auto_replies_per_hour": 100, "auto_replies_per_day": 3})
    chatty = "chatty@example.org"
    _accept_together(runtime, [(make_mail(sender=chatty, subject=f"issue {n}"), chatty) for n in range(6)])
    assert 6 == len(Processor(runtime).process_pending())
    subjects = [str(mail["Subject"]) for mail in outbox_mails(runtime)]
    assert 4 == len(subjects)
    assert subjects[3].endswith("No more automatic replies today")


def _states(runtime: Any) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Inbound.state)))
