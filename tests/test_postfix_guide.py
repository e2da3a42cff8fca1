"""docs/deployment.md, followed with a real Postfix: the guide is a tested artefact.

Postfix (Debian's package, installed by scripts/ensure-postfix.sh) runs as
a throwaway instance with the guide's own main.cf lines and transport map,
read from the blocks marked ``tested:`` in the guide (tests/postfix_instance.py
says what is changed for the test machine: paths and loopback ports only).
mailgate runs from the guide's ``mailgate.yaml`` with the shipped rules and
agents examples copied as the guide says. People have local mailboxes:
Carol the requester, Bob the agent (the example's hardware queue), Alice.

What the guide promises and this test checks, through real sockets only:
a request gets an acknowledgement in the requester's mailbox; her reply
joins the same ticket; the agent's mailed answer reaches her; while
mailgate is stopped Postfix defers the helpdesk's mail and bounces nothing,
and after the restart ``postqueue -f`` delivers it exactly once.
"""

from __future__ import annotations

import secrets
import shutil
import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import pytest

from tests.conftest import REPO, DaemonProcess, free_port, run_cli, ticket_json, tickets_json, wait_until
from tests.postfix_instance import PostfixInstance, guide_blocks, localise

HELPDESK = "helpdesk@example.com"
CAROL = "carol@example.com"
BOB = "bob@example.com"  # agents.example.yaml: Bob de Vries, member of the hardware queue
MAILBOXES = ("carol", "bob", "alice")
TIMEOUT = 60.0  # generous: a loaded shared machine, two Postfix queue runs per hop


@pytest.fixture
def postfix() -> Iterator[PostfixInstance]:
    """The guide's Postfix on loopback; stopped and removed even when the test fails."""
    assert shutil.which("postfix"), "no postfix: run `make services` (scripts/ensure-postfix.sh)"
    instance = PostfixInstance.create(lmtp_port=free_port(), smtp_port=free_port(), mailboxes=MAILBOXES)
    try:
        blocks = guide_blocks()
        instance.write(blocks)
        instance.start()
        instance.shell(blocks["postfix-apply"])  # postmap … && postfix reload, as the guide says
        yield instance
    finally:
        instance.stop()
        instance.remove()


@pytest.fixture
def mailgate(postfix: PostfixInstance) -> Iterator[DaemonProcess]:
    """``mailgate run`` from the guide's mailgate.yaml and the shipped examples, copied as it says."""
    places = postfix.places
    conf = places.mailgate_config
    shutil.copy(REPO / "config" / "rules.example.yaml", conf / "rules.yaml")
    shutil.copy(REPO / "config" / "agents.example.yaml", conf / "agents.yaml")
    (conf / "reply.key").write_text(secrets.token_hex(32) + "\n")
    (conf / "reply.key").chmod(0o600)
    (conf / "mailgate.yaml").write_text(localise(guide_blocks()["mailgate-yaml"], places))
    daemon = DaemonProcess(conf / "mailgate.yaml")
    try:
        yield daemon.start(timeout=TIMEOUT)
    finally:
        daemon.kill()


def submit(postfix: PostfixInstance, message: EmailMessage) -> None:
    """Hand a mail to Postfix's SMTP service, as a mail client or another MTA would."""
    with smtplib.SMTP("127.0.0.1", postfix.places.smtp_port, timeout=30) as client:
        client.send_message(message)


def mail(sender: str, to: str, subject: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="example.com")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def reply_to(message: EmailMessage) -> str:
    """Where a mail client sends a reply: Reply-To, else From."""
    return parseaddr(str(message["Reply-To"] or message["From"]))[1]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, f"no text part in {message['Subject']!r}"
    return str(part.get_content())


Wanted = Callable[[EmailMessage], bool]


def wait_for_mail(postfix: PostfixInstance, box: str, predicate: Wanted, what: str) -> EmailMessage:
    def found() -> EmailMessage | None:
        matching = [m for m in postfix.mailbox(box) if predicate(m)]
        return matching[0] if matching else None

    try:
        return wait_until(found, timeout=TIMEOUT, interval=0.2)  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(
            f"{what}: not in {box}'s mailbox within {TIMEOUT}s; it holds "
            f"{[str(m['Subject']) for m in postfix.mailbox(box)]}; Postfix log tail:\n"
            + "\n".join(postfix.log().splitlines()[-30:])
        ) from None


def about(subject_words: str) -> Wanted:
    return lambda m: subject_words in str(m["Subject"])


