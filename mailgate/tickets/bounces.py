"""Bounces of our own mail: matched, recorded on the ticket, never answered.

A delivery report is matched to the mail it bounces by its VERP return path
(``helpdesk+bounce-<outbox id>-<mac>@…``, signed, so a forged bounce cannot
mark an address bad), or else by the Message-ID of the original it quotes.
A hard failure puts the address on the suppression list: no automatic mail
goes there until an admin clears it (``mailgate suppressions clear``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select

from mailgate.guard.dsn import DeliveryReport
from mailgate.guard.verp import parse_verp
from mailgate.store.writes import OUTBOX, SUPPRESSIONS, insert_event

_OUTBOX_BY_ID = select(OUTBOX.c.id, OUTBOX.c.ticket_id, OUTBOX.c.rcpt).where(OUTBOX.c.id == bindparam("b_id"))
_OUTBOX_BY_MESSAGE_ID = select(OUTBOX.c.id, OUTBOX.c.ticket_id, OUTBOX.c.rcpt).where(
    OUTBOX.c.message_id == bindparam("b_mid")
)
_SUPPRESSED = select(SUPPRESSIONS.c.reason).where(SUPPRESSIONS.c.address == bindparam("b_address"))


@dataclass(frozen=True)
class BounceOutcome:
    ticket_id: int | None
    reason: str


def suppressed(conn: Connection, address: str) -> str | None:
    """Why ``address`` gets no automatic mail, or None."""
    return conn.execute(_SUPPRESSED, {"b_address": address.lower()}).scalar()


def record_bounce(
    conn: Connection,
    report: DeliveryReport | None,
    rcpt_tos: tuple[str, ...],
    *,
    helpdesk_address: str,
    keys: tuple[bytes, ...],
    now: datetime,
) -> BounceOutcome:
    """Record a bounce, read by ``parse_dsn`` (before the write transaction)."""
    matched = None
    for rcpt in rcpt_tos:
        outbox_id = parse_verp(rcpt, helpdesk_address, keys)
        if outbox_id is not None:
            matched = conn.execute(_OUTBOX_BY_ID, {"b_id": outbox_id}).first()
            break
    if matched is None and report is not None and report.original_message_id:
        candidates = conn.execute(_OUTBOX_BY_MESSAGE_ID, {"b_mid": report.original_message_id}).all()
        failed = {r.address for r in report.recipients}
        matched = next((c for c in candidates if c.rcpt in failed), candidates[0] if candidates else None)
    if matched is None:
        return BounceOutcome(None, "delivery report that matches no mail of ours; kept, not answered")
    _, ticket_id, rcpt = matched
    status, diagnostic, hard = _verdict_for(report, rcpt)
    insert_event(
        conn,
        ticket_id,
        "bounce",
        now,
        outbox_id=matched[0],
        rcpt=rcpt,
        status=status,
        diagnostic=diagnostic,
        hard=hard,
    )
    if hard and suppressed(conn, rcpt) is None:
        reason = f"hard bounce {status or ''} on {now.date().isoformat()}: {diagnostic}".strip()[:1000]
        conn.execute(SUPPRESSIONS.insert(), {"address": rcpt, "reason": reason, "created_at": now})
    kind = "hard" if hard else "soft"
    return BounceOutcome(
        ticket_id, f"{kind} bounce of outbox {matched[0]} to {rcpt} ({status or 'no status'})"
    )


def _verdict_for(report: DeliveryReport | None, rcpt: str) -> tuple[str, str, bool]:
    if report is None or not report.recipients:
        # A VERP-matched bounce without a readable report: a failure, but we
        # cannot tell it is permanent, so the address is not suppressed.
        return "", "unreadable delivery report", False
    chosen = next((r for r in report.recipients if r.address == rcpt), report.recipients[0])
    return chosen.status, chosen.diagnostic[:500], chosen.hard
