"""The knowledge base in the mail flow, through the real daemon over SMTP (issue 14)."""

from __future__ import annotations

import json
import shutil
import time
from email.message import Message
from pathlib import Path
from typing import Any

from tests.agents.conftest import FIXTURES
from tests.conftest import make_mail, run_cli, ticket_json, wait_until
from tests.conftest import reply_to_mail as _reply

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "kb.example"
JAN = "Jan Jansen <jan@example.org>"
ANNA = "Anna Smith <anna@example.org>"


def _start(daemon_factory: Any, sink: Any, tmp_path: Path, **kb: Any) -> tuple[Any, Path]:
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE, folder)
    daemon = daemon_factory(
        outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}, "maildir": None},
        agents=str(FIXTURES / "agents.yaml"),
        kb={"folder": str(folder), "drafts_folder": str(tmp_path / "drafts"), **kb},
    )
    return daemon, folder


def _to(sink: Any, address: str) -> list[Message]:
    return [m.message for m in sink.messages if address in m.rcpt_tos]


def _parts(mail: Message) -> tuple[str, str]:
    """The text/plain and text/html parts, decoded."""
    text = html = ""
    for part in mail.walk():
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_type() == "text/plain":
            text += payload.decode(part.get_content_charset() or "utf-8")
        elif part.get_content_type() == "text/html":
            html += payload.decode(part.get_content_charset() or "utf-8")
    return text, html


def _report(daemon: Any) -> dict[str, Any]:
    result = run_cli(daemon.config_path, "report", "--json")
    assert 0 == result.returncode, result.stderr.decode()
    return dict(json.loads(result.stdout)["knowledge_base"])


def _kinds(daemon: Any, ticket: int = 1) -> list[str]:
    return [e["kind"] for e in ticket_json(daemon.config_path, ticket)["events"]]


