"""Every example in docs/rules.md is executed.

Convention (also stated in the doc): a ```yaml block is a rules file that
must load; an ```eml block is a mail routed by the latest rules file; a
```yaml expect block lists what the decision for the latest mail must be
(``given:`` sets the context); a ```yaml broken block must fail, and the
```text block after it is the exact output of ``mailgate rules check``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from mailgate.parse import parse
from mailgate.rules import Decision, RuleContext, RuleSet, RulesError, load_rules_text
from mailgate.rules.cli import envelope_for_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
_FENCE = re.compile(r"^```(\w*)(?: (\w+))?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    kind: str
    text: str
    line: int


def blocks() -> list[Block]:
    """The fenced blocks of the doc, with the line each starts on."""
    text = DOC.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        kind = " ".join(part for part in match.groups()[:2] if part)
        found.append(Block(kind, match.group(3), text.count("\n", 0, match.start()) + 1))
    return found


@dataclass
class Example:
    rules: Block
    mail: Block
    expect: Block


def examples() -> list[Example]:
    """Each expect block with the mail and rules file it refers to."""
    found: list[Example] = []
    rules = mail = None
    for block in blocks():
        if block.kind == "yaml":
            rules, mail = block, None
        elif block.kind == "eml":
            mail = block
        elif block.kind == "yaml expect":
            assert rules is not None and mail is not None, f"line {block.line}: expect without mail"
            found.append(Example(rules, mail, block))
    return found


def _context(given: dict[str, Any], received_at: datetime) -> RuleContext:
    return RuleContext(
        is_reply=bool(given.get("reply", False)),
        ticket_status=given.get("ticket_status"),
        our_addresses=frozenset(given.get("our_addresses", ["helpdesk@example.com"])),
        now=received_at,
        trusted_authserv_ids=frozenset(given.get("trusted_authserv_ids", [])),
        language=given.get("language"),
    )


def _actual(decision: Decision, key: str) -> object:
    if key == "ack":
        return decision.ack_template
    if key == "matched":
        return list(decision.matched_rules)
    value = getattr(decision, key)
    return list(value) if isinstance(value, tuple) else value


def test_doc_has_examples_of_every_kind() -> None:
    """The doc carries rules files, mails, expectations and a broken file."""
    kinds = {block.kind for block in blocks()}
    assert {"yaml", "eml", "yaml expect", "yaml broken", "text"} <= kinds


@pytest.mark.parametrize("block", [b for b in blocks() if b.kind == "yaml"],
                         ids=lambda b: f"line{b.line}")
def test_every_rules_example_loads(block: Block) -> None:
    """Each yaml example is a valid rules file."""
    ruleset = load_rules_text(block.text, f"docs/rules.md:{block.line}")
    assert isinstance(ruleset, RuleSet)


@pytest.mark.parametrize("example", examples(), ids=lambda e: f"line{e.expect.line}")
def test_every_example_mail_gets_the_documented_decision(example: Example) -> None:
    """Routing each example mail gives the outcome the doc shows."""
    ruleset = load_rules_text(example.rules.text, "rules.yaml")
    expected = YAML(typ="safe").load(io.StringIO(example.expect.text)) or {}
    given = expected.pop("given", {})
    message = parse(example.mail.text.encode("utf-8"))
    envelope = envelope_for_file(message)
    decision = ruleset.decide(message, envelope, _context(given, envelope.received_at))
    if expected.get("ack") == "none":
        expected["ack"] = None
    actual = {key: _actual(decision, key) for key in expected}
    assert expected == actual, "\n".join(str(entry) for entry in decision.trace)


def test_broken_example_prints_the_documented_problems() -> None:
    """The broken example fails with exactly the problems the doc lists."""
    all_blocks = blocks()
    position = next(i for i, b in enumerate(all_blocks) if b.kind == "yaml broken")
    broken, output = all_blocks[position], all_blocks[position + 1]
    with pytest.raises(RulesError) as caught:
        load_rules_text(broken.text, "rules.yaml")
    assert output.text.strip().splitlines() == [str(p) for p in caught.value.problems]
