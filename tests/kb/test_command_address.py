"""The kb command address, through the real daemon over SMTP (issue 14, docs/kb.md).

Agents mail search words to helpdesk+kb@example.com and get the best
articles privately; only an authenticated agent gets results, nobody's mail
opens a ticket, and no machine is answered.
"""

from __future__ import annotations

import json
import shutil
import time
from email.message import Message
from pathlib import Path
from typing import Any

from tests.agents.conftest import FIXTURES
from tests.conftest import make_mail, run_cli, tickets_json, wait_until
from tests.conftest import reply_to_mail as _reply
from tests.kb.test_mailflow import SAMPLE, _parts, _start, _to

KB = "helpdesk+kb@example.com"
ALICE = "Alice Admin <alice@example.com>"
BOB = "Bob Beheer <bob@example.com>"


def _listed(mail: Message) -> list[str]:
    text, _ = _parts(mail)
    return [line.split()[1] for line in text.splitlines() if line.startswith("  #kb ")]


def _quarantined(daemon: Any) -> list[str]:
    result = run_cli(daemon.config_path, "quarantine", "list", "--json")
    assert 0 == result.returncode, result.stderr.decode()
    return [str(row["reason"]) for row in json.loads(result.stdout)]


def _signed(daemon: Any, agent: str) -> str:
    result = run_cli(daemon.config_path, "kb", "address", agent)
    assert 0 == result.returncode, result.stderr.decode()
    return result.stdout.decode().strip()


