"""Due times on real tickets (mail in through the pipeline), with an injected clock for what follows."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import Message
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from mailgate.sla.timer import SlaTimer
from mailgate.store.db import transaction
from mailgate.store.models import SlaMark
from mailgate.store.writes import ticket_view
from mailgate.tickets import lifecycle
from tests.agents.test_desk import answer, mails_to
from tests.conftest import make_mail
from tests.helpers import deliver, outbox_mails, ticket

JAN = "Jan Jansen <jan@example.org>"


def _open(desk: Any, sender: str = JAN, subject: str = "Printer on floor 3 is broken") -> Any:
    address = sender.rpartition("<")[2].rstrip(">")
    result = deliver(desk, make_mail(sender=sender, subject=subject), address)
    return ticket(desk, result.ticket_id)


def _status(desk: Any, ticket_id: int, status: str, now: datetime) -> None:
    with transaction(desk.sessions) as session:
        conn = session.connection()
        view = ticket_view(conn, ticket_id)
        assert view is not None
        lifecycle.set_status(conn, desk, view, status, now, by="test")


def _text(mail: Message) -> str:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def _to(mail: Message) -> str:
    return str(mail["To"]).rpartition("<")[2].strip(">")


def _sla_mails(desk: Any) -> list[Message]:
    return [m for m in outbox_mails(desk) if str(m["Subject"]).startswith("[SLA]")]


def test_new_ticket_gets_due_times_and_the_ack_promises_them(sla_desk: Any) -> None:
    """Normal priority on the 24x7 level: first response 4 h and resolution 24 h after creation."""
    found = _open(sla_desk)
    assert "desk" == found.sla
    assert timedelta(hours=4) == found.first_response_due - found.created_at
    assert timedelta(hours=24) == found.resolution_due - found.created_at
    (ack,) = mails_to(sla_desk, "jan@example.org")
    text = _text(ack)
    local = found.first_response_due.astimezone(ZoneInfo("Europe/Amsterdam"))
    day = "today" if local.date() == found.created_at.astimezone(local.tzinfo).date() else "tomorrow"
    promise = f"a first answer before {day} {local:%H:%M} (Europe/Amsterdam time; our target is 4 hours)"
    assert promise in " ".join(text.split())


def test_priority_change_mid_way_recomputes_due_times(sla_desk: Any) -> None:
    """`#priority urgent` from the agent: first response now due 1 h after creation, not 4 h."""
    found = _open(sla_desk)
    to_alice = mails_to(sla_desk, "alice@example.com")[-1]
    answer(sla_desk, to_alice, "Alice Admin <alice@example.com>", "#priority urgent\n#internal\nlooking\n")
    after = ticket(sla_desk, found.id)
    assert "urgent" == after.priority
    assert timedelta(hours=1) == after.first_response_due - after.created_at
    assert timedelta(hours=8) == after.resolution_due - after.created_at


def test_pending_pauses_the_clock_and_resuming_moves_the_due_times(sla_desk: Any) -> None:
    """Pending for 3 hours (injected clock) moves both due moments 3 hours later."""
    found = _open(sla_desk)
    start = found.created_at
    _status(sla_desk, found.id, "pending", start + timedelta(hours=1))
    paused = ticket(sla_desk, found.id)
    assert paused.sla_paused_at is not None and paused.sla_next_at is None
    _status(sla_desk, found.id, "open", start + timedelta(hours=4))
    resumed = ticket(sla_desk, found.id)
    assert timedelta(hours=7) == resumed.first_response_due - start
    assert timedelta(hours=27) == resumed.resolution_due - start
    assert 3 * 3600 == resumed.sla_paused_seconds


def test_first_response_is_the_first_public_agent_reply_not_a_note(sla_desk: Any) -> None:
    """An internal note leaves the first-response target open; the relayed reply meets it."""
    found = _open(sla_desk)
    to_alice = mails_to(sla_desk, "alice@example.com")[-1]
    answer(sla_desk, to_alice, "Alice Admin <alice@example.com>", "#internal\nchecking the logs\n")
    assert ticket(sla_desk, found.id).first_response_seconds is None
    answer(sla_desk, to_alice, "Alice Admin <alice@example.com>", "Please restart it.\n")
    answered = ticket(sla_desk, found.id)
    assert answered.first_response_at is not None and answered.first_response_seconds is not None
    # Only the resolution target remains for the timer.
    assert answered.sla_next_at is not None and answered.sla_next_at > answered.first_response_due


def test_warning_then_breach_each_once_with_breach_actions(sla_desk: Any) -> None:
    """At 75% alice is warned; at 100% alice and the lead hear of the breach, priority rises, tagged."""
    found = _open(sla_desk)
    # Assigned to alice: only she is warned (not the queue).
    answer(
        sla_desk,
        mails_to(sla_desk, "alice@example.com")[-1],
        "Alice Admin <alice@example.com>",
        "#assign me\n#internal\nmine\n",
    )
    timer = SlaTimer(sla_desk)
    start = found.created_at
    timer.tick(start + timedelta(hours=2))
    assert [] == _sla_mails(sla_desk)
    timer.tick(start + timedelta(hours=3, minutes=1))
    (warning,) = _sla_mails(sla_desk)
    assert "alice@example.com" in warning["To"] and "1 at risk" in warning["Subject"]
    timer.tick(start + timedelta(hours=3, minutes=30))
    assert 1 == len(_sla_mails(sla_desk))
    timer.tick(start + timedelta(hours=4, minutes=1))
    breach = _sla_mails(sla_desk)[1:]
    assert ["alice@example.com", "lead@example.com"] == sorted(_to(m) for m in breach)
    late = ticket(sla_desk, found.id)
    assert ("high", ["sla-late"]) == (late.priority, late.tags)
    timer.tick(start + timedelta(hours=5))
    assert 3 == len(_sla_mails(sla_desk))
    with sla_desk.sessions() as session:
        kinds = sorted(m.kind for m in session.scalars(select(SlaMark).where(SlaMark.ticket_id == found.id)))
    assert ["breach", "warning"] == kinds


def test_downtime_catch_up_sends_one_mail_per_person_listing_all(sla_desk: Any) -> None:
    """Five tickets breached while the daemon was down: one mail to each queue agent and one to the lead."""
    opened = [_open(sla_desk, subject=f"Problem {n}") for n in range(5)]
    SlaTimer(sla_desk).tick(opened[-1].created_at + timedelta(hours=30))
    mails = _sla_mails(sla_desk)
    assert ["alice@example.com", "bob@example.com", "lead@example.com"] == sorted(_to(m) for m in mails)
    to_bob = next(m for m in mails if "bob@" in str(m["To"]))
    body = _text(to_bob)
    assert all(f"[{t.ref}]" in body for t in opened)
    # Resolution and first response breached; the skipped warnings are not in the mail.
    assert "10 overschreden" in str(to_bob["Subject"]) and "bijna" not in str(to_bob["Subject"])


def test_a_met_target_keeps_its_due_moment_through_pauses_and_priority_changes(sla_desk: Any) -> None:
    """After the first answer, pending and a new priority move only the resolution due."""
    found = _open(sla_desk)
    to_alice = mails_to(sla_desk, "alice@example.com")[-1]
    answer(sla_desk, to_alice, "Alice Admin <alice@example.com>", "Which printer model?\n")
    answered = ticket(sla_desk, found.id)
    _status(sla_desk, found.id, "pending", found.created_at + timedelta(hours=1))
    _status(sla_desk, found.id, "open", found.created_at + timedelta(hours=3))
    answer(sla_desk, to_alice, "Alice Admin <alice@example.com>", "#priority low\n#internal\nnot urgent\n")
    after = ticket(sla_desk, found.id)
    assert answered.first_response_due == after.first_response_due
    assert timedelta(hours=48 + 2) == after.resolution_due - after.created_at
