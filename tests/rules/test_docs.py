"""Every example in docs/rules.md is executed.

Convention (also stated in the doc): a ```yaml block is a rules file that
must load; an ```eml block is a mail routed by the latest rules file; a
```yaml expect block lists what the decision for the latest mail must be
(``given:`` sets the context; the format is mailgate.rules.expect's, the
same that ``mailgate rules test`` reads from ``NAME.expect.yaml``); a
```yaml broken block must fail, and the ```text block after it is the
exact output of ``mailgate rules check``; a ```yaml expect-file block shows
the format of an expectation file and must be one without problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailgate.parse import parse
from mailgate.rules import RuleContext, RulesError, RuleSet, load_rules_text
from mailgate.rules.cli import envelope_for_file
from mailgate.rules.expect import apply_given, mismatches, parse_expectation

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


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
        kind = " ".join(match.group(1).split())
        found.append(Block(kind, match.group(2), text.count("\n", 0, match.start()) + 1))
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


def test_doc_has_examples_of_every_kind() -> None:
    """The doc holds only block kinds the tests know how to execute."""
    kinds = {block.kind for block in blocks()}
    # Equality, not a subset: a block of another kind would go untested.
    assert {"yaml", "eml", "yaml expect", "yaml broken", "text", "yaml expect-file"} == kinds


@pytest.mark.parametrize("block", [b for b in blocks() if b.kind == "yaml"], ids=lambda b: f"line{b.line}")
def test_every_rules_example_loads(block: Block) -> None:
    """Each yaml example is a valid rules file."""
    ruleset = load_rules_text(block.text, f"docs/rules.md:{block.line}")
    assert isinstance(ruleset, RuleSet)


@pytest.mark.parametrize("example", examples(), ids=lambda e: f"line{e.expect.line}")
def test_every_example_mail_gets_the_documented_decision(example: Example) -> None:
    """Routing each example mail gives the outcome the doc shows."""
    ruleset = load_rules_text(example.rules.text, "rules.yaml")
    expectation = parse_expectation(example.expect.text)
    message = parse(example.mail.text.encode("utf-8"))
    envelope = envelope_for_file(message)
    # The same situation `mailgate rules test` assumes: our helpdesk address,
    # arrival at the Date header; the example's given: adds to it.
    context = apply_given(
        RuleContext(our_addresses=frozenset({"helpdesk@example.com"}), now=envelope.received_at),
        expectation.given,
    )
    decision = ruleset.decide(message, envelope, context)
    trace = "\n".join(str(entry) for entry in decision.trace)
    assert [] == mismatches(decision, expectation), trace


@pytest.mark.parametrize(
    "block", [b for b in blocks() if b.kind == "yaml expect-file"], ids=lambda b: f"line{b.line}"
)
def test_expectation_file_examples_are_valid(block: Block) -> None:
    """A sample expectation file uses only known fields."""
    assert () == parse_expectation(block.text).problems


def test_broken_example_prints_the_documented_problems() -> None:
    """The broken example fails with exactly the problems the doc lists."""
    all_blocks = blocks()
    position = next(i for i, b in enumerate(all_blocks) if b.kind == "yaml broken")
    broken, output = all_blocks[position], all_blocks[position + 1]
    with pytest.raises(RulesError) as caught:
        load_rules_text(broken.text, "rules.yaml")
    assert output.text.strip().splitlines() == [str(p) for p in caught.value.problems]
