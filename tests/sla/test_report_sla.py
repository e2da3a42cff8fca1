"""`mailgate report`'s service-level section on tickets worked through the pipeline."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailgate.reports import Period, build_report
from mailgate.reports.render import html, text
from tests.agents.test_desk import answer, mails_to
from tests.conftest import run_cli
from tests.helpers import ticket
from tests.sla.test_tracking import _open, _status

ALICE = "Alice Admin <alice@example.com>"


def _worked(desk: Any) -> Any:
    """Four tickets: met both; met the answer, resolved late; never answered; urgent and never answered."""
    first = _open(desk, subject="Problem 1")
    answer(desk, mails_to(desk, "alice@example.com")[-1], ALICE, "#resolve\nFixed.\n")
    second = _open(desk, subject="Problem 2")
    answer(desk, mails_to(desk, "alice@example.com")[-1], ALICE, "Looking into it.\n")
    _status(desk, second.id, "resolved", second.created_at + timedelta(hours=30))
    _open(desk, subject="Problem 3")
    fourth = _open(desk, subject="Problem 4")
    answer(desk, mails_to(desk, "alice@example.com")[-1], ALICE, "#priority urgent\n#internal\nurgent one\n")
    assert "urgent" == ticket(desk, fourth.id).priority
    return first


def test_compliance_per_priority_and_queue(sla_desk: Any) -> None:
    """Met and breached per target, the share met, and the business-time median of what was met."""
    first = _worked(sla_desk)
    period = Period(first.created_at - timedelta(hours=1), first.created_at + timedelta(hours=31))
    with sla_desk.engine.connect() as connection:
        sla = build_report(connection, period)["sla"]
    assert sla["configured"] and ["desk"] == sla["levels"]
    urgent, normal = sla["by_priority"]
    assert ("urgent", 1) == (urgent["priority"], urgent["tickets"])
    assert (0, 1) == (urgent["first_response"]["met"], urgent["first_response"]["breached"])
    assert ("normal", 3) == (normal["priority"], normal["tickets"])
    assert (2, 1, 0.667) == tuple(normal["first_response"][k] for k in ("met", "breached", "share_met"))
    assert (1, 2, 0.333) == tuple(normal["resolution"][k] for k in ("met", "breached", "share_met"))
    # Ticket 2 was resolved 30 counted hours after it came in (24x7), ticket 1 within seconds.
    assert normal["resolution"]["median_business_seconds"] is not None
    assert 15 * 3600 <= normal["resolution"]["median_business_seconds"] <= 15 * 3600 + 120
    (general,) = sla["by_queue"]
    assert ("general", 4, 2, 2) == (
        general["queue"],
        general["tickets"],
        general["first_response"]["met"],
        general["first_response"]["breached"],
    )
    report = {**build_report(sla_desk.engine.connect(), period), "sla": sla}
    shown = text(report)
    assert "no SLA targets yet" not in shown and "SLA compliance (desk)" in shown
    assert "67%" in shown and "33%" in shown
    page = html(report)
    assert "Service levels" in page and "share of targets met per priority" in page


def test_report_command_prints_sla_as_csv_and_json(sla_desk: Any, tmp_path: Path) -> None:
    """`report --csv-sla` has one row per scope, name and target; `--json` carries the same section."""
    _worked(sla_desk)
    config = tmp_path / "mailgate.yaml"
    result = run_cli(config, "report", "--csv-sla")
    assert 0 == result.returncode, result.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert {("priority", "normal", "first_response"), ("queue", "general", "resolution")} <= {
        (r["scope"], r["name"], r["target"]) for r in rows
    }
    # urgent and normal, queue general; two targets each.
    assert 6 == len(rows)
    data = json.loads(run_cli(config, "report", "--json").stdout)
    assert data["sla"]["configured"] is True
