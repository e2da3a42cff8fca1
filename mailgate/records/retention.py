"""Retention: mail content is kept no longer than the configuration says.

Three policies (``retention:`` in the configuration, each off unless set):

* ``originals_days``: the raw mails (as received, as sent) and attachment
  files of resolved or closed tickets go; the articles stay readable.
* ``tickets_days``: whole resolved or closed tickets are anonymised. What
  people wrote, their addresses and names, subjects, participants, raw mail
  and attachments go; the ticket row keeps the figures reports are made of
  (created/first response/resolved/closed times, status, priority, queue,
  category, tags, CSAT), articles keep their kind, direction, visibility and
  time, and ``status_changed`` events keep their statuses. Deleting the rows
  instead would change every past report, so anonymising is the policy.
* ``quarantine_days``: mail that never became part of a ticket (quarantined
  or dropped) loses its content. The row stays, so the IMAP fetcher's
  dedupe key still says "already stored".

A ticket counts from its last change (``updated_at``, and its resolution
and closing times), so a reply that reopened it starts the clock again.
Message-IDs stay: they are how a late copy of an old mail is recognised
as already stored and not made a new ticket.

Every step finds its work by content (a raw mail that is not yet the
placeholder, an attachment that still names its file's hash), so a run
after a run changes nothing, and a dry run lists exactly what a run would
remove. The daemon runs it once a day; the last run is an event in the
database, so a restart does not run it again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, delete, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from mailgate.config import Retention
from mailgate.records.privacy import (
    BlobsBusy,
    drop_unused_blobs,
    forget_freed_pages,
    json_text,
    lock_blobs,
)
from mailgate.store.db import read_only, transaction
from mailgate.store.models import (
    Article,
    AwaitedMessage,
    Event,
    Inbound,
    Outbox,
    Participant,
    Ticket,
)

log = structlog.get_logger(__name__)

FINISHED = ("resolved", "closed")
# What stays of a raw mail; a parser reads it as an empty message.
RAW_REMOVED = b"X-Mailgate-Removed: retention policy\r\n\r\n"
REMOVED_TEXT = "[removed by the retention policy]"
# One address for all anonymised tickets: there is no address left to guess back.
ANONYMOUS = "removed@retention.invalid"
# Event detail that stays on an anonymised ticket: statuses and names of
# things, never free text or addresses.
KEPT_EVENT_TEXT = frozenset({"status", "previous", "priority", "queue", "category", "template", "rule"})
RUN_EVENT = "retention_run"
# The environment variable that moves the daemon's retention clock (tests
# and drills: "what would go on that date"). Nothing else reads it.
AS_OF_ENV = "MAILGATE_RETENTION_AS_OF"
BATCH = 100
# How long a run waits for the attachment table on PostgreSQL: processing of
# mail with attachments queues behind the wait, so it is short.
BLOB_LOCK_WAIT = 5.0


@dataclass
class Plan:
    """What a run removes; the ticket lists hold refs, in id order."""

    now: datetime
    originals: dict[str, Any] = field(default_factory=lambda: {"tickets": [], "mails": 0, "attachments": 0})
    anonymise: dict[str, Any] = field(default_factory=lambda: {"tickets": [], "mails": 0, "attachments": 0})
    quarantine: list[int] = field(default_factory=list)
    files_removed: int = 0
    anonymised: set[int] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.originals["tickets"] or self.anonymise["tickets"] or self.quarantine)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.now.isoformat(),
            "originals": self.originals,
            "anonymise": self.anonymise,
            "quarantine": {"messages": self.quarantine},
            "attachment_files_removed": self.files_removed,
        }


def parse_as_of(value: str) -> datetime:
    """An ISO date or time; without a zone it is UTC."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run(
    sessions: sessionmaker[Session], engine: Engine, policy: Retention, now: datetime, *, dry_run: bool
) -> Plan:
    """Find (and unless ``dry_run``, remove) what the policy says has been kept long enough."""
    plan = Plan(now)
    if policy.tickets_days is not None:
        cutoff = now - timedelta(days=policy.tickets_days)
        for chunk in _chunks(_ids(sessions, _anonymise_candidates(cutoff))):
            with _session(sessions, dry_run) as session:
                _anonymise(session, chunk, plan, dry_run)
    if policy.originals_days is not None:
        cutoff = now - timedelta(days=policy.originals_days)
        # In a dry run the anonymised tickets still hold their originals;
        # a real run has already removed them with the rest.
        ids = [i for i in _ids(sessions, _originals_candidates(cutoff)) if i not in plan.anonymised]
        for chunk in _chunks(ids):
            with _session(sessions, dry_run) as session:
                _remove_originals(session, chunk, plan, dry_run)
    if policy.quarantine_days is not None:
        cutoff = now - timedelta(days=policy.quarantine_days)
        with _session(sessions, dry_run) as session:
            _empty_quarantine(session, cutoff, plan, dry_run)
    if not dry_run:
        plan.files_removed = _drop_blobs(sessions)
        with transaction(sessions) as session:
            session.add(Event(ticket_id=None, kind=RUN_EVENT, detail=_summary(plan), created_at=now))
        if not plan.empty():
            # On SQLite the removed content lingers in free pages until rewritten.
            forget_freed_pages(engine)
    return plan


