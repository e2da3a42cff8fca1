"""A person's data on request (GDPR/AVG articles 15 and 17): export and erase.

Everything mailgate holds about an address is found the same way for both:
tickets it requested or took part in, the articles it sent or received,
the raw mail (inbound and outbox), events, suppressions. Rate-limit counts
are read from the outbox, so they go with it.

Erasing keeps the helpdesk's figures: tickets, articles and their times
stay (reports count them), but the address becomes a random
``erased-…@erased.invalid`` (random, not a hash: a hash of an address can be
guessed back), the person's names become ``[erased]``, what the person wrote
is replaced by a notice, and their attachments go unless another mail holds
the same file. On SQLite the freed pages are then overwritten (VACUUM, WAL
truncated), so the bytes are gone from the files, not only from the rows.
The erasure is recorded as an event that names no address.
"""

from __future__ import annotations

import json
import re
import secrets
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, cast, delete, func, or_, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailgate.store.db import SqliteWriteLock, read_only, sqlite_file, transaction
from mailgate.store.models import (
    Article,
    AttachmentBlob,
    Event,
    Inbound,
    Outbox,
    Participant,
    Suppression,
    Ticket,
)

ERASED_TEXT = "[erased at the person's request]"
# How long erase waits for the attachment table (see lock_blobs); a
# backup holds it for its whole run, and erase then fails in words.
ERASE_LOCK_WAIT = 30.0


@dataclass
class Holdings:
    """Row ids that hold something about one address."""

    tickets: set[int] = field(default_factory=set)  # requested or took part in
    own_articles: set[int] = field(default_factory=set)  # written by the address
    articles: set[int] = field(default_factory=set)  # mention it in any other way
    inbound: set[int] = field(default_factory=set)
    outbox: set[int] = field(default_factory=set)
    events: set[int] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    suppressed: bool = False

    def empty(self) -> bool:
        return not (
            self.tickets or self.articles or self.own_articles or self.inbound or self.outbox
        ) and not (self.suppressed or self.events)


def normalise(address: str) -> str:
    address = address.strip().lower()
    if "@" not in address or any(c.isspace() for c in address):
        raise ValueError(f"{address!r} is not a mail address")
    return address


def find(session: Session, address: str) -> Holdings:
    held = Holdings()
    postgresql = session.get_bind().dialect.name == "postgresql"
    pattern = f"%{address}%"
    held.tickets |= set(session.scalars(select(Ticket.id).where(Ticket.requester == address)))
    held.tickets |= set(session.scalars(select(Participant.ticket_id).where(Participant.address == address)))
    for name in session.scalars(select(Ticket.requester_name).where(Ticket.requester == address)):
        if name:
            held.names.add(name)
    for article_id, sender, name in session.execute(
        select(Article.id, Article.sender, Article.sender_name).where(
            or_(
                Article.sender == address,
                Article.ticket_id.in_(held.tickets),
                json_text(Article.recipients).ilike(pattern),
                Article.body_full.ilike(pattern),
            )
        )
    ):
        if sender == address:
            held.own_articles.add(article_id)
            if name:
                held.names.add(name)
        else:
            held.articles.add(article_id)
    held.inbound |= set(
        session.scalars(select(Article.inbound_id).where(Article.id.in_(held.own_articles | held.articles)))
    ) - {None}  # type: ignore[arg-type]
    held.inbound |= set(
        session.scalars(select(Inbound.id).where(_bytes_contain(Inbound.raw, address, postgresql)))
    )
    held.outbox |= set(
        session.scalars(
            select(Outbox.id).where(
                or_(Outbox.rcpt == address, _bytes_contain(Outbox.raw, address, postgresql))
            )
        )
    )
    held.events |= set(
        session.scalars(
            select(Event.id).where(
                or_(Event.ticket_id.in_(held.tickets), json_text(Event.detail).ilike(pattern))
            )
        )
    )
    held.suppressed = session.get(Suppression, address) is not None
    return held


def json_text(column: Any) -> Any:
    return cast(column, String)


def _bytes_contain(column: Any, address: str, postgresql: bool) -> Any:
    # Raw mail is bytes, and the address may be in any case there.
    # PostgreSQL casts bytea to its hex form; 'escape' keeps ASCII readable.
    readable = func.encode(column, "escape") if postgresql else cast(column, String)
    return readable.ilike(f"%{address}%")


