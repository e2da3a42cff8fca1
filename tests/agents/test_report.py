"""`mailgate report` on tickets worked the real way: mail in, agents answering by mail."""

from __future__ import annotations

import json
from email.message import Message
from pathlib import Path
from typing import Any

from mailgate.reports import Period, build_report
from tests.agents.test_desk import answer, mails_to
from tests.conftest import make_mail, run_cli
from tests.helpers import deliver, ticket


def _ask(desk: Any, number: int, sender: str) -> Message:
    """A requester opens ticket ``number``; returns alice's notification of it."""
    address = sender.rpartition("<")[2].rstrip(">")
    deliver(desk, make_mail(sender=sender, subject=f"Problem {number}"), address)
    return next(m for m in mails_to(desk, "alice@example.com") if f"[HD-{number}]" in str(m["Subject"]))


def _worked_helpdesk(desk: Any) -> None:
    """Four tickets, each a different story."""
    jan, piet, kees, anna = (
        "Jan <jan@example.org>",
        "Piet <piet@example.org>",
        "Kees <kees@example.org>",
        "Anna <anna@example.org>",
    )
    # 1: answered once and resolved, then rated 5: first-contact resolution.
    answer(desk, _ask(desk, 1, jan), "alice@example.com", "#resolve\nFixed it.\n")
    resolved = mails_to(desk, "jan@example.org")[-1]
    answer(desk, resolved, jan, "5\n")
    # 2: two answers before it was resolved.
    to_alice = _ask(desk, 2, piet)
    answer(desk, to_alice, "alice@example.com", "Looking into it.\n")
    answer(desk, to_alice, "alice@example.com", "#resolve\nTry again now.\n")
    # 3: resolved, then the requester came back with more: reopened, waiting.
    answer(desk, _ask(desk, 3, kees), "alice@example.com", "#resolve\nDone.\n")
    answer(desk, mails_to(desk, "kees@example.org")[-1], kees, "It is broken again since this morning.\n")
    # 4: nobody answered yet.
    _ask(desk, 4, anna)


def test_report_counts_what_happened(desk: Any) -> None:
    _worked_helpdesk(desk)
    assert ("resolved", 5) == (ticket(desk, 1).status, ticket(desk, 1).csat_rating)
    assert "open" == ticket(desk, 3).status
    with desk.engine.connect() as connection:
        report = build_report(connection, Period.last_days(7))
    assert {"created": 4, "resolved": 2, "backlog": 2} == report["totals"]
    (normal,) = report["by_priority"]
    assert ("normal", 4, 1) == (normal["priority"], normal["created"], normal["unanswered"])
    assert 3 == normal["first_response"]["count"]
    assert 2 == normal["resolution"]["count"]
    assert [{"queue": "general", "created": 4, "resolved": 2, "backlog": 2}] == report["by_queue"]
    # Ticket 1 only: ticket 2 needed two answers, ticket 3 was reopened.
    assert {"resolved": 2, "first_contact": 1, "rate": 0.5} == report["first_contact_resolution"]
    csat = report["csat"]
    assert (1, 5.0, 0.5) == (csat["ratings"], csat["average"], csat["response_rate"])
    assert 1 == csat["distribution"]["5"]
    assert 2 == report["backlog_age"]["under 1 day"]
    assert 4 == sum(day["created"] for day in report["daily"])
    assert report["sla"]["configured"] is False


def test_report_command_formats(desk: Any, tmp_path: Path) -> None:
    _worked_helpdesk(desk)
    config = tmp_path / "mailgate.yaml"

    as_json = run_cli(config, "report", "--json")
    assert 0 == as_json.returncode, as_json.stderr
    assert 4 == json.loads(as_json.stdout)["totals"]["created"]

    table = run_cli(config, "report").stdout.decode()
    assert "4 tickets created, 2 resolved, 2 waiting at the end" in table
    assert "First-contact resolution: 1 of 2 resolved (50%)" in table

    rows = run_cli(config, "report", "--csv", "--days", "2").stdout.decode().splitlines()
    assert "day,queue,created,resolved" == rows[0] and 3 == len(rows)
    assert 4 == sum(int(row.split(",")[2]) for row in rows[1:])

    page = tmp_path / "report.html"
    run_cli(config, "report", "--queue", "general", "--html", str(page))
    content = page.read_text()
    assert "<svg" in content and "queue general" in content and "<script" not in content

    wrong = run_cli(config, "report", "--since", "2026-13-01")
    assert 1 == wrong.returncode
    assert b"--since: expected a date like 2026-11-01" in wrong.stderr