def test_agent_searches_by_mail_and_gets_private_results_with_ids(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """Plain address: a refusal naming Alice's own address; replying there: the matches, in her language."""
    daemon, _ = _start(daemon_factory, sink, tmp_path)
    daemon.send(
        make_mail(subject="kb", sender=ALICE, to=KB, body="#kb search vpn 809\n"), "alice@example.com", (KB,)
    )
    refusal = wait_until(lambda: _to(sink, "alice@example.com"), timeout=15)[0]
    text, _ = _parts(refusal)
    own = _signed(daemon, "alice")
    assert own.startswith("helpdesk+kb-") and own.endswith("@example.com")
    assert own in text and own == str(refusal["Reply-To"])
    assert "the plain address cannot tell it is you" in text
    assert [] == _listed(refusal)

    # The agent answers the refusal as a mail client does: to its Reply-To.
    _reply(daemon, refusal, ALICE, "vpn 809\n")
    wait_until(lambda: len(_to(sink, "alice@example.com")) >= 2, timeout=15)
    found = _to(sink, "alice@example.com")[-1]
    print("\nThe search results as Alice saw them:\n" + _parts(found)[0])
    assert "vpn-809" == _listed(found)[0]
    assert 'Knowledge base: "vpn 809"' == str(found["Subject"])
    assert own == str(found["Reply-To"])
    assert "VPN error 809: the connection could not be established" in _parts(found)[0]

    # Searching again is replying to the results; `#kb search` lines work as well as bare words.
    _reply(daemon, found, ALICE, "#kb search printer paper jam\n#kb search outlook mailbox full\n")
    wait_until(lambda: len(_to(sink, "alice@example.com")) >= 3, timeout=15)
    again = _to(sink, "alice@example.com")[-1]
    listed = _listed(again)
    assert "printer-jam" == listed[0] and "outlook-ost-full" in listed, listed

    # Bob works in Dutch: Dutch words, Dutch titles, a Dutch mail.
    daemon.send(
        make_mail(subject="zoeken", sender=BOB, to=_signed(daemon, "bob"), body="wachtwoord verlopen\n"),
        "bob@example.com",
        (_signed(daemon, "bob"),),
    )
    bob = wait_until(lambda: _to(sink, "bob@example.com"), timeout=15)[-1]
    assert "password-expired" == _listed(bob)[0]
    assert "Uw wachtwoord is verlopen: zo stelt u een nieuw in" in _parts(bob)[0]
    assert "Artikelen voor" in _parts(bob)[0]

    # Nothing of this is a ticket, and nobody else got mail.
    assert [] == tickets_json(daemon.config_path)
    assert {"alice@example.com", "bob@example.com"} == {r for m in sink.messages for r in m.rcpt_tos}


def test_strangers_forgers_and_machines_get_no_results(
    daemon_factory: Any, sink: Any, tmp_path: Path
) -> None:
    """A stranger: quarantined, unanswered. Alice's From to Bob's address: a notice to Alice only.
    An out-of-office to Alice's address: dropped. A failed DKIM check: refused. No ticket at all."""
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE, folder)
    daemon = daemon_factory(
        outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}, "maildir": None},
        agents=str(FIXTURES / "agents.yaml"),
        kb={"folder": str(folder)},
        trusted_authserv_ids=["mx.example.com"],
    )
    alice_own, bob_own = _signed(daemon, "alice"), _signed(daemon, "bob")

    stranger = make_mail(subject="#kb search vpn 809", sender="Eve <eve@example.net>", to=KB, body="")
    daemon.send(stranger, "eve@example.net", (KB,))
    daemon.send(
        make_mail(subject="vpn", sender="eve@example.net", to=alice_own, body="vpn\n"),
        "eve@example.net",
        (alice_own,),
    )
    wait_until(lambda: len(_quarantined(daemon)) >= 2, timeout=15)
    assert all("not an agent" in reason for reason in _quarantined(daemon))

    # Alice's From on Bob's address: the address says it is not hers.
    daemon.send(
        make_mail(subject="vpn", sender=ALICE, to=bob_own, body="vpn 809\n"), "alice@example.com", (bob_own,)
    )
    notice = wait_until(lambda: _to(sink, "alice@example.com"), timeout=15)[0]
    assert "this one was not issued to you" in _parts(notice)[0]
    assert [] == _listed(notice)

    # A DKIM failure our own MTA recorded: not believed, whatever the address.
    failed = make_mail(
        subject="vpn",
        sender=ALICE,
        to=alice_own,
        body="vpn 809\n",
        headers={"Authentication-Results": "mx.example.com; dkim=fail header.d=example.com; dmarc=fail"},
    )
    daemon.send(failed, "alice@example.com", (alice_own,))
    wait_until(lambda: len(_to(sink, "alice@example.com")) >= 2, timeout=15)
    refused = _to(sink, "alice@example.com")[-1]
    assert "You could not be authenticated: no DKIM or DMARC pass" in _parts(refused)[0]
    assert [] == _listed(refused)

    # An out-of-office answering our results (RFC 3834): never answered, so no loop.
    auto = make_mail(
        subject="Out of office",
        sender=ALICE,
        to=alice_own,
        body="I am away until Monday.\n",
        headers={"Auto-Submitted": "auto-replied"},
    )
    daemon.send(auto, "alice@example.com", (alice_own,))
    dropped = daemon.wait_for("process.kb_address", timeout=15, count=5)
    assert "dropped" == dropped["state"]
    time.sleep(1.0)  # a reply to the out-of-office, if any, would have been delivered by now
    assert 2 == len(_to(sink, "alice@example.com"))
    assert [] == _to(sink, "eve@example.net")
    assert [] == tickets_json(daemon.config_path)

    # The same search delivered twice (a retried SMTP session): answered once.
    passed = {"Authentication-Results": "mx.example.com; dkim=pass header.d=example.com; dmarc=pass"}
    twice = make_mail(
        subject="vpn",
        sender=ALICE,
        to=alice_own,
        body="vpn 809\n",
        message_id="<twice@example.com>",
        headers=passed,
    )
    daemon.send(twice, "alice@example.com", (alice_own,))
    daemon.send(twice, "alice@example.com", (alice_own,))
    daemon.wait_for("process.kb_address", timeout=15, count=7)
    time.sleep(1.0)
    answers = _to(sink, "alice@example.com")[2:]
    assert 1 == len(answers), [str(m["Subject"]) for m in answers]
    assert "vpn-809" == _listed(answers[0])[0]
