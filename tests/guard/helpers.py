"""Shared helpers for the guard tests: fixture mails, envelopes, our identity."""

from __future__ import annotations

from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

from mailgate.guard import GuardVerdict, OwnIdentity, check
from mailgate.message import Envelope
from mailgate.parse import parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "guard"

OWN = OwnIdentity(
    addresses=frozenset({"helpdesk@example.com", "network@example.com", "comment@example.com"}),
    message_id_domain="mailgate.example.com",
    loop_header_value="helpdesk@example.com",
)


def envelope_from_return_path(raw: bytes) -> Envelope:
    """The envelope an MTA would have given us, from the Return-Path it wrote.

    ``<>`` becomes the null sender ""; a missing Return-Path becomes an
    ordinary unknown sender, so only the headers can tell.
    """
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return_path = headers.get("Return-Path")
    if return_path is None:
        mail_from = "unknown@sender.invalid"
    else:
        mail_from = str(return_path).strip().strip("<>").strip()
    return Envelope(
        mail_from=mail_from,
        rcpt_tos=("helpdesk@example.com",),
        source="import",
        received_at=datetime(2025, 3, 3, 9, 0, tzinfo=UTC),
    )


def check_raw(raw: bytes) -> GuardVerdict:
    """Parse ``raw`` and run the guard on it, as the pipeline does."""
    return check(parse(raw), envelope_from_return_path(raw), OWN, raw)


def fixture(name: str) -> bytes:
    """The bytes of ``tests/fixtures/guard/<name>.eml``."""
    return (FIXTURES / f"{name}.eml").read_bytes()
