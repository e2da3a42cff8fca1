"""Rules change under a running daemon: on SIGHUP and when the file changes."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from tests.conftest import make_mail, run_cli, wait_until

GENERAL = "rules:\n  - name: everything to general\n    then: {queue: general}\n"
NETWORK = (
    "rules:\n  - name: vpn to network\n    if: {subject: vpn}\n    then: {queue: network, priority: high}\n"
)
BROKEN = "rules:\n  - name: broken\n    if: {subjekt: vpn}\n    then: {queue: network}\n"


def _queues(config_path: Path) -> list[str]:
    tickets = json.loads(run_cli(config_path, "tickets", "list", "--json").stdout)
    return [t["queue"] for t in sorted(tickets, key=lambda t: t["id"])]


def test_file_change_applies_and_a_broken_file_keeps_the_last_good_rules(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """Editing rules.yaml reroutes the next mail; a broken edit is refused, logged, and routing goes on."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(GENERAL)
    daemon = daemon_factory(rules=str(rules))
    daemon.send(make_mail(subject="vpn down 1"))
    wait_until(lambda: 1 == len(daemon.acks()))

    rules.write_text(NETWORK)
    daemon.wait_for("reload.applied", timeout=15, count=2)  # the daemon and its worker
    daemon.send(make_mail(subject="vpn down 2"))
    wait_until(lambda: 2 == len(daemon.acks()))

    rules.write_text(BROKEN)
    refused = daemon.wait_for("reload.refused", timeout=15)
    assert any("subjekt" in problem for problem in refused["problems"])
    daemon.send(make_mail(subject="vpn down 3"))
    wait_until(lambda: 3 == len(daemon.acks()))
    assert ["general", "network", "network"] == _queues(daemon.config_path)
    # One edit, one report: not one per process, nor one per look at the file.
    rules.write_text(BROKEN + "\n")
    time.sleep(5)
    assert 1 == sum(1 for line in daemon.events("reload.refused") if line.get("level") == "error")


def test_sighup_reloads(daemon_factory: Any, tmp_path: Path) -> None:
    """systemctl reload (SIGHUP) applies new rules to the next message."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(GENERAL)
    daemon = daemon_factory(rules=str(rules))
    rules.write_text(NETWORK)
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for("reload.applied", timeout=15, count=2)  # the daemon and its worker
    daemon.send(make_mail(subject="vpn again"))
    wait_until(lambda: 1 == len(daemon.acks()))
    assert ["network"] == _queues(daemon.config_path)


def test_daemon_refuses_to_start_on_a_broken_rules_file(tmp_path: Path) -> None:
    """`mailgate run` with a broken rules file exits 2 and lists every problem as file:line:column."""
    from tests.conftest import write_config

    rules = tmp_path / "rules.yaml"
    rules.write_text(BROKEN)
    result = run_cli(write_config(tmp_path, rules=str(rules)), "run")
    assert 2 == result.returncode
    assert f"{rules}:3:".encode() in result.stderr
    assert b"subjekt" in result.stderr
