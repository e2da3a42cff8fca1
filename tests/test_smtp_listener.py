"""The SMTP/LMTP listener: 250 only after the message is durable."""

from __future__ import annotations

import asyncio
import email
import smtplib
import socket
import threading
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import event, text

from mailgate.ingest.smtp import IngestHandler
from mailgate.store.db import make_engine, session_factory, upgrade
from mailgate.store.inbound import GroupCommitter, InboundStore
from tests.conftest import (
    HELPDESK,
    DaemonProcess,
    free_port,
    make_mail,
    ticket_count,
    ticket_json,
    tickets_json,
    wait_until,
)


def test_new_request_gets_ticket_and_acknowledgement(daemon: DaemonProcess) -> None:
    """A new mail becomes ticket HD-1 and its sender gets a threaded, signed, auto-submitted answer."""
    daemon.send(make_mail(message_id="<first@example.org>"))
    (ack_raw,) = wait_until(daemon.acks)
    ack = email.message_from_bytes(ack_raw, policy=default_policy)

    (ticket,) = tickets_json(daemon.config_path)
    assert "HD-1" == ticket["ref"]
    assert "Printer on floor 3 is broken" == ticket["subject"]
    assert {
        "id",
        "ref",
        "subject",
        "status",
        "priority",
        "queue",
        "requester",
        "created_at",
    } <= ticket.keys()
    assert "alice@example.org" == ticket["requester"]
    assert "[HD-1] Printer on floor 3 is broken" == ack["Subject"]
    assert "auto-replied" == ack["Auto-Submitted"]
    assert "<first@example.org>" == ack["In-Reply-To"]
    assert "<first@example.org>" in ack["References"]
    assert ack["Reply-To"].startswith("helpdesk+t1-")
    assert ack["Message-ID"].endswith("@example.com>")
    assert "alice@example.org" == ack["To"].addresses[0].addr_spec
    assert {"text/plain", "text/html"} == {part.get_content_type() for part in ack.iter_parts()}
    assert "HD-1" in ack.get_body(("plain",)).get_content()


def test_ack_is_recorded_as_an_outbound_article(daemon: DaemonProcess) -> None:
    """The acknowledgement is an outbound public article carrying its Message-ID."""
    daemon.send(make_mail(message_id="<second@example.org>"))
    wait_until(daemon.acks)
    shown = ticket_json(daemon.config_path, "HD-1")
    assert ["in", "out"] == [a["direction"] for a in shown["articles"]]
    inbound, outbound = shown["articles"]
    assert "<second@example.org>" == inbound["message_id"]
    assert "ack" == outbound["kind"]
    assert outbound["message_id"].endswith("@example.com>")
    for article in shown["articles"]:
        assert {
            "direction",
            "visibility",
            "sender",
            "recipients",
            "message_id",
            "subject",
            "body_text",
            "created_at",
        } <= article.keys()


def test_foreign_recipient_refused_with_550(daemon: DaemonProcess) -> None:
    """Mail for an address that is not ours is refused at RCPT with 550 5.1.1."""
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo()
        client.mail("alice@example.org")
        code, reply = client.rcpt("bob@elsewhere.example")
        assert 550 == code
        assert reply.startswith(b"5.1.1")
        assert 250 == client.rcpt("helpdesk+anything@example.com")[0]


def test_oversized_mail_refused_with_552_at_data(daemon_factory: Any) -> None:
    """A message over listen.max_message_bytes gets 552 after DATA and is not stored."""
    daemon = daemon_factory(listen={"max_message_bytes": 4096})
    big = make_mail(body=("x" * 70 + "\n") * 300)
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo()
        client.mail("alice@example.org")  # no SIZE= parameter: the limit must hold at DATA
        client.rcpt(HELPDESK)
        code, _ = client.data(big)
    assert 552 == code
    assert [] == tickets_json(daemon.config_path)


def test_duplicate_delivery_makes_one_article_and_one_ack(daemon: DaemonProcess) -> None:
    """The same Message-ID delivered twice, and identical bytes without one, each count once."""
    daemon.send(make_mail(message_id="<same@example.org>"))
    daemon.send(make_mail(message_id="<same@example.org>"))
    no_id = make_mail(subject="No id here").replace(b"Message-ID:", b"X-Old-Id:")
    daemon.send(no_id)
    daemon.send(no_id)
    wait_until(lambda: len(daemon.acks()) >= 2)
    daemon.wait_for("process.duplicate", count=2)
    assert 2 == len(tickets_json(daemon.config_path))
    assert 2 == len(daemon.acks())
    assert 1 == len(ticket_json(daemon.config_path, 1)["articles"]) - 1


