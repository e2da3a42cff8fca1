"""The agents file: loading, file:line errors, reload, our addresses; commands parsing."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from mailgate.agents.commands import interpret, split_commands
from mailgate.agents.directory import load_directory, load_directory_text
from mailgate.rules.model import RulesError
from mailgate.tickets.lifecycle import csat_rating, is_thanks_only
from tests.agents.conftest import FIXTURES
from tests.conftest import make_mail, run_cli, wait_until
from tests.helpers import deliver, outbox_mails


def test_directory_loads_agents_queues_and_lifecycle() -> None:
    """The fixture file gives two agents, two queues, membership from both sides, and the quiet period."""
    directory = load_directory(FIXTURES / "agents.yaml")
    assert ["alice", "bob"] == [a.key for a in directory.members("general")]
    assert "alice" == getattr(directory.agent_for("Alice.Admin@example.net"), "key", None)
    assert "new_ticket" == directory.reopen_policy("network")
    assert 72.0 == directory.close_resolved_after_hours


def test_broken_directory_lists_every_problem_with_its_line() -> None:
    """Every mistake is reported at once as file:line:column: reason."""
    with pytest.raises(RulesError) as caught:
        load_directory(FIXTURES / "broken_agents.yaml")
    problems = [str(p) for p in caught.value.problems]
    file = str(FIXTURES / "broken_agents.yaml")
    assert f'{file}:3:14: address "not-an-address" is not a mail address like alice@example.com' in problems
    assert any(p.startswith(f"{file}:5:3:") and "needs an address" in p for p in problems)
    assert any(p.startswith(f"{file}:9:22:") and '"carol" is not an agent' in p for p in problems)
    assert any(p.startswith(f"{file}:10:13:") and 'reopen "maybe"' in p for p in problems)
    assert any(p.startswith(f"{file}:11:5:") and 'unknown key "colour"' in p for p in problems)
    assert any('queue "genral" is not defined (did you mean "general"?)' in p for p in problems)


def test_duplicate_addresses_are_refused() -> None:
    """Two owners for one address is an error naming the first owner."""
    text = "agents:\n  a: {address: x@example.com}\n  b: {address: x@example.com}\n"
    with pytest.raises(RulesError) as caught:
        load_directory_text(text, "agents.yaml")
    assert ['agents.yaml:3:3: agent "b": x@example.com is already agent "a"'] == [
        str(p) for p in caught.value.problems
    ]


def test_queue_and_comment_addresses_are_ours_and_route(desk: Any) -> None:
    """Mail to a queue address is accepted as ours and lands in that queue."""
    assert desk.is_our_address("network@example.com")
    assert desk.is_our_address("helpdesk-notes+t1-abc@example.com")
    assert not desk.is_our_address("alice@example.com")
    result = deliver(desk, make_mail(to="network@example.com"), rcpts=("network@example.com",))
    assert "done" == result.state


def test_mail_to_comment_address_without_ticket_is_quarantined_not_lost(desk: Any) -> None:
    """A comment address needs a ticket; a stray mail to it is kept aside with the reason."""
    result = deliver(desk, make_mail(to="helpdesk-notes@example.com"), rcpts=("helpdesk-notes@example.com",))
    assert "quarantined" == result.state
    assert [] == outbox_mails(desk)


def test_commands_are_read_from_the_top_only() -> None:
    """Command lines at the top are taken and stripped; a later #close is prose."""
    found = split_commands("#status pending\n\n#tag printer toner\nPlease check.\n#close\n")
    assert ["status", "tag"] == [c.name for c in found.commands]
    assert "Please check.\n#close\n" == found.text
    assert () == split_commands("# Heading\ntext").commands


def test_interpret_checks_values_against_the_directory() -> None:
    """Good values become changes, bad ones errors, and #resolve means resolved."""
    directory = load_directory(FIXTURES / "agents.yaml")
    good = interpret(split_commands("#resolve\n#assign bob\n#queue network\n#priority HIGH\n"), directory)
    assert ("resolved", "bob@example.com", "network", "high", ()) == (
        good.status,
        good.assignee,
        good.queue,
        good.priority,
        good.errors,
    )
    bad = interpret(split_commands("#status done\n#assign carol\n#queue nope\n#close now\n"), directory)
    assert 4 == len(bad.errors) and not bad.any


@pytest.mark.parametrize(
    "text",
    ["thanks!", "Thank you very much!\n\nJan", "dank je wel", "Danke schön", "merci", "Bedankt!", "thx"],
)
def test_thanks_only_replies(text: str) -> None:
    """A bare thank-you in several languages is recognised."""
    assert is_thanks_only(text)


@pytest.mark.parametrize("text", ["Thanks, but it still jams on every page", "It broke again", ""])
def test_replies_with_content_are_not_thanks(text: str) -> None:
    """A thank-you with a new problem in it is a real reply."""
    assert not is_thanks_only(text)


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("5", 5),
        ("4/5\n\nJan", 4),
        ("excellent!", 5),
        ("goed", 4),
        ("1 star", 1),
        ("It jams again", None),
        ("6", None),
    ],
)
def test_csat_answers(text: str, rating: int | None) -> None:
    """Digits 1-5 and a few words in English and Dutch are ratings; anything else is not."""
    assert rating == csat_rating(text)


def test_reload_applies_a_new_directory_and_keeps_the_old_on_errors(
    runtime_factory: Any, tmp_path: Path
) -> None:
    """Runtime.reload swaps in a valid agents file and keeps the running one when it is broken."""
    path = tmp_path / "agents.yaml"
    path.write_text((FIXTURES / "agents.yaml").read_text())
    runtime = runtime_factory(agents=str(path))
    path.write_text("agents:\n  carol: {address: carol@example.com}\n")
    assert [] == runtime.reload()
    assert runtime.directory.agent_for("carol@example.com") is not None
    path.write_text("agents:\n  dave: {address: nope}\n")
    assert 1 == len(runtime.reload())
    assert runtime.directory.agent_for("carol@example.com") is not None


def test_daemon_reloads_agents_on_sighup(daemon_factory: Any, tmp_path: Path) -> None:
    """SIGHUP picks up a new queue address: the listener then accepts mail to it."""
    path = tmp_path / "agents.yaml"
    path.write_text("queues:\n  general: {}\n")
    daemon = daemon_factory(agents=str(path), helpdesk={"address": "helpdesk@example.com"})
    with pytest.raises(Exception, match=r"550|Recipient"):
        daemon.send(make_mail(to="sales@example.com"), rcpts=("sales@example.com",))
    path.write_text("queues:\n  sales: {address: sales@example.com}\n")
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGHUP)
    daemon.wait_for("reload.applied")
    wait_until(
        lambda: not daemon.send(make_mail(to="sales@example.com"), rcpts=("sales@example.com",)), timeout=5
    )
    tickets = json.loads(run_cli(daemon.config_path, "tickets", "list", "--json").stdout or b"[]")
    assert isinstance(tickets, list)
