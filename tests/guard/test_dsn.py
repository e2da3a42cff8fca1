"""parse_dsn on hand-made bounces: RFC 3464 reports and the free-text kinds."""

# STYLE.md wants the expected value on the left, which SIM300 calls a Yoda condition.

from __future__ import annotations

import pytest

from mailgate.guard.dsn import DsnRecipient, is_hard, parse_dsn
from tests.guard.helpers import fixture


def test_rfc3464_report_gives_every_recipient_and_the_original_id() -> None:
    """Both per-recipient groups come out; a vague 5.0.0 is refined by the diagnostic."""
    report = parse_dsn(fixture("bounced_email"))
    assert report is not None
    assert "<hd-12.a1b2c3@mailgate.example.com>" == report.original_message_id
    assert (
        DsnRecipient(
            "ann@customer.example",
            "failed",
            "5.1.1",
            "550 5.1.1 <ann@customer.example>: Recipient address rejected: User unknown",
            True,
        ),
        DsnRecipient("full@customer.example", "failed", "5.2.2", "552 5.2.2 Mailbox full", False),
    ) == report.recipients


def test_delayed_report_is_soft_and_finds_the_attached_original() -> None:
    """Action: delayed with 4.4.1 is not hard; the id comes from message/rfc822."""
    report = parse_dsn(fixture("delayed_dsn"))
    assert report is not None
    assert "<hd-13.d4e5@mailgate.example.com>" == report.original_message_id
    assert [("ann@customer.example", "delayed", "4.4.1", False)] == [
        (r.address, r.action, r.status, r.hard) for r in report.recipients
    ]


@pytest.mark.parametrize(
    ("name", "address", "status", "hard", "message_id"),
    [
        ("qmail_bounce", "bob@customer.example", "5.1.1", True, "<hd-14.f6@mailgate.example.com>"),
        (
            "exim_bounce",
            "carol@customer.example",
            "4.2.2",
            False,
            "<hd-15.g7@mailgate.example.com>",
        ),
        (
            "postfix_text_bounce",
            "dave@customer.example",
            "5.0.0",
            True,
            "<hd-16.h8@mailgate.example.com>",
        ),
        (
            "exchange_undeliverable",
            "erin@customer.example",
            "5.1.10",
            True,
            "<hd-17.i9@mailgate.example.com>",
        ),
    ],
)
def test_free_text_bounces(name: str, address: str, status: str, hard: bool, message_id: str) -> None:
    """qmail, Exim, Postfix and Exchange prose bounces yield address, status and original id."""
    report = parse_dsn(fixture(name))
    assert report is not None
    assert [(address, status, hard)] == [(r.address, r.status, r.hard) for r in report.recipients]
    assert message_id == report.original_message_id


@pytest.mark.parametrize("name", ["human_question", "auto_reply", "outlook_automatic_reply"])
def test_mail_that_is_no_bounce_gives_no_report(name: str) -> None:
    """A question or an out-of-office reply reports no failed recipients."""
    assert None is parse_dsn(fixture(name))


@pytest.mark.parametrize(
    ("status", "action", "hard"),
    [
        ("5.1.1", "failed", True),
        ("5.2.2", "failed", False),
        ("4.2.2", "failed", False),
        ("5.1.1", "delayed", False),
        ("5.7.1", "", True),
        ("", "failed", False),
    ],
)
def test_is_hard(status: str, action: str, hard: bool) -> None:
    """Only permanent 5.x.x failures are hard, and a full mailbox (5.2.2) never is."""
    assert hard == is_hard(status, action)


def test_garbage_never_raises() -> None:
    """Bytes that are no mail at all give None instead of an exception."""
    assert None is parse_dsn(b"\x00\xff\r\r\n--\n: :\n\n\x80")
