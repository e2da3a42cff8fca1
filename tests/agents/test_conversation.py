"""The issue's conversation, end to end: real daemon, real SMTP in and out."""

from __future__ import annotations

import time
from email.message import Message
from typing import Any

from tests.agents.conftest import FIXTURES
from tests.conftest import database_value, make_mail, ticket_json, wait_until
from tests.conftest import reply_to_mail as _reply

JAN = "Jan Jansen <jan@example.org>"


def _articles(daemon: Any) -> int:
    return len(ticket_json(daemon.config_path, 1)["articles"])


def _stored_articles(daemon: Any) -> int:
    """Read from the database: cheap to poll (the CLI then shows them)."""
    return int(database_value(daemon.config_path, "SELECT count(*) FROM articles WHERE ticket_id = 1"))


def test_conversation_sends_exactly_the_expected_mails(daemon_factory: Any, sink: Any) -> None:
    """Ask, #status pending, answer, note + #resolve, rate 5, "thanks", a forgery: exactly these mails."""
    daemon = daemon_factory(
        outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}, "maildir": None},
        agents=str(FIXTURES / "agents.yaml"),
    )

    def newest_to(address: str) -> Message:
        return [m.message for m in sink.messages if address in m.rcpt_tos][-1]

    daemon.send(
        make_mail(sender=JAN, body="Hello,\n\nthe printer on floor 3 jams.\n\nJan\n"), "jan@example.org"
    )
    sink.wait(3)
    _reply(
        daemon,
        newest_to("alice@example.com"),
        "Alice Admin <alice@example.com>",
        "#status pending\nWhich model is it? The label is on the back.\n\nAlice\n",
    )
    sink.wait(5)
    _reply(daemon, sink.messages[3].message, JAN, "It is an HP LaserJet 4250.\n\nJan\n")
    sink.wait(6)
    _reply(
        daemon,
        newest_to("alice@example.com"),
        "alice@example.com",
        "#internal\n#resolve\nReplaced the fuser; the old one is in the cupboard.\n",
    )
    sink.wait(8)
    _reply(daemon, newest_to("jan@example.org"), JAN, "5\n")
    sink.wait(9)
    _reply(daemon, newest_to("jan@example.org"), JAN, "thanks!\n\nJan\n")
    wait_until(lambda: _stored_articles(daemon) >= 15, timeout=15)
    assert _articles(daemon) >= 15
    forged = make_mail(
        subject="Re: [HD-1] Printer on floor 3 is broken",
        sender="Alice Admin <alice@example.com>",
        body="#status open\nReopening this.\n",
        headers={"In-Reply-To": str(sink.messages[3].message["Message-ID"])},
    )
    daemon.send(forged, "alice@example.com")
    sink.wait(10)
    time.sleep(1.5)  # anything extra would be delivered by now

    seen = [(str(m.message["Subject"]), str(m.message["From"]), ",".join(m.rcpt_tos)) for m in sink.messages]
    print("\nThe conversation's mails (subject | from | to):")
    for subject, sender, to in seen:
        print(f"  {subject} | {sender} | {to}")
    subject = "Printer on floor 3 is broken"
    helpdesk = "Example IT Helpdesk <helpdesk@example.com>"
    assert [
        (f"[HD-1] {subject}", helpdesk, "jan@example.org"),
        (f"[HD-1] New ticket: {subject}", helpdesk, "alice@example.com"),
        (f"[HD-1] Nieuw ticket: {subject}", helpdesk, "bob@example.com"),
        (
            f"[HD-1] {subject}",
            "Alice Admin via Example IT Helpdesk <helpdesk@example.com>",
            "jan@example.org",
        ),
        (f"[HD-1] We are waiting for you: {subject}", helpdesk, "jan@example.org"),
        (f"[HD-1] Reply: {subject}", helpdesk, "alice@example.com"),
        (f"[HD-1] Interne notitie: {subject}", helpdesk, "bob@example.com"),
        (f"[HD-1] Resolved: {subject}", helpdesk, "jan@example.org"),
        ("[HD-1] Thank you for your rating", helpdesk, "jan@example.org"),
        (f"[HD-1] Not done: Re: [HD-1] {subject}", helpdesk, "alice@example.com"),
    ] == seen
    shown = ticket_json(daemon.config_path, 1)
    assert ("resolved", "alice@example.com") == (shown["status"], shown["assignee"])
    assert shown["first_response_at"] is not None
    note = next(a for a in shown["articles"] if a["kind"] == "note")
    assert "internal" == note["visibility"]
    assert all("fuser" not in m.raw.decode() for m in sink.messages if "jan@example.org" in m.rcpt_tos)
