"""The guard keeps an unknown envelope sender apart from a null one (issue 10)."""

from __future__ import annotations

from datetime import UTC, datetime

from mailgate.guard import check
from mailgate.message import Envelope
from mailgate.parse import parse
from tests.conftest import make_mail
from tests.guard.helpers import OWN


def _envelope(mail_from: str | None) -> Envelope:
    return Envelope(
        mail_from, ("helpdesk@example.com",), "imap:support", datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    )


def test_a_person_with_no_recorded_envelope_sender_may_be_answered() -> None:
    """Unknown (None): the From header decides, and a person's mail is human."""
    raw = make_mail(sender="Anna <anna@example.org>")
    verdict = check(parse(raw), _envelope(None), OWN, raw)
    assert ("human", ()) == (verdict.kind, verdict.reasons)


def test_the_same_mail_with_a_recorded_null_sender_is_not_answered() -> None:
    """Null (""): MAIL FROM:<> was recorded, so the mail is a notification."""
    raw = make_mail(sender="Anna <anna@example.org>")
    verdict = check(parse(raw), _envelope(""), OWN, raw)
    assert "auto_reply" == verdict.kind
    assert not verdict.may_auto_reply
    assert any("MAIL FROM:<>" in reason for reason in verdict.reasons)


def test_unknown_sender_reads_the_sender_header_as_a_person_would() -> None:
    """Without an envelope, a Sender: MAILER-DAEMON says "mail system" like an envelope would."""
    raw = make_mail(
        sender="Helpdesk Robot <robot@example.org>",
        headers={"Sender": "MAILER-DAEMON@mx.example.org"},
    )
    verdict = check(parse(raw), _envelope(None), OWN, raw)
    assert "bounce" == verdict.kind
    assert ("sender mailer-daemon@mx.example.org is a mail system daemon",) == verdict.reasons