def last_run(sessions: sessionmaker[Session]) -> datetime | None:
    with read_only(), sessions() as session:
        return session.scalar(select(func.max(Event.created_at)).where(Event.kind == RUN_EVENT))


def _summary(plan: Plan) -> dict[str, object]:
    return {
        "as_of": plan.now.isoformat(),
        "originals_tickets": len(plan.originals["tickets"]),
        "anonymised_tickets": len(plan.anonymise["tickets"]),
        "mails": plan.originals["mails"] + plan.anonymise["mails"],
        "attachments": plan.originals["attachments"] + plan.anonymise["attachments"],
        "attachment_files_removed": plan.files_removed,
        "quarantine": len(plan.quarantine),
    }


@contextmanager
def _session(sessions: sessionmaker[Session], dry_run: bool) -> Iterator[Session]:
    """A write transaction, or for the dry run a read that is never committed."""
    if not dry_run:
        with transaction(sessions) as session:
            yield session
        return
    with read_only(), sessions() as session:
        try:
            yield session
        finally:
            session.rollback()


def _finished_before(cutoff: datetime) -> Any:
    return (
        Ticket.status.in_(FINISHED),
        Ticket.updated_at < cutoff,
        or_(Ticket.resolved_at.is_(None), Ticket.resolved_at < cutoff),
        or_(Ticket.closed_at.is_(None), Ticket.closed_at < cutoff),
    )


def _originals_candidates(cutoff: datetime) -> Any:
    raw_left = (
        exists()
        .where(Article.ticket_id == Ticket.id, Inbound.id == Article.inbound_id)
        .where(Inbound.raw != RAW_REMOVED)
    )
    sent_left = exists().where(
        Outbox.ticket_id == Ticket.id, Outbox.state.in_(("sent", "failed")), Outbox.raw != RAW_REMOVED
    )
    files_left = exists().where(
        Article.ticket_id == Ticket.id, json_text(Article.attachments).like("%sha256%")
    )
    return select(Ticket.id).where(*_finished_before(cutoff), or_(raw_left, sent_left, files_left))


def _anonymise_candidates(cutoff: datetime) -> Any:
    named = exists().where(Article.ticket_id == Ticket.id, Article.sender != ANONYMOUS)
    listed = exists().where(Participant.ticket_id == Ticket.id)
    left = or_(Ticket.requester != ANONYMOUS, named, listed)
    return select(Ticket.id).where(*_finished_before(cutoff), left)


def _ids(sessions: sessionmaker[Session], query: Any) -> list[int]:
    with read_only(), sessions() as session:
        return list(session.scalars(query.order_by(Ticket.id)))


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def _remove_originals(session: Session, ticket_ids: list[int], plan: Plan, dry_run: bool) -> None:
    done_tickets: set[int] = set()
    mails = _strip_raw(session, ticket_ids, done_tickets, dry_run)
    attachments = 0
    for article in session.scalars(select(Article).where(Article.ticket_id.in_(ticket_ids))):
        kept = [item for item in article.attachments or [] if item.get("sha256")]
        if not kept:
            continue
        done_tickets.add(article.ticket_id)
        attachments += len(kept)
        if not dry_run:
            article.attachments = [_without_file(item, plan.now) for item in article.attachments]
    # The files themselves go at the end of the run, once no article lists them (_drop_blobs).
    _note(plan.originals, session, done_tickets, mails, attachments)


def _anonymise(session: Session, ticket_ids: list[int], plan: Plan, dry_run: bool) -> None:
    mails = _strip_raw(session, ticket_ids, set(), dry_run, anonymise=True)
    articles = list(session.scalars(select(Article).where(Article.ticket_id.in_(ticket_ids))))
    attachments = sum(1 for a in articles for item in a.attachments or [] if item.get("sha256"))
    _note(plan.anonymise, session, set(ticket_ids), mails, attachments)
    plan.anonymised |= set(ticket_ids)
    if dry_run:
        return
    for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids))):
        ticket.requester, ticket.requester_name, ticket.subject = ANONYMOUS, "", REMOVED_TEXT
    for article in articles:
        article.sender, article.sender_name, article.recipients = ANONYMOUS, "", []
        article.subject = article.body_text = article.body_full = REMOVED_TEXT
        article.body_html = None
        article.attachments = [
            {"size": item.get("size"), "removed": f"retention {plan.now.date().isoformat()}"}
            for item in article.attachments or []
        ]
    for event in session.scalars(select(Event).where(Event.ticket_id.in_(ticket_ids))):
        event.detail = {
            key: value
            for key, value in (event.detail or {}).items()
            if not isinstance(value, (str, list, dict)) or (key in KEPT_EVENT_TEXT and isinstance(value, str))
        }
    session.execute(delete(Participant).where(Participant.ticket_id.in_(ticket_ids)))
    session.execute(delete(AwaitedMessage).where(AwaitedMessage.ticket_id.in_(ticket_ids)))


