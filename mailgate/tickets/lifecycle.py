"""Ticket lifecycle: new -> open -> pending -> resolved -> closed (SPEC §3 C9).

Every change of status goes through :func:`set_status`, whoever asked for it
(an agent's ``#status``, ``mailgate tickets set``, a requester's reply,
auto-close), so the timestamps, the event log and the mail to the requester
are the same whichever road led there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection

from mailgate.message import Address
from mailgate.rules.model import STATUSES
from mailgate.service.runtime import Runtime
from mailgate.sla import track as sla_track
from mailgate.store.writes import TicketView, insert_event, last_message_from, quiet_tickets, update_ticket
from mailgate.tickets.bounces import suppressed
from mailgate.tickets.notify import enqueue, render_to

log = structlog.get_logger(__name__)

# The requester hears about these changes; new/open are our business.
STATUS_TEMPLATES = {"pending": "status_pending", "resolved": "resolved", "closed": "closed"}
WAITING = ("resolved", "closed")

# A reply made only of these words (and punctuation, and at most a name to
# sign with) is a thank-you, not a new problem: it must not reopen (SPEC §1).
_THANKS_WORDS = frozenset(
    {
        "thanks",
        "thank",
        "thx",
        "ty",
        "tnx",
        "cheers",
        "thankyou",
        "many",
        "much",
        "so",
        "very",
        "lot",
        "a",
        "you",
        "again",
        "all",
        "for",
        "the",
        "help",
        "great",
        "perfect",
        "super",
        "top",
        "ok",
        "okay",
        "fine",
        "nice",
        "cool",
        "awesome",
        "works",
        "now",
        "it",
        "that",
        "was",
        "dank",
        "danke",
        "bedankt",
        "je",
        "jullie",
        "u",
        "wel",
        "hartelijk",
        "heel",
        "veel",
        "hartelijke",
        "groet",
        "groeten",
        "schön",
        "schon",
        "sehr",
        "vielen",
        "merci",
        "beaucoup",
        "gracias",
        "grazie",
        "mille",
        "tack",
        "takk",
        "obrigado",
        "kind",
        "regards",
        "best",
    }
)
_THANKS_ROOTS = (
    "thank",
    "thx",
    "dank",
    "bedankt",
    "merci",
    "gracias",
    "grazie",
    "tack",
    "takk",
    "obrigad",
    "cheers",
)
_RATING_WORDS = {
    "excellent": 5,
    "uitstekend": 5,
    "perfect": 5,
    "great": 5,
    "top": 5,
    "super": 5,
    "fantastic": 5,
    "geweldig": 5,
    "good": 4,
    "goed": 4,
    "fine": 3,
    "ok": 3,
    "okay": 3,
    "neutral": 3,
    "redelijk": 3,
    "matig": 2,
    "poor": 2,
    "bad": 2,
    "slecht": 2,
    "terrible": 1,
    "awful": 1,
    "horrible": 1,
    "waardeloos": 1,
}
_RATING_DIGIT = re.compile(
    r"^\s*(?P<n>[1-5])(?:\s*(?:/\s*5|stars?|sterren|out of 5|van 5))?\s*[.!]*\s*$", re.I
)


def csat_rating(text: str) -> int | None:
    """A satisfaction answer: "5", "4/5", "excellent", "goed" on the first line of a short reply."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or len(lines) > 3:
        return None
    first = lines[0]
    if match := _RATING_DIGIT.match(first):
        return int(match["n"])
    words = re.findall(r"[^\W\d_]+", first.lower())
    if (
        1 <= len(words) <= 2
        and words[-1] in _RATING_WORDS
        and not (len(words) == 2 and words[0] not in ("very", "zeer", "heel"))
    ):
        return _RATING_WORDS[words[-1]]
    return None


