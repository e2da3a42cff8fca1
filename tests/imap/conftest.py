"""Fixtures for the IMAP ingest tests: real Dovecots, real sockets, SQLite.

Each Dovecot variant starts once per test session, on first use, in its own
throwaway folder, and is stopped and removed at the end. Tests make their
own users (so their mailboxes never meet) and their own SQLite store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import Engine, select

from mailgate.config import ImapAccount
from mailgate.ingest.imap import ImapFetcher
from mailgate.store.db import make_engine, session_factory, upgrade
from mailgate.store.inbound import InboundStore
from mailgate.store.models import Inbound
from tests.imap.dovecot import Dovecot, TlsFiles, make_tls_files

# Fast knobs so that reconnects and retries happen within a test's patience.
FAST = {
    "idle_tick": 0.2,
    "backoff_initial": 0.05,
    "backoff_max": 0.5,
    "auth_retry": 0.5,
    "finish_grace": 0.5,
}

# Dovecot 2.3 without MOVE (RFC 6851), IDLE (RFC 2177) and UIDPLUS (RFC 4315),
# like the older servers some helpdesks still have to read from.
BASIC_CAPABILITIES = "imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE NAMESPACE CHILDREN\n"


def make_message(subject: str, *, body_size: int = 600, sender: str = "anna@example.org") -> bytes:
    """A small, plausible customer mail with a unique Message-ID."""
    body = ("Mijn printer doet het niet. " * (body_size // 28 + 1))[:body_size]
    return (
        f"Return-Path: <{sender}>\r\n"
        f"From: Anna <{sender}>\r\n"
        "To: helpdesk@example.com\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}.{time.monotonic_ns()}@example.org>\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@dataclass
class Store:
    """An InboundStore on a SQLite file, with a way to count what it holds."""

    engine: Engine
    inbound: InboundStore
    url: str

    def rows(self) -> list[Inbound]:
        with session_factory(self.engine)() as session:
            return list(session.scalars(select(Inbound).order_by(Inbound.id)))

    def count(self) -> int:
        return len(self.rows())


@dataclass(frozen=True)
class Mailbox:
    """A fresh Dovecot user and an account for it."""

    server: Dovecot
    user: str
    password: str

    def account(self, **overrides: Any) -> ImapAccount:
        values: dict[str, Any] = {
            "name": f"acct-{self.user}",
            "host": "127.0.0.1",
            "port": self.server.imap_port,
            "security": "none",
            "username": self.user,
            "password": self.password,
            "timeout": 10.0,
        }
        values.update(overrides)
        return ImapAccount(**values)

    def client(self) -> Any:
        return self.server.client(self.user, self.password)

    def count(self, folder: str = "INBOX", criteria: str = "ALL") -> int:
        client = self.client()
        try:
            if not client.folder_exists(folder):
                return 0
            client.select_folder(folder, readonly=True)
            return len(client.search(criteria))
        finally:
            client.logout()

    def append(self, *raws: bytes, folder: str = "INBOX") -> None:
        client = self.client()
        try:
            for raw in raws:
                client.append(folder, raw)
        finally:
            client.logout()


def new_mailbox(server: Dovecot) -> Mailbox:
    user, password = server.take_user()
    # The first login creates the user's Maildir (INBOX).
    client = server.client(user, password)
    client.select_folder("INBOX")
    client.logout()
    return Mailbox(server, user, password)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def dovecot(tls_files: TlsFiles) -> Iterator[Dovecot]:
    server = Dovecot(tls_files)
    yield server
    server.remove()


@pytest.fixture(scope="session")
def dovecot_basic(tls_files: TlsFiles) -> Iterator[Dovecot]:
    server = Dovecot(tls_files, extra_config=BASIC_CAPABILITIES)
    yield server
    server.remove()


class TokenIssuer(ThreadingHTTPServer):
    """A tiny OAuth2 token introspection endpoint (RFC 7662) for Dovecot."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _IntrospectionHandler)
        self.tokens: dict[str, str] = {}
        self.checked: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/introspect"


class _IntrospectionHandler(BaseHTTPRequestHandler):
    server: TokenIssuer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        token = form.get("token", [""])[0]
        self.server.checked.append(token)
        user = self.server.tokens.get(token)
        answer = {"active": "true", "username": user} if user else {"active": "false"}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows stderr of failing tests only, keep it readable."""


@pytest.fixture(scope="session")
def token_issuer() -> Iterator[TokenIssuer]:
    issuer = TokenIssuer()
    thread = threading.Thread(target=issuer.serve_forever, daemon=True)
    thread.start()
    yield issuer
    issuer.shutdown()
    issuer.server_close()


@pytest.fixture(scope="session")
def dovecot_oauth2(tls_files: TlsFiles, token_issuer: TokenIssuer) -> Iterator[Dovecot]:
    server = Dovecot(tls_files, oauth2_introspection_url=token_issuer.url)
    yield server
    server.remove()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Mailbox:
    return new_mailbox(dovecot)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path}/t.db"
    engine = make_engine(url)
    upgrade(engine)
    yield Store(engine, InboundStore(session_factory(engine)), url)
    engine.dispose()


@contextmanager
def running(*fetchers: ImapFetcher) -> Iterator[None]:
    """Run fetchers in threads, as the daemon does; stop and join them after."""
    stop = threading.Event()
    threads = [threading.Thread(target=f.run, args=(stop,), daemon=True) for f in fetchers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        assert [] == [t.name for t in threads if t.is_alive()], "a fetcher did not stop"
