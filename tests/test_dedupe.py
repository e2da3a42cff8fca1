"""A Message-ID is a name, not a fingerprint (issue 10, item 7).

The same mail over two routes folds into one article; two different mails
that share a Message-ID (form mailers, scanners, test corpora) are two mails,
and the collision is recorded on the second one's ticket.
"""

from __future__ import annotations

import base64
import quopri
from email import message_from_bytes
from typing import Any

from mailgate.parse import parse
from mailgate.tickets.dedupe import content_fingerprint, dedupe_key
from tests.conftest import HELPDESK, DaemonProcess, ticket_json, tickets_json, wait_until

BODY = "Hallo,\n\nde printer op de derde verdieping loopt vast. Groeten,\nJoël\n"
DATE = "Fri, 04 Dec 2026 09:15:00 +0100"


def _mail(
    body: str = BODY,
    *,
    message_id: str = "<form-42@forms.example.org>",
    date: str = DATE,
    encoding: str = "8bit",
    trace: tuple[str, ...] = (),
    subject: str = "Printer loopt vast",
    extra: tuple[str, ...] = (),
) -> bytes:
    """One mail as a given route delivers it: its trace headers, its transfer encoding."""
    data = body.replace("\n", "\r\n").encode()
    if encoding == "quoted-printable":
        data = quopri.encodestring(data)
    elif encoding == "base64":
        data = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = [
        *trace,
        "From: Joel Janssen <joel@example.org>",
        f"To: {HELPDESK}",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: {message_id}",
        *extra,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Transfer-Encoding: {encoding}",
    ]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + data


ROUTE_A = (
    "Received: from mx1.example.net (mx1.example.net [192.0.2.10]) by helpdesk.example.com"
    " with ESMTPS id 4Qx; Fri, 04 Dec 2026 09:15:03 +0100",
    "Received: from laptop (unknown [198.51.100.7]) by mx1.example.net; Fri, 04 Dec 2026 09:15:01 +0100",
)
ROUTE_B = (
    "Return-Path: <joel@example.org>",
    "Delivered-To: helpdesk-alias@example.com",
    "Received: from lists.example.com (lists.example.com [203.0.113.5]) by helpdesk.example.com"
    " with ESMTP id 9Zk; Fri, 04 Dec 2026 09:16:40 +0100",
    "Received: from mx2.example.net (mx2.example.net [192.0.2.20]) by lists.example.com;"
    " Fri, 04 Dec 2026 09:16:38 +0100",
    "Authentication-Results: lists.example.com; dkim=pass header.d=example.org",
    "X-Spam-Status: No, score=-0.1",
)


def _incoming(daemon: DaemonProcess, ticket_id: int) -> list[dict[str, Any]]:
    articles = ticket_json(daemon.config_path, ticket_id)["articles"]
    return [a for a in articles if a["direction"] == "in"]


def _settled(daemon: DaemonProcess, count: int) -> None:
    """Wait until ``count`` inbound mails were processed, whatever became of them."""
    wait_until(
        lambda: len(daemon.events("process.stored")) + len(daemon.events("process.duplicate")) >= count,
        timeout=30,
    )


# -- what "the same content" means ------------------------------------------------


def test_transfer_encoding_and_trace_headers_do_not_change_the_fingerprint() -> None:
    """8bit, quoted-printable and base64 copies with other Received headers are one mail."""
    keys = {
        dedupe_key(parse(raw), raw)
        for raw in (
            _mail(trace=ROUTE_A),
            _mail(trace=ROUTE_B, encoding="quoted-printable"),
            _mail(encoding="base64", subject="[EXTERNAL] Printer loopt vast"),
            _mail(BODY.replace("\n", "  \n")),  # trailing blanks an MTA may add or strip
        )
    }
    assert 1 == len(keys)


def test_other_words_another_date_or_another_sender_make_another_mail() -> None:
    """Same Message-ID, but the body, the Date or the From differ: three other fingerprints."""
    first = content_fingerprint(parse(_mail()))
    others = {
        content_fingerprint(parse(_mail(BODY.replace("derde", "vierde")))),
        content_fingerprint(parse(_mail(date="Fri, 04 Dec 2026 09:20:00 +0100"))),
        content_fingerprint(parse(_mail().replace(b"joel@example.org", b"anna@example.org"))),
    }
    assert 3 == len(others)
    assert first not in others


# -- through the daemon ------------------------------------------------------------


