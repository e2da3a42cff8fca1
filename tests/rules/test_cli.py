"""`mailgate rules check` and `mailgate rules test`, through their plain functions."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from mailgate.message import Envelope, ParsedMessage
from mailgate.rules import RuleContext
from mailgate.rules.cli import run_check, run_test

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rules"
RULES = FIXTURES / "rules.yaml"
MAILS = FIXTURES / "mails"


def context_for(message: ParsedMessage, envelope: Envelope) -> RuleContext:
    """What the daemon would know: our address, arrival time, trusted MX."""
    return RuleContext(
        our_addresses=frozenset({"helpdesk@example.com"}),
        now=envelope.received_at,
        trusted_authserv_ids=frozenset({"mx.example.com"}),
    )


def run(rules: Path | None, mails: list[Path], as_json: bool) -> tuple[int, str]:
    """Call run_test and return its exit code and output."""
    out = io.StringIO()
    code = run_test(rules, mails, as_json, context_for, out)
    return code, out.getvalue()


def test_check_passes_a_good_file() -> None:
    """A valid file exits 0 and says how many rules it has."""
    out = io.StringIO()
    assert (0, f"{RULES}: OK, 5 rules\n") == (run_check(RULES, None, None, out), out.getvalue())


def test_check_prints_every_problem_and_exits_1() -> None:
    """A broken file exits 1 with one file:line:column line per problem."""
    out = io.StringIO()
    code = run_check(FIXTURES / "broken_rules.yaml", {"general"}, None, out)
    lines = out.getvalue().splitlines()
    assert (1, 4) == (code, len(lines))
    assert lines[0].startswith(f'{FIXTURES / "broken_rules.yaml"}:3:5: unknown key "iff"')


def test_check_uses_the_known_queues() -> None:
    """Queues that are not configured are problems."""
    out = io.StringIO()
    assert 1 == run_check(RULES, {"general", "network"}, None, out)
    assert 'unknown queue "hardware"' in out.getvalue()


def test_one_mail_shows_each_rule_and_the_outcome() -> None:
    """A single mail gets the rule-by-rule trace, the fields and the ack."""
    code, output = run(RULES, [MAILS / "printer_from_vip.eml"], False)
    assert 0 == code
    for expected in (
        'vip          MATCH  from.domain glob any of "vip.example", "*.vip.example" matched',
        'network      no     subject contains any of "vpn", "wifi" did not match',
        "  queue            hardware",
        "  priority         high",
        'acknowledgement: template "ack" (template "ack" from the defaults)',
    ):
        assert expected in output, output


def test_one_mail_says_why_no_ack() -> None:
    """For a quarantined mail the output says why no acknowledgement goes out."""
    _, output = run(RULES, [MAILS / "spam_flagged.eml"], False)
    assert "acknowledgement: none (no acknowledgement: the message is quarantined)" in output


def test_folder_prints_a_table() -> None:
    """A folder of mails gives one table row per .eml, sorted by name."""
    code, output = run(RULES, [MAILS], False)
    rows = [line.split() for line in output.splitlines()]
    assert 0 == code
    assert ["file", "action", "queue", "priority", "category", "ack", "expected", "matched", "rules"] == rows[
        0
    ]
    assert [
        [
            "dutch_after_hours.eml",
            "accept",
            "hardware",
            "normal",
            "hardware",
            "ack-after-hours",
            "-",
            "after",
            "hours,",
            "hardware",
        ],
        ["printer_from_vip.eml", "accept", "hardware", "high", "hardware", "ack", "-", "vip,", "hardware"],
        ["spam_flagged.eml", "quarantine", "general", "normal", "-", "-", "-", "spam"],
        ["vpn_problem.eml", "accept", "network", "normal", "-", "ack", "ok", "network"],
    ] == rows[1:]


def test_json_for_one_mail_is_an_object_with_the_trace() -> None:
    """--json on one mail prints one object with fields and trace."""
    _, output = run(RULES, [MAILS / "vpn_problem.eml"], True)
    data = json.loads(output)
    assert ("network", "ack", ["spam", "vip", "after hours", "network"]) == (
        data["queue"],
        data["ack_template"],
        [entry["rule"] for entry in data["trace"]],
    )


def test_json_for_a_folder_is_a_list() -> None:
    """--json on a folder prints a list, one object per mail."""
    _, output = run(RULES, [MAILS], True)
    assert ["dutch_after_hours.eml", "printer_from_vip.eml", "spam_flagged.eml", "vpn_problem.eml"] == [
        Path(item["file"]).name for item in json.loads(output)
    ]


def test_without_a_rules_file_the_defaults_apply() -> None:
    """rules_path None routes with the built-in defaults."""
    _, output = run(None, [MAILS / "vpn_problem.eml"], True)
    assert ("general", "ack") == (json.loads(output)["queue"], json.loads(output)["ack_template"])


def test_broken_rules_file_fails_the_test_command() -> None:
    """rules test refuses to run with a broken file, printing the problems."""
    code, output = run(FIXTURES / "broken_rules.yaml", [MAILS], False)
    assert (1, 2) == (code, len(output.splitlines()))


def test_unreadable_mail_is_reported() -> None:
    """A missing mail file is reported and the exit code is 1."""
    code, output = run(RULES, [MAILS / "nope.eml"], False)
    assert (1, True) == (code, "nope.eml: cannot read" in output)


def test_expectation_sidecar_that_holds_is_reported_ok() -> None:
    """A mail whose .expect.yaml matches the decision passes."""
    code, output = run(RULES, [MAILS / "vpn_problem.eml"], False)
    assert (0, True) == (code, "expected (vpn_problem.expect.yaml): all as expected" in output)


def test_expectation_sidecar_that_fails_exits_1(tmp_path: Path) -> None:
    """A changed outcome fails the run and says which field differs."""
    shutil.copy(MAILS / "vpn_problem.eml", tmp_path / "vpn.eml")
    (tmp_path / "vpn.expect.yaml").write_text("queue: hardware\npriority: hihg\n")
    code, output = run(RULES, [tmp_path], False)
    assert 1 == code
    assert [
        f"{tmp_path / 'vpn.eml'}: queue: expected 'hardware', got 'network'",
        f"{tmp_path / 'vpn.eml'}: priority: expected 'hihg', got 'normal'",
    ] == output.splitlines()[2:]


def test_expectation_given_sets_the_situation(tmp_path: Path) -> None:
    """given: reply true routes the mail as a reply, where no new-ticket rule applies."""
    shutil.copy(MAILS / "vpn_problem.eml", tmp_path / "vpn.eml")
    (tmp_path / "vpn.expect.yaml").write_text(
        "given: {reply: true, ticket_status: open}\nqueue: general\nack: none\nmatched: []\n"
    )
    code, output = run(RULES, [tmp_path / "vpn.eml"], True)
    assert (0, []) == (code, json.loads(output)["expectation_failures"])


def test_expectation_with_unknown_field_fails(tmp_path: Path) -> None:
    """A misspelt field in an expectation is a failure, with a suggestion."""
    shutil.copy(MAILS / "vpn_problem.eml", tmp_path / "vpn.eml")
    (tmp_path / "vpn.expect.yaml").write_text("queu: network\n")
    code, output = run(RULES, [tmp_path / "vpn.eml"], True)
    assert (1, ['unknown field "queu" (did you mean "queue"?)']) == (
        code,
        json.loads(output)["expectation_failures"],
    )


def test_expectation_of_no_ack_is_read_like_the_rules_file(tmp_path: Path) -> None:
    """'None' and 'NO' mean no acknowledgement in an expectation as they do under then: ack."""
    shutil.copy(MAILS / "vpn_problem.eml", tmp_path / "vpn.eml")
    for spelled in ("None", "NO"):
        (tmp_path / "vpn.expect.yaml").write_text(
            f"given: {{reply: true, ticket_status: open}}\nqueue: general\nack: {spelled}\nmatched: []\n"
        )
        code, output = run(RULES, [tmp_path / "vpn.eml"], True)
        assert (0, []) == (code, json.loads(output)["expectation_failures"]), spelled
