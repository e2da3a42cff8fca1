"""`mailgate doctor`: real SQLite, a real aiosmtpd relay, real ports, a real daemon."""

from __future__ import annotations

import io
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url
from sqlalchemy.orm import sessionmaker

from mailgate.config import Config, from_mapping
from mailgate.message import Envelope
from mailgate.service.doctor import run_doctor
from mailgate.service.runtime import build
from mailgate.store.db import make_engine, transaction
from mailgate.store.inbound import InboundItem, InboundStore
from mailgate.store.models import Inbound, Outbox
from tests.conftest import make_mail
from tests.smtp_sink import Sink

HELPDESK = "helpdesk@example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def relay() -> Iterator[Sink]:
    with Sink(free_port()) as sink:
        yield sink


def make_config(folder: Path, relay_port: int | None, **extra: Any) -> Config:
    document: dict[str, Any] = {
        "helpdesk": {"address": HELPDESK},
        "database": {"url": "sqlite:///var/mailgate.db"},
        "listen": {"smtp": {"host": "127.0.0.1", "port": free_port()}},
        "secrets": {"reply_key_file": "var/reply.key"},
        "outbound": {"smtp": {"host": "127.0.0.1", "port": relay_port}}
        if relay_port
        else {"maildir": "var/outbox"},
        **extra,
    }
    return from_mapping(document, base_dir=folder)


def installed(config: Config) -> Config:
    """Create the database and reply key the way the daemon does on start."""
    build(config).engine.dispose()
    return config


def doctor(config: Config) -> tuple[int, dict[str, str]]:
    """Run the doctor; its exit code and each check's line keyed by check name."""
    out = io.StringIO()
    code = run_doctor(config, out, source=config.base_dir / "mailgate.yaml")
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("doctor: ")
    by_check = {line[6:].split(":", 1)[0]: line for line in lines[:-1]}
    return code, by_check


def test_healthy_installation_passes(tmp_path: Path, relay: Sink) -> None:
    """A fresh install with a reachable relay and a free port is all OK and exits 0."""
    config = installed(make_config(tmp_path, relay.port))
    code, lines = doctor(config)
    assert 0 == code
    # Without `mailgate run` the one warning is that the daemon is not running.
    not_ok = [line for line in lines.values() if not line.startswith("OK  ")]
    assert 1 == len(not_ok) and not_ok[0].startswith("WARN  daemon: no status file")
    expected = {
        "configuration",
        "database",
        "inbound queue",
        "quarantine",
        "outbox",
        "spool",
        "reply key",
        "rules",
        "outbound relay",
        "listen smtp",
        "daemon",
    }
    assert expected == set(lines)
    assert f"127.0.0.1:{relay.port} answers EHLO" in lines["outbound relay"]


def test_unreachable_relay_fails(tmp_path: Path) -> None:
    """With nothing listening at outbound.smtp the relay check fails and the exit code is 1."""
    config = installed(make_config(tmp_path, free_port()))
    code, lines = doctor(config)
    assert 1 == code
    assert lines["outbound relay"].startswith("FAIL  outbound relay: cannot talk SMTP")


def test_relay_refusing_ehlo_fails(tmp_path: Path, relay: Sink) -> None:
    """A relay answering EHLO with an error is a failure that quotes the answer."""
    config = installed(make_config(tmp_path, relay.port))
    with socket.socket() as fake:
        fake.bind(("127.0.0.1", 0))
        fake.listen()
        port = fake.getsockname()[1]
        config = config.model_copy(
            update={
                "outbound": config.outbound.model_copy(
                    update={"smtp": config.outbound.smtp.model_copy(update={"port": port})}  # type: ignore[union-attr]
                )
            }
        )
        # Greets, then refuses EHLO, like a relay that does not know our host.
        answer = _serve_once(fake, [b"220 relay ESMTP\r\n", b"554 5.7.1 go away\r\n"])
        code, lines = doctor(config)
        answer.join(10)
    assert 1 == code
    assert "554" in lines["outbound relay"]


def _serve_once(server: socket.socket, replies: list[bytes]) -> threading.Thread:
    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(replies[0])
            for reply in replies[1:]:
                conn.recv(1024)
                conn.sendall(reply)
            conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_outbox_maildir_is_checked_when_configured(tmp_path: Path) -> None:
    """With a Maildir outbox the doctor checks that it can write there."""
    config = installed(make_config(tmp_path, None))
    code, lines = doctor(config)
    assert 0 == code
    assert lines["outbound maildir"].startswith("OK    outbound maildir: ")


def test_missing_database_fails_without_creating_it(tmp_path: Path, relay: Sink) -> None:
    """A database file that does not exist is a failure, and the doctor does not create it."""
    config = make_config(tmp_path, relay.port)
    code, lines = doctor(config)
    assert 1 == code
    assert "FAIL  database" in lines["database"]
    assert "mailgate db upgrade" in lines["database"]
    assert not (tmp_path / "var").exists()


def test_database_without_schema_fails(tmp_path: Path, relay: Sink) -> None:
    """An SQLite file without mailgate's tables is a failure that says to upgrade."""
    config = make_config(tmp_path, relay.port)
    (tmp_path / "var").mkdir()
    sqlite3.connect(tmp_path / "var" / "mailgate.db").close()
    code, lines = doctor(config)
    assert 1 == code
    assert "has no mailgate schema" in lines["database"]