def test_dutch_request_gets_dutch_suggestions_and_solved_resolves_as_self_service(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """A Dutch VPN question: the ack offers the VPN article in Dutch; `opgelost` resolves, no CSAT mail."""
    daemon, _ = _start(daemon_factory, sink, tmp_path)
    body = (
        "Goedemorgen,\n\nIk krijg steeds foutmelding 809 als ik thuis verbinding wil maken met de VPN. "
        "Mijn router heb ik al herstart, maar het werkt nog steeds niet.\n\nMet vriendelijke groet,\nJan\n"
    )
    daemon.send(make_mail(subject="VPN werkt niet thuis", sender=JAN, body=body), "jan@example.org")
    sink.wait(2)
    ack = _to(sink, "jan@example.org")[0]
    text, html = _parts(ack)
    print("\nThe acknowledgement as the requester saw it:\n" + text)
    assert "VPN-fout 809: de verbinding kan niet worden gemaakt" in text
    assert "Antwoord dan `opgelost`" in text
    assert "VPN-fout 809" in html and "<ol>" in html
    assert "error 809" not in text
    offered = [e for e in ticket_json(daemon.config_path, 1)["events"] if e["kind"] == "kb_suggested"]
    assert [["vpn-809"]] == [e["detail"]["articles"] for e in offered]

    sent_before = len(sink.messages)
    _reply(daemon, ack, JAN, "Opgelost, bedankt!\n\nJan\n")
    wait_until(lambda: ticket_json(daemon.config_path, 1)["status"] == "resolved", timeout=15)
    ticket = ticket_json(daemon.config_path, 1)
    self_service = [e for e in ticket["events"] if e["kind"] == "self_service"]
    assert 1 == len(self_service)
    assert ["vpn-809"] == self_service[0]["detail"]["articles"]
    time.sleep(1.5)  # a resolved/CSAT mail, if any, would have been delivered by now
    assert sent_before == len(sink.messages), [str(m.message["Subject"]) for m in sink.messages]
    assert 1 == _report(daemon)["self_service_resolved"]


def test_english_request_gets_english_suggestions_and_unrelated_gets_none(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """English question: English article; a coffee-machine mail: no suggestion at all."""
    daemon, _ = _start(daemon_factory, sink, tmp_path)
    daemon.send(
        make_mail(
            subject="Outlook mailbox full",
            sender=ANNA,
            body="Hi,\n\nOutlook says my mailbox is full and I cannot send email anymore.\n\nAnna\n",
        ),
        "anna@example.org",
    )
    daemon.send(
        make_mail(
            subject="Coffee machine",
            sender=JAN,
            body="Hello,\n\nThe coffee machine on the third floor is leaking water.\n\nJan\n",
        ),
        "jan@example.org",
    )
    sink.wait(4)
    anna, _ = _parts(_to(sink, "anna@example.org")[0])
    jan, _ = _parts(_to(sink, "jan@example.org")[0])
    assert "Outlook: mailbox or OST file full" in anna
    assert "reply `solved`" in anna
    assert "solved" not in jan and "While you wait" not in jan
    coffee = next(t for t in (1, 2) if ticket_json(daemon.config_path, t)["requester"] == "jan@example.org")
    assert "kb_no_suggestion" in _kinds(daemon, coffee)


def test_agent_kb_answer_reaches_requester_with_article_in_both_parts(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """Alice answers with `#kb printer-jam`; Jan gets her words and the article, text and HTML."""
    daemon, _ = _start(daemon_factory, sink, tmp_path, suggest=False)
    daemon.send(make_mail(sender=JAN, body="Hello,\n\nthe copier keeps jamming.\n\nJan\n"), "jan@example.org")
    sink.wait(3)
    notify = _to(sink, "alice@example.com")[-1]
    _reply(daemon, notify, "Alice Admin <alice@example.com>", "#kb printer-jam\nHi Jan, this should help.\n")
    wait_until(lambda: len(_to(sink, "jan@example.org")) >= 2, timeout=15)
    answer = _to(sink, "jan@example.org")[-1]
    text, html = _parts(answer)
    print("\nThe answer as the requester saw it:\n" + text)
    assert "Hi Jan, this should help." in text
    assert "Printer paper jam: clearing it safely" in text
    assert "Pull the paper out slowly" in text
    assert "<h2>Printer paper jam: clearing it safely</h2>" in html
    assert "<li>Pull the paper out slowly" in html
    assert "Hi Jan, this should help." in html
    assert "#kb" not in text
    used = [e for e in ticket_json(daemon.config_path, 1)["events"] if e["kind"] == "kb_used"]
    assert [("printer-jam", "alice")] == [(e["detail"]["article"], e["detail"]["agent"]) for e in used]
    report = _report(daemon)
    assert [{"article": "printer-jam", "uses": 1}] == report["top_articles"]
    assert 0 == report["self_service_resolved"]


def test_kb_search_mails_the_agent_privately_and_unknown_id_is_refused(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """`#kb search vpn 809` alone: a private list with ids to the agent, nothing to the requester."""
    daemon, _ = _start(daemon_factory, sink, tmp_path, suggest=False)
    daemon.send(make_mail(sender=JAN, body="Hello,\n\nVPN fails.\n\nJan\n"), "jan@example.org")
    sink.wait(3)
    notify = _to(sink, "alice@example.com")[-1]
    _reply(daemon, notify, "alice@example.com", "#kb search vpn 809\n")
    wait_until(lambda: len(_to(sink, "alice@example.com")) >= 2, timeout=15)
    found = _to(sink, "alice@example.com")[-1]
    text, _ = _parts(found)
    listed = [line.split()[1] for line in text.splitlines() if line.startswith("  #kb ")]
    assert "vpn-809" == listed[0], text
    assert 'Articles for "vpn 809"' in str(found["Subject"])
    assert 1 == len(_to(sink, "jan@example.org"))  # only the acknowledgement
    _reply(daemon, notify, "alice@example.com", "#kb vpn-999\nSee below.\n")
    wait_until(lambda: len(_to(sink, "alice@example.com")) >= 3, timeout=15)
    refusal, _ = _parts(_to(sink, "alice@example.com")[-1])
    assert "no article 'vpn-999'" in refusal
    assert 1 == len(_to(sink, "jan@example.org"))


def test_kb_draft_writes_a_checkable_article_file(daemon_factory: Any, sink: Any, tmp_path: Path) -> None:
    """`#kb draft` with an answer: the answer is relayed and a draft file that `kb check` accepts appears."""
    from mailgate.kb.loader import check_folder

    daemon, _ = _start(daemon_factory, sink, tmp_path, suggest=False)
    daemon.send(
        make_mail(sender=JAN, body="Hello,\n\nthe badge reader rejects me.\n\nJan\n"), "jan@example.org"
    )
    sink.wait(3)
    notify = _to(sink, "alice@example.com")[-1]
    answer = "#kb draft\nHold the badge flat against the reader for two seconds; it reads only the middle.\n"
    _reply(daemon, notify, "alice@example.com", answer)
    wait_until(lambda: len(_to(sink, "jan@example.org")) >= 2, timeout=15)
    drafts = tmp_path / "drafts"
    knowledge, problems = check_folder(drafts)
    assert [] == problems
    article = knowledge.get("draft-hd-1")
    assert article is not None
    assert "Hold the badge flat" in article.bodies["en"]
    assert "kb_draft" in _kinds(daemon)


def test_broken_article_is_refused_with_its_line_and_last_good_set_stays(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """A broken file while running: logged as file:line, and suggestions still come from the old set."""
    daemon, folder = _start(daemon_factory, sink, tmp_path)
    broken = folder / "vpn-809.md"
    lines = broken.read_text(encoding="utf-8").split("\n")
    lines[1] = "id: VPN 809!"  # line 2 of the file
    broken.write_text("\n".join(lines), encoding="utf-8")
    refused = daemon.wait_for("kb.reload_refused", timeout=20)
    assert [f"{broken}:2: id must be lowercase letters, digits and '-', e.g. vpn-809"] == refused["problems"]
    daemon.send(
        make_mail(subject="VPN error 809", sender=ANNA, body="Hi,\n\nI get VPN error 809 at home.\n\nAnna\n"),
        "anna@example.org",
    )
    sink.wait(2)
    text, _ = _parts(_to(sink, "anna@example.org")[0])
    assert "VPN error 809: the connection could not be established" in text


def test_queue_settings_turn_suggestions_off_or_force_articles(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """Queue general: no suggestions even for a clear match; queue network: its forced article first."""
    daemon, _ = _start(
        daemon_factory,
        sink,
        tmp_path,
        queues={"general": {"suggest": False}, "network": {"articles": ["wifi-eduroam"]}},
    )
    outlook = "Hi,\n\nOutlook says my mailbox is full and I cannot send email anymore.\n\nAnna\n"
    daemon.send(make_mail(subject="Mailbox full", sender=ANNA, body=outlook), "anna@example.org")
    vpn = "Hello,\n\nI get VPN error 809 when I connect from home.\n\nJan\n"
    daemon.send(
        make_mail(subject="VPN error 809", sender=JAN, to="network@example.com", body=vpn),
        "jan@example.org",
        ("network@example.com",),
    )
    wait_until(lambda: _to(sink, "anna@example.org") and _to(sink, "jan@example.org"), timeout=20)
    anna, _ = _parts(_to(sink, "anna@example.org")[0])
    jan, _ = _parts(_to(sink, "jan@example.org")[0])
    assert "While you wait" not in anna
    assert jan.index("1. Connecting to eduroam Wi-Fi") < jan.index("2. VPN error 809")
