"""Validation: every problem at once, each at file:line:column with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.rules import Problem, RulesError, load_rules, load_rules_text


def problems(text: str, **known: set[str]) -> list[str]:
    """The problems load_rules_text reports, as check prints them."""
    with pytest.raises(RulesError) as caught:
        load_rules_text(text, "r.yaml", **known)
    return [str(problem) for problem in caught.value.problems]


def test_problem_prints_as_file_line_column_reason() -> None:
    """A Problem prints in the compiler format editors understand."""
    assert "r.yaml:3:7: oops" == str(Problem("r.yaml", 3, 7, "oops"))


def test_unknown_key_suggests_the_close_one() -> None:
    """A misspelt condition gets a did-you-mean."""
    text = "rules:\n  - name: a\n    if: {subjct: x}\n    then: {queue: q}\n"
    assert ['r.yaml:3:10: unknown key "subjct" in if (did you mean "subject"?)'] == problems(text)


def test_bad_regex_reports_the_regex_error() -> None:
    """A regex that does not compile is reported with re's message."""
    text = "rules:\n  - name: a\n    if:\n      body: {regex: 'a(b'}\n    then: {queue: q}\n"
    assert ['r.yaml:4:21: bad regex "a(b": missing ), unterminated subpattern at position 1'] == problems(
        text
    )


def test_wrong_type_names_what_was_written() -> None:
    """A list where text is expected says what it got."""
    text = "rules:\n  - name: a\n    then: {queue: [a, b]}\n"
    assert ["r.yaml:3:19: queue must be text, got a list"] == problems(text)


def test_unknown_queue_and_template_when_known_sets_are_given() -> None:
    """Queues and templates are checked against the configured ones."""
    text = (
        "defaults: {queue: general, ack: ack}\nrules:\n  - name: a\n    then: {queue: netwrok, ack: ack-nl}\n"
    )
    assert [
        'r.yaml:4:19: unknown queue "netwrok" (did you mean "network"?)',
        'r.yaml:4:33: unknown template "ack-nl" (did you mean "ack"?)',
    ] == problems(text, known_queues={"general", "network"}, known_templates={"ack"})


def test_unreachable_rule_after_catch_all() -> None:
    """A rule after a rule without conditions can never match."""
    text = (
        "rules:\n  - name: all\n    then: {queue: a}\n"
        "  - name: late\n    if: {subject: x}\n    then: {queue: b}\n"
    )
    assert [
        'r.yaml:4:5: rule "late" can never match: rule "all" (line 2) above matches '
        "every new message and stops"
    ] == problems(text)


def test_catch_all_for_new_mail_leaves_reply_rules_reachable() -> None:
    """A new-mail catch-all does not make reply rules unreachable."""
    text = (
        "rules:\n  - name: all\n    then: {queue: a}\n"
        "  - name: replies\n    when: reply\n    then: {priority: high}\n"
    )
    assert 2 == len(load_rules_text(text).rules)


def test_catch_all_with_continue_is_not_a_dead_end() -> None:
    """A catch-all that continues leaves later rules reachable."""
    text = (
        "rules:\n  - name: tag all\n    then: {tags: [x]}\n    continue: true\n"
        "  - name: b\n    if: {subject: y}\n    then: {queue: b}\n"
    )
    assert 2 == len(load_rules_text(text).rules)


def test_every_problem_is_reported_at_once() -> None:
    """Problems in different rules and sections all come back together."""
    text = (
        "defaults: {priority: hihg}\n"
        "business_hours:\n  office: {timezone: Mars/Olympus, days: {mon-fri: '9-5'}}\n"
        "rules:\n"
        "  - name: a\n    if: {within_hours: offfice}\n    then: {queue: q}\n"
        "  - name: a\n    if: {size: {over: lots}}\n    then: {priority: 3}\n"
        "  - name: c\n    when: replies\n    then: {notify: not-an-address}\n"
    )
    found = problems(text)
    assert 9 == len(found), found
    assert [1, 3, 3, 6, 8, 9, 10, 12, 13] == sorted(int(p.split(":")[1]) for p in found)