def export(sessions: sessionmaker[Session], address: str, target: Path) -> Holdings:
    """Write a readable archive of everything held about ``address``."""
    address = normalise(address)
    with read_only(), sessions() as session:
        held = find(session, address)
        tickets = [
            _ticket_record(ticket)
            for ticket in session.scalars(
                select(Ticket).where(Ticket.id.in_(held.tickets)).order_by(Ticket.id)
            )
        ]
        articles = list(
            session.scalars(
                select(Article).where(Article.id.in_(held.own_articles | held.articles)).order_by(Article.id)
            )
        )
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("README.txt", _readme(address, held))
            archive.writestr("tickets.json", json.dumps(tickets, indent=2, ensure_ascii=False, default=str))
            archive.writestr(
                "articles.json",
                json.dumps([_article_record(a) for a in articles], indent=2, ensure_ascii=False, default=str),
            )
            for row in session.scalars(select(Inbound).where(Inbound.id.in_(held.inbound))):
                archive.writestr(f"mail/received-{row.id}.eml", row.raw)
            for sent in session.scalars(select(Outbox).where(Outbox.id.in_(held.outbox))):
                archive.writestr(f"mail/sent-{sent.id}.eml", sent.raw)
            for article in articles:
                for item in article.attachments or []:
                    digest = str(item.get("sha256") or "")
                    blob = session.get(AttachmentBlob, digest) if digest else None
                    if blob is not None:
                        archive.writestr(
                            f"attachments/{article.id}/{item.get('filename') or digest}", blob.content
                        )
            events = session.scalars(select(Event).where(Event.id.in_(held.events)).order_by(Event.id))
            archive.writestr(
                "events.json",
                json.dumps(
                    [
                        {"ticket_id": e.ticket_id, "kind": e.kind, "detail": e.detail, "at": e.created_at}
                        for e in events
                    ],
                    indent=2,
                    ensure_ascii=False,
                    default=str,
                ),
            )
    return held


def erase(sessions: sessionmaker[Session], engine: Engine, address: str) -> Holdings:
    """Remove or anonymise everything held about ``address``; idempotent."""
    address = normalise(address)
    token = f"erased-{secrets.token_hex(6)}@erased.invalid"
    with transaction(sessions) as session:
        held = find(session, address)
        if held.empty():
            return held
        lock_blobs(session, wait_seconds=ERASE_LOCK_WAIT)
        swap = _Swapper(address, token, held.names)
        session.execute(
            update(Ticket).where(Ticket.requester == address).values(requester=token, requester_name="")
        )
        session.execute(update(Participant).where(Participant.address == address).values(address=token))
        blobs: set[str] = set()
        for article in session.scalars(select(Article).where(Article.id.in_(held.own_articles))):
            blobs |= {str(item.get("sha256")) for item in article.attachments or [] if item.get("sha256")}
            article.sender, article.sender_name = token, ""
            article.body_text = article.body_full = ERASED_TEXT
            article.body_html = None
            article.subject = swap.text(article.subject)
            article.recipients = [swap.text(r) for r in article.recipients or []]
            article.attachments = []
        for article in session.scalars(select(Article).where(Article.id.in_(held.articles))):
            article.body_text, article.body_full = swap.text(article.body_text), swap.text(article.body_full)
            article.body_html = swap.text(article.body_html) if article.body_html else None
            article.recipients = [swap.text(r) for r in article.recipients or []]
            article.subject = swap.text(article.subject)
        own_inbound = set(
            session.scalars(select(Article.inbound_id).where(Article.id.in_(held.own_articles)))
        )
        for row in session.scalars(select(Inbound).where(Inbound.id.in_(held.inbound))):
            if row.id in own_inbound:
                row.raw = b"X-Mailgate-Erased: the sender's request\r\n\r\n"
            else:
                row.raw = swap.bytes(row.raw)
            row.mail_from = swap.text(row.mail_from) if row.mail_from else row.mail_from
            row.rcpt_tos = [swap.text(r) for r in row.rcpt_tos or []]
        for out in session.scalars(select(Outbox).where(Outbox.id.in_(held.outbox))):
            out.rcpt, out.raw = swap.text(out.rcpt), swap.bytes(out.raw)
            out.last_error = swap.text(out.last_error) if out.last_error else None
        for event in session.scalars(select(Event).where(Event.id.in_(held.events))):
            event.detail = json.loads(swap.text(json.dumps(event.detail, ensure_ascii=False)))
        session.execute(delete(Suppression).where(Suppression.address == address))
        drop_unused_blobs(session, blobs)
        session.add(
            Event(
                ticket_id=None,
                kind="privacy_erased",
                detail={
                    "tickets": len(held.tickets),
                    "articles": len(held.own_articles | held.articles),
                    "mails": len(held.inbound | held.outbox),
                    "at": datetime.now(UTC).isoformat(),
                },
            )
        )
    forget_freed_pages(engine)
    return held


class BlobsBusy(Exception):
    """The attachment table could not be locked in time; ``str()`` says why in words."""


