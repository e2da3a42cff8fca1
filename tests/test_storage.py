"""Storage on SQLite and PostgreSQL: migrations, durable inbound, exactly once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, inspect, select

from mailgate.message import Envelope
from mailgate.store.db import (
    HEAD_REVISION,
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from mailgate.store.inbound import InboundItem, InboundStore
from mailgate.store.models import Article, Base, Inbound, Outbox, Ticket
from mailgate.tickets.pipeline import Processor
from tests.conftest import make_mail
from tests.helpers import deliver


def test_migrations_build_the_whole_schema(db_url: str) -> None:
    """Alembic creates every table the models declare, and a second upgrade is a no-op."""
    engine = make_engine(db_url)
    assert upgrade(engine) is True
    assert upgrade(engine) is False
    assert HEAD_REVISION == current_revision(engine) == head_revision(engine)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    engine.dispose()


def test_migrations_match_the_models(db_url: str) -> None:
    """Autogenerate finds nothing to change after the migrations ran (models and migrations agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert [] == diff


def _item(source: str, key: str | None, raw: bytes = b"Subject: x\r\n\r\nbody\r\n") -> InboundItem:
    return InboundItem(
        raw, Envelope("a@example.org", ("helpdesk@example.com",), source, datetime.now(UTC)), key
    )


def test_inbound_source_keys_store_once(db_url: str) -> None:
    """The same (source, key) is stored once however often it is offered, in one batch or many."""
    engine = make_engine(db_url)
    upgrade(engine)
    store = InboundStore(session_factory(engine))
    first = store.accept([_item("imap:a", "7:1"), _item("imap:a", "7:2"), _item("imap:a", "7:1")])
    again = store.accept([_item("imap:a", "7:2"), _item("imap:b", "7:2")])
    assert [1, 2, None] == [1 if first[0] else None, 2 if first[1] else None, first[2]]
    assert again[0] is None and again[1] is not None
    assert {"7:1"} == store.known_keys("imap:a", ["7:1", "9:9"])
    with session_factory(engine)() as session:
        assert 3 == session.scalar(select(func.count(Inbound.id)))
    engine.dispose()


def test_pipeline_on_each_backend(db_url: str, runtime_factory: Any) -> None:
    """A request becomes one ticket with one acknowledgement; its duplicate changes nothing."""
    runtime = runtime_factory(database={"url": db_url})
    # One mail delivered twice (two calls of make_mail may differ in Date).
    mail = make_mail(message_id="<pg@example.org>")
    first = deliver(runtime, mail)
    second = deliver(runtime, mail)
    assert "done" == first.state
    assert "duplicate" == second.state
    assert first.ticket_id == second.ticket_id
    with runtime.sessions() as session:
        assert 1 == session.scalar(select(func.count(Ticket.id)))
        assert 2 == session.scalar(select(func.count(Article.id)))  # request + ack
        assert 1 == session.scalar(select(func.count(Outbox.id)))
        stored = session.scalar(select(Ticket))
        assert stored is not None and stored.created_at.tzinfo is not None


def test_two_processors_on_one_postgresql_never_double(runtime_factory: Any) -> None:
    """Two instances racing over the same PostgreSQL rows make each ticket exactly once."""
    from tests.conftest import _pg_create, _pg_drop

    name = _pg_create()
    try:
        runtime = runtime_factory(database={"url": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"})
        other = runtime_factory(database={"url": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"})
        store = InboundStore(runtime.sessions)
        items = [
            InboundItem(
                make_mail(message_id=f"<race{n}@example.org>", sender=f"user{n}@example.org"),
                Envelope(f"user{n}@example.org", ("helpdesk@example.com",), "smtp", datetime.now(UTC)),
            )
            for n in range(60)
        ]
        store.accept(items)
        # Each instance also gets a duplicate of the first ten by another path.
        store.accept(items[:10])

        def drain(rt: Any) -> None:
            processor = Processor(rt, batch=5)
            while processor.process_pending():
                pass

        threads = [threading.Thread(target=drain, args=(rt,)) for rt in (runtime, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with runtime.sessions() as session:
            assert 60 == session.scalar(select(func.count(Ticket.id)))
            assert 60 == session.scalar(select(func.count(Outbox.id)))
            assert 0 == session.scalar(select(func.count(Inbound.id)).where(Inbound.state == "pending"))
        other.engine.dispose()
        runtime.engine.dispose()
    finally:
        _pg_drop(name)


def test_two_delivery_workers_on_one_postgresql_send_each_mail_once(runtime_factory: Any, sink: Any) -> None:
    """Two instances' delivery workers racing over the same outbox rows: every mail leaves once."""
    from collections import Counter

    from mailgate.outbox.deliver import OutboxWorker, RetryPolicy
    from mailgate.outbox.transport import SmtpTransport
    from tests.conftest import _pg_create, _pg_drop

    name = _pg_create()
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        runtime = runtime_factory(database={"url": url})
        other = runtime_factory(database={"url": url})
        InboundStore(runtime.sessions).accept(
            [
                InboundItem(
                    make_mail(message_id=f"<send{n}@example.org>", sender=f"user{n}@example.org"),
                    Envelope(f"user{n}@example.org", ("helpdesk@example.com",), "smtp", datetime.now(UTC)),
                )
                for n in range(60)
            ]
        )
        processor = Processor(runtime, batch=60)
        while processor.process_pending():
            pass

        def deliver(rt: Any) -> None:
            transport = SmtpTransport("127.0.0.1", sink.port, timeout=10)
            with OutboxWorker(rt.sessions, transport, RetryPolicy(), batch=5) as worker:
                while worker.deliver_due():
                    pass

        threads = [threading.Thread(target=deliver, args=(rt,)) for rt in (runtime, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent = Counter(str(received.message["Message-ID"]) for received in sink.messages)
        assert 60 == len(sent)
        assert {1} == set(sent.values())
    finally:
        _pg_drop(name)


def test_quiet_tickets_query_runs_on_each_backend(db_url: str, runtime_factory: Any) -> None:
    """The auto-close query (locked rows skipped on PostgreSQL) finds a quiet resolved ticket."""
    from datetime import timedelta

    from sqlalchemy import update

    from mailgate.store.db import transaction
    from mailgate.store.writes import quiet_tickets

    runtime = runtime_factory(database={"url": db_url})
    deliver(runtime, make_mail())
    with transaction(runtime.sessions) as session:
        session.execute(update(Ticket).values(status="resolved"))
    later = datetime.now(UTC) + timedelta(hours=1)
    with transaction(runtime.sessions) as session:
        assert [1] == quiet_tickets(session.connection(), "resolved", later)
        assert [] == quiet_tickets(session.connection(), "pending", later)


def test_reads_marked_read_only_do_not_wait_for_the_writer(runtime_factory: Any) -> None:
    """A status query or an IMAP lookup runs while processing holds SQLite's write lock."""
    import time

    from sqlalchemy import text

    from mailgate.store.db import read_only, transaction

    runtime = runtime_factory()
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with transaction(runtime.sessions) as session:
            session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is held
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with read_only(), runtime.engine.connect() as connection:
            assert 0 == connection.execute(select(func.count()).select_from(Ticket)).scalar()
        assert time.monotonic() - started < 1.0
        assert set() == InboundStore(runtime.sessions).known_keys("imap:x", ["1:1"])
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        thread.join()
