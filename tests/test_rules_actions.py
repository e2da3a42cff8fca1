"""The rule actions that send mail: `notify:` and `reject:` with a notice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import make_mail
from tests.helpers import deliver, outbox_mails

RULES = """
rules:
  - name: phishing reports
    if: {subject: phishing}
    then: {notify: [security@example.com], tags: [security]}
  - name: no executables
    if:
      attachment: {name: "*.exe"}
    then:
      reject: {notice: rejected, reason: executable attachments are not accepted}
"""


def with_exe(sender: str, headers: dict[str, str] | None = None) -> bytes:
    head = make_mail(sender=sender, subject="run this tool", headers=headers).split(b"\r\n\r\n", 1)[0]
    head = head.replace(
        b"Content-Type: text/plain; charset=utf-8", b'Content-Type: multipart/mixed; boundary="b1"'
    )
    body = (
        b"--b1\r\nContent-Type: text/plain\r\n\r\nRun it.\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="tool.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--\r\n"
    )
    return head + b"\r\n\r\n" + body


def runtime_with_rules(runtime_factory: Any, tmp_path: Path) -> Any:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return runtime_factory(rules=str(rules))


def test_notify_tells_the_listed_address_and_still_acknowledges(runtime_factory: Any, tmp_path: Path) -> None:
    """`notify:` sends the named address a 'for your information' mail with the request text."""
    runtime = runtime_with_rules(runtime_factory, tmp_path)
    result = deliver(runtime, make_mail(subject="Phishing mail from our bank?", body="Is this real?\n"))
    assert "done" == result.state
    by_rcpt = {str(m["To"]): m for m in outbox_mails(runtime)}
    notice = by_rcpt["security@example.com"]
    assert f"[HD-{result.ticket_id}] For your information: Phishing mail from our bank?" == notice["Subject"]
    assert "Is this real?" in notice.get_payload(decode=True).decode()
    assert "auto-generated" == notice["Auto-Submitted"]
    assert any("alice@example.org" in to for to in by_rcpt)  # the acknowledgement still goes out


def test_reject_with_a_notice_tells_the_sender_why_and_opens_no_ticket(
    runtime_factory: Any, tmp_path: Path
) -> None:
    """A rejected mail gets one notice with the admin's reason (not our rule's name) and no ticket."""
    runtime = runtime_with_rules(runtime_factory, tmp_path)
    result = deliver(runtime, with_exe("Alice <alice@example.org>"))
    assert "rejected" == result.state
    assert result.ticket_id is None
    (notice,) = outbox_mails(runtime)
    assert "Your message was not accepted: run this tool" == notice["Subject"]
    text = notice.get_payload(decode=True).decode()
    assert "executable attachments are not accepted" in text
    assert "no executables" not in text
    assert 'rule "' not in text


def test_reject_never_answers_a_machine(runtime_factory: Any, tmp_path: Path) -> None:
    """An auto-reply that trips a reject rule is refused silently: no notice, no loop."""
    runtime = runtime_with_rules(runtime_factory, tmp_path)
    result = deliver(runtime, with_exe("robot@example.org", headers={"Auto-Submitted": "auto-replied"}))
    assert "rejected" == result.state
    assert "no notice: auto_reply" in result.reason
    assert [] == outbox_mails(runtime)