def test_the_same_mail_over_two_routes_is_one_article_and_one_acknowledgement(daemon: DaemonProcess) -> None:
    """Directly and via a list (other Received headers, re-encoded as quoted-printable): folded."""
    daemon.send(_mail(trace=ROUTE_A), mail_from="joel@example.org")
    daemon.send(_mail(trace=ROUTE_B, encoding="quoted-printable"), mail_from="joel@example.org")
    _settled(daemon, 2)
    assert 1 == len(daemon.events("process.duplicate"))
    (ticket,) = tickets_json(daemon.config_path)
    assert 1 == len(_incoming(daemon, ticket["id"]))
    wait_until(lambda: daemon.acks(), timeout=15)
    assert 1 == len(daemon.acks())
    events = ticket_json(daemon.config_path, ticket["id"])["events"]
    assert [] == [e for e in events if e["kind"] == "message_id_collision"]
    assert 0 == daemon.stop()


def test_two_different_mails_with_one_message_id_are_two_tickets_and_the_collision_is_recorded(
    daemon: DaemonProcess,
) -> None:
    """A form mailer reusing its Message-ID: both requests become tickets, both are acknowledged."""
    daemon.send(_mail(), mail_from="joel@example.org")
    second = BODY.replace("de printer op de derde verdieping loopt vast", "mijn wachtwoord is verlopen")
    daemon.send(_mail(second, date="Fri, 04 Dec 2026 11:02:00 +0100"), mail_from="joel@example.org")
    _settled(daemon, 2)
    assert [] == daemon.events("process.duplicate")
    tickets = sorted(tickets_json(daemon.config_path), key=lambda t: t["id"])
    assert 2 == len(tickets)
    first_article = _incoming(daemon, tickets[0]["id"])[0]
    second_article = _incoming(daemon, tickets[1]["id"])[0]
    assert "mijn wachtwoord is verlopen" in second_article["body_text"]
    events = ticket_json(daemon.config_path, tickets[1]["id"])["events"]
    (collision,) = [e for e in events if e["kind"] == "message_id_collision"]
    assert "<form-42@forms.example.org>" == collision["detail"]["message_id"]
    assert first_article["id"] == collision["detail"]["earlier_article_id"]
    assert tickets[0]["id"] == collision["detail"]["earlier_ticket_id"]
    assert second_article["id"] == collision["detail"]["article_id"]
    wait_until(lambda: len(daemon.acks()) >= 2, timeout=15)
    assert 2 == len(daemon.acks())
    assert 0 == daemon.stop()


def test_replies_thread_by_message_id_when_two_articles_share_it(daemon: DaemonProcess) -> None:
    """A reply to either acknowledgement lands on its own ticket; a reply naming only
    the shared Message-ID lands on one of the two, not on a new ticket."""
    daemon.send(_mail(), mail_from="joel@example.org")
    _settled(daemon, 1)
    daemon.send(_mail("Tweede verzoek: de scanner.\n", date=DATE.replace("09:15", "10:15")))
    _settled(daemon, 2)
    wait_until(lambda: len(daemon.acks()) >= 2, timeout=15)
    acks = {str(message_from_bytes(raw)["Message-ID"]): message_from_bytes(raw) for raw in daemon.acks()}
    tickets = sorted(t["id"] for t in tickets_json(daemon.config_path))
    by_ticket = {}
    for ack_id in acks:
        for ticket_id in tickets:
            articles = ticket_json(daemon.config_path, ticket_id)["articles"]
            if any(a["message_id"] == ack_id for a in articles):
                by_ticket[ticket_id] = ack_id
    assert set(tickets) == set(by_ticket)

    for n, ticket_id in enumerate(tickets):
        # Plain subject, no ticket tag: only the Message-IDs can thread it.
        reply = _mail(
            f"Antwoord {n}: dank je.\n",
            message_id=f"<reply-{n}@example.org>",
            subject="Re: verzoek",
            extra=(
                f"In-Reply-To: {by_ticket[ticket_id]}",
                f"References: <form-42@forms.example.org> {by_ticket[ticket_id]}",
            ),
        )
        daemon.send(reply, mail_from="joel@example.org")
    daemon.send(
        _mail(
            "Nog iets.\n",
            message_id="<reply-shared@example.org>",
            subject="Re: verzoek",
            extra=("In-Reply-To: <form-42@forms.example.org>",),
        ),
        mail_from="joel@example.org",
    )
    _settled(daemon, 5)
    assert tickets == sorted(t["id"] for t in tickets_json(daemon.config_path))
    for n, ticket_id in enumerate(tickets):
        texts = [a["body_text"] for a in _incoming(daemon, ticket_id)]
        assert any(f"Antwoord {n}" in text for text in texts), texts
    shared = [t for t in tickets if any("Nog iets" in a["body_text"] for a in _incoming(daemon, t))]
    assert 1 == len(shared)
    assert 0 == daemon.stop()
