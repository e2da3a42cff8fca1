"""``mailgate import``: delivery order, re-homed replies, catch-up and history (issue 10)."""

from __future__ import annotations

import json
import mailbox
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import run_cli, ticket_json, tickets_json, write_config
from tests.mailboxes import Mail, conversations, write_shuffled_maildir


def _db(config: Path) -> sqlite3.Connection:
    return sqlite3.connect(config.parent / "mailgate.db")


def _ticket_of(config: Path) -> dict[str, int]:
    """Message-ID -> ticket id of every incoming article."""
    with _db(config) as db:
        return dict(
            db.execute("SELECT message_id, ticket_id FROM articles WHERE direction = 'in'").fetchall()
        )


def _acks(config: Path) -> list[str]:
    with _db(config) as db:
        return [r for (r,) in db.execute("SELECT rcpt FROM outbox WHERE kind = 'ack' ORDER BY id")]


def _import(config: Path, box: Path, *extra: str) -> str:
    done = run_cli(config, "import", str(box), "--no-progress", *extra)
    assert 0 == done.returncode, done.stderr.decode()
    return done.stdout.decode()


def _maildir(folder: Path, mails: list[Mail]) -> Path:
    return write_shuffled_maildir(folder, mails)


def test_shuffled_maildir_imports_in_delivery_order(tmp_path: Path) -> None:
    """A Maildir whose files list in random order imports replies after their
    requests: every reply on its request's ticket, no ticket opened and merged
    away, one acknowledgement per request."""
    config = write_config(tmp_path, limits={"auto_replies_per_hour": 100, "auto_replies_per_day": 100})
    mails = conversations(60, 40, start=datetime.now(UTC) - timedelta(days=2), seed=3)
    box = _maildir(tmp_path / "Maildir", mails)
    listed = list(mailbox.Maildir(box, create=False).iterkeys())
    assert sorted(listed) != listed  # the directory does not list them in delivery order

    out = _import(config, box)

    assert "imported 100 of 100 messages (0 already imported): 100 done" in out
    on = _ticket_of(config)
    replies = [m for m in mails if m.is_reply]
    assert [] == [m.message_id for m in replies if on[m.message_id] != on[m.root]]
    with _db(config) as db:
        # In delivery order nothing needs re-homing: no ticket was opened by a reply.
        assert 60 == db.execute("SELECT count(*) FROM tickets").fetchone()[0]
        assert 0 == db.execute("SELECT count(*) FROM events WHERE kind = 'merged'").fetchone()[0]
    assert 60 == len(_acks(config))
    assert sorted(f"user{n}@example.org" for n in range(60)) == sorted(_acks(config))


def _placed(config: Path) -> dict[str, int]:
    """Message-ID -> ticket id of every incoming article, as the CLI shows them."""
    return {
        article["message_id"]: ticket["id"]
        for ticket in tickets_json(config)
        for article in ticket_json(config, ticket["id"])["articles"]
        if article["direction"] == "in"
    }


def _acks_listed(config: Path) -> list[str]:
    done = run_cli(config, "outbox", "list", "--json")
    assert 0 == done.returncode, done.stderr.decode()
    return [row["rcpt"] for row in json.loads(done.stdout) if row["kind"] == "ack"]


def test_reply_imported_before_its_request_is_rehomed_without_a_second_ack(
    tmp_path: Path, db_url: str
) -> None:
    """Replies imported alone open one ticket; when the request they answer is
    imported later, that ticket is merged into the request's, the
    reason is on both, and the requester is not acknowledged a second time."""
    config = write_config(tmp_path, database={"url": db_url})
    mails = conversations(1, 2, start=datetime.now(UTC) - timedelta(hours=5), seed=4, chained_share=0.0)
    request, reply, second_reply = mails
    _import(config, _maildir(tmp_path / "replies", [reply, second_reply]))
    # Both replies wait for the same request: they share one ticket and one acknowledgement.
    assert ["user0@example.org"] == _acks_listed(config)
    placed = _placed(config)  # a CLI call per ticket: once, nothing changes between the looks
    first = placed[reply.message_id]
    assert first == placed[second_reply.message_id]

    _import(config, _maildir(tmp_path / "requests", [request]))

    on = _placed(config)
    target = on[request.message_id]
    assert target != first
    assert target == on[reply.message_id] == on[second_reply.message_id]
    assert ["user0@example.org"] == _acks_listed(config)  # still the one acknowledgement
    merged = ticket_json(config, first)
    assert "closed" == merged["status"]
    assert target == merged["merged_into_id"]
    reasons = [e["detail"]["reason"] for e in merged["events"] if e["kind"] == "merged_into"]
    why = (
        f"HD-{first} was opened by a reply to {request.message_id}, "
        f"which arrived after it and is on HD-{target}"
    )
    assert [why] == reasons
    kept = ticket_json(config, target)
    assert "Problem 0" == kept["subject"]
    # Shown in the order they were written, not the order they were stored.
    incoming = [a["message_id"] for a in kept["articles"] if a["direction"] == "in"]
    assert [request.message_id, reply.message_id, second_reply.message_id] == incoming
    assert "user0@example.org" == kept["requester"]
    # The conversation began with the reply's ticket, so the ticket dates from then.
    assert merged["created_at"] == kept["created_at"]
    suppressed = [e["detail"]["reason"] for e in kept["events"] if e["kind"] == "ack_suppressed"]
    assert [
        f"user0@example.org was already acknowledged on HD-{first}, merged into this ticket"
    ] == suppressed
    assert [target] == [t["id"] for t in tickets_json(config) if t["status"] != "closed"]


