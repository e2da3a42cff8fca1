"""`mailgate backup` while mail streams in, `mailgate restore` elsewhere, the restored daemon.

Issue 16: every mail answered 250 before the backup began is in the
restored installation exactly once; tickets, articles, attachments, outbox
and events come back; replies to old tickets thread by their reply address;
nothing already sent is sent again.
"""

from __future__ import annotations

import email
import email.utils
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import DaemonProcess, fresh_pg_url, make_mail, run_cli, wait_until, write_config
from tests.test_attachments import with_attachment


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of a query on either backend, as hashable values (bytea as bytes, JSON as its text)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(_plain(value) for value in row) for row in connection.execute(text(query))]
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, (list, dict)):  # PostgreSQL's JSON; SQLite gives the text
        return json.dumps(value, sort_keys=True)
    return value


# What a restore must bring back unchanged: (table, columns that do not change
# once written). Outbox state and ticket times move on after the backup.
INTACT = {
    "tickets": "id, ref, requester, subject",
    "articles": "id, ticket_id, message_id, sender, body_text, attachments",
    "attachment_blobs": "sha256, content",
    "outbox": "id, ticket_id, message_id, rcpt, raw",
    "events": "id, ticket_id, kind",
    "inbound": "id, source_key, raw",
}


@pytest.fixture
def restore_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second fresh database of the same kind as ``db_url``, for the restored installation."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/restored/mailgate.db"
        return
    with fresh_pg_url() as url:
        yield url


