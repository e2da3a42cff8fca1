"""Who is the requester, end to end: the real daemon over SMTP, real mail shapes, a real relay."""

from __future__ import annotations

import time
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

from tests.agents.conftest import FIXTURES as AGENT_FIXTURES
from tests.conftest import HELPDESK, make_mail, run_cli, ticket_count, ticket_json, wait_until
from tests.conftest import reply_to_mail as _answer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "requester"
CRISP = Path(__file__).resolve().parent.parent / "corpora" / "forwards" / "crisp"
ALICE = "Alice Admin <alice@example.com>"
NOTE = "Praesent suscipit egestas hendrerit.\n\nAliquam eget dui dui."


def _daemon(daemon_factory: Any, sink: Any, **sections: Any) -> Any:
    return daemon_factory(
        outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}, "maildir": None},
        agents=str(AGENT_FIXTURES / "agents.yaml"),
        **sections,
    )


def _to(sink: Any, address: str) -> list[Message]:
    return [m.message for m in sink.messages if address in m.rcpt_tos]


def _fixture(name: str) -> bytes:
    """A fixture mail with the CRLF line ends SMTP wants (the files keep LF for reading)."""
    return (FIXTURES / name).read_bytes().replace(b"\n", b"\r\n")


def _events(ticket: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["detail"] for e in ticket["events"] if e["kind"] == kind]


def _forward(body_file: str, sender: str, to: str) -> bytes:
    """A real client's forwarded body (tests/corpora/forwards) in a mail from ``sender``."""
    body = (CRISP / body_file).read_text(encoding="utf-8-sig")
    return make_mail(subject="Fwd: Integer consequat non purus", sender=sender, to=to, body=body)


def test_contact_form_acknowledges_karin_and_the_agents_answer_reaches_her(
    daemon_factory: Any, sink: Any
) -> None:
    """From noreply@, Reply-To Karin: Karin is the requester and gets the ack and Alice's answer."""
    daemon = _daemon(daemon_factory, sink)
    daemon.send(_fixture("contact_form_noreply.eml"), "www-data@www.example.org")
    sink.wait(3)  # the ack to Karin, the notifications to alice and bob
    ack = _to(sink, "karin@customer.example")[0]
    assert '[HD-1] Website "Contact form": The invoice portal rejects my password' == str(ack["Subject"])
    answer = "Hello Karin,\n\nI reset your account.\n\nAlice\n"
    _answer(daemon, _to(sink, "alice@example.com")[-1], ALICE, answer)
    sink.wait(4)
    relay = _to(sink, "karin@customer.example")[-1]
    assert "Alice Admin via Example IT Helpdesk <helpdesk@example.com>" == str(relay["From"])
    assert "I reset your account." in relay.get_payload(decode=True).decode()
    assert [] == _to(sink, "noreply@www.example.org")
    ticket = ticket_json(daemon.config_path, 1)
    assert ("karin@customer.example", "Karin Visser") == (ticket["requester"], ticket["requester_name"])
    chosen = _events(ticket, "requester")[0]
    assert ("reply_to", None) == (chosen["source"], chosen["unmailable"])
    assert "noreply@www.example.org is a noreply or system address" in chosen["reasons"][-1]
    # The request is filed under Karin (relays answer it); the event keeps the real From.
    assert "karin@customer.example" == ticket["articles"][0]["sender"]
    assert "noreply@www.example.org" == chosen["received_from"]


