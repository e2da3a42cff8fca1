"""When a mailbox's messages were delivered, read from names and headers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mailgate.ingest.delivery_order import header_time, maildir_name_time, mbox_from_line_time
from tests.conftest import make_mail, run_cli, ticket_json, tickets_json, write_config


def test_maildir_names_carry_seconds_and_microseconds() -> None:
    """Dovecot/Postfix names: seconds, then M and the microseconds; others: seconds only."""
    assert datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC) == maildir_name_time(
        "1700000000.M123456P2Q3.mail.example.org"
    )
    assert datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC) == maildir_name_time("1700000000.4711_2.host")
    assert maildir_name_time("msg-0001.host") is None
    assert maildir_name_time("12.M1P2.host") is None  # too short to be a delivery time


def test_topmost_received_wins_over_date() -> None:
    """The last hop's Received (our MTA's delivery) dates a message, not the sender's Date."""
    headers = (
        b"Received: from mx by mail.example.com;\n Tue, 14 Nov 2023 22:13:20 +0100\n"
        b"Received: from client by mx; Mon, 13 Nov 2023 10:00:00 +0000\n"
        b"Date: Sun, 12 Nov 2023 01:00:00 +0000\n"
    )
    assert datetime(2023, 11, 14, 21, 13, 20, tzinfo=UTC) == header_time(headers)
    assert datetime(2023, 11, 12, 1, 0, tzinfo=UTC) == header_time(b"Date: Sun, 12 Nov 2023 01:00:00 +0000\n")
    assert header_time(b"Subject: no dates\n") is None


def test_mbox_from_line() -> None:
    assert datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC) == mbox_from_line_time(
        "alice@example.org Tue Nov 14 22:13:20 2023"
    )
    assert mbox_from_line_time("MAILER-DAEMON") is None


def test_maildir_names_without_times_import_by_their_headers(tmp_path: Path) -> None:
    """Files named without a delivery time import in Received/Date order: the
    reply, listed first by name, still lands on its request's ticket."""
    request = make_mail(
        subject="Scanner offline",
        message_id="<scan-1@example.org>",
        headers={"Received": "from mx by mail.example.com; Mon, 13 Nov 2023 10:00:00 +0000"},
    )
    reply = make_mail(
        subject="Re: Scanner offline",
        message_id="<scan-2@example.org>",
        headers={
            "In-Reply-To": "<scan-1@example.org>",
            "Received": "from mx by mail; Mon, 13 Nov 2023 11:00:00 +0000",
        },
    )
    box = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "a-reply").write_bytes(reply)
    (box / "new" / "b-request").write_bytes(request)
    config = write_config(tmp_path)

    done = run_cli(config, "import", str(box), "--as", "history", "--resolve-older-than", "0")

    assert 0 == done.returncode, done.stderr.decode()
    (ticket,) = tickets_json(config)
    shown = ticket_json(config, ticket["id"])
    assert ["<scan-1@example.org>", "<scan-2@example.org>"] == [a["message_id"] for a in shown["articles"]]
    assert "2023-11-13T10:00:00+00:00" == ticket["created_at"]
