"""config/rules.example.yaml, the file a new admin starts from."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailgate.rules import RulesError, RuleSet, load_rules
from tests.rules.helpers import attachment, context, envelope, message

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "rules.example.yaml"
QUEUES = {"general", "network", "hardware"}
# Only the acknowledgement mailgate ships: the example must pass as it is.
TEMPLATES = {"ack"}


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    """The example file, validated against the example queues and templates."""
    return load_rules(EXAMPLE, known_queues=QUEUES, known_templates=TEMPLATES)


def test_example_is_valid_against_its_queues_and_templates(ruleset: RuleSet) -> None:
    """The example passes `rules check` with queues general, network, hardware."""
    assert 8 == len(ruleset.rules)


def test_example_routes_a_vpn_problem_to_network(ruleset: RuleSet) -> None:
    """A VPN problem goes to the network queue with the normal acknowledgement."""
    decision = ruleset.decide(message(subject="VPN drops"), envelope(), context())
    assert ("network", "ack") == (decision.queue, decision.ack_template)


def test_example_tags_vip_and_routes_hardware(ruleset: RuleSet) -> None:
    """A VIP's printer problem is high priority in the hardware queue."""
    mail = message(subject="Printer jam", sender="ceo@bigcustomer.example")
    decision = ruleset.decide(mail, envelope(), context())
    assert ("hardware", "high", ("vip",)) == (decision.queue, decision.priority, decision.tags)


def test_example_quarantines_executables(ruleset: RuleSet) -> None:
    """An .exe attachment is held for an admin, without an acknowledgement."""
    mail = message(attachments=(attachment("setup.EXE", "application/octet-stream"),))
    decision = ruleset.decide(mail, envelope(), context())
    assert ("quarantine", None) == (decision.action, decision.ack_template)


def test_example_after_hours_tags_and_continues(ruleset: RuleSet) -> None:
    """Mail at night is tagged after-hours and still routed to its queue."""
    night = context(now=datetime(2026, 3, 2, 22, 0, tzinfo=UTC))
    decision = ruleset.decide(message(subject="wifi gone"), envelope(), night)
    assert ("network", ("after-hours",)) == (decision.queue, decision.tags)


def test_example_new_file_needs_known_queues() -> None:
    """Without the network queue configured, the example file is refused."""
    with pytest.raises(RulesError) as caught:
        load_rules(EXAMPLE, known_queues={"general", "hardware"}, known_templates=TEMPLATES)
    assert all('unknown queue "network"' in p.reason for p in caught.value.problems)