def test_lmtp_answers_once_per_recipient(daemon_factory: Any) -> None:
    """Over LMTP, DATA gets one 250 per accepted recipient (RFC 2033 §4.2)."""
    port = free_port()
    daemon = daemon_factory(listen={"lmtp": {"host": "127.0.0.1", "port": port}})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rwb")

        def command(line: str) -> list[str]:
            stream.write(line.encode() + b"\r\n")
            stream.flush()
            return read_reply(stream)

        assert read_reply(stream)[0].startswith("220")
        assert command("LHLO client.example")[-1].startswith("250")
        assert command("MAIL FROM:<alice@example.org>")[0].startswith("250")
        assert command(f"RCPT TO:<{HELPDESK}>")[0].startswith("250")
        assert command("RCPT TO:<helpdesk+network@example.com>")[0].startswith("250")
        assert command("RCPT TO:<nobody@other.example>")[0].startswith("550")
        assert command("DATA")[0].startswith("354")
        stream.write(make_mail() + b"\r\n.\r\n")
        stream.flush()
        first, second = read_reply(stream), read_reply(stream)
        assert first[0].startswith("250 2.0.0")
        assert second[0].startswith("250 2.0.0")
        command("QUIT")
    wait_until(lambda: ticket_count(daemon.config_path))
    # Two recipients, both ours, through the spool journal: still one ticket and one answer.
    wait_until(lambda: daemon.acks())
    daemon.stop()
    assert 1 == len(tickets_json(daemon.config_path))
    assert 1 == len(daemon.acks())


def read_reply(stream: Any) -> list[str]:
    lines = []
    while True:
        line = stream.readline().decode().rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


# -- failures of the store, in process with a real listener -------------------------------


class _Listener:
    """The real IngestHandler on a real socket, over a database we can break."""

    def __init__(self, db_path: Path, *, prepare: Any = None) -> None:
        self.engine = make_engine(f"sqlite:///{db_path}")
        upgrade(self.engine)
        if prepare is not None:
            prepare(self.engine)
        self.committer = GroupCommitter(InboundStore(session_factory(self.engine)))
        handler = IngestHandler(self.committer, lambda address: True, lmtp=False)
        self.port = free_port()
        self.controller = Controller(handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> _Listener:
        self.committer.start()
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
        self.committer.stop()
        self.engine.dispose()

    def send(self, raw: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", self.port) as client:
            client.ehlo()
            client.mail("alice@example.org")
            client.rcpt(HELPDESK)
            return client.data(raw)


def test_failing_store_answers_451_not_5xx(tmp_path: Path) -> None:
    """When the database cannot take the message, the client hears 451 4.3.0 and will retry."""

    def break_store(engine: Any) -> None:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE inbound"))

    with _Listener(tmp_path / "broken.db", prepare=break_store) as listener:
        code, reply = listener.send(make_mail())
    assert 451 == code
    assert reply.startswith(b"4.3.0")


def test_full_disk_answers_452(tmp_path: Path) -> None:
    """When the database is full, the client hears 452 4.3.1 (insufficient storage)."""

    def cap_size(engine: Any) -> None:
        @event.listens_for(engine, "connect")
        def _limit(dbapi_connection: Any, _record: Any) -> None:
            # SQLite answers SQLITE_FULL ("database or disk is full") past this page count.
            dbapi_connection.execute("PRAGMA max_page_count = 40")

        engine.dispose()

    with _Listener(tmp_path / "full.db", prepare=cap_size) as listener:
        code, reply = listener.send(make_mail(body=("y" * 70 + "\n") * 6000))
    assert 452 == code
    assert reply.startswith(b"4.3.1")


def test_answer_waits_for_the_commit(tmp_path: Path) -> None:
    """A 250 is only sent once the row is committed: a second connection sees it at once."""
    with _Listener(tmp_path / "ok.db") as listener:
        code, _reply = listener.send(make_mail(message_id="<durable@example.org>"))
        with listener.engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM inbound")).scalar_one()
    assert 250 == code
    assert 1 == stored


def test_concurrent_sessions_share_commits(tmp_path: Path) -> None:
    """Forty concurrent SMTP sessions are all answered 250 and all stored."""
    with _Listener(tmp_path / "many.db") as listener:
        codes: list[int] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            code, _ = listener.send(make_mail(message_id=f"<c{n}@example.org>"))
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with listener.engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM inbound")).scalar_one()
    assert [250] * 40 == codes
    assert 40 == stored


@pytest.mark.parametrize("rcpt", ["Helpdesk@Example.com", "helpdesk+t12-abc@example.com"])
def test_our_addresses_are_case_and_detail_insensitive(runtime_factory: Any, rcpt: str) -> None:
    """The helpdesk address is ours whatever its case or +detail."""
    assert runtime_factory().is_our_address(rcpt)
    asyncio.get_event_loop_policy()  # the runtime needs no event loop