def test_history_import_mails_nobody_and_keeps_the_mails_dates(tmp_path: Path) -> None:
    """--as history: no outbox row at all, even for yesterday's mail; tickets,
    articles and events carry the delivery times; threads quiet for 30 days
    come in resolved at their last mail, recent ones stay open."""
    config = write_config(tmp_path)
    old = conversations(5, 5, start=datetime(2024, 5, 6, 9, 0, tzinfo=UTC), seed=5)
    recent_start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    recent = conversations(2, 0, start=recent_start, seed=6)
    box = _maildir(tmp_path / "Maildir", old + recent)

    out = _import(config, box, "--as", "history")

    assert "resolved 5 tickets whose last mail is older than 30 days" in out
    with _db(config) as db:
        assert 0 == db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        withheld = db.execute("SELECT count(*) FROM events WHERE kind = 'mail_withheld'").fetchone()[0]
    # The two recent requests would have been acknowledged; the old ones are past the age limit.
    assert 2 == withheld
    tickets = {t["id"]: t for t in tickets_json(config)}
    assert 7 == len(tickets)
    first = tickets[1]
    assert "2024-05-06T09:00:00+00:00" == first["created_at"]
    assert "resolved" == first["status"]
    shown = ticket_json(config, first["id"])
    times = sorted(a["created_at"] for a in shown["articles"])
    assert times[-1] == shown["resolved_at"]
    assert all(t.startswith("2024-05-06") for t in times)
    recent_tickets = [t for t in tickets.values() if t["created_at"] >= recent_start.isoformat()]
    assert 2 == len(recent_tickets)
    assert {"new"} == {t["status"] for t in recent_tickets}
    assert recent_start.isoformat() == min(t["created_at"] for t in recent_tickets)


def test_old_mail_is_not_acknowledged_on_catch_up(tmp_path: Path) -> None:
    """Catch-up answers as the daemon would, but mail older than
    limits.ack_max_age_days is never acknowledged; the reason is on the ticket."""
    config = write_config(tmp_path, limits={"ack_max_age_days": 10})
    now = datetime.now(UTC)
    old = conversations(1, 0, start=now - timedelta(days=11), seed=7)
    young = conversations(1, 0, start=now - timedelta(days=9), seed=8)
    _import(config, _maildir(tmp_path / "Maildir", old + young), "--as", "catch-up")

    assert 1 == len(_acks(config))
    by_id = {t["id"]: t for t in tickets_json(config)}
    assert 2 == len(by_id)
    with _db(config) as db:
        (young_ticket,) = db.execute("SELECT ticket_id FROM outbox WHERE kind = 'ack'").fetchone()
    old_ticket = next(t for t in by_id if t != young_ticket)
    reasons = [
        e["detail"]["reason"]
        for e in ticket_json(config, old_ticket)["events"]
        if e["kind"] == "ack_suppressed"
    ]
    assert 1 == len(reasons)
    assert "11 days old, over limits.ack_max_age_days (10): not acknowledged" in reasons[0]


def test_mbox_keeps_file_order_and_its_from_line_dates(tmp_path: Path) -> None:
    """An mbox imports in file order, dated by each message's From_ line."""
    config = write_config(tmp_path)
    mails = conversations(3, 2, start=datetime(2025, 1, 6, 9, 0, tzinfo=UTC), seed=9)
    box = mailbox.mbox(tmp_path / "box.mbox")
    for mail in mails:
        message = mailbox.mboxMessage(mail.raw)
        message.set_from("MAILER-DAEMON", mail.delivered.timetuple())
        box.add(message)
    box.close()

    _import(config, tmp_path / "box.mbox", "--as", "history", "--resolve-older-than", "0")

    on = _ticket_of(config)
    assert all(on[m.message_id] == on[m.root] for m in mails)
    tickets = tickets_json(config)
    assert 3 == len(tickets)
    assert {"new"} == {t["status"] for t in tickets}
    assert "2025-01-06T09:00:00+00:00" == min(t["created_at"] for t in tickets)


def test_import_help_states_the_default(tmp_path: Path) -> None:
    """The two jobs and the default are on `mailgate import --help`."""
    done = run_cli(write_config(tmp_path), "import", "--help")
    text = " ".join(done.stdout.decode().split())
    assert "--as [catch-up|history]" in text
    assert "[default: catch-up]" in text
    assert "limits.ack_max_age_days" in text