def test_agents_forward_opens_a_ticket_for_the_original_sender(daemon_factory: Any, sink: Any) -> None:
    """Alice's forwards from four clients and as an attachment open John's tickets; her note internal."""
    daemon = _daemon(daemon_factory, sink, limits={"auto_replies_per_hour": 50, "auto_replies_per_day": 50})
    listed = run_cli(daemon.config_path, "agents", "forward-address", "alice")
    assert 0 == listed.returncode, listed.stderr.decode()
    key, address = listed.stdout.decode().split()
    assert "alice" == key and address.startswith("helpdesk+t0-")
    bodies = [
        "gmail_en_body_variant_2.txt",
        "outlook_live_en_body_variant_2.txt",
        "apple_mail_en_body_variant_2.txt",
        "thunderbird_en_body_variant_2.txt",
        "new_outlook_2019_en_body_variant_2.txt",
    ]
    for body in bodies:
        daemon.send(_forward(body, ALICE, address), "alice@example.com", (address,))
    inner = EmailMessage()
    inner["From"] = "John Doe <john.doe@acme.com>"
    inner["Subject"] = "Integer consequat non purus"
    inner.set_content("Aenean quis diam urna.\n")
    outer = EmailMessage()
    outer["From"] = ALICE
    outer["To"] = address
    outer["Subject"] = "Fwd: Integer consequat non purus"
    outer.set_content(NOTE + "\n")
    outer.add_attachment(inner)
    daemon.send(outer.as_bytes(), "alice@example.com", (address,))
    wait_until(lambda: ticket_count(daemon.config_path) == 6, timeout=30)
    sink.wait(6 * 3)  # per ticket: the ack to John and the notifications to alice and bob
    time.sleep(1.0)
    for number, style in enumerate(["gmail", "outlook", "apple", "thunderbird", "outlook", "attached"], 1):
        ticket = ticket_json(daemon.config_path, number)
        assert ("john.doe@acme.com", "John Doe") == (ticket["requester"], ticket["requester_name"])
        assert "Integer consequat non purus" == ticket["subject"]
        request, note = ticket["articles"][0], ticket["articles"][1]
        assert ("public", "request", "john.doe@acme.com") == (
            request["visibility"],
            request["kind"],
            request["sender"],
        )
        assert request["body_text"].startswith("Aenean quis diam urna.")
        assert "Praesent suscipit" not in request["body_text"]
        assert ("internal", "note", "alice@example.com", NOTE) == (
            note["visibility"],
            note["kind"],
            note["sender"],
            note["body_text"],
        )
        forwarded = _events(ticket, "forwarded")[0]
        assert ("alice", style) == (forwarded["opened_by"], forwarded["style"])
    to_john = _to(sink, "john.doe@acme.com")
    assert 6 == len(to_john)
    assert all("Praesent suscipit" not in m.as_string() for m in to_john)
    # Alice's answer to a notification goes to John, not to Alice.
    _answer(daemon, _to(sink, "alice@example.com")[0], ALICE, "Hello John,\n\nfixed.\n")
    wait_until(lambda: len(_to(sink, "john.doe@acme.com")) == 7, timeout=15)


def test_a_strangers_or_unauthenticated_forward_does_not_change_the_requester(
    daemon_factory: Any, sink: Any
) -> None:
    """Eve's forward, and Alice's to the plain address, stay theirs; the forwarded text stays readable."""
    daemon = _daemon(daemon_factory, sink)
    daemon.send(_forward("gmail_nl_body.txt", "Eve Stranger <eve@example.org>", HELPDESK), "eve@example.org")
    forged = run_cli(daemon.config_path, "agents", "forward-address", "bob").stdout.decode().split()[1]
    # Eve even uses Bob's forward address: it is signed for Bob, not for her.
    eve = "Eve Stranger <eve@example.org>"
    daemon.send(_forward("thunderbird_fr_body.txt", eve, forged), "eve@example.org", (forged,))
    daemon.send(_forward("gmail_de_body.txt", ALICE, HELPDESK), "alice@example.com")
    wait_until(lambda: ticket_count(daemon.config_path) == 3, timeout=20)
    sink.wait(5)
    time.sleep(1.0)
    requesters = [ticket_json(daemon.config_path, n) for n in (1, 2, 3)]
    assert ["eve@example.org", "eve@example.org", "alice@example.com"] == [t["requester"] for t in requesters]
    for ticket in requesters:
        assert [] == _events(ticket, "forwarded")
        assert "Aenean quis diam urna." in ticket["articles"][0]["body_text"]
        assert "not followed" in " ".join(_events(ticket, "requester")[0]["reasons"])
    assert [] == _to(sink, "john.doe@acme.com")


def test_dmarc_munged_list_mail_answers_the_person_not_the_list(daemon_factory: Any, sink: Any) -> None:
    """Mailman's "Jan via IT-users <list@>": Jan is the requester; the agent's answer reaches Jan alone."""
    daemon = _daemon(daemon_factory, sink)
    daemon.send(_fixture("list_dmarc_mailman.eml"), "it-users-bounces@lists.example.org")
    sink.wait(2)  # no acknowledgement to list mail (SPEC §2 promise 3); alice and bob are told
    ticket = ticket_json(daemon.config_path, 1)
    assert ("jan@example.nl", "list") == (ticket["requester"], _events(ticket, "requester")[0]["source"])
    _answer(daemon, _to(sink, "alice@example.com")[-1], ALICE, "Hello Jan,\n\nplease update the client.\n")
    sink.wait(3)
    relay = sink.messages[-1]
    assert ["jan@example.nl"] == relay.rcpt_tos
    assert [] == _to(sink, "it-users@lists.example.org")