def _strip_raw(
    session: Session, ticket_ids: list[int], touched: set[int], dry_run: bool, *, anonymise: bool = False
) -> int:
    """Replace the raw received and sent mails of these tickets by the placeholder."""
    mails = 0
    received = select(Inbound, Article.ticket_id).join(Article, Article.inbound_id == Inbound.id)
    for row, ticket_id in session.execute(received.where(Article.ticket_id.in_(ticket_ids))):
        if row.raw != RAW_REMOVED:
            mails += 1
            touched.add(ticket_id)
            if not dry_run:
                row.raw = RAW_REMOVED
        if anonymise and not dry_run:
            row.mail_from, row.rcpt_tos = None, []
    # Only mail that is finished: a queued row is still to be sent as it is.
    for out in session.scalars(
        select(Outbox).where(Outbox.ticket_id.in_(ticket_ids), Outbox.state.in_(("sent", "failed")))
    ):
        if out.raw != RAW_REMOVED:
            mails += 1
            if out.ticket_id is not None:
                touched.add(out.ticket_id)
            if not dry_run:
                out.raw = RAW_REMOVED
        if anonymise and not dry_run:
            out.rcpt, out.last_error = ANONYMOUS, None
    return mails


def _without_file(item: dict[str, object], now: datetime) -> dict[str, object]:
    if not item.get("sha256"):
        return item
    kept = {key: value for key, value in item.items() if key != "sha256"}
    kept["removed"] = f"retention {now.date().isoformat()}"
    return kept


def _drop_blobs(sessions: sessionmaker[Session]) -> int:
    """Delete attachment files no article lists any more (the same file in an open ticket stays).

    All of them, not only this run's: a run that could not lock the table
    (see lock_blobs) leaves its files unlisted, and the next run
    takes them. The articles no longer list them, so nobody sees them meanwhile.
    """
    try:
        with transaction(sessions) as session:
            lock_blobs(session, wait_seconds=BLOB_LOCK_WAIT)
            return drop_unused_blobs(session, None)
    except BlobsBusy as exc:
        log.warning("retention.files_deferred", reason=str(exc))
        return 0


def _note(section: dict[str, Any], session: Session, ticket_ids: set[int], mails: int, files: int) -> None:
    if ticket_ids:
        refs = session.scalars(select(Ticket.ref).where(Ticket.id.in_(ticket_ids)).order_by(Ticket.id))
        section["tickets"].extend(refs)
    section["mails"] += mails
    section["attachments"] += files


def _empty_quarantine(session: Session, cutoff: datetime, plan: Plan, dry_run: bool) -> None:
    in_a_ticket = exists().where(Article.inbound_id == Inbound.id)
    query = (
        select(Inbound)
        .where(
            Inbound.state.in_(("quarantined", "dropped")),
            Inbound.received_at < cutoff,
            Inbound.raw != RAW_REMOVED,
            ~in_a_ticket,
        )
        .order_by(Inbound.id)
    )
    for row in session.scalars(query):
        plan.quarantine.append(row.id)
        if not dry_run:
            row.raw, row.mail_from, row.rcpt_tos = RAW_REMOVED, None, []
            removed = f"content removed by the retention policy ({plan.now.date()})"
            row.reason = f"{removed}; was {row.state}: {row.reason}"
            row.state = "dropped"


class RetentionTimer:
    """The daemon's daily run: checks hourly, runs when the last run is a day old."""

    CHECK_SECONDS = 3600.0
    # Runs drift by up to a check interval a day without this slack.
    DAY = timedelta(hours=23)

    def __init__(self, runtime: Any, clock: Callable[[], datetime] | None = None) -> None:
        self.runtime = runtime
        self.clock = clock or clock_from_environment()
        self._announced = False

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                # A failed run is tried again at the next check; mail goes on.
                log.exception("retention.failed")
            stop.wait(self.CHECK_SECONDS)

    def tick(self) -> Plan | None:
        policy: Retention = self.runtime.config.retention
        if not policy.enabled:
            return None
        now = self.clock()
        last = last_run(self.runtime.sessions)
        # A last run in the future (a drill with a moved clock) is ignored.
        if last is not None and now - self.DAY < last <= now + timedelta(days=1):
            if not self._announced:
                # Once per start, so that the log says when the next run is due.
                log.info("retention.next", last_run=last.isoformat(), next_run=(last + self.DAY).isoformat())
                self._announced = True
            return None
        plan = run(self.runtime.sessions, self.runtime.engine, policy, now, dry_run=False)
        log.info("retention.ran", **_summary(plan))
        return plan


def clock_from_environment() -> Callable[[], datetime]:
    """The real clock, or the fixed date in ``MAILGATE_RETENTION_AS_OF``."""
    value = os.environ.get(AS_OF_ENV)
    if not value:
        return lambda: datetime.now(UTC)
    moment = parse_as_of(value)
    log.warning("retention.clock_moved", as_of=moment.isoformat(), variable=AS_OF_ENV)
    return lambda: moment