def test_reply_key_readable_by_others_warns(tmp_path: Path, relay: Sink) -> None:
    """A reply key file with mode 0644 is a warning that says how to fix it, not a failure."""
    config = installed(make_config(tmp_path, relay.port))
    key = tmp_path / "var" / "reply.key"
    key.chmod(0o644)
    code, lines = doctor(config)
    assert 0 == code
    assert lines["reply key"].startswith("WARN  reply key:")
    assert f"chmod 600 {key}" in lines["reply key"]


def test_broken_reply_key_fails(tmp_path: Path, relay: Sink) -> None:
    """A reply key file without a key fails."""
    config = installed(make_config(tmp_path, relay.port))
    (tmp_path / "var" / "reply.key").write_text("# rotated out\n")
    code, lines = doctor(config)
    assert 1 == code
    assert lines["reply key"].startswith("FAIL  reply key:")


def test_broken_rules_file_fails_with_its_line(tmp_path: Path, relay: Sink) -> None:
    """A rules file the daemon would refuse fails the doctor with the file and line."""
    config = installed(make_config(tmp_path, relay.port))
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: broken\n    then: {queue: [not, a, name]}\n")
    code, lines = doctor(config.model_copy(update={"rules": "rules.yaml"}))
    assert 1 == code
    assert lines["rules"].startswith("FAIL  rules: ")
    assert "rules.yaml:" in lines["rules"]


def test_queue_counts_and_stuck_work_warn(tmp_path: Path, relay: Sink) -> None:
    """Old pending mail, quarantined mail and failed outbox rows are counted and warned about."""
    config = installed(make_config(tmp_path, relay.port))
    engine = make_engine(config.database_url)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with transaction(sessionmaker(engine)) as session:
        for state in ("pending", "pending", "quarantined", "done"):
            session.add(Inbound(raw=b"x", size=1, source="smtp", state=state, received_at=hour_ago))
        for state in ("queued", "failed", "sent"):
            session.add(
                Outbox(
                    kind="ack",
                    message_id=f"<{state}@x>",
                    mail_from=HELPDESK,
                    rcpt="a@example.org",
                    raw=b"x",
                    state=state,
                    created_at=hour_ago,
                    last_error="451 later",
                )
            )
    engine.dispose()
    code, lines = doctor(config)
    assert 0 == code
    assert lines["inbound queue"].startswith("WARN  inbound queue: 2 pending, oldest 60 min old")
    assert lines["quarantine"].startswith("WARN  quarantine: 1 messages quarantined")
    assert lines["outbox"].startswith("WARN  outbox: 1 queued (oldest 60 min old), 1 failed, 1 sent")
    assert "last error: 451 later" in lines["outbox"]


def test_port_taken_by_another_program_warns(tmp_path: Path, relay: Sink) -> None:
    """A listen port held by some other SMTP server is a warning naming its greeting."""
    config = installed(make_config(tmp_path, relay.port))
    config = config.model_copy(
        update={
            "listen": config.listen.model_copy(
                update={"smtp": config.listen.smtp.model_copy(update={"port": relay.port})}  # type: ignore[union-attr]
            )
        }
    )
    code, lines = doctor(config)
    assert 0 == code
    assert lines["listen smtp"].startswith(f"WARN  listen smtp: 127.0.0.1:{relay.port} is in use by another")


def test_port_held_by_running_daemon_is_ok(tmp_path: Path, relay: Sink) -> None:
    """While `mailgate run` holds the listen port the doctor recognises it and says OK."""
    config = make_config(tmp_path, relay.port, logging={"format": "json"})
    port = config.listen.smtp.port  # type: ignore[union-attr]
    (tmp_path / "mailgate.yaml").write_text(config.model_dump_json(exclude={"base_dir"}))
    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mailgate")),
                "-c",
                str(tmp_path / "mailgate.yaml"),
                "run",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_smtp(port, daemon)
        code, lines = doctor(config)
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert 0 == code
    assert lines["listen smtp"].startswith(
        f"OK    listen smtp: 127.0.0.1:{port} in use by a running mailgate"
    )


def _wait_for_smtp(port: int, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "mailgate run exited early"
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("mailgate run did not listen within 30 s")


def test_mail_waiting_in_the_spool_is_reported(tmp_path: Path) -> None:
    """Messages journaled but not yet imported (daemon stopped) show up, with what happens to them."""
    from mailgate.store.spool import Spool

    config = installed(make_config(tmp_path, None))
    _, by_check = doctor(config)
    assert "spool: nothing waiting for import" in by_check["spool"]
    database = Path(make_url(config.database_url).database or "").resolve()
    spooled = Spool.for_database(database).append(
        [
            InboundItem(make_mail(), Envelope("a@example.org", (HELPDESK,), "smtp", datetime.now(UTC)))
            for _ in range(3)
        ]
    )
    _, by_check = doctor(config)
    assert "3 messages not yet in the database" in by_check["spool"]
    # Imported (the journal file stays until it is full or the daemon stops).
    runtime = build(config)
    InboundStore(runtime.sessions).accept([record.item for record in spooled[:2]])
    runtime.close()
    _, by_check = doctor(config)
    assert "1 message not yet in the database" in by_check["spool"]
