"""`service_levels:` and `digest:` in the rules file: loaded, or every problem with file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.rules import RulesError, load_rules_text
from tests.conftest import run_cli, write_config

GOOD = """\
business_hours:
  office:
    timezone: Europe/Amsterdam
    days: {mon-fri: "09:00-17:00"}
    holidays_from: NL
    holidays: [2026-12-24]
service_levels:
  standard:
    business_hours: office
    warn_at: 75%
    pause_when_pending: true
    first_response: {urgent: 1h, high: 4h, normal: 8h, low: 16h}
    next_reply: 8h
    resolution: {urgent: 8h, normal: 40h}
    on_breach: {raise_priority: true, tag: sla-late}
  around:
    business_hours: 24x7
    timezone: Europe/Amsterdam
    first_response: 30m
digest: {at: "08:30", business_hours: office}
defaults: {sla: standard}
rules:
  - name: vip
    if: {from: "*@vip.example"}
    then: {sla: around}
"""


def test_good_policies_load_with_targets_in_seconds() -> None:
    """Targets per priority, one value for all, the warning share, breach actions and the digest."""
    ruleset = load_rules_text(GOOD)
    standard = ruleset.service_levels["standard"]
    assert 8 * 3600 == standard.target("first_response", "normal")
    assert standard.target("resolution", "low") is None
    assert 8 * 3600 == standard.target("next_reply", "low")
    assert 0.75 == standard.warn_at
    assert standard.on_breach.raise_priority and "sla-late" == standard.on_breach.tag
    assert ruleset.service_levels["around"].hours is None
    assert ruleset.digest is not None and "08:30" == ruleset.digest.at.strftime("%H:%M")
    office = standard.hours
    assert office is not None and "2026-04-27" in {d.isoformat() for d in office.holidays}


BAD = """\
business_hours:
  office:
    timezone: Europe/Amsterdam
    days: {mon-fri: "09:00-17:00"}
    holidays_from: XX
service_levels:
  standard:
    business_hours: ofice
    warn_at: 120%
    first_response: {urgent: 1 hour, nromal: 8h}
    on_breach: {queue: nowhere}
  empty:
    business_hours: 24x7
digest: {at: "8.30", business_hours: office}
defaults: {sla: standrd}
"""


def test_every_problem_is_reported_with_its_place() -> None:
    """One round shows them all, each at its line and column, with "did you mean"."""
    with pytest.raises(RulesError) as caught:
        load_rules_text(BAD, "rules.yaml", known_queues={"general"})
    lines = [str(p) for p in caught.value.problems]
    assert (
        'rules.yaml:5:20: business_hours.office.holidays_from: no holiday calendar for country "XX"'
        " (use a code like NL, BE, DE)" in lines
    )
    assert any(line.startswith("rules.yaml:8:21:") and 'did you mean "office"' in line for line in lines)
    assert any(line.startswith("rules.yaml:9:14:") and "warn_at" in line for line in lines)
    assert any(line.startswith("rules.yaml:10:30:") and '"30m"' in line for line in lines)
    assert any(line.startswith("rules.yaml:10:38:") and 'unknown key "nromal"' in line for line in lines)
    assert any(line.startswith("rules.yaml:11:24:") and 'unknown queue "nowhere"' in line for line in lines)
    assert any(line.startswith("rules.yaml:12:3:") and "at least one of" in line for line in lines)
    assert any(line.startswith("rules.yaml:14:14:") and "digest.at" in line for line in lines)
    assert any(line.startswith("rules.yaml:15:17:") and 'did you mean "standard"' in line for line in lines)


def test_rules_check_command_reports_policy_problems(tmp_path: Path) -> None:
    """`mailgate rules check` exits non-zero and prints file:line:column for a bad level."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(BAD)
    config = write_config(tmp_path, rules=str(rules))
    result = run_cli(config, "rules", "check")
    assert 0 != result.returncode
    out = (result.stdout + result.stderr).decode()
    assert f"{rules}:15:17:" in out and "standrd" in out


def test_rules_check_names_the_levels_of_a_good_file(tmp_path: Path) -> None:
    """A good file: `rules check` exits 0 and lists the service levels it defines."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    result = run_cli(write_config(tmp_path, rules=str(rules)), "rules", "check")
    assert 0 == result.returncode, result.stderr.decode()
    assert f"{rules}: OK, 1 rules, service levels: standard, around\n" == result.stdout.decode()