def test_backup_under_load_restores_every_accepted_mail_once(
    daemon_factory: Any, db_url: str, restore_url: str, tmp_path: Path
) -> None:
    """Mail streams in over SMTP while `mailgate backup` runs; the restore elsewhere holds
    every mail answered 250 before it began, once, and the restored daemon threads and
    sends nothing twice (SQLite and PostgreSQL)."""
    daemon = daemon_factory(database={"url": db_url})
    # A first batch, fully answered before the backup (one with an attachment).
    early = [f"<early-{n}@example.org>" for n in range(8)]
    pdf = b"%PDF-1.4 quarterly report " * 20
    daemon.send(with_attachment("report.pdf", pdf, early[0]))
    for message_id in early[1:]:
        daemon.send(make_mail(message_id=message_id, sender=f"User <{message_id[1:8]}@example.org>"))
    wait_until(lambda: len(daemon.acks()) == len(early), timeout=60)

    answered: list[tuple[str, float]] = []
    stop = threading.Event()

    def stream() -> None:
        for n in range(400):
            if stop.is_set():
                return
            message_id = f"<stream-{n}@example.org>"
            daemon.send(make_mail(message_id=message_id, sender=f"Streamer {n} <s{n}@example.org>"))
            answered.append((message_id, time.monotonic()))
            time.sleep(0.01)

    sender = threading.Thread(target=stream)
    sender.start()
    wait_until(lambda: len(answered) >= 30, timeout=60)
    archive = tmp_path / "backup.tar.gz"
    began = time.monotonic()
    made = run_cli(daemon.config_path, "backup", str(archive), "--include-secrets", "--no-progress")
    wait_until(lambda: len(answered) >= len([a for a in answered if a[1] < began]) + 30, timeout=60)
    stop.set()
    sender.join(timeout=120)
    assert 0 == made.returncode, made.stderr.decode()
    assert b"backup written to" in made.stdout
    if db_url.startswith("postgresql"):
        # The advice that used to replace the backup now comes with it.
        assert b"point-in-time recovery:" in made.stdout and b"wal_level=" in made.stdout
    before_backup = {message_id for message_id, at in answered if at < began} | set(early)
    assert len(before_backup) >= 30 + len(early)
    assert 0 == daemon.stop()

    # Restore into an empty installation next door.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    config = write_config(restored_dir, database={"url": restore_url})
    restored = run_cli(config, "restore", str(archive))
    assert 0 == restored.returncode, restored.stderr.decode()
    assert b"reply key restored" in restored.stdout

    # Every row restored is the row the helpdesk held (the backup did not tear one).
    for table, columns in INTACT.items():
        copy = _rows(restore_url, f"SELECT {columns} FROM {table} ORDER BY 1")
        kept = dict.fromkeys(_rows(db_url, f"SELECT {columns} FROM {table} ORDER BY 1"))
        assert copy, table
        assert [row for row in copy if row not in kept] == [], table
    sent_before = {mid for (mid,) in _rows(restore_url, "SELECT message_id FROM outbox WHERE state = 'sent'")}
    queued_before = {
        mid for (mid,) in _rows(restore_url, "SELECT message_id FROM outbox WHERE state <> 'sent'")
    }

    again = DaemonProcess(config).start()
    try:
        wait_until(
            lambda: not _rows(restore_url, "SELECT id FROM inbound WHERE state = 'pending'"), timeout=60
        )
        articles = dict(_rows(restore_url, "SELECT message_id, count(*) FROM articles GROUP BY message_id"))
        assert {message_id: 1 for message_id in before_backup} == {
            message_id: articles.get(message_id, 0) for message_id in before_backup
        }
        inbound_ids = [
            email.message_from_bytes(raw)["Message-ID"]
            for (raw,) in _rows(restore_url, "SELECT raw FROM inbound")
        ]
        assert len(inbound_ids) == len(set(inbound_ids)), "a message was stored twice"
        ((blob,),) = _rows(restore_url, "SELECT content FROM attachment_blobs")
        assert pdf == blob
        assert _rows(restore_url, "SELECT count(*) FROM events")[0][0] > 0

        # What had been sent is not sent again; what was still queued goes once.
        wait_until(lambda: not _rows(restore_url, "SELECT id FROM outbox WHERE state = 'queued'"), timeout=60)
        delivered = [str(email.message_from_bytes(mail)["Message-ID"]) for mail in again.acks()]
        assert [] == [mid for mid in delivered if mid in sent_before]
        assert len(delivered) == len(set(delivered)), "a mail was sent twice"
        assert queued_before <= set(delivered)
        assert [] == [
            mail for mail in again.acks() if email.message_from_bytes(mail)["In-Reply-To"] in set(early)
        ]

        # A reply to an old acknowledgement threads onto its old ticket.
        first_ack = next(
            email.message_from_bytes(mail)
            for mail in daemon.acks()
            if email.message_from_bytes(mail)["In-Reply-To"] == early[1]
        )
        ticket_ref = _rows(restore_url, f"SELECT ticket_id FROM articles WHERE message_id = '{early[1]}'")[0][
            0
        ]
        reply = make_mail(
            subject="Re: " + str(first_ack["Subject"]),
            sender=str(first_ack["To"]),
            to=str(first_ack["Reply-To"]),
            message_id="<reply-after-restore@example.org>",
            body="It works again, thank you.\n",
        )
        again.send(
            reply,
            mail_from=email.utils.parseaddr(str(first_ack["To"]))[1],
            rcpts=(email.utils.parseaddr(str(first_ack["Reply-To"]))[1],),
        )
        threaded = "SELECT ticket_id FROM articles WHERE message_id = '<reply-after-restore@example.org>'"
        wait_until(lambda: _rows(restore_url, threaded), timeout=30)
        assert [(ticket_ref,)] == _rows(restore_url, threaded)
    finally:
        again.stop()


