"""The SMTP spool journal: 250 after an fsync, imported later, never lost, never doubled."""

from __future__ import annotations

import smtplib
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from mailgate.ingest.smtp import IngestHandler
from mailgate.message import Envelope
from mailgate.store import spool as spool_module
from mailgate.store.db import make_engine, session_factory, upgrade
from mailgate.store.inbound import GroupCommitter, InboundItem, InboundStore
from mailgate.store.models import Inbound
from mailgate.store.spool import Spool, read_segment
from tests.conftest import HELPDESK, free_port, make_mail, run_cli, wait_until, write_config


def _item(n: int) -> InboundItem:
    return InboundItem(
        make_mail(message_id=f"<spool-{n}@example.org>", subject=f"Request {n}"),
        Envelope(f"user{n}@example.org", (HELPDESK,), "smtp", datetime.now(UTC)),
    )


def _store(tmp_path: Path) -> tuple[Any, InboundStore]:
    engine = make_engine(f"sqlite:///{tmp_path}/mailgate.db")
    upgrade(engine)
    return engine, InboundStore(session_factory(engine))


def _rows(engine: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Inbound)).scalar_one())


def test_records_read_back_exactly(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    items = [_item(n) for n in range(3)]
    spooled = spool.append(items)
    back = spool.leftovers()
    assert [item.raw for item in items] == [item.raw for item in back]
    assert [item.envelope for item in items] == [item.envelope for item in back]
    assert [record.item.source_key for record in spooled] == [item.source_key for item in back]
    assert all(item.source_key and item.source_key.startswith("spool:") for item in back)


def test_a_torn_tail_is_ignored_and_the_rest_kept(tmp_path: Path) -> None:
    """A crash in the middle of a write leaves a partial record, which was never answered 250."""
    spool = Spool(tmp_path / "spool")
    spool.append([_item(n) for n in range(3)])
    (segment,) = spool.segments()
    data = segment.read_bytes()
    segment.write_bytes(data[:-10])
    assert 2 == len(list(read_segment(segment)))


def test_a_damaged_record_stops_the_reading(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([_item(0)])
    spool.append([_item(1)])
    (segment,) = spool.segments()
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF  # a bit flip in the last record's message
    segment.write_bytes(bytes(data))
    assert ["<spool-0@example.org>"] == [
        item.raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode() for item in read_segment(segment)
    ]


def test_imported_segments_are_deleted(tmp_path: Path, monkeypatch: Any) -> None:
    """Old segments go once all their records are in the database; the last one at stop."""
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 1)  # a new segment per group
    engine, store = _store(tmp_path)
    spool = Spool(tmp_path / "spool")
    committer = GroupCommitter(store, spool=spool)
    committer.start()
    assert committer.alive()  # what the watchdog asks
    ids = [committer.submit(_item(n)).result(timeout=10) for n in range(5)]
    assert all(queue_id.startswith("spool:") for queue_id in ids)
    wait_until(lambda: _rows(engine) == 5)
    wait_until(lambda: len(spool.segments()) == 1)  # the one still written to
    committer.stop()
    assert not committer.alive()
    assert [] == spool.segments()
    assert 5 == _rows(engine)
    engine.dispose()


def test_leftovers_are_imported_at_start_once(tmp_path: Path) -> None:
    """Spooled before a crash: imported at the next start; imported already: not again."""
    engine, store = _store(tmp_path)
    folder = tmp_path / "spool"
    crashed = Spool(folder)
    spooled = crashed.append([_item(n) for n in range(4)])
    # A crash after two of them were imported but before the journal heard of it.
    store.accept([record.item for record in spooled[:2]])
    assert 2 == _rows(engine)

    committer = GroupCommitter(store, spool=Spool(folder))
    committer.start()  # imports before it takes any new mail
    assert 4 == _rows(engine)
    assert [] == Spool(folder).segments()
    committer.stop()
    engine.dispose()


def test_smtp_answer_comes_after_the_journal_fsync(tmp_path: Path) -> None:
    """A 250 means the record is in the journal on disk (or already in the database)."""
    engine, store = _store(tmp_path)
    folder = tmp_path / "spool"
    committer = GroupCommitter(store, spool=Spool(folder))
    committer.start()
    port = free_port()
    controller = Controller(
        IngestHandler(committer, lambda address: True, lmtp=False), hostname="127.0.0.1", port=port
    )
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo()
            client.mail("alice@example.org")
            client.rcpt(HELPDESK)
            code, reply = client.data(make_mail(message_id="<fsynced@example.org>"))
        assert 250 == code
        assert b"queued as spool:" in reply
        # Another reader of the folder finds the record (the segment is still open).
        found = [item for item in Spool(folder).leftovers() if b"<fsynced@example.org>" in item.raw]
        assert 1 == len(found)
        wait_until(lambda: _rows(engine) == 1)
    finally:
        controller.stop()
        committer.stop()
        engine.dispose()


def test_a_failed_write_leaves_no_garbage_between_records(tmp_path: Path, monkeypatch: Any) -> None:
    """A full disk mid-write: that group fails (451/452), and later records stay readable."""
    spool = Spool(tmp_path / "spool")
    spool.append([_item(0)])
    real_write = spool_module.os.write

    def half_then_full(fd: int, data: Any) -> int:
        monkeypatch.setattr(spool_module.os, "write", real_write)  # only this once
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", half_then_full)
    try:
        spool.append([_item(1)])
    except OSError as exc:
        assert 28 == exc.errno
    else:
        raise AssertionError("the failed write was not reported")
    spool.append([_item(2)])
    keys = [b"<spool-0@", b"<spool-2@"]
    found = [item.raw for item in spool.leftovers()]
    assert len(found) == 2 and all(key in raw for key, raw in zip(keys, found, strict=True))


def test_while_the_database_is_down_mail_waits_then_451(tmp_path: Path) -> None:
    """Spooled mail waits for the database; past the backlog limit new mail gets 451, then flows again."""
    from sqlalchemy import text

    from mailgate.errors import Outcome, storage_outcome
    from mailgate.store.inbound import SpoolBacklogFull

    engine, store = _store(tmp_path)
    committer = GroupCommitter(store, spool=Spool(tmp_path / "spool"), max_backlog_bytes=1)
    committer.start()
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound RENAME TO inbound_away"))
    first = committer.submit(_item(0)).result(timeout=10)  # durable in the journal: 250
    assert first.startswith("spool:")
    refused = committer.submit(_item(1)).exception(timeout=10)
    assert isinstance(refused, SpoolBacklogFull)
    assert Outcome.STORE_FAILED == storage_outcome(refused)  # 451 4.3.0
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_away RENAME TO inbound"))
    wait_until(lambda: _rows(engine) == 1, timeout=15)  # the importer retried
    wait_until(lambda: committer.submit(_item(2)).exception(timeout=10) is None, timeout=15)
    wait_until(lambda: _rows(engine) == 2, timeout=15)
    committer.stop()
    engine.dispose()


def test_a_journal_that_cannot_be_written_answers_451(daemon_factory: Any, tmp_path: Path) -> None:
    """The real daemon: when no journal file can be made, the sender hears 451 and retries."""
    daemon = daemon_factory()
    folder = tmp_path / "mailgate.db.spool"
    folder.rename(tmp_path / "spool-away")
    folder.write_text("not a folder")  # the journal's first file cannot be created
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@example.org")
        client.rcpt(HELPDESK)
        code, reply = client.data(make_mail(message_id="<blocked@example.org>"))
    assert 451 == code and reply.startswith(b"4.3.0")
    folder.unlink()
    (tmp_path / "spool-away").rename(folder)
    daemon.send(make_mail(message_id="<blocked@example.org>"))  # the MTA's retry
    wait_until(lambda: daemon.acks(), timeout=15)
    assert 0 == daemon.stop()


def test_a_second_daemon_on_the_same_database_does_not_start(daemon_factory: Any, tmp_path: Path) -> None:
    """It would import and delete the first one's journal; it stops before touching anything."""
    first = daemon_factory()
    (tmp_path / "second").mkdir()
    second_config = write_config(tmp_path / "second", database={"url": f"sqlite:///{tmp_path}/mailgate.db"})
    result = run_cli(second_config, "run")
    assert 1 == result.returncode
    assert b"another `mailgate run` on this database" in result.stdout + result.stderr
    first.send(make_mail(message_id="<still-works@example.org>"))
    wait_until(lambda: first.acks(), timeout=15)
    assert 0 == first.stop()


def test_a_full_disk_under_the_journal_answers_452(daemon_factory: Any, tmp_path: Path) -> None:
    """A real full file system (a 1 MiB tmpfs under the journal): 452, and later mail still flows."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        (tmp_path / "mailgate.db.spool").symlink_to(small, target_is_directory=True)
        daemon = daemon_factory()
        big = make_mail(message_id="<too-big-for-the-disk@example.org>", body=("z" * 76 + "\n") * 20_000)
        with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as client:
            client.ehlo()
            client.mail("alice@example.org")
            client.rcpt(HELPDESK)
            code, reply = client.data(big)
        assert 452 == code and reply.startswith(b"4.3.1")
        daemon.send(make_mail(message_id="<small-enough@example.org>"))
        wait_until(lambda: daemon.acks(), timeout=15)
        assert 0 == daemon.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_an_import_of_a_record_already_stored_stores_it_once(tmp_path: Path) -> None:
    """The importer skips the key lookup on its first try; the unique index catches a double."""
    engine, store = _store(tmp_path)
    spooled = Spool(tmp_path / "spool").append([_item(0), _item(1)])
    store.accept([spooled[0].item])  # as if imported before
    committer = GroupCommitter(store, spool=Spool(tmp_path / "other"))
    assert committer._import(spooled)  # first try refused by the index, second try skips it
    assert 2 == _rows(engine)
    engine.dispose()