def is_thanks_only(text: str) -> bool:
    """True for "thanks!", "Dank je wel, Jan", "danke", "merci beaucoup" and the like."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    if not words or len(words) > 14:
        return False
    if not any(word.startswith(_THANKS_ROOTS) for word in words):
        return False
    unknown = [w for w in words if w not in _THANKS_WORDS and not w.startswith(_THANKS_ROOTS)]
    # One unknown word may be the signature ("Thanks, Jan").
    return len(unknown) <= 1


@dataclass(frozen=True)
class ReplyOutcome:
    kind: str  # csat | quiet | reopen | new_ticket | answered | normal
    reason: str
    rating: int | None = None


def classify_reply(
    status: str, *, from_requester: bool, text: str, human: bool, reopen_policy: str
) -> ReplyOutcome:
    """What a reply from the requester's side does to the ticket (pure)."""
    if status in WAITING:
        rating = csat_rating(text) if from_requester and human else None
        if rating is not None:
            return ReplyOutcome("csat", f"satisfaction rating {rating}", rating)
        if not human:
            return ReplyOutcome("quiet", "an automatic reply (e.g. out of office) does not reopen")
        if is_thanks_only(text):
            return ReplyOutcome("quiet", "a thank-you does not reopen")
        if status == "closed" and reopen_policy == "new_ticket":
            return ReplyOutcome("new_ticket", "the queue opens a new ticket for replies to closed tickets")
        return ReplyOutcome("reopen", f"requester replied to a {status} ticket")
    if status == "pending" and human:
        return ReplyOutcome("answered", "the requester answered while we were waiting")
    return ReplyOutcome("normal", "reply added")


def mail_requester(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    template: str,
    now: datetime,
    *,
    kind: str,
    extra: dict[str, object] | None = None,
) -> bool:
    """One templated mail to the requester, threaded under their last message."""
    if not ticket.requester or runtime.is_our_address(ticket.requester):
        return False
    bounced = suppressed(conn, ticket.requester)
    if bounced is not None:
        insert_event(conn, ticket.id, "mail_suppressed", now, template=template, reason=bounced)
        return False
    last = last_message_from(conn, ticket.id, ticket.requester)
    mail = render_to(
        runtime,
        ticket,
        template,
        Address(ticket.requester, ticket.requester_name),
        kind=kind,
        extra=extra,
        in_reply_to=last,
        references=(last,) if last else (),
        auto_submitted="auto-generated",
    )
    # Caused by a person's decision (an agent, an admin), so not rate-limited
    # like acknowledgements; the guard already kept machines out of the loop.
    enqueue(conn, runtime, ticket.id, mail, automatic=False, now=now)
    return True


def set_status(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    status: str,
    now: datetime,
    *,
    by: str,
    mail: bool = True,
) -> TicketView:
    """Move ``ticket`` to ``status`` with its timestamps, an event and the requester's mail."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if status == ticket.status:
        return ticket
    # Before the status is written: the clock reads when it was last resolved.
    sla_track.status_changed(conn, runtime, ticket.id, status, now)
    _record_status(conn, ticket.id, ticket.status, status, now, by=by)
    changed = replace(ticket, status=status)
    template = STATUS_TEMPLATES.get(status)
    if status == "open" and ticket.status in WAITING:
        template = "reopened"
    if mail and template:
        mail_requester(conn, runtime, changed, template, now, kind=f"status_{status}")
    log.info("lifecycle.status", ticket=ticket.ref, previous=ticket.status, status=status, by=by)
    return changed


def record_rating(
    conn: Connection, runtime: Runtime, ticket: TicketView, rating: int, already: int | None, now: datetime
) -> None:
    """Keep the newest rating; thank the requester the first time only."""
    update_ticket(conn, ticket.id, csat_rating=rating, csat_at=now)
    insert_event(conn, ticket.id, "csat", now, rating=rating, previous=already)
    if already is None:
        mail_requester(
            conn, runtime, ticket, "csat_thanks", now, kind="csat_thanks", extra={"rating": rating}
        )


def _record_status(
    conn: Connection, ticket_id: int, previous: str, status: str, now: datetime, *, by: str, **detail: object
) -> None:
    """The ticket's new status with its timestamps, and the event that says who changed it."""
    values: dict[str, object] = {"status": status, "updated_at": now}
    if status == "resolved":
        values["resolved_at"] = now
    elif status == "closed":
        values["closed_at"] = now
    else:
        values.update(resolved_at=None, closed_at=None)
    update_ticket(conn, ticket_id, **values)
    insert_event(conn, ticket_id, "status_changed", now, previous=previous, status=status, by=by, **detail)


def auto_close(conn: Connection, runtime: Runtime, now: datetime) -> int:
    """Close resolved (and, when configured, pending) tickets after a quiet period."""
    directory = runtime.directory
    closed = 0
    for status, hours in (
        ("resolved", directory.close_resolved_after_hours),
        ("pending", directory.close_pending_after_hours),
    ):
        if hours is None:
            continue
        for ticket_id in quiet_tickets(conn, status, now - timedelta(hours=hours)):
            _record_status(conn, ticket_id, status, "closed", now, by="auto-close", quiet_hours=hours)
            closed += 1
    if closed:
        log.info("lifecycle.auto_closed", count=closed)
    return closed
