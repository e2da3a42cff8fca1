"""Rules turn suggestions on or off and force articles (issue 14): daemon, rules check/test, kb check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.agents.conftest import FIXTURES
from tests.conftest import make_mail, run_cli, wait_until, write_config
from tests.kb.test_mailflow import SAMPLE, _parts, _to

ANNA = "Anna Smith <anna@example.org>"
JAN = "Jan Jansen <jan@example.org>"
OUTLOOK = "Hi,\n\nOutlook says my mailbox is full and I cannot send email anymore.\n\nAnna\n"

RULES = """\
version: 1
rules:
  - name: no articles for managers
    if:
      from: "*@board.example.org"
    then:
      kb_suggest: off
  - name: vpn gets its article first
    if:
      subject: vpn
    then:
      category: network
      kb_articles: [vpn-809]
  - name: finance wants suggestions
    if:
      subject: mailbox
    then:
      kb_suggest: on
"""


def _setup(tmp_path: Path, rules: str, kb: dict[str, Any] | None = None, **sections: Any) -> Path:
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE, folder)
    (tmp_path / "rules.yaml").write_text(rules, encoding="utf-8")
    return write_config(
        tmp_path,
        agents=str(FIXTURES / "agents.yaml"),
        rules=str(tmp_path / "rules.yaml"),
        kb={"folder": str(folder), **(kb or {})},
        **sections,
    )


def test_rules_win_over_the_kb_settings_in_the_daemon(daemon_factory: Any, sink: Any, tmp_path: Path) -> None:
    """kb.suggest is off, yet a rule turns it on; another forces an article; a third turns it off."""
    outbound = {"smtp": {"host": "127.0.0.1", "port": sink.port}, "maildir": None}
    path = _setup(tmp_path, RULES, {"suggest": False}, outbound=outbound)
    daemon = daemon_factory(config_path=path)

    daemon.send(make_mail(subject="Mailbox full", sender=ANNA, body=OUTLOOK), "anna@example.org")
    daemon.send(
        make_mail(subject="VPN trouble", sender=JAN, body="Hello,\n\nmy laptop will not start.\n\nJan\n"),
        "jan@example.org",
    )
    board = "Boss <ceo@board.example.org>"
    daemon.send(make_mail(subject="Mailbox full", sender=board, body=OUTLOOK), "ceo@board.example.org")
    wait_until(
        lambda: (
            _to(sink, "anna@example.org")
            and _to(sink, "jan@example.org")
            and _to(sink, "ceo@board.example.org")
        ),
        timeout=20,
    )
    anna, _ = _parts(_to(sink, "anna@example.org")[0])
    jan, jan_html = _parts(_to(sink, "jan@example.org")[0])
    ceo, _ = _parts(_to(sink, "ceo@board.example.org")[0])
    # Turned on by "finance wants suggestions" although kb.suggest is false.
    assert "1. Outlook: mailbox or OST file full" in anna
    # Forced: the body says nothing about a VPN, the article comes anyway (and suggestions are on for it).
    assert "1. VPN error 809: the connection could not be established" in jan
    assert "VPN error 809" in jan_html
    # "no articles for managers" matched first and stops: no suggestion for a clear match.
    assert "While you wait" not in ceo and "Outlook: mailbox" not in ceo
    tickets = json.loads(run_cli(path, "tickets", "list", "--json").stdout)
    reasons = {}
    for ticket in tickets:
        events = json.loads(run_cli(path, "tickets", "show", str(ticket["id"]), "--json").stdout)["events"]
        reasons[ticket["requester"]] = [
            e["detail"]["reason"] for e in events if e["kind"] in ("kb_suggested", "kb_no_suggestion")
        ]
    assert ['search (rule "finance wants suggestions" (line 14) turned suggestions on)'] == reasons[
        "anna@example.org"
    ]
    assert ['vpn-809 forced by rule "vpn gets its article first" (line 8)'] == reasons["jan@example.org"]
    assert ['rule "no articles for managers" (line 3) turned suggestions off'] == reasons[
        "ceo@board.example.org"
    ]


def test_rules_check_and_kb_check_report_unknown_articles_and_bad_values(tmp_path: Path) -> None:
    """Unknown ids and bad values are file:line:column problems; `kb check` names unknown ids too."""
    broken = RULES.replace("[vpn-809]", "[vpn-809, vpn-999]").replace("kb_suggest: on", "kb_suggest: maybe")
    path = _setup(tmp_path, broken, {"queues": {"network": {"articles": ["vpn-998"]}}})
    checked = run_cli(path, "rules", "check")
    assert 1 == checked.returncode
    lines = checked.stdout.decode().splitlines()
    rules = tmp_path / "rules.yaml"
    assert f'{rules}:13:30: kb_articles: unknown article "vpn-999" (did you mean "vpn-809"?)' in lines, lines
    assert f'{rules}:18:19: kb_suggest must be on or off (true or false), got text "maybe"' in lines, lines
    kb = run_cli(path, "kb", "check")
    assert 1 == kb.returncode
    assert [
        f"{path}: kb.queues.network.articles: no article 'vpn-998'",
        f'{rules}:13:30: kb_articles: unknown article "vpn-999" (did you mean "vpn-809"?)',
    ] == kb.stdout.decode().splitlines()

    contradiction = RULES.replace("kb_articles: [vpn-809]", "kb_articles: [vpn-809]\n      kb_suggest: off")
    (tmp_path / "rules.yaml").write_text(contradiction, encoding="utf-8")
    checked = run_cli(path, "rules", "check")
    assert 1 == checked.returncode
    assert "kb_articles offers articles but kb_suggest is off in the same rule" in checked.stdout.decode()


def test_rules_test_shows_the_suggestions_a_mail_would_get(tmp_path: Path) -> None:
    """`rules test` names the rule that decided and the articles the acknowledgement would carry."""
    path = _setup(tmp_path, RULES)
    mail = tmp_path / "vpn.eml"
    mail.write_bytes(
        make_mail(subject="VPN trouble", sender=JAN, body="Hello,\n\nmy laptop will not start.\n")
    )
    shown = run_cli(path, "rules", "test", str(mail))
    assert 0 == shown.returncode, shown.stderr.decode()
    out = shown.stdout.decode()
    assert "  kb_articles      vpn-809" in out, out
    assert (
        "kb suggestions:  vpn-809 (VPN error 809: the connection could not be established) "
        '(vpn-809 forced by rule "vpn gets its article first" (line 8))'
    ) in out, out
    board = tmp_path / "board.eml"
    board.write_bytes(make_mail(subject="Mailbox full", sender="ceo@board.example.org", body=OUTLOOK))
    data = json.loads(run_cli(path, "rules", "test", "--json", str(board)).stdout)
    assert False is data["kb_suggest"]
    assert {"articles": [], "reason": 'rule "no articles for managers" (line 3) turned suggestions off'} == (
        data["kb_suggestions"]
    )
