"""The command line as admins and MTAs use it."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pytest
import yaml

from tests.conftest import HELPDESK, free_port, make_mail, run_cli, write_config


def test_ingest_exit_codes(config_path: Path) -> None:
    """Pipe delivery: 0 stored (also for a duplicate), 65 for empty input."""
    raw = make_mail(message_id="<pipe@example.org>")
    first = run_cli(config_path, "ingest", input_bytes=raw)
    second = run_cli(config_path, "ingest", input_bytes=raw)
    empty = run_cli(config_path, "ingest", input_bytes=b"\n\n")
    assert 0 == first.returncode, first.stderr
    assert b"done" in first.stdout
    assert 0 == second.returncode
    assert b"duplicate" in second.stdout
    assert 65 == empty.returncode
    assert b"empty message" in empty.stderr


def test_ingest_oversized_is_refused_for_good(tmp_path: Path) -> None:
    """A message over the size limit exits 65 (the MTA bounces it, it does not retry)."""
    path = write_config(tmp_path, listen={"max_message_bytes": 2048})
    result = run_cli(path, "ingest", input_bytes=make_mail(body="z" * 5000))
    assert 65 == result.returncode
    assert b"over the limit" in result.stderr


def test_ingest_when_the_database_is_down_says_try_again(tmp_path: Path) -> None:
    """An unreachable database exits 75 so the MTA keeps the message and retries."""
    path = write_config(
        tmp_path, database={"url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"}
    )
    result = run_cli(path, "ingest", input_bytes=make_mail())
    assert 75 == result.returncode
    assert b"try again later" in result.stderr


def test_tickets_show_json_has_the_fixed_fields(config_path: Path) -> None:
    """`tickets show --json` prints the ticket plus articles with the SPEC §4 fields."""
    run_cli(config_path, "ingest", input_bytes=make_mail(body="Hello\n\n> old quoted text\n"))
    listed = json.loads(run_cli(config_path, "tickets", "list", "--json").stdout)
    shown = json.loads(run_cli(config_path, "tickets", "show", "HD-1", "--json").stdout)
    assert 1 == len(listed)
    assert listed[0]["id"] == shown["id"]
    first = shown["articles"][0]
    assert ("in", "public") == (first["direction"], first["visibility"])
    assert "alice@example.org" == first["sender"]
    assert ["helpdesk@example.com"] == first["recipients"]
    assert "old quoted text" not in first["body_text"]


def test_tickets_list_filters_and_prints_a_table(config_path: Path) -> None:
    """Without --json a readable table; --status filters."""
    run_cli(config_path, "ingest", input_bytes=make_mail(subject="VPN down"))
    table = run_cli(config_path, "tickets", "list").stdout.decode()
    assert table.splitlines()[0].split()[:3] == ["REF", "STATUS", "PRIORITY"]
    assert "VPN down" in table
    assert (
        b"no tickets with status closed"
        in run_cli(config_path, "tickets", "list", "--status", "closed").stdout
    )
    missing = run_cli(config_path, "tickets", "show", "HD-999")
    assert 1 == missing.returncode
    assert b"no ticket HD-999" in missing.stderr


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_import_is_counted_and_idempotent(tmp_path: Path, kind: str) -> None:
    """An import stores every message once, shows progress, and a second run adds nothing."""
    path = write_config(tmp_path)
    box_path = tmp_path / ("in.mbox" if kind == "mbox" else "Maildir")
    box: mailbox.Mailbox = mailbox.mbox(box_path) if kind == "mbox" else mailbox.Maildir(box_path)  # type: ignore[type-arg]
    for n in range(25):
        box.add(
            make_mail(
                message_id=f"<imp{n}@example.org>",
                sender=f"user{n}@example.org",
                subject=f"import {n}",
            )
        )
    box.close()
    first = run_cli(path, "import", str(box_path))
    second = run_cli(path, "import", str(box_path))
    assert 0 == first.returncode, first.stderr
    assert b"imported 25 of 25 messages (0 already imported): 25 done" in first.stdout
    assert b"import" in first.stderr and b"25/25" in first.stderr  # the progress bar
    assert b"imported 0 of 25 messages (25 already imported)" in second.stdout
    assert 25 == len(json.loads(run_cli(path, "tickets", "list", "--json").stdout))


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    """Unknown keys and wrong types are refused with the key's path."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "helpdesk": {"address": "helpdesk@example.com"},
                "listen": {"smtp": {"port": "many"}, "smpt": 1},
            }
        )
    )
    result = run_cli(path, "tickets", "list")
    assert 2 == result.returncode
    assert b"listen.smtp.port" in result.stderr
    assert b"listen.smpt: unknown key" in result.stderr