def test_guide_postfix_lmtp_flow_and_mailgate_downtime(
    postfix: PostfixInstance, mailgate: DaemonProcess
) -> None:
    config = mailgate.config_path

    # 1. A request through Postfix, over LMTP into mailgate: the acknowledgement
    #    goes out through Postfix into Carol's mailbox.
    submit(postfix, mail(f"Carol Example <{CAROL}>", HELPDESK, "Printer on floor 3 is broken", "It jams.\n"))
    ack = wait_for_mail(postfix, "carol", about("Printer on floor 3"), "the acknowledgement")
    assert HELPDESK == parseaddr(str(ack["From"]))[1]
    [ticket] = tickets_json(config)
    assert ticket["ref"] in str(ack["Subject"]), (ticket["ref"], str(ack["Subject"]))
    assert CAROL == ticket["requester"]
    assert "hardware" == ticket["queue"]  # rules.example.yaml, copied as the guide says

    # 2. Carol replies to the acknowledgement, as her mail client would: same ticket.
    submit(
        postfix,
        mail(
            f"Carol Example <{CAROL}>",
            reply_to(ack),
            f"Re: {ack['Subject']}",
            "It is the HP in room 3.14.\n",
            In_Reply_To=str(ack["Message-ID"]),
            References=str(ack["Message-ID"]),
        ),
    )

    def reply_stored() -> bool:
        articles = ticket_json(config, ticket["id"])["articles"]
        return any("room 3.14" in (a["body_text"] or "") for a in articles)

    wait_until(reply_stored, timeout=TIMEOUT, interval=0.3)
    assert [ticket["id"]] == [t["id"] for t in tickets_json(config)]

    # 3. Bob (the hardware queue's agent) was told by mail and answers by mail;
    #    mailgate relays his answer to Carol through Postfix.
    notice = wait_for_mail(postfix, "bob", lambda m: ticket["ref"] in str(m["Subject"]), "Bob's notification")
    assert "+" in reply_to(notice), f"not a signed reply address: {reply_to(notice)}"
    submit(
        postfix,
        mail(
            f"Bob de Vries <{BOB}>",
            reply_to(notice),
            f"Re: {notice['Subject']}",
            "Please use tray 2 until the engineer has been.\n",
            In_Reply_To=str(notice["Message-ID"]),
        ),
    )
    answer = wait_for_mail(postfix, "carol", lambda m: "tray 2" in text_of(m), "Bob's answer")
    assert HELPDESK == parseaddr(str(answer["From"]))[1]
    assert "Bob de Vries" in str(answer["From"])
    assert ticket["ref"] in str(answer["Subject"])
    assert [ticket["id"]] == [t["id"] for t in tickets_json(config)]

    # 4. mailgate stopped: Postfix defers the helpdesk's mail and bounces nothing.
    assert 0 == mailgate.stop()
    submit(postfix, mail(f"Carol Example <{CAROL}>", HELPDESK, "VPN drops every hour", "Since Monday.\n"))

    def deferred() -> list[dict[str, object]]:
        return [m for m in postfix.queue() if m.get("queue_name") == "deferred"]

    [held] = wait_until(deferred, timeout=TIMEOUT, interval=0.3)
    [recipient] = held["recipients"]
    assert HELPDESK == recipient["address"]
    assert "Connection refused" in str(recipient.get("delay_reason")), recipient
    assert "status=deferred" in postfix.log()

    # 5. mailgate back, `postqueue -f` as the guide says: delivered exactly once.
    mailgate.start(timeout=TIMEOUT)
    postfix.flush()
    vpn_ack = wait_for_mail(postfix, "carol", about("VPN drops"), "the acknowledgement after the restart")
    wait_until(lambda: not postfix.queue(), timeout=TIMEOUT, interval=0.3)
    postfix.flush()  # a second flush finds nothing to send again
    time.sleep(2)  # a second acknowledgement, if one were coming, has had its time (two hops on loopback)
    vpn_tickets = [t for t in tickets_json(config) if "VPN" in t["subject"]]
    assert 1 == len(vpn_tickets), vpn_tickets
    assert vpn_tickets[0]["ref"] in str(vpn_ack["Subject"])
    assert 1 == len([m for m in postfix.mailbox("carol") if "VPN drops" in str(m["Subject"])])
    assert 2 == len(tickets_json(config))

    # Never a bounce: nothing from MAILER-DAEMON in any mailbox, no bounced status in the log.
    log = postfix.log()
    assert "status=bounced" not in log, log
    for box in MAILBOXES:
        senders = [str(m["From"]) for m in postfix.mailbox(box)]
        assert not [s for s in senders if "MAILER-DAEMON" in s.upper()], (box, senders)
    result = run_cli(config, "outbox", "list", "--state", "failed")
    assert 0 == result.returncode, result.stderr.decode()
