"""Agents by mail, in-process: notifications, relay, notes, commands, lifecycle."""

from __future__ import annotations

from email.message import Message
from typing import Any

from mailgate.store.models import Event
from tests.conftest import make_mail
from tests.helpers import deliver, outbox_mails, ticket

JAN = "Jan Jansen <jan@example.org>"


def mails_to(runtime: Any, address: str) -> list[Message]:
    return [m for m in outbox_mails(runtime) if address in (m["To"] or "") + (m["Cc"] or "")]


def answer(
    runtime: Any,
    to_mail: Message,
    sender: str,
    body: str,
    headers: dict[str, str] | None = None,
    to: str | None = None,
) -> Any:
    """Reply to one of our mails as a mail client would: To its Reply-To, In-Reply-To its Message-ID."""
    raw = make_mail(
        subject="Re: " + str(to_mail["Subject"]),
        sender=sender,
        to=to or str(to_mail["Reply-To"]),
        body=body,
        headers={"In-Reply-To": str(to_mail["Message-ID"]), **(headers or {})},
    )
    address = sender.rpartition("<")[2].rstrip(">")
    return deliver(runtime, raw, address, (to or str(to_mail["Reply-To"]),))


def opened(runtime: Any) -> tuple[Message, Message]:
    """Jan asks; returns (the ack to Jan, the notification to alice)."""
    deliver(runtime, make_mail(sender=JAN, body="Hello,\n\nthe printer jams.\n\nJan\n"), "jan@example.org")
    return mails_to(runtime, "jan@example.org")[0], mails_to(runtime, "alice@example.com")[0]


def events(runtime: Any, kind: str) -> list[dict[str, Any]]:
    with runtime.sessions() as session:
        return [e.detail for e in session.query(Event).filter(Event.kind == kind).order_by(Event.id)]


def test_new_ticket_notifies_queue_members_with_text_and_own_reply_address(desk: Any) -> None:
    """Each member gets the request text and fields in their language, with a reply address bound to them."""
    _, to_alice = opened(desk)
    (to_bob,) = mails_to(desk, "bob@example.com")
    assert "[HD-1] New ticket: Printer on floor 3 is broken" == to_alice["Subject"]
    assert "[HD-1] Nieuw ticket: Printer on floor 3 is broken" == to_bob["Subject"]
    assert "the printer jams" in to_alice.get_payload(decode=True).decode()
    assert to_alice["Reply-To"] != to_bob["Reply-To"]


def test_agent_reply_is_relayed_from_the_helpdesk_with_threading(desk: Any) -> None:
    """An authenticated reply reaches Jan from the helpdesk as "Alice via …", trimmed, first response set."""
    _, to_alice = opened(desk)
    body = "Please restart it.\n\nOn Mon, Helpdesk wrote:\n> the printer jams\n"
    assert "done" == answer(desk, to_alice, "Alice Admin <alice@example.com>", body).state
    relay = mails_to(desk, "jan@example.org")[-1]
    assert "Alice Admin via Example IT Helpdesk <helpdesk@example.com>" == relay["From"]
    assert "[HD-1] Printer on floor 3 is broken" == relay["Subject"]
    text = relay.get_payload(decode=True).decode()
    assert "Please restart it." in text and "> the printer jams" not in text
    assert relay["Auto-Submitted"] is None
    assert relay["In-Reply-To"] is not None and "example.org" in relay["In-Reply-To"]
    found = ticket(desk, 1)
    assert ("open", "alice@example.com") == (found.status, found.assignee)
    assert found.first_response_at is not None


def test_agent_reply_from_alternate_address_is_authenticated(desk: Any) -> None:
    """An agent writing from an alternate address with their own reply address is relayed."""
    _, to_alice = opened(desk)
    before = len(mails_to(desk, "jan@example.org"))
    answer(desk, to_alice, "Alice <alice.admin@example.net>", "On it.\n")
    assert before + 1 == len(mails_to(desk, "jan@example.org"))


def test_commands_only_mail_sends_only_the_status_mail(desk: Any) -> None:
    """#status pending alone changes the status and sends Jan the waiting mail, nothing else."""
    _, to_alice = opened(desk)
    before = len(outbox_mails(desk))
    answer(desk, to_alice, "alice@example.com", "#status pending\n#priority high\n#tag printer\n")
    new = outbox_mails(desk)[before:]
    assert ["[HD-1] We are waiting for you: Printer on floor 3 is broken"] == [m["Subject"] for m in new]
    found = ticket(desk, 1)
    assert ("pending", "high", ["printer"]) == (found.status, found.priority, found.tags)