def test_unmailable_requester_is_flagged_to_the_agents(daemon_factory: Any, sink: Any) -> None:
    """A noreply sender naming nobody else: tag, event, and "cannot be mailed" to the queue (Bob in Dutch)."""
    daemon = _daemon(daemon_factory, sink)
    daemon.send(_fixture("noreply_no_alternative.eml"), "noreply@shop.example.com")
    sink.wait(3)  # agent_notify to alice and bob, the flag to bob (queue general's member)
    time.sleep(1.0)
    flags = [m for m in _to(sink, "bob@example.com") if "niet te mailen" in str(m["Subject"])]
    assert 1 == len(flags)
    text = flags[0].get_payload(decode=True).decode()
    assert "noreply@shop.example.com is a noreply or system address" in text
    ticket = ticket_json(daemon.config_path, 1)
    assert "requester-unmailable" in ticket["tags"]
    assert 1 == len(_events(ticket, "requester_unmailable"))
    assert [] == _to(sink, "noreply@shop.example.com")


def test_reply_to_is_no_credential_and_rate_limits_bind_the_chosen_requester(
    daemon_factory: Any, sink: Any
) -> None:
    """Reply-To never threads or commands; a flood of forms naming Karin acks her only within limits."""
    daemon = _daemon(daemon_factory, sink, limits={"auto_replies_per_hour": 2, "auto_replies_per_day": 20})
    form = _fixture("contact_form_noreply.eml")
    daemon.send(form, "www-data@www.example.org")
    sink.wait(3)
    # Eve writes into HD-1 with Karin as Reply-To, and a command with Alice as Reply-To.
    daemon.send(
        make_mail(
            subject="Re: [HD-1] The invoice portal",
            sender="Eve Stranger <eve@example.org>",
            body="#close\nPlease close this.\n",
            headers={"Reply-To": "Karin Visser <karin@customer.example>, alice@example.com"},
        ),
        "eve@example.org",
    )
    for n in range(4):
        daemon.send(form.replace(b"<4f1c2a9e0b7d@", f"<flood{n}@".encode()), "www-data@www.example.org")
    wait_until(lambda: ticket_count(daemon.config_path) == 6, timeout=20)
    time.sleep(2.0)
    first = ticket_json(daemon.config_path, 1)
    assert "new" == first["status"]
    assert 1 == len([a for a in first["articles"] if a["direction"] == "in"])
    assert "eve@example.org" == ticket_json(daemon.config_path, 2)["requester"]
    # Karin is the one being mailed, so her limit counts: two acknowledgements an hour.
    assert 2 == len(_to(sink, "karin@customer.example"))
    limited = [_events(ticket_json(daemon.config_path, n), "ack_suppressed") for n in (4, 5, 6)]
    assert all("hourly limit reached" in events[0]["reason"] for events in limited), limited


def test_acknowledging_forwards_is_a_setting(daemon_factory: Any, sink: Any, tmp_path: Path) -> None:
    """acknowledge_forwards: false: John's ticket opens, John hears nothing, and the event says why."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("defaults:\n  acknowledge_forwards: false\n")
    daemon = _daemon(daemon_factory, sink, rules=str(rules))
    address = run_cli(daemon.config_path, "agents", "forward-address", "alice").stdout.decode().split()[1]
    daemon.send(_forward("apple_mail_fr_body.txt", ALICE, address), "alice@example.com", (address,))
    sink.wait(2)  # the notifications to alice and bob
    time.sleep(1.0)
    ticket = ticket_json(daemon.config_path, 1)
    assert "john.doe@acme.com" == ticket["requester"]
    assert ["defaults.acknowledge_forwards is false: no acknowledgement"] == [
        e["reason"] for e in _events(ticket, "ack_suppressed")
    ]
    assert [] == _to(sink, "john.doe@acme.com")


def test_an_auto_reply_naming_a_person_in_reply_to_is_still_not_answered(
    daemon_factory: Any, sink: Any
) -> None:
    """SPEC §2.3: the requester road may answer Reply-To instead of a noreply From, never a machine's mail."""
    daemon = _daemon(daemon_factory, sink)
    auto = make_mail(
        subject="Automatic reply: your message",
        sender="Website <noreply@www.example.org>",
        headers={"Reply-To": "Karin Visser <karin@customer.example>", "Auto-Submitted": "auto-replied"},
    )
    daemon.send(auto, "noreply@www.example.org")
    daemon.send(make_mail(subject="A person after it", sender="Piet <piet@example.org>"), "piet@example.org")
    wait_until(lambda: _to(sink, "piet@example.org"), timeout=30)
    time.sleep(1.0)
    assert [] == _to(sink, "karin@customer.example")
    assert [] == _to(sink, "noreply@www.example.org")