def test_missing_config_says_what_to_do(tmp_path: Path) -> None:
    """Without a configuration file the error says how to give one."""
    result = run_cli(tmp_path / "nope.yaml", "tickets", "list")
    assert 0 != result.returncode
    assert b"-c FILE" in result.stderr


def test_only_the_address_is_required(tmp_path: Path) -> None:
    """A config with only helpdesk.address works, paths resolved next to it."""
    path = tmp_path / "min.yaml"
    path.write_text("helpdesk: {address: help@example.net}\n")
    result = run_cli(path, "ingest", input_bytes=make_mail(to="help@example.net"))
    assert 0 == result.returncode, result.stderr
    assert (tmp_path / "var" / "mailgate.db").exists()
    assert (tmp_path / "var" / "reply.key").exists()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["ingest"],
        ["import"],
        ["tickets", "list"],
        ["tickets", "show"],
        ["quarantine", "list"],
        ["outbox", "list"],
    ],
)
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    """`--help` works for every command, without a configuration file."""
    from click.testing import CliRunner

    from mailgate.cli import main

    result = CliRunner().invoke(main, ["-c", str(tmp_path / "none.yaml"), *command, "--help"])
    assert 0 == result.exit_code
    assert "Usage:" in result.output


def test_quarantine_list_retry_and_drop(tmp_path: Path) -> None:
    """A message the rules quarantine is listed with its reason, can be replayed after a fix, or dropped."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: hold scans\n    if: {subject: scan}\n    then: {quarantine: true}\n")
    path = write_config(tmp_path, rules=str(rules))
    run_cli(path, "ingest", input_bytes=make_mail(subject="scan 1", message_id="<q1@example.org>"))
    run_cli(path, "ingest", input_bytes=make_mail(subject="scan 2", message_id="<q2@example.org>"))
    listed = json.loads(run_cli(path, "quarantine", "list", "--json").stdout)
    assert 2 == len(listed)
    assert "hold scans" in listed[0]["reason"]
    shown = run_cli(path, "quarantine", "show", str(listed[0]["id"]))
    assert b"Subject: scan 1" in shown.stdout

    rules.write_text("rules: []\n")
    retried = run_cli(path, "quarantine", "retry", str(listed[0]["id"]))
    assert 0 == retried.returncode, retried.stderr
    assert b"done" in retried.stdout
    assert 0 == run_cli(path, "quarantine", "drop", str(listed[1]["id"])).returncode
    assert [] == json.loads(run_cli(path, "quarantine", "list", "--json").stdout)
    assert 1 == len(json.loads(run_cli(path, "tickets", "list", "--json").stdout))


def test_shipped_example_rules_and_agents_check_clean_together(tmp_path: Path) -> None:
    """`rules check` on config/rules.example.yaml with config/agents.example.yaml finds no problem."""
    from tests.conftest import REPO

    path = write_config(
        tmp_path,
        rules=str(REPO / "config" / "rules.example.yaml"),
        agents=str(REPO / "config" / "agents.example.yaml"),
    )
    result = run_cli(path, "rules", "check")
    assert 0 == result.returncode, result.stdout.decode()
    assert b"OK, 3 queues" in result.stdout


def test_rules_naming_an_undefined_queue_are_refused(tmp_path: Path) -> None:
    """With an agents file, a rule routing to a queue it does not define is a file:line:column error."""
    from tests.conftest import REPO

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: to nowhere\n    then: {queue: netwerk}\n")
    path = write_config(tmp_path, rules=str(rules), agents=str(REPO / "config" / "agents.example.yaml"))
    result = run_cli(path, "rules", "check")
    assert 1 == result.returncode
    assert f"{rules}:3:".encode() in result.stdout
    assert b'did you mean "network"' in result.stdout


def test_rules_test_predicts_the_daemon_for_a_dutch_helpdesk(tmp_path: Path) -> None:
    """Without a rules file, `rules test` uses the helpdesk's language as the daemon does."""
    config = write_config(tmp_path, helpdesk={"address": HELPDESK, "language": "nl"})
    mail = tmp_path / "short.eml"
    mail.write_bytes(b"From: a@example.org\r\nTo: helpdesk@example.com\r\nSubject: x\r\n\r\nok\r\n")
    result = run_cli(config, "rules", "test", str(mail), "--json")
    assert 0 == result.returncode, result.stderr
    assert "nl" == json.loads(result.stdout)["language"]
