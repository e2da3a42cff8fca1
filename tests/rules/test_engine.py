"""Evaluation: order, continue, stopping actions, defaults, replies, the trace."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from mailgate.rules import Decision, RuleSet, default_ruleset, load_rules_text
from mailgate.rules.conditions import Condition
from mailgate.rules.engine import Rule
from mailgate.rules.view import MessageView
from tests.rules.helpers import context, envelope, message

RULES = """
defaults: {queue: general, priority: normal, language: en, ack: ack, sla: standard}
rules:
  - name: vip
    if: {from.domain: vip.example}
    then: {priority: high, tags: [vip], notify: [boss@example.com]}
    continue: true
  - name: printers
    if: {subject: printer}
    then: {queue: hardware, tags: [printer, vip]}
  - name: printers again
    if: {subject: printer}
    then: {queue: never}
  - name: spam
    if: {header: {name: X-Spam, exists: true}}
    then: {drop: spam}
  - name: urgent reply
    when: reply
    if: {body: urgent}
    then: {priority: urgent, ack: ack-reply}
"""


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    """A small rule set exercising each evaluation path."""
    return load_rules_text(RULES, "rules.yaml")


def decide(ruleset: RuleSet, **mail: object) -> Decision:
    """Route a hand-built new message."""
    return ruleset.decide(message(**mail), envelope(), context())  # type: ignore[arg-type]


def test_first_match_wins(ruleset: RuleSet) -> None:
    """The first matching rule decides and later rules are not evaluated."""
    decision = decide(ruleset, subject="printer jam")
    assert ("hardware", ("printers",), 2) == (decision.queue, decision.matched_rules, len(decision.trace))


def test_continue_lets_later_rules_add_to_lists(ruleset: RuleSet) -> None:
    """A continuing rule's values stay; lists add up without duplicates."""
    decision = decide(ruleset, subject="printer jam", sender="ceo@vip.example")
    assert ("hardware", "high", ("vip", "printer"), ("boss@example.com",)) == (
        decision.queue,
        decision.priority,
        decision.tags,
        decision.notify,
    )


def test_no_match_gives_the_defaults(ruleset: RuleSet) -> None:
    """Without a matching rule the file's defaults apply, with the reason said."""
    decision = decide(ruleset, subject="chair")
    assert ("general", "normal", "standard", "ack", "accept", "no rule matched; defaults apply") == (
        decision.queue,
        decision.priority,
        decision.sla,
        decision.ack_template,
        decision.action,
        decision.reason,
    )


def test_drop_stops_and_sends_no_ack(ruleset: RuleSet) -> None:
    """drop ends evaluation and suppresses the acknowledgement."""
    decision = decide(ruleset, subject="chair", headers=(("X-Spam", "yes"),))
    assert ("drop", None, 'dropped by rule "spam" (line 14): spam') == (
        decision.action,
        decision.ack_template,
        decision.reason,
    )


def test_ack_reason_explains_why_none(ruleset: RuleSet) -> None:
    """The decision says why no acknowledgement goes out."""
    decision = decide(ruleset, subject="chair", headers=(("X-Spam", "yes"),))
    assert "no acknowledgement: the message is dropped" == decision.ack_reason


def test_new_rules_do_not_touch_replies(ruleset: RuleSet) -> None:
    """A reply skips new-ticket rules and gets no acknowledgement by default."""
    decision = ruleset.decide(
        message(subject="RE: printer"), envelope(), context(is_reply=True, ticket_status="open")
    )
    assert ((), None, frozenset()) == (decision.matched_rules, decision.ack_template, decision.changed)


def test_reply_rules_apply_to_replies(ruleset: RuleSet) -> None:
    """A reply rule can raise priority and choose an acknowledgement."""
    decision = ruleset.decide(
        message(subject="RE: x", body="this is urgent"),
        envelope(),
        context(is_reply=True, ticket_status="open"),
    )
    assert ("urgent", "ack-reply", frozenset({"priority", "ack_template"})) == (
        decision.priority,
        decision.ack_template,
        decision.changed,
    )


