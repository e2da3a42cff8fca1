"""Bounces of our own mail: recorded on the ticket, the address suppressed, never a ticket."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from mailgate.store.models import Event, Outbox, Suppression, Ticket
from tests.conftest import make_mail, run_cli
from tests.helpers import deliver, outbox_mails


def dsn_for(ack_message_id: str, failed: str, status: str = "5.1.1") -> bytes:
    """An RFC 3464 delivery report for one of our mails."""
    boundary = "dsn-boundary"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        "To: helpdesk@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn1@mx.example.org>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} user unknown\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {ack_message_id}\r\nTo: {failed}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def test_hard_bounce_is_recorded_and_suppresses_the_address(runtime_factory: Any) -> None:
    """A 5.1.1 DSN to our VERP address lands on the ticket, opens no ticket, and stops further acks."""
    runtime = runtime_factory()
    first = deliver(runtime, make_mail(sender="ghost@example.org"), mail_from="ghost@example.org")
    (ack,) = outbox_mails(runtime)
    with runtime.sessions() as session:
        (verp,) = [row.mail_from for row in session.scalars(select(Outbox))]

    bounce = deliver(runtime, dsn_for(ack["Message-ID"], "ghost@example.org"), mail_from="", rcpts=(verp,))
    assert "bounce" == bounce.state
    assert first.ticket_id == bounce.ticket_id
    with runtime.sessions() as session:
        assert 1 == len(list(session.scalars(select(Ticket))))
        (event,) = session.scalars(select(Event).where(Event.kind == "bounce"))
        assert "5.1.1" == event.detail["status"]
        assert event.detail["hard"] is True
        assert ["ghost@example.org"] == [s.address for s in session.scalars(select(Suppression))]

    deliver(
        runtime,
        make_mail(sender="ghost@example.org", subject="again"),
        mail_from="ghost@example.org",
    )
    assert 1 == len(outbox_mails(runtime))  # no acknowledgement to a dead address
    config_path = runtime.config.base_dir / "mailgate.yaml"
    listed = json.loads(run_cli(config_path, "suppressions", "list", "--json").stdout)
    assert ["ghost@example.org"] == [row["address"] for row in listed]
    assert 0 == run_cli(config_path, "suppressions", "clear", "ghost@example.org").returncode
    deliver(
        runtime,
        make_mail(sender="ghost@example.org", subject="third"),
        mail_from="ghost@example.org",
    )
    assert 2 == len(outbox_mails(runtime))


def test_forged_verp_address_changes_nothing(runtime_factory: Any) -> None:
    """A bounce to a VERP address with a wrong signature suppresses nobody."""
    runtime = runtime_factory()
    deliver(runtime, make_mail(sender="real@example.org"), mail_from="real@example.org")
    forged = "helpdesk+bounce-1-aaaaaaaaaaaaaaaa@example.com"
    result = deliver(runtime, dsn_for("<not-ours@x>", "real@example.org"), mail_from="", rcpts=(forged,))
    assert "bounce" == result.state
    assert "matches no mail of ours" in result.reason
    with runtime.sessions() as session:
        assert [] == list(session.scalars(select(Suppression)))


def test_soft_bounce_is_recorded_without_suppression(runtime_factory: Any) -> None:
    """A 4.x.x report is noted on the ticket but the address stays mailable."""
    runtime = runtime_factory()
    deliver(runtime, make_mail(sender="busy@example.org"), mail_from="busy@example.org")
    (ack,) = outbox_mails(runtime)
    result = deliver(runtime, dsn_for(ack["Message-ID"], "busy@example.org", status="4.2.2"), mail_from="")
    assert "bounce" == result.state and "soft bounce" in result.reason
    with runtime.sessions() as session:
        assert [] == list(session.scalars(select(Suppression)))


def test_rate_limit_sends_one_notice_then_silence(runtime_factory: Any) -> None:
    """Past the daily limit a requester gets exactly one 'no more today' notice, then nothing."""
    runtime = runtime_factory(limits={"auto_replies_per_hour": 100, "auto_replies_per_day": 3})
    for n in range(6):
        deliver(
            runtime,
            make_mail(sender="chatty@example.org", subject=f"issue {n}"),
            mail_from="chatty@example.org",
        )
    kinds = [str(m["Subject"]) for m in outbox_mails(runtime)]
    assert 4 == len(kinds)
    assert kinds[3].endswith("No more automatic replies today")
    with runtime.sessions() as session:
        reasons = [
            e.detail["reason"] for e in session.scalars(select(Event).where(Event.kind == "ack_suppressed"))
        ]
    assert 3 == len(reasons)
    assert "one daily limit notice" in reasons[0]