def lock_blobs(session: Session, *, wait_seconds: float) -> None:
    """Before deleting attachment files on PostgreSQL: lock their table, readers too.

    Another instance may be storing a mail that carries one of them right
    now: it found the file already stored, so it only lists it, and its
    article is not visible here until it commits. Deleting then would leave
    that article listing a file that is gone. ACCESS EXCLUSIVE waits for
    every transaction that has looked files up, and the check that follows
    (``drop_unused_blobs``) sees their articles; one that looks files up
    later waits, then finds the file gone and stores it again. Take it
    before changing any other row: a processing transaction that holds the
    table and waits for a row this one changed would be a deadlock. Waits at
    most ``wait_seconds`` (the lock queues everything behind it), then
    ``BlobsBusy``. On SQLite the writers' lock already keeps them apart.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'"))
    try:
        with session.begin_nested():
            session.execute(text("LOCK TABLE attachment_blobs IN ACCESS EXCLUSIVE MODE"))
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise BlobsBusy(
            f"the attachment files are in use for more than {wait_seconds:.0f} s "
            "(a backup running? pg_dump reads them from start to end)"
        ) from None
    session.execute(text("SET LOCAL lock_timeout = 0"))


def drop_unused_blobs(session: Session, blobs: set[str] | None) -> int:
    """Delete the attachment files among ``blobs`` (None: all) that no article lists.

    On PostgreSQL only after ``lock_blobs`` in the same transaction.
    """
    candidates = set(session.scalars(select(AttachmentBlob.sha256))) if blobs is None else blobs
    gone = candidates - blobs_in_use(session, candidates)
    if gone:
        session.execute(delete(AttachmentBlob).where(AttachmentBlob.sha256.in_(gone)))
    return len(gone)


def blobs_in_use(session: Session, blobs: set[str]) -> set[str]:
    if not blobs:
        return set()
    used: set[str] = set()
    for listed in session.scalars(
        select(Article.attachments).where(json_text(Article.attachments).ilike("%sha256%"))
    ):
        used |= {str(item.get("sha256")) for item in listed or []} & blobs
    return used


def forget_freed_pages(engine: Engine) -> None:
    """On SQLite, deleted rows linger in free pages and the WAL until rewritten."""
    import sqlite3

    database = sqlite_file(engine.url)
    if database is None:
        return
    # Outside SQLAlchemy: its connections begin every transaction IMMEDIATE,
    # and neither VACUUM nor a checkpoint may run inside one. The writers'
    # lock keeps the daemon's writers queued meanwhile.
    with SqliteWriteLock(database.resolve()):
        connection = sqlite3.connect(database, isolation_level=None, timeout=60)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.execute("VACUUM")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()


class _Swapper:
    """Replaces the address (any case) and the person's names."""

    def __init__(self, address: str, token: str, names: set[str]) -> None:
        self._address = re.compile(re.escape(address), re.IGNORECASE)
        self._address_bytes = re.compile(re.escape(address.encode()), re.IGNORECASE)
        self._token = token
        usable = sorted((n for n in names if len(n) >= 3), key=len, reverse=True)
        self._names = re.compile("|".join(re.escape(n) for n in usable)) if usable else None
        self._names_bytes = re.compile(b"|".join(re.escape(n.encode()) for n in usable)) if usable else None

    def text(self, value: str) -> str:
        value = self._address.sub(self._token, value)
        return self._names.sub("[erased]", value) if self._names else value

    def bytes(self, value: bytes) -> bytes:
        value = self._address_bytes.sub(self._token.encode(), value)
        return self._names_bytes.sub(b"[erased]", value) if self._names_bytes else value


def _ticket_record(ticket: Ticket) -> dict[str, Any]:
    from mailgate.store.ticket_json import ticket_dict

    return ticket_dict(ticket)


def _article_record(article: Article) -> dict[str, Any]:
    from mailgate.store.ticket_json import article_dict

    record = article_dict(article)
    record["ticket_id"] = article.ticket_id
    return record


def _readme(address: str, held: Holdings) -> str:
    return (
        f"Everything this helpdesk holds about {address},\n"
        f"exported {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n\n"
        f"tickets.json   {len(held.tickets)} tickets this address requested or took part in\n"
        f"articles.json  {len(held.own_articles)} messages it wrote, "
        f"{len(held.articles)} others that name it\n"
        f"mail/          the original mails as received (received-*.eml) and as sent (sent-*.eml)\n"
        f"attachments/   files attached to those messages\n"
        f"events.json    what happened to those tickets\n"
        f"suppressed     {'yes: mail to this address bounced and is not sent' if held.suppressed else 'no'}\n"
    )
