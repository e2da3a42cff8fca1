"""Mail into a cluster: an MTA that retries, and an IMAP feeder.

``Mta`` sends each mail over SMTP as a relay with several next hops does: to
one instance first, and on a refused connection, a dropped one or a 4xx
answer, after a short pause to the next instance, until one answers 250.
Every answer that was not 250 is kept, so the 451s while PostgreSQL is away
and the mails a killed instance never answered can be counted.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import smtplib
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate

from tests.cluster.instances import ACK_MARK, HELPDESK, Cluster, OutMail, RecordingSink

BODY = (
    "Hello,\r\n\r\n"
    "since this morning the printer on the third floor refuses every job I send.\r\n"
    "Colleagues have the same problem. Could you have a look?\r\n\r\n"
    "Kind regards,\r\n"
)


@dataclass
class Sent:
    """One mail given to the cluster, and what became of it at the door."""

    message_id: str
    sender: str
    kind: str  # request | reply | imap | again (a request's second copy)
    subject: str
    raw: bytes
    # For a reply: the Message-ID of the request it answers.
    parent: str | None = None
    rcpt: str = HELPDESK
    accepted_at: float | None = None  # time.time() of the 250 (or IMAP APPEND)
    accepted_by: str | None = None
    tries: int = 0
    # Every answer or error that was not the final 250, in order.
    refusals: list[str] = field(default_factory=list)


def new_message_id(tag: str) -> str:
    return f"<{tag}.{uuid.uuid4().hex[:16]}@customers.example>"


def request(number: int, tag: str, *, urgent: bool = False) -> Sent:
    """A new request from its own address (one requester, one ticket)."""
    sender = f"req-{tag}-{number}@customers.example"
    subject = f"{'URGENT ' if urgent else ''}printer {tag}-{number} is broken"
    message_id = new_message_id(f"{tag}-{number}")
    raw = _mail(sender, HELPDESK, subject, message_id, {})
    return Sent(message_id, sender, "request", subject, raw)


def reply(to_request: Sent, ack: OutMail, number: int) -> Sent:
    """The requester answers the acknowledgement, as a mail client does."""
    message_id = new_message_id(f"re-{number}")
    rcpt = _address(ack.reply_to) or HELPDESK
    subject = "Re: " + ack.subject
    headers = {"In-Reply-To": ack.message_id, "References": ack.message_id}
    raw = _mail(to_request.sender, rcpt, subject, message_id, headers, "It still does not work.\r\n")
    return Sent(message_id, to_request.sender, "reply", subject, raw, parent=to_request.message_id, rcpt=rcpt)


def imap_request(number: int, tag: str) -> Sent:
    sender = f"imap-{tag}-{number}@customers.example"
    subject = f"mailbox {tag}-{number} is full"
    message_id = new_message_id(f"imap-{tag}-{number}")
    raw = _mail(sender, HELPDESK, subject, message_id, {"Return-Path": f"<{sender}>"})
    return Sent(message_id, sender, "imap", subject, raw)


def _address(header: str) -> str:
    return header.rpartition("<")[2].rstrip(">").strip() if header else ""


def _mail(
    sender: str, to: str, subject: str, message_id: str, headers: dict[str, str], body: str = BODY
) -> bytes:
    lines = [*(f"{name}: {value}" for name, value in headers.items() if name == "Return-Path")]
    lines += [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items() if name != "Return-Path"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class Mta:
    """``connections`` threads delivering a queue of mails to the cluster's instances."""

    def __init__(self, cluster: Cluster, *, connections: int = 4, give_up_after: float = 300.0) -> None:
        self.cluster = cluster
        self.connections = connections
        self.give_up_after = give_up_after
        self._queue: queue.Queue[Sent | None] = queue.Queue(maxsize=connections * 4)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self.sent: list[Sent] = []
        self.accepted = 0
        self.on_accepted: Callable[[Sent], None] | None = None

    def start(self) -> Mta:
        for number in range(self.connections):
            thread = threading.Thread(target=self._run, name=f"mta-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def submit(self, mail: Sent) -> None:
        with self._lock:
            self.sent.append(mail)
        self._queue.put(mail)

    def close(self, timeout: float | None = None) -> None:
        """No more mail; wait until every queued mail was accepted or given up."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        clients: dict[int, smtplib.SMTP] = {}
        try:
            while True:
                mail = self._queue.get()
                if mail is None:
                    return
                self._deliver(mail, clients)
        finally:
            for client in clients.values():
                with contextlib.suppress(Exception):
                    client.quit()

    def _deliver(self, mail: Sent, clients: dict[int, smtplib.SMTP]) -> None:
        instances = self.cluster.instances
        first = next(self._turn)
        deadline = time.monotonic() + self.give_up_after
        pause = 0.1
        for turn in itertools.count(first):
            if time.monotonic() > deadline:
                mail.refusals.append("gave up")
                return
            index = turn % len(instances)
            mail.tries += 1
            try:
                client = clients.get(index)
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", instances[index].smtp_port, timeout=15)
                    clients[index] = client
                refused = client.sendmail(mail.sender, [mail.rcpt], mail.raw)
                if refused:
                    raise smtplib.SMTPRecipientsRefused(refused)
            except smtplib.SMTPResponseException as exc:
                mail.refusals.append(f"{instances[index].name}: {exc.smtp_code} {exc.smtp_error[:60]!r}")
                _drop(clients, index)
            except (OSError, smtplib.SMTPException) as exc:
                mail.refusals.append(f"{instances[index].name}: {type(exc).__name__}")
                _drop(clients, index)
            else:
                mail.accepted_at = time.time()
                mail.accepted_by = instances[index].name
                with self._lock:
                    self.accepted += 1
                if self.on_accepted is not None:
                    self.on_accepted(mail)
                return
            # The next hop after a pause, as a relay with several destinations does.
            time.sleep(pause)
            pause = min(1.0, pause * 1.5)


def _drop(clients: dict[int, smtplib.SMTP], index: int) -> None:
    client = clients.pop(index, None)
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()


class AckIndex:
    """Acknowledgements at the sink by the request they answer (In-Reply-To)."""

    def __init__(self, sink: RecordingSink) -> None:
        self.sink = sink
        self._seen = 0
        self._by_request: dict[str, OutMail] = {}

    def refresh(self) -> dict[str, OutMail]:
        mails = self.sink.mails()
        for mail in mails[self._seen :]:
            if mail.in_reply_to and ACK_MARK in mail.body:
                self._by_request.setdefault(mail.in_reply_to, mail)
        self._seen = len(mails)
        return self._by_request


class Traffic:
    """New requests, a share of replies to requests already acknowledged, and a
    share of requests given again (an MTA that timed out and retried elsewhere)."""

    def __init__(
        self,
        sink: RecordingSink,
        tag: str,
        *,
        reply_every: int = 10,
        urgent_every: int = 0,
        again_every: int = 0,
    ) -> None:
        self.acks = AckIndex(sink)
        self.tag = tag
        self.reply_every = reply_every
        self.urgent_every = urgent_every
        self.again_every = again_every
        self._requests: list[Sent] = []
        self._next_reply = 0
        self._count = 0

    def next(self) -> Sent:
        self._count += 1
        number = self._count
        # Urgent ones and copies fall between the replies' turns.
        urgent = bool(self.urgent_every) and number % self.urgent_every == self.urgent_every // 2
        again = bool(self.again_every) and number % self.again_every == self.again_every // 3
        if not urgent and self.reply_every and number % self.reply_every == 0:
            found = self._reply(number)
            if found is not None:
                return found
        if again and self._requests:
            # The newest request, likely still in flight on another connection
            # to another instance: both copies race.
            first = self._requests[-1]
            return Sent(first.message_id, first.sender, "again", first.subject, first.raw)
        mail = request(number, self.tag, urgent=urgent)
        self._requests.append(mail)
        return mail

    def _reply(self, number: int) -> Sent | None:
        """A reply to the oldest request not answered yet whose ack has arrived."""
        acks = self.acks.refresh()
        for index in range(self._next_reply, min(len(self._requests), self._next_reply + 50)):
            earlier = self._requests[index]
            if earlier.message_id in acks:
                # Those skipped stay unanswered: fine, replies are a share.
                self._next_reply = index + 1
                return reply(earlier, acks[earlier.message_id], number)
        return None


class ImapFeeder:
    """APPENDs one new request every ``interval`` seconds to an IMAP mailbox."""

    def __init__(self, client_factory: Callable[[], object], tag: str, interval: float, count: int) -> None:
        self._client_factory = client_factory
        self.tag = tag
        self.interval = interval
        self.count = count
        self.sent: list[Sent] = []
        self._numbers = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imap-feeder", daemon=True)

    def start(self) -> ImapFeeder:
        self._thread.start()
        return self

    def append_one(self, client: object | None = None) -> Sent:
        mail = imap_request(next(self._numbers), self.tag)
        own = client is None
        client = client or self._client_factory()
        try:
            client.append("INBOX", mail.raw)  # type: ignore[attr-defined]
        finally:
            if own:
                client.logout()  # type: ignore[attr-defined]
        mail.accepted_at = time.time()
        mail.accepted_by = "imap"
        self.sent.append(mail)
        return mail

    def _run(self) -> None:
        client = self._client_factory()
        try:
            while len(self.sent) < self.count and not self._stop.wait(self.interval):
                self.append_one(client)
        finally:
            with contextlib.suppress(Exception):
                client.logout()  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def all_sent(*groups: Iterable[Sent]) -> list[Sent]:
    return [mail for group in groups for mail in group]
