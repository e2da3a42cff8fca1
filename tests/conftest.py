"""Shared fixtures: real daemons, real databases, real SMTP peers.

Nothing here mocks a socket: the daemon is the real ``mailgate run`` in a
subprocess, the relay is an aiosmtpd server, PostgreSQL is the one on
127.0.0.1:5432, Dovecot is started by tests/imap.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.content.corpus import CORPUS_VARIABLE, ZAMMAD_MARKER, external_corpus, zammad_problem

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("MAILGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
HELPDESK = "helpdesk@example.com"


# -- the zammad corpus (AGPL-3.0, outside the repository) ------------------------
#
# Its tests run when MAILGATE_CORPUS names the folder holding zammad-mail/.
# Unset, they are skipped with the reason and the summary names them, so a
# run without them never passes for one with them. Set to a wrong folder,
# the run stops before collecting anything.

ZAMMAD_NOT_RUN = (
    f"{CORPUS_VARIABLE} is not set: zammad-mail (AGPL-3.0) is not in this repository; "
    "see tests/corpora/README.md"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{ZAMMAD_MARKER}: reads zammad-mail from ${CORPUS_VARIABLE} (not in this repository)"
    )
    problem = zammad_problem()
    if problem is not None:
        raise pytest.UsageError(problem)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if external_corpus() is not None:
        return
    for item in items:
        if item.get_closest_marker(ZAMMAD_MARKER):
            item.add_marker(pytest.mark.skip(reason=ZAMMAD_NOT_RUN))


def _not_run_for_want_of_the_corpus(report: Any) -> bool:
    # Found by the skip's reason, not by what this process collected: under
    # pytest-xdist (make test) the workers collect and the controller reports.
    longrepr = report.longrepr
    return isinstance(longrepr, tuple) and len(longrepr) == 3 and ZAMMAD_NOT_RUN in str(longrepr[2])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Name the zammad tests that were skipped for want of MAILGATE_CORPUS, and how to run them."""
    skipped = sorted(
        r.nodeid for r in terminalreporter.stats.get("skipped", []) if _not_run_for_want_of_the_corpus(r)
    )
    if not skipped:
        return
    terminalreporter.write_sep("=", "zammad corpus", yellow=True)
    terminalreporter.write_line(
        f"not run: {len(skipped)} zammad-corpus tests: {CORPUS_VARIABLE} is not set. To run them:"
    )
    terminalreporter.write_line(
        f"  {CORPUS_VARIABLE}=/path/to/corpus make test   (the folder holding zammad-mail/; "
        "see tests/corpora/README.md)"
    )
    for nodeid in skipped:
        terminalreporter.write_line(f"  not run: {nodeid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_mail(
    subject: str = "Printer on floor 3 is broken",
    sender: str = "Alice Example <alice@example.org>",
    to: str = HELPDESK,
    message_id: str | None = None,
    body: str = "Hello,\n\nthe printer on floor 3 jams on every page.\n\nAlice\n",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A small, well-formed plain-text mail."""
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: {message_id or f'<{uuid.uuid4().hex}@example.org>'}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


# -- databases -----------------------------------------------------------------


def _pg_create() -> str:
    import psycopg

    name = f"mg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def _pg_drop(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/mailgate.db"
        return
    with fresh_pg_url() as url:
        yield url


@contextlib.contextmanager
def fresh_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server, dropped afterwards."""
    name = _pg_create()
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        _pg_drop(name)


# -- configuration and runtime ---------------------------------------------------------


def write_config(base: Path, **sections: Any) -> Path:
    """A config file in ``base`` (SQLite there, Maildir outbox there, free SMTP port)."""
    document: dict[str, Any] = {
        "helpdesk": {"address": HELPDESK, "name": "Example IT Helpdesk"},
        "database": {"url": f"sqlite:///{base}/mailgate.db"},
        "listen": {"smtp": {"host": "127.0.0.1", "port": free_port()}},
        "outbound": {"maildir": str(base / "outbox")},
        "secrets": {"reply_key_file": str(base / "reply.key")},
        "logging": {"format": "json", "level": "info"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    path = base / "mailgate.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def reply_to_mail(daemon: Any, to_mail: Any, sender: str, body: str, to: str | None = None) -> None:
    """Answer one of our mails the way a mail client does: to its Reply-To (or ``to``),
    In-Reply-To set, over SMTP to the daemon."""
    rcpt = to or str(to_mail["Reply-To"])
    raw = make_mail(
        subject="Re: " + str(to_mail["Subject"]),
        sender=sender,
        to=rcpt,
        body=body,
        headers={"In-Reply-To": str(to_mail["Message-ID"])},
    )
    daemon.send(raw, sender.rpartition("<")[2].rstrip(">"), (rcpt,))


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def runtime_factory(tmp_path: Path) -> Iterator[Any]:
    from mailgate.config import load
    from mailgate.service.runtime import build

    built: list[Any] = []

    def factory(**sections: Any) -> Any:
        runtime = build(load(write_config(tmp_path, **sections)))
        built.append(runtime)
        return runtime

    yield factory
    for runtime in built:
        runtime.close()


# -- the daemon as a subprocess ------------------------------------------------------


@dataclass
class DaemonProcess:
    config_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def config(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.config_path.read_text()))

    @property
    def smtp_port(self) -> int:
        return int(self.config["listen"]["smtp"]["port"])

    @property
    def outbox_dir(self) -> Path:
        return Path(self.config["outbound"]["maildir"])

    def start(self, timeout: float = 60.0) -> DaemonProcess:
        if self.process is not None:
            self.kill()  # a previous run, dead or alive: reap it and close its pipe
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "-c", str(self.config_path), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **self.env},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for("daemon.ready", timeout)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.lines.append({"event": "text", "text": raw.decode("utf-8", "replace")})

    def wait_for(self, event: str, timeout: float = 10.0, count: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if line.get("event") == event]
            if len(found) >= count:
                return found[count - 1]
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.02)
        tail = "\n".join(str(line) for line in self.lines[-30:])
        raise AssertionError(f"no {event!r} (x{count}) from the daemon within {timeout}s; log tail:\n{tail}")

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("event") == event]

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._close()
        return code

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close()

    def send(
        self, raw: bytes, mail_from: str = "alice@example.org", rcpts: tuple[str, ...] = (HELPDESK,)
    ) -> Any:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            return client.sendmail(mail_from, list(rcpts), raw)

    def acks(self) -> list[bytes]:
        new = self.outbox_dir / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []

    def cli(self, *args: str, input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_cli(self.config_path, *args, input_bytes=input_bytes)


def run_cli(
    config_path: Path,
    *args: str,
    input_bytes: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", "-c", str(config_path), *args],
        input=input_bytes,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def factory(
        config_path: Path | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        **sections: Any,
    ) -> DaemonProcess:
        path = config_path or write_config(tmp_path, **sections)
        daemon = DaemonProcess(path, env=env or {})
        started.append(daemon)
        return daemon.start() if start else daemon

    yield factory
    for daemon in started:
        daemon.kill()


@pytest.fixture
def daemon(daemon_factory: Any) -> DaemonProcess:
    """A running ``mailgate run`` with SQLite and a Maildir outbox."""
    return daemon_factory()  # type: ignore[no-any-return]


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def database_value(config_path: Path, query: str, **params: Any) -> Any:
    """The first value ``query`` finds in the database of the daemon at ``config_path``, read here.

    For waiting: tickets_json and ticket_json start ``python -m mailgate``, about a
    second of CPU each, which a poll every 20 ms takes from the daemon it waits for.
    Tests poll with this, then check what they assert through the CLI as before.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    url = yaml.safe_load(config_path.read_text())["database"]["url"]
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(text(query), params).scalar()
    finally:
        engine.dispose()


def ticket_count(config_path: Path) -> int:
    """How many tickets the daemon has stored (see database_value: cheap enough to poll)."""
    return int(database_value(config_path, "SELECT count(*) FROM tickets"))


def tickets_json(config_path: Path) -> list[dict[str, Any]]:
    result = run_cli(config_path, "tickets", "list", "--json")
    assert 0 == result.returncode, result.stderr.decode()
    return list(json.loads(result.stdout))


def ticket_json(config_path: Path, ticket_id: int | str) -> dict[str, Any]:
    result = run_cli(config_path, "tickets", "show", str(ticket_id), "--json")
    assert 0 == result.returncode, result.stderr.decode()
    return dict(json.loads(result.stdout))


@pytest.fixture
def sink() -> Iterator[Any]:
    """A real SMTP relay (aiosmtpd) on a free port with fault injection."""
    from tests.smtp_sink import Sink

    relay = Sink(free_port()).start()
    yield relay
    relay.stop()
