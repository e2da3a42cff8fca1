"""Business hours through the loaded policy, the digest on working days, and the CLI views."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailgate.sla.digest import digest_day, next_digest
from mailgate.sla.due import due_times
from mailgate.sla.timer import SlaTimer
from tests.conftest import make_mail, run_cli
from tests.helpers import outbox_mails
from tests.sla.conftest import FIXTURES
from tests.sla.test_tracking import _open, _status

AMS = ZoneInfo("Europe/Amsterdam")


def test_office_level_across_a_weekend_and_a_holiday(sla_desk: Any) -> None:
    """Thursday 24 Dec 16:00: 1 hour that day, Christmas and the weekend skipped, 7 more on Monday."""
    office = sla_desk.rules.service_levels["office"]
    created = datetime(2026, 12, 24, 16, 0, tzinfo=AMS)
    dues = due_times(office, "normal", created, 0)
    assert datetime(2026, 12, 28, 16, 0, tzinfo=AMS) == dues["first_response_due"]
    # 40 business hours: 1 on the 24th, 8 each on 28-31 December, 7 on 1 January
    # (a working day here: the fixture names only Christmas).
    assert datetime(2027, 1, 1, 16, 0, tzinfo=AMS) == dues["resolution_due"]


def test_pause_over_a_weekend_counts_only_business_time(sla_desk: Any) -> None:
    """An office ticket pending from Friday 16:00 to Monday 10:00 was paused 2 business hours, not 66."""
    found = _open(sla_desk, sender="Piet <piet@office.example>")
    assert "office" == found.sla
    friday = datetime(2026, 12, 4, 16, 0, tzinfo=AMS)
    _status(sla_desk, found.id, "pending", friday)
    _status(sla_desk, found.id, "open", friday + timedelta(days=2, hours=18))
    with sla_desk.sessions() as session:
        from mailgate.store.models import Ticket

        resumed = session.get(Ticket, found.id)
        assert resumed is not None
        assert 2 * 3600 == resumed.sla_paused_seconds


def test_digest_comes_on_working_days_after_its_hour_only() -> None:
    """08:30 Amsterdam on weekdays: not at 08:29, not on Saturday or Christmas; then the next weekday."""
    from mailgate.rules import load_rules

    plan = load_rules(FIXTURES / "rules.yaml").digest
    assert plan is not None
    monday = datetime(2026, 12, 7, 8, 30, tzinfo=AMS)
    assert date(2026, 12, 7) == digest_day(plan, monday)
    assert digest_day(plan, monday - timedelta(minutes=1)) is None
    assert digest_day(plan, datetime(2026, 12, 5, 9, 0, tzinfo=AMS)) is None
    assert digest_day(plan, datetime(2026, 12, 25, 9, 0, tzinfo=AMS)) is None
    assert datetime(2026, 12, 28, 8, 30, tzinfo=AMS) == next_digest(
        plan, datetime(2026, 12, 24, 9, 0, tzinfo=AMS)
    )


def _digest_mails(desk: Any) -> list[Message]:
    return [
        m
        for m in outbox_mails(desk)
        if "Your tickets" in str(m["Subject"]) or "Uw tickets" in str(m["Subject"])
    ]


def test_digest_is_sent_once_per_person_and_day_with_the_injected_clock(sla_desk: Any) -> None:
    """Monday 09:00: alice and the lead get one digest each (bob opted out); a second tick sends none."""
    _open(sla_desk, subject="Printer jams")
    timer = SlaTimer(sla_desk)
    monday = datetime(2026, 12, 7, 9, 0, tzinfo=AMS).astimezone(UTC)
    timer.tick(monday)
    timer.tick(monday + timedelta(hours=2))
    mails = _digest_mails(sla_desk)
    assert ["alice@example.com", "lead@example.com"] == sorted(
        str(m["To"]).rpartition("<")[2].strip(">") for m in mails
    )
    timer.tick(monday + timedelta(days=1))
    assert 4 == len(_digest_mails(sla_desk))


def test_rules_test_shows_the_level_and_due_times(tmp_path: Path) -> None:
    """`rules test mail.eml` prints the level and the due moments the mail would get, and JSON has them."""
    mail = tmp_path / "office.eml"
    mail.write_bytes(make_mail(sender="Piet <piet@office.example>", subject="Screen flickers"))
    config = tmp_path / "mailgate.yaml"
    from tests.conftest import write_config

    write_config(tmp_path, rules=str(FIXTURES / "rules.yaml"))
    result = run_cli(config, "rules", "test", str(mail))
    out = result.stdout.decode()
    assert "service level:   office (business hours, Europe/Amsterdam)" in out, out + result.stderr.decode()
    assert "first response: 8 business hours, due " in out
    data = json.loads(run_cli(config, "rules", "test", str(mail), "--json").stdout)
    assert "office" == data["service_level"]["level"]
    assert data["service_level"]["resolution"]["target"] == "40 business hours"


def test_tickets_list_filters_and_sorts_by_due_and_breach(sla_desk: Any, tmp_path: Path) -> None:
    """--breached lists only the late ticket; --sort due puts the urgent one first; --due-within narrows."""
    from mailgate.store.db import transaction
    from mailgate.store.writes import update_ticket

    late = _open(sla_desk, subject="Late one")
    _open(sla_desk, subject="Fresh one")
    with transaction(sla_desk.sessions) as session:
        update_ticket(
            session.connection(), late.id, first_response_due=late.created_at - timedelta(minutes=1)
        )
    config = tmp_path / "mailgate.yaml"

    def listed(*args: str) -> list[dict[str, Any]]:
        result = run_cli(config, "tickets", "list", "--json", *args)
        assert 0 == result.returncode, result.stderr.decode()
        return list(json.loads(result.stdout))

    assert ["Late one"] == [t["subject"] for t in listed("--breached")]
    assert ["Late one", "Fresh one"] == [t["subject"] for t in listed("--sort", "due")]
    assert ["Late one"] == [t["subject"] for t in listed("--due-within", "1h")]
    shown = json.loads(run_cli(config, "tickets", "show", str(late.id), "--json").stdout)
    assert (True, ["first_response"], "desk") == (shown["breached"], shown["breached_targets"], shown["sla"])
    text = run_cli(config, "tickets", "show", str(late.id)).stdout.decode()
    assert "breached   first_response" in text and "first response due" in text
    bad = run_cli(config, "tickets", "list", "--due-within", "soon")
    assert 0 != bad.returncode and "--due-within" in bad.stderr.decode()


def test_a_changed_rules_file_is_reloaded_with_its_levels(runtime_factory: Any, tmp_path: Path) -> None:
    """Hot reload: a new target in the file is used at once; a broken level keeps the old ones."""
    rules = tmp_path / "rules.yaml"
    rules.write_text((FIXTURES / "rules.yaml").read_text())
    desk = runtime_factory(rules=str(rules), agents=str(FIXTURES / "agents.yaml"))
    rules.write_text(rules.read_text().replace("{urgent: 1h, high: 2h, normal: 4h, low: 8h}", "{normal: 3h}"))
    assert [] == desk.reload()
    assert 3 * 3600 == desk.rules.service_levels["desk"].target("first_response", "normal")
    rules.write_text(rules.read_text().replace("normal: 3h", "normal: soon"))
    problems = desk.reload()
    assert problems and "first_response.normal" in problems[0]
    assert 3 * 3600 == desk.rules.service_levels["desk"].target("first_response", "normal")