def test_internal_note_never_reaches_the_requester_whatever_the_headers(desk: Any) -> None:
    """#internal with the requester in To, Cc and Reply-To still only goes to the other agents."""
    _, to_alice = opened(desk)
    before = len(outbox_mails(desk))
    headers = {"Cc": JAN, "Reply-To": JAN, "Bcc": "jan@example.org"}
    answer(desk, to_alice, "alice@example.com", "#internal\nJan's printer is out of warranty.\n", headers)
    new = outbox_mails(desk)[before:]
    assert ["Bob Beheer <bob@example.com>"] == [m["To"] for m in new]
    assert all(m["Cc"] is None for m in new)
    found = ticket(desk, 1)
    assert "internal" == found.articles[-1].visibility or "internal" == found.articles[-2].visibility
    with desk.sessions() as session:
        from mailgate.store.models import Outbox

        assert [] == [
            r.rcpt
            for r in session.query(Outbox).filter(Outbox.kind == "note", Outbox.rcpt != "bob@example.com")
        ]


def test_mail_to_comment_address_is_an_internal_note(desk: Any) -> None:
    """Writing to the queue's comment address (with the agent's token) makes a note, not a relay."""
    _, to_alice = opened(desk)
    token = str(to_alice["Reply-To"]).split("+", 1)[1]
    before = len(mails_to(desk, "jan@example.org"))
    answer(desk, to_alice, "alice@example.com", "Ordered a new fuser.\n", to=f"helpdesk-notes+{token}")
    assert before == len(mails_to(desk, "jan@example.org"))
    assert ["Bob Beheer <bob@example.com>"] == [m["To"] for m in mails_to(desk, "bob@example.com")[1:]]


def test_forged_agent_mail_changes_nothing_and_is_not_relayed(desk: Any) -> None:
    """A mail From alice to Jan's reply address (not hers) is kept internal; alice is told why."""
    ack, _ = opened(desk)
    before = len(mails_to(desk, "jan@example.org"))
    answer(desk, ack, "Alice Admin <alice@example.com>", "#close\nDone.\n")
    assert before == len(mails_to(desk, "jan@example.org"))
    assert "new" == ticket(desk, 1).status
    notice = mails_to(desk, "alice@example.com")[-1]
    assert notice["Subject"].startswith("[HD-1] Not done:")


def test_bad_command_value_changes_nothing_and_explains(desk: Any) -> None:
    """#priority sky and #frobnicate are refused in one notice; the text is not relayed."""
    _, to_alice = opened(desk)
    before = len(mails_to(desk, "jan@example.org"))
    answer(desk, to_alice, "alice@example.com", "#priority sky\n#frobnicate\nHello Jan\n")
    assert before == len(mails_to(desk, "jan@example.org"))
    notice = mails_to(desk, "alice@example.com")[-1].get_payload(decode=True).decode()
    assert "#priority sky" in notice and "#frobnicate: unknown command" in notice
    assert "normal" == ticket(desk, 1).priority


def test_failed_dkim_from_trusted_host_refuses_commands(runtime_factory: Any) -> None:
    """With a trusted Authentication-Results saying dkim=fail, the agent's token alone is not enough."""
    from tests.agents.conftest import FIXTURES

    desk = runtime_factory(agents=str(FIXTURES / "agents.yaml"), trusted_authserv_ids=["mx.example.com"])
    _, to_alice = opened(desk)
    headers = {"Authentication-Results": "mx.example.com; dkim=fail header.d=example.com; dmarc=fail"}
    answer(desk, to_alice, "alice@example.com", "#resolve\n", headers)
    assert "new" == ticket(desk, 1).status
    headers = {"Authentication-Results": "mx.example.com; dkim=pass header.d=example.com"}
    answer(desk, to_alice, "alice@example.com", "#resolve\n", headers)
    assert "resolved" == ticket(desk, 1).status


def test_resolution_rating_thanks_once_and_thanks_do_not_reopen(desk: Any) -> None:
    """Jan rates 5 (recorded, thanked), rates again (not thanked twice), says thanks: still resolved."""
    _, to_alice = opened(desk)
    answer(desk, to_alice, "alice@example.com", "#resolve\n")
    resolved = mails_to(desk, "jan@example.org")[-1]
    assert resolved["Subject"].startswith("[HD-1] Resolved:")
    answer(desk, resolved, JAN, "5\n")
    answer(desk, resolved, JAN, "4\n")
    answer(desk, resolved, JAN, "Thanks a lot!\n\nJan\n")
    subjects = [m["Subject"] for m in mails_to(desk, "jan@example.org")]
    assert 1 == sum("Thank you for your rating" in s for s in subjects)
    found = ticket(desk, 1)
    assert ("resolved", 4) == (found.status, found.csat_rating)