def test_duplicate_keys_are_problems_not_crashes() -> None:
    """A key written twice is reported with both lines."""
    text = "rules:\n  - name: a\n    then: {queue: a}\n    then: {queue: b}\n"
    assert ['r.yaml:4:5: duplicate key "then" (first at line 3)'] == problems(text)


def test_yaml_syntax_error_has_a_position() -> None:
    """Broken YAML is reported where the parser gave up."""
    found = problems("rules:\n  - name: [a\n    then: x\n")
    assert 1 == len(found) and found[0].startswith("r.yaml:3:")


def test_yes_is_text_not_true() -> None:
    """YAML 1.2: `yes` is text, so a boolean field refuses it."""
    text = "rules:\n  - name: a\n    then: {internal: yes}\n"
    assert ['r.yaml:3:22: internal must be true or false, got text "yes"'] == problems(text)


def test_terminal_action_with_continue_is_flagged() -> None:
    """continue: true next to reject is a mistake worth reporting."""
    text = "rules:\n  - name: a\n    then: {reject: true}\n    continue: true\n"
    assert ['r.yaml:2:5: rule "a": continue: true has no effect with reject, which always stops'] == problems(
        text
    )


def test_missing_file_is_a_problem() -> None:
    """A rules file that cannot be read is one problem, not a traceback."""
    with pytest.raises(RulesError) as caught:
        load_rules(Path("/nonexistent/rules.yaml"))
    assert "/nonexistent/rules.yaml:1:1: cannot read the file: No such file or directory" == str(
        caught.value.problems[0]
    )


def test_empty_file_is_a_problem() -> None:
    """An empty file is most likely a mistake, so it is refused."""
    assert 1 == len(problems(""))


def test_header_condition_needs_a_name() -> None:
    """header: without name: says what is missing."""
    text = "rules:\n  - name: a\n    if: {header: {equals: x}}\n    then: {queue: q}\n"
    assert ["r.yaml:3:18: header needs name: (the header's name, e.g. X-Priority)"] == problems(text)


def test_unknown_auth_method_and_result() -> None:
    """auth checks both the method and the RFC 8601 result word."""
    text = "rules:\n  - name: a\n    if: {auth: {dkmi: pass, spf: passed}}\n    then: {queue: q}\n"
    assert [
        'r.yaml:3:17: unknown key "dkmi" in auth (did you mean "dkim"?)',
        'r.yaml:3:34: auth.spf result "passed" is not an RFC 8601 result (did you mean "pass"?)',
    ] == problems(text)


def test_reloading_a_good_file_returns_an_independent_ruleset(tmp_path: Path) -> None:
    """Two loads give two rule sets; the first keeps working after the file changes."""
    path = tmp_path / "rules.yaml"
    path.write_text("defaults: {queue: old}\n")
    first = load_rules(path)
    path.write_text("defaults: {queue: [broken\n")
    with pytest.raises(RulesError):
        load_rules(path)
    assert "old" == first.defaults.queue


def test_built_in_defaults_are_checked_against_known_names() -> None:
    """Relying on the built-in "general" and "ack" needs them to exist."""
    assert [
        'r.yaml:1:1: the default queue "general" is not a known queue; set defaults: {queue: ...}',
        'r.yaml:1:1: the default acknowledgement template "ack" is not a known template; set '
        "defaults: {ack: ...} (or ack: false)",
    ] == problems("rules: []\n", known_queues={"support"}, known_templates={"welcome"})


def test_defaults_ack_false_needs_no_template() -> None:
    """ack: false in defaults means no template has to exist."""
    ruleset = load_rules_text(
        "defaults: {queue: support, ack: false}\n", known_queues={"support"}, known_templates=set()
    )
    assert None is ruleset.defaults.ack_template
