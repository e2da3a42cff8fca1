"""Merging tickets: by an agent's #merge, by `tickets merge`, and by threading
when a reply arrives before the mail it answers; the age limit on
acknowledgements in the daemon. Real daemon, real SMTP in and out."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from email.utils import format_datetime
from typing import Any

from tests.agents.conftest import FIXTURES
from tests.conftest import database_value, make_mail, ticket_json, tickets_json, wait_until
from tests.conftest import reply_to_mail as _answer
from tests.helpers import settled_inbound_states

JAN = "Jan Jansen <jan@example.org>"
PIET = "Piet Pieters <piet@example.org>"


def _articles(daemon: Any, ticket: int) -> list[dict[str, Any]]:
    return list(ticket_json(daemon.config_path, ticket)["articles"])


def _merged_into(daemon: Any, ticket: int) -> int | None:
    """Read from the database: cheap to poll (the CLI then shows it)."""
    return database_value(daemon.config_path, "SELECT merged_into_id FROM tickets WHERE id = :id", id=ticket)


def _has_article_with(daemon: Any, ticket: int, words: str) -> bool:
    """Read from the database: cheap to poll (the CLI then shows it)."""
    query = "SELECT count(*) FROM articles WHERE ticket_id = :id AND body_text LIKE :words"
    return bool(database_value(daemon.config_path, query, id=ticket, words=f"%{words}%"))


def test_agent_merges_by_mail_and_the_old_reply_address_leads_to_the_target(
    daemon_factory: Any, sink: Any
) -> None:
    """Alice answers HD-2's notification with "#merge HD-1": HD-2's mail moves
    to HD-1, HD-2 is closed with the reason, nobody is mailed, and Piet's
    reply to his HD-2 acknowledgement lands on HD-1. A bad target is refused."""
    daemon = daemon_factory(
        outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}, "maildir": None},
        agents=str(FIXTURES / "agents.yaml"),
    )
    daemon.send(make_mail(sender=JAN, subject="Printer jams"), "jan@example.org")
    daemon.send(make_mail(sender=PIET, subject="Printer on 3 jams again"), "piet@example.org")
    to_piet = wait_until(lambda: _mail_to(sink, "piet@example.org", "HD-2"), timeout=15)
    notice_2 = wait_until(lambda: _mail_to(sink, "bob@example.com", "HD-2"), timeout=15)

    _answer(daemon, notice_2, "Bob Beheer <bob@example.com>", "#merge HD-99\n")
    refusal = wait_until(lambda: _mail_to(sink, "bob@example.com", "HD-2", "#merge HD-99"), timeout=15)
    assert "#merge HD-99: no ticket HD-99" in _text(refusal)
    assert "new" == ticket_json(daemon.config_path, 2)["status"]

    _answer(daemon, notice_2, "Bob Beheer <bob@example.com>", "#merge HD-1\n")
    wait_until(lambda: _merged_into(daemon, 2) == 1, timeout=15)
    merged = ticket_json(daemon.config_path, 2)
    assert 1 == merged["merged_into_id"]
    assert "closed" == merged["status"]
    assert [] == merged["articles"]
    (event,) = [e["detail"] for e in merged["events"] if e["kind"] == "merged_into"]
    assert ("HD-1", "bob", "#merge HD-1 by bob") == (event["into"], event["by"], event["reason"])
    kept = _articles(daemon, 1)
    assert {"Printer jams", "Printer on 3 jams again"} <= {a["subject"] for a in kept}

    _answer(daemon, to_piet, PIET, "It jams on page 2 now.\n\nPiet\n")
    wait_until(lambda: _has_article_with(daemon, 1, "page 2"), timeout=15)
    assert any("page 2" in a["body_text"] for a in _articles(daemon, 1))
    assert 2 == len(tickets_json(daemon.config_path))  # no new ticket for Piet's reply
    time.sleep(1.0)
    # Jan and Piet heard nothing but their acknowledgements.
    assert [["jan@example.org"], ["piet@example.org"]] == sorted(
        m.rcpt_tos for m in sink.messages if {"jan@example.org", "piet@example.org"} & set(m.rcpt_tos)
    )


def _text(mail: Message) -> str:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    return str(part.get_payload(decode=True).decode())


def _mail_to(sink: Any, address: str, subject_part: str, text_part: str = "") -> Message | None:
    """The newest mail to ``address`` with ``subject_part`` in its subject and ``text_part`` in its text."""
    found = [
        m.message
        for m in sink.messages
        if address in m.rcpt_tos
        and subject_part in str(m.message["Subject"])
        and text_part in _text(m.message)
    ]
    return found[-1] if found else None


def test_unauthenticated_merge_changes_nothing(daemon_factory: Any, sink: Any) -> None:
    """A "#merge" written with an agent's From but not to a reply address issued
    to that agent is kept as an internal record and merges nothing."""
    daemon = daemon_factory(
        outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}, "maildir": None},
        agents=str(FIXTURES / "agents.yaml"),
    )
    daemon.send(make_mail(sender=JAN, subject="Printer jams"), "jan@example.org")
    daemon.send(make_mail(sender=PIET, subject="Printer jams too"), "piet@example.org")
    to_piet = wait_until(lambda: _mail_to(sink, "piet@example.org", "HD-2"), timeout=15)
    # Threaded onto HD-2 by In-Reply-To, From bob, but not to bob's reply address.
    forged = make_mail(
        subject="Re: [HD-2] Printer jams too",
        sender="Bob Beheer <bob@example.com>",
        body="#merge HD-1\n",
        headers={"In-Reply-To": str(to_piet["Message-ID"])},
    )
    daemon.send(forged, "bob@example.com")
    settled_inbound_states(daemon, 3, timeout=15)
    shown = ticket_json(daemon.config_path, 2)
    assert (None, "new") == (shown["merged_into_id"], shown["status"])
    assert ["unverified"] == [a["kind"] for a in shown["articles"] if a["sender"] == "bob@example.com"]


def test_admin_merges_on_the_cli(daemon: Any) -> None:
    """`tickets merge HD-2 HD-1` moves HD-2's mail to HD-1 and closes HD-2; a reply
    to HD-2's acknowledgement then lands on HD-1; impossible merges are refused."""
    daemon.send(make_mail(sender=JAN, subject="VPN down"), "jan@example.org")
    daemon.send(make_mail(sender=PIET, subject="VPN is down for me too"), "piet@example.org")
    wait_until(lambda: len(daemon.acks()) == 2, timeout=15)

    done = daemon.cli("tickets", "merge", "HD-2", "HD-1")

    assert 0 == done.returncode, done.stderr.decode()
    assert "HD-2 merged into HD-1: 2 articles moved" == done.stdout.decode().strip()
    kept = ticket_json(daemon.config_path, 1)
    assert ["jan@example.org", "piet@example.org"] == sorted(
        {a["sender"] for a in kept["articles"] if a["direction"] == "in"}
    )
    assert [("HD-2", "cli")] == [
        (e["detail"]["source"], e["detail"]["by"]) for e in kept["events"] if e["kind"] == "merged"
    ]
    ack_2 = next(m for m in map(message_from_bytes, daemon.acks()) if "HD-2" in str(m["Subject"]))
    _answer(daemon, ack_2, PIET, "Still down.\n\nPiet\n")
    wait_until(lambda: _has_article_with(daemon, 1, "Still down"), timeout=15)
    assert any("Still down" in a["body_text"] for a in _articles(daemon, 1))
    assert 2 == len(tickets_json(daemon.config_path))

    again = daemon.cli("tickets", "merge", "HD-2", "HD-1")
    assert 1 == again.returncode
    assert "HD-2 was already merged into ticket 1" in again.stderr.decode()
    itself = daemon.cli("tickets", "merge", "1", "HD-1")
    assert "HD-1 cannot be merged into itself" in itself.stderr.decode()
    missing = daemon.cli("tickets", "merge", "HD-1", "HD-7")
    assert "no ticket HD-7" in missing.stderr.decode()