def test_restore_refuses_a_live_installation(
    daemon_factory: Any, db_url: str, restore_url: str, tmp_path: Path
) -> None:
    """Into the running helpdesk it came from, or a database that holds mail: refused, and nothing
    is touched. On PostgreSQL a database with mailgate's tables but no rows is taken."""
    daemon = daemon_factory(database={"url": db_url})
    daemon.send(make_mail(message_id="<live@example.org>"))
    wait_until(lambda: len(daemon.acks()) == 1, timeout=30)
    archive = tmp_path / "b.tar.gz"
    made = run_cli(daemon.config_path, "backup", str(archive), "--no-progress")
    assert 0 == made.returncode, made.stderr.decode()
    refused = run_cli(daemon.config_path, "restore", str(archive))
    assert 1 == refused.returncode
    assert b"daemon is running" in refused.stderr
    if db_url.startswith("postgresql"):
        # Another host's configuration naming the same database: its sessions give it away.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        refused = run_cli(write_config(elsewhere, database={"url": db_url}), "restore", str(archive))
        assert 1 == refused.returncode
        assert b"other sessions are connected" in refused.stderr
    assert 0 == daemon.stop()
    before = _rows(db_url, "SELECT count(*) FROM tickets")
    refused = run_cli(daemon.config_path, "restore", str(archive))
    assert 1 == refused.returncode
    assert b"restore only into an empty installation" in refused.stderr
    assert before == _rows(db_url, "SELECT count(*) FROM tickets")
    if db_url.startswith("postgresql"):
        target = tmp_path / "target"
        target.mkdir()
        config = write_config(target, database={"url": restore_url})
        assert 0 == run_cli(config, "db", "upgrade").returncode
        restored = run_cli(config, "restore", str(archive))
        assert 0 == restored.returncode, restored.stderr.decode()
        assert [("<live@example.org>",)] == _rows(
            restore_url, "SELECT message_id FROM articles WHERE direction = 'in'"
        )


def test_a_damaged_backup_is_refused(db_url: str, restore_url: str, tmp_path: Path) -> None:
    """A file that does not match its checksum stops the restore before anything is written."""
    import io
    import tarfile

    # No daemon needed here: `mailgate ingest` stores the mail itself when none runs.
    config = write_config(tmp_path, database={"url": db_url})
    stored = run_cli(config, "ingest", input_bytes=make_mail(message_id="<damaged@example.org>"))
    assert 0 == stored.returncode, stored.stderr.decode()
    archive = tmp_path / "b.tar.gz"
    assert 0 == run_cli(config, "backup", str(archive), "--no-progress").returncode
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive, "r:gz") as source, tarfile.open(damaged, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member)
            content = data.read() if data else b""
            if member.name.startswith("database/"):
                content = content[:-1] + bytes([content[-1] ^ 0xFF])
            target.addfile(member, io.BytesIO(content))
    elsewhere = tmp_path / "restored"
    elsewhere.mkdir()
    refused = run_cli(write_config(elsewhere, database={"url": restore_url}), "restore", str(damaged))
    assert 1 == refused.returncode
    assert b"does not match its checksum" in refused.stderr
    assert not (elsewhere / "mailgate.db").exists()
    assert [] == _tables(restore_url)


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture
def postgresql_config(tmp_path: Path) -> Iterator[Path]:
    """A configuration naming a fresh, empty PostgreSQL database."""
    with fresh_pg_url() as url:
        yield write_config(tmp_path, database={"url": url})


def test_on_postgresql_without_pg_dump_backup_says_so(postgresql_config: Path, tmp_path: Path) -> None:
    """No pg_dump where it is looked for: an error in words, exit 1, and no file."""
    empty = tmp_path / "no-client"
    empty.mkdir()
    archive = tmp_path / "never.tar.gz"
    result = run_cli(postgresql_config, "backup", str(archive), "--no-progress", "--pg-bin", str(empty))
    assert 1 == result.returncode
    assert f"pg_dump was not found in {empty}".encode() in result.stderr
    assert b"postgresql-client-15" in result.stderr
    assert [] == [p.name for p in tmp_path.iterdir() if p.name.startswith((".mailgate-backup", "never"))]


def test_on_postgresql_an_older_pg_dump_is_refused(postgresql_config: Path, tmp_path: Path) -> None:
    """A pg_dump older than the server (it could not read it) is named, with its version."""
    old = tmp_path / "pg96"
    old.mkdir()
    (old / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    (old / "pg_dump").chmod(0o755)
    archive = tmp_path / "never.tar.gz"
    result = run_cli(postgresql_config, "backup", str(archive), "--no-progress", "--pg-bin", str(old))
    assert 1 == result.returncode
    assert b"pg_dump must be of PostgreSQL 15 or newer" in result.stderr
    assert b"is 9.6.24" in result.stderr
    assert not archive.exists()
