"""A helpdesk mailbox written the way an MTA delivers it, in a shuffled order.

Requests and replies to them (some replying to earlier replies) are each
given a delivery time; every file is named the Maildir way after that time
(``<seconds>.M<usec>P<pid>.<host>``), and the files are created in a random
order so that the directory lists them in no useful order. Used by the
import tests and ``bench/import_bench.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

HELPDESK = "helpdesk@example.com"


@dataclass(frozen=True)
class Mail:
    message_id: str
    root: str  # the Message-ID of the request this conversation started with
    delivered: datetime
    raw: bytes
    is_reply: bool


def _raw(
    sender: str, subject: str, message_id: str, date: datetime, body: str, refs: tuple[str, ...]
) -> bytes:
    lines = [
        f"Return-Path: <{sender}>",
        f"From: {sender}",
        f"To: {HELPDESK}",
        f"Subject: {subject}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    if refs:
        lines += [f"In-Reply-To: {refs[-1]}", f"References: {' '.join(refs)}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def conversations(
    requests: int, replies: int, *, start: datetime, seed: int = 10, chained_share: float = 0.25
) -> list[Mail]:
    """``requests`` new requests a minute apart, and ``replies`` replies written
    between 2 and 120 minutes after the mail they answer (a share of them to
    an earlier reply rather than to the request), in delivery order."""
    rng = random.Random(seed)
    mails: list[Mail] = []
    threads: list[list[Mail]] = []
    senders: list[str] = []
    for n in range(requests):
        sender = f"user{n}@example.org"
        at = start + timedelta(minutes=n)
        message_id = f"<req-{n}.{seed}@example.org>"
        body = f"Hello,\n\nrequest number {n}: the thing in room {n % 97} does not work.\n\nUser {n}\n"
        mail = Mail(message_id, message_id, at, _raw(sender, f"Problem {n}", message_id, at, body, ()), False)
        mails.append(mail)
        threads.append([mail])
        senders.append(sender)
    for n in range(replies):
        index = rng.randrange(requests)
        thread = threads[index]
        answered = thread[-1] if len(thread) > 1 and rng.random() < chained_share else thread[0]
        at = answered.delivered + timedelta(minutes=rng.randint(2, 120), seconds=rng.randint(0, 59))
        message_id = f"<reply-{n}.{seed}@example.org>"
        refs = tuple(m.message_id for m in thread[: thread.index(answered) + 1])
        body = f"Any news about this? (follow-up {n})\n\n> request number {index}\n"
        raw = _raw(senders[index], f"Re: Problem {index}", message_id, at, body, refs)
        reply = Mail(message_id, thread[0].message_id, at, raw, True)
        thread.append(reply)
        mails.append(reply)
    return sorted(mails, key=lambda m: m.delivered)


def write_shuffled_maildir(folder: Path, mails: list[Mail], *, seed: int = 10) -> Path:
    """The mails as Maildir files named by delivery time, created in random order."""
    for sub in ("new", "cur", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    order = list(enumerate(mails))
    random.Random(seed).shuffle(order)
    for n, mail in order:
        seconds = int(mail.delivered.timestamp())
        name = f"{seconds}.M{mail.delivered.microsecond}P{1000 + n}.mx.example.org"
        # Mail a client has seen sits in cur/ with its flags after ":2,".
        if n % 3:
            (folder / "cur" / f"{name}:2,S").write_bytes(mail.raw)
        else:
            (folder / "new" / name).write_bytes(mail.raw)
    return folder


def default_start() -> datetime:
    return datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