def test_reply_before_the_mail_it_answers_is_rehomed_in_the_daemon(daemon: Any) -> None:
    """Jan's follow-up overtakes his request (a slow relay): it opens HD-1 and
    is acknowledged; the request then opens HD-2, which takes HD-1 in, and Jan
    is not acknowledged again. His reply to that one acknowledgement lands on HD-2."""
    request_id = "<request-overtaken@example.org>"
    follow_up = make_mail(
        sender=JAN,
        subject="Re: Laptop will not boot",
        body="Any news?\n\nJan\n",
        headers={"In-Reply-To": request_id, "References": request_id},
    )
    daemon.send(follow_up, "jan@example.org")
    wait_until(lambda: len(daemon.acks()) == 1, timeout=15)
    daemon.send(
        make_mail(sender=JAN, subject="Laptop will not boot", message_id=request_id), "jan@example.org"
    )
    wait_until(lambda: _merged_into(daemon, 1) == 2, timeout=15)
    time.sleep(1.0)
    assert 1 == len(daemon.acks())
    assert 2 == ticket_json(daemon.config_path, 1)["merged_into_id"]
    kept = ticket_json(daemon.config_path, 2)
    assert "Laptop will not boot" == kept["subject"]
    assert 2 == len([a for a in kept["articles"] if a["direction"] == "in"])
    (only_ack,) = map(message_from_bytes, daemon.acks())
    _answer(daemon, only_ack, JAN, "It boots now, thanks.\n")
    wait_until(lambda: _has_article_with(daemon, 2, "boots now"), timeout=15)
    assert any("boots now" in a["body_text"] for a in _articles(daemon, 2))
    assert 1 == len([t for t in tickets_json(daemon.config_path) if t["status"] != "closed"])


def _dated_mail(subject: str, written: datetime) -> bytes:
    raw = make_mail(sender=JAN, subject=subject)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Date:")]
    return b"\r\n".join([*lines, f"Date: {format_datetime(written)}".encode()]) + b"\r\n\r\n" + body


def test_daemon_never_acknowledges_mail_older_than_the_limit(daemon_factory: Any) -> None:
    """Mail written 8 days ago (limits.ack_max_age_days: 7) becomes a ticket but
    is not acknowledged; mail written yesterday is."""
    daemon = daemon_factory()
    now = datetime.now(UTC)
    daemon.send(_dated_mail("Old matter", now - timedelta(days=8)), "jan@example.org")
    daemon.send(_dated_mail("Recent matter", now - timedelta(days=1)), "jan@example.org")
    settled_inbound_states(daemon, 2, timeout=15)
    time.sleep(0.5)
    acks = [message_from_bytes(a) for a in daemon.acks()]
    assert ["Recent matter"] == [str(a["Subject"]).partition("] ")[2] for a in acks]
    old = next(t for t in tickets_json(daemon.config_path) if t["subject"] == "Old matter")
    (why,) = [
        e["detail"]["reason"]
        for e in ticket_json(daemon.config_path, old["id"])["events"]
        if e["kind"] == "ack_suppressed"
    ]
    assert "8 days old, over limits.ack_max_age_days (7): not acknowledged" in why