def test_real_reply_to_resolved_reopens_and_notifies(desk: Any) -> None:
    """A reply with a new problem reopens the ticket and tells the assignee."""
    _, to_alice = opened(desk)
    answer(desk, to_alice, "alice@example.com", "Fixed it.\n#status resolved\n")
    answer(desk, to_alice, "alice@example.com", "#resolve\n")
    resolved = mails_to(desk, "jan@example.org")[-1]
    answer(desk, resolved, JAN, "It jams again since this morning, on every page.\n")
    assert "open" == ticket(desk, 1).status
    assert "[HD-1] Reply: Printer on floor 3 is broken" == mails_to(desk, "alice@example.com")[-1]["Subject"]


def test_out_of_office_does_not_reopen(desk: Any) -> None:
    """An auto-reply to the resolution mail leaves the ticket resolved and answers nothing."""
    _, to_alice = opened(desk)
    answer(desk, to_alice, "alice@example.com", "#resolve\n")
    resolved = mails_to(desk, "jan@example.org")[-1]
    before = len(outbox_mails(desk))
    answer(desk, resolved, JAN, "I am out of the office until Monday.\n", {"Auto-Submitted": "auto-replied"})
    assert ("resolved", before) == (ticket(desk, 1).status, len(outbox_mails(desk)))


def test_reply_to_closed_ticket_in_new_ticket_queue_opens_linked_ticket(desk: Any) -> None:
    """Queue network (reopen: new_ticket) answers a late reply with a new ticket linked to the old."""
    deliver(
        desk,
        make_mail(sender=JAN, to="network@example.com", body="VPN is down.\n"),
        "jan@example.org",
        ("network@example.com",),
    )
    assert "network" == ticket(desk, 1).queue
    (to_bob,) = mails_to(desk, "bob@example.com")
    answer(desk, to_bob, "bob@example.com", "#close\n")
    closed = mails_to(desk, "jan@example.org")[-1]
    result = answer(desk, closed, JAN, "The VPN is down again, same error.\n")
    assert 2 == result.ticket_id
    assert (1, "network") == (ticket(desk, 2).linked_ticket_id, ticket(desk, 2).queue)
    assert "closed" == ticket(desk, 1).status


def test_auto_close_closes_quiet_resolved_tickets(desk: Any) -> None:
    """After the configured quiet period a resolved ticket is closed, with an event and no mail."""
    from datetime import UTC, datetime, timedelta

    from mailgate.tickets.pipeline import Processor

    _, to_alice = opened(desk)
    answer(desk, to_alice, "alice@example.com", "#resolve\n")
    before = len(outbox_mails(desk))
    processor = Processor(desk)
    assert 0 == processor.maybe_auto_close(datetime.now(UTC) + timedelta(hours=71))
    processor._next_auto_close = datetime.now(UTC)
    assert 1 == processor.maybe_auto_close(datetime.now(UTC) + timedelta(hours=73))
    assert ("closed", before) == (ticket(desk, 1).status, len(outbox_mails(desk)))
    assert "auto-close" == events(desk, "status_changed")[-1]["by"]


def test_agent_reply_keeps_its_attachments(desk: Any) -> None:
    """A file an agent attaches reaches the requester byte for byte, with its name."""
    import base64

    from mailgate.threading.tokens import reply_address

    opened(desk)
    manual = b"%PDF-1.4 printer manual " + bytes(range(256)) * 8
    to = reply_address("helpdesk@example.com", desk.keys, 1, "alice@example.com")
    raw = (
        "From: Alice Admin <alice@example.com>\r\n"
        f"To: {to}\r\nSubject: Re: [HD-1] Printer on floor 3 is broken\r\n"
        "Message-ID: <alice-file@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe manual, page 12.\r\n"
        "--b1\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename*=utf-8''Handleiding%20printer%20%C3%A9.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(manual).decode() + "\r\n--b1--\r\n"
    ).encode()
    assert "done" == deliver(desk, raw, "alice@example.com", (to,)).state
    relay = mails_to(desk, "jan@example.org")[-1]
    files = [part for part in relay.walk() if part.get_content_disposition() == "attachment"]
    assert ["Handleiding printer é.pdf"] == [part.get_filename() for part in files]
    assert manual == files[0].get_payload(decode=True)
    assert "The manual, page 12." in relay.get_payload(0).get_payload(decode=True).decode()
    # The agent's article keeps the file too, stored once by its hash.
    import hashlib

    from mailgate.tickets.attachment_store import load_attachment

    with desk.sessions() as session:
        assert manual == load_attachment(session.connection(), hashlib.sha256(manual).hexdigest())