def test_trace_lists_skipped_reply_rules_for_new_mail(ruleset: RuleSet) -> None:
    """Reply-only rules show up in a new message's trace as skipped."""
    decision = decide(ruleset, subject="chair")
    assert "skipped: only for replies; this is a new message" == decision.trace[-1].reason


def test_trace_has_name_line_verdict_reason(ruleset: RuleSet) -> None:
    """Each trace entry says which rule, where, and which condition decided."""
    first = decide(ruleset, subject="chair").trace[0]
    assert ("vip", 4, False, 'from.domain glob "vip.example" did not match "example.org"') == (
        first.name,
        first.line,
        first.matched,
        first.reason,
    )


def test_decision_is_frozen(ruleset: RuleSet) -> None:
    """A Decision cannot be changed after the fact."""
    decision = decide(ruleset)
    with pytest.raises(FrozenInstanceError):
        decision.queue = "other"  # type: ignore[misc]  # the point of the test


def test_decision_as_dict_is_json_ready(ruleset: RuleSet) -> None:
    """as_dict carries every field and the trace."""
    data = decide(ruleset, subject="printer").as_dict()
    assert ("hardware", "printers") == (data["queue"], data["trace"][1]["rule"])  # type: ignore[index]


def test_language_prefers_rule_then_context_then_detection() -> None:
    """The decision's language: a rule's choice, the caller's, detected, default."""
    ruleset = load_rules_text(
        "defaults: {language: en, languages: [en, nl]}\n"
        "rules:\n  - name: fr\n    if: {subject: bonjour}\n"
        "    then: {language: fr}\n"
    )
    dutch = "Hallo, mijn laptop werkt niet. Kunnen jullie even kijken? Alvast bedankt"
    german = "Guten Tag, der Drucker funktioniert nicht. Können Sie bitte helfen? Danke"
    results = (
        ruleset.decide(message(subject="bonjour", body=dutch), envelope(), context()).language,
        ruleset.decide(message(body=dutch), envelope(), context(language="de")).language,
        ruleset.decide(message(body=dutch), envelope(), context()).language,
        ruleset.decide(message(body=german), envelope(), context()).language,
    )
    assert ("fr", "de", "nl", "en") == results


class _Exploding(Condition):
    """A condition with a bug, to prove decide() survives it."""

    def test(self, view: MessageView) -> bool:
        raise RuntimeError("boom")

    def explain(self, view: MessageView) -> str:
        raise RuntimeError("boom")


def test_a_failing_condition_counts_as_no_match() -> None:
    """decide() never raises: a rule that errors is recorded and skipped."""
    good = load_rules_text("rules:\n  - name: ok\n    then: {queue: fine}\n")
    broken = Rule("broken", 1, "new", _Exploding(), good.rules[0].actions)
    ruleset = RuleSet((broken, good.rules[0]), good.defaults)
    decision = ruleset.decide(message(), envelope(), context())
    assert ("fine", False, True) == (
        decision.queue,
        decision.trace[0].matched,
        "boom" in decision.trace[0].reason,
    )


def test_default_ruleset_routes_everything_to_one_queue() -> None:
    """Without a rules file: one queue, normal priority, the "ack" template."""
    decision = default_ruleset("support", "nl").decide(message(body="ok"), envelope(), context())
    assert ("support", "normal", "ack", "nl", ()) == (
        decision.queue,
        decision.priority,
        decision.ack_template,
        decision.language,
        decision.trace,
    )


def test_quarantine_reason_and_reject_notice() -> None:
    """quarantine and reject carry their reason and notice template."""
    ruleset = load_rules_text(
        "rules:\n  - name: q\n    if: {subject: hold}\n    then: {quarantine: check me}\n"
        "  - name: r\n    if: {subject: refuse}\n"
        "    then: {reject: {notice: no-thanks, reason: not for us}}\n"
    )
    held = ruleset.decide(message(subject="hold"), envelope(), context())
    refused = ruleset.decide(message(subject="refuse"), envelope(), context())
    assert (("quarantine", 'quarantined by rule "q" (line 2): check me'), ("reject", "no-thanks")) == (
        (held.action, held.reason),
        (refused.action, refused.reject_template),
    )
