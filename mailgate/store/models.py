"""Database tables: the durable inbound queue, tickets, articles, outbox.

``inbound`` is where a message becomes durable before we answer 250; the
processing stage turns each row into an article in one transaction with
everything else it causes (ticket, participants, events, outbox rows), so a
crash at any point either left the row pending (it is processed again) or
committed all of it (the row is done): exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite stores no zone and hands back naive values; normalising on the way
    in and out keeps comparisons and arithmetic the same on both backends.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use utcnow()")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Inbound(Base):
    """One raw message as it reached us, kept whole for ever (the original)."""

    __tablename__ = "inbound"
    __table_args__ = (
        # IMAP: (source "imap:support", source_key "UIDVALIDITY:UID") is stored
        # once, whichever instance or retry fetched it.
        UniqueConstraint("source", "source_key", name="uq_inbound_source_key"),
        Index("ix_inbound_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(100))
    source_key: Mapped[str | None] = mapped_column(String(200))
    # NULL: no envelope sender was recorded (unknown); "": MAIL FROM:<> (null).
    # See mailgate.message.Envelope.
    mail_from: Mapped[str | None] = mapped_column(String(500))
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, default=list)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # pending -> done | quarantined | dropped
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The process (instances.id) holding the lease: when it stops beating,
    # the lease is void at once, whatever lease_until says (store/instances.py).
    lease_owner: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        # The SLA timer's only query: tickets whose next warning or breach is
        # due. NULL (nothing to watch) is most tickets, and costs nothing.
        Index("ix_tickets_sla_next_at", "sla_next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="new")
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    queue: Mapped[str] = mapped_column(String(100), default="general")
    category: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str] = mapped_column(String(10), default="en")
    requester: Mapped[str] = mapped_column(String(500))
    requester_name: Mapped[str] = mapped_column(String(500), default="")
    assignee: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The requester's satisfaction answer to the resolution mail (1-5).
    csat_rating: Mapped[int | None] = mapped_column(Integer)
    csat_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # A reply to a closed ticket in a "new_ticket" queue opens a ticket linked here.
    linked_ticket_id: Mapped[int | None] = mapped_column(Integer)
    # Set when this ticket was merged into another: its articles live there
    # now, and its reply addresses and subject tag lead there.
    merged_into_id: Mapped[int | None] = mapped_column(Integer)
    # Service level (docs/sla.md): the level's name, the due moments, and
    # the time spent paused while pending (counted time, added to targets).
    sla: Mapped[str | None] = mapped_column(String(100))
    first_response_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    next_reply_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolution_due: Mapped[datetime | None] = mapped_column(UtcDateTime())
    sla_paused_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    sla_paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # The next moment the timer must look at this ticket (a warning or breach).
    sla_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Counted (business) seconds to the first response and to resolution, for the report.
    first_response_seconds: Mapped[int | None] = mapped_column(Integer)
    resolution_seconds: Mapped[int | None] = mapped_column(Integer)

    # In time order (SPEC §4), which after a merge or a history import is not
    # the order they were stored in.
    articles: Mapped[list[Article]] = relationship(
        back_populates="ticket", order_by="[Article.created_at, Article.id]", lazy="selectin"
    )


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (Index("ix_articles_message_id", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    # "mid:<Message-ID>" or "sha256:<hex of raw>" for inbound mail: one
    # article per message, whatever path or how often it arrived.
    dedupe_key: Mapped[str | None] = mapped_column(String(600), unique=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    visibility: Mapped[str] = mapped_column(String(10), default="public")  # public | internal
    kind: Mapped[str] = mapped_column(String(30), default="mail")  # request, reply, ack, ...
    sender: Mapped[str] = mapped_column(String(500), default="")
    sender_name: Mapped[str] = mapped_column(String(500), default="")
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    message_id: Mapped[str | None] = mapped_column(String(600))
    subject: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_full: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    threaded_by: Mapped[str] = mapped_column(String(200), default="")
    # [{filename, content_type, size, sha256, content_id, inline}]; contents
    # live once per hash in the attachments table.
    attachments: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    ticket: Mapped[Ticket] = relationship(back_populates="articles")


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "address", name="uq_participants_ticket"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    address: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20))  # requester | cc | agent


class AwaitedMessage(Base):
    """A Message-ID that a ticket's mail answers but that we have not seen yet.

    A reply can be processed before the mail it answers (an import in the
    wrong order, a slow relay); it then opens a ticket of its own. When the
    awaited mail arrives, that ticket is merged into the original's
    (``tickets/merge.py``), whatever the order was.
    """

    __tablename__ = "awaited_messages"
    __table_args__ = (UniqueConstraint("message_id", "ticket_id", name="uq_awaited_messages_ticket"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(600), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Outbox(Base):
    """One outgoing mail, durable before anyone tries to send it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_due", "state", "next_attempt_at"),
        Index("ix_outbox_rcpt_created", "rcpt", "created_at"),
        # One row per recipient: each has its own retries and outcome, and all
        # rows of one mail share its Message-ID.
        UniqueConstraint("message_id", "rcpt", name="uq_outbox_message_rcpt"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id"))
    kind: Mapped[str] = mapped_column(String(30))
    message_id: Mapped[str] = mapped_column(String(600))
    mail_from: Mapped[str] = mapped_column(String(500))
    rcpt: Mapped[str] = mapped_column(String(500))
    automatic: Mapped[bool] = mapped_column(default=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # queued -> sent | failed
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    lease_owner: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class SlaMark(Base):
    """One timer action that happened: an escalation or a digest, never twice.

    Written in the same transaction as the outbox rows it caused, so after a
    crash either both exist or neither does; the unique key makes a second
    daemon (or a restart) that tries again fail instead of mailing twice.
    """

    __tablename__ = "sla_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "esc:<ticket>:<target>:<level>[:<cycle>]" or "digest:<day>:<address>"
    key: Mapped[str] = mapped_column(String(600), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))  # warning | breach | skipped | digest
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class AttachmentBlob(Base):
    """Attachment contents, stored once per SHA-256 whatever how many mails carry them."""

    __tablename__ = "attachment_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Suppression(Base):
    """An address we do not mail automatically (hard bounce), until cleared."""

    __tablename__ = "suppressions"

    address: Mapped[str] = mapped_column(String(500), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Instance(Base):
    """One running mailgate process: a daemon, or one of its workers.

    Each writes ``heartbeat_at`` every few seconds. A process that stops
    beating for ``STALE_SECONDS`` (store/instances.py) is dead to the
    others: its leases are void and its roles go to another daemon. Rows
    stay a week for ``mailgate doctor`` to show recent deaths.
    """

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The configured instance name (`instance.name`, default the host name).
    name: Mapped[str] = mapped_column(String(200))
    # daemon | processing | delivery; a worker names its daemon.
    kind: Mapped[str] = mapped_column(String(20))
    parent_id: Mapped[int | None] = mapped_column(Integer, index=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    # What the daemon listens on, for `mailgate doctor`.
    listeners: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Set on a clean stop, or by the daemon when it saw its worker die.
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Role(Base):
    """Work that only one daemon may do at a time: an IMAP account, the timers.

    Held by a live daemon; taken by another once the holder stops beating.
    """

    __tablename__ = "roles"

    # "imap:<account>" | "timers"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder_id: Mapped[int | None] = mapped_column(Integer)
    since: Mapped[datetime | None] = mapped_column(UtcDateTime())
