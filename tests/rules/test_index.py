"""The rule index only skips rules that cannot match: decisions are unchanged."""

from __future__ import annotations

import random

from mailgate.rules import load_rules_text
from mailgate.rules.engine import RuleSet
from tests.rules.helpers import context, envelope, message

DOMAINS = ["example.org", "a.example.org", "b.example.net", "example.net", "acme.com", "x.acme.com"]
RULES = """
rules:
  - name: exact domain
    if: {from.domain: example.net}
    then: {queue: q1}
  - name: subdomains
    if: {from.domain: "*.example.org"}
    then: {queue: q2}
  - name: domain and subdomains
    if: {from.domain: [acme.com, "*.acme.com"]}
    then: {queue: q3}
    continue: true
  - name: suffix without a dot is not indexed
    if: {from: "*acme.com"}
    then: {tags: [acme]}
    continue: true
  - name: header
    if: {header: {name: X-Customer, equals: C7}}
    then: {queue: q4}
  - name: any of recipients
    if: {any: [{to: team@example.com}, {cc: team@example.com}]}
    then: {queue: q5}
  - name: all with one indexed part
    if: {all: [{subject: vpn}, {from: "*@b.example.net"}]}
    then: {queue: q6}
  - name: case-sensitive is not indexed
    if: {from.domain: {equals: Example.org, case_sensitive: true}}
    then: {queue: q7}
  - name: unindexed subject
    if: {subject: printer}
    then: {queue: q8}
"""


def _unindexed(ruleset: RuleSet) -> RuleSet:
    """The same rules with an index that screens nothing."""
    plain = RuleSet(ruleset.rules, ruleset.defaults, ruleset.business_hours, ruleset.source)
    for lane in (plain.new_lane, plain.reply_lane):
        lane.index.always = list(range(len(lane.pairs)))
        lane.index.screened = 0
    return plain


def test_index_screens_the_rules_it_can() -> None:
    """Address, domain, header and recipient rules get screens; others do not."""
    ruleset = load_rules_text(RULES)
    assert [3, 7, 8] == ruleset.new_lane.index.always


def test_index_gives_the_same_decisions_as_testing_every_rule() -> None:
    """Random messages get identical decisions with and without the index."""
    ruleset = load_rules_text(RULES)
    plain = _unindexed(ruleset)
    chooser = random.Random(4)
    for _ in range(300):
        mail = message(
            sender=f"user@{chooser.choice(DOMAINS)}",
            subject=chooser.choice(["vpn down", "printer", "hello"]),
            to=(chooser.choice(["helpdesk@example.com", "team@example.com"]),),
            cc=tuple(chooser.sample(["team@example.com", "x@example.com"], chooser.randint(0, 1))),
            headers=(("X-Customer", chooser.choice(["C7", "c7", "C8"])),),
        )
        indexed = ruleset.decide(mail, envelope(), context())
        full = plain.decide(mail, envelope(), context())
        assert (full.matched_rules, full.queue, full.tags) == (
            indexed.matched_rules,
            indexed.queue,
            indexed.tags,
        )
