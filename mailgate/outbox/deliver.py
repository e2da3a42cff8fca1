"""The outbox worker: durable rows in, mail out, every outcome recorded.

A row is claimed with a lease, sent, and marked in one short transaction
per batch. Temporary failures retry with exponential backoff until the
give-up time; permanent failures and give-ups are recorded as ticket events
and stay visible in ``mailgate outbox list``.

Delivery normally runs in a worker process of its own, woken by the
processing worker. When both run in one process (``processing.workers:
0``), the processor leases the due rows in the transaction that created
them and hands them over after its commit (``lease_due`` / ``hand_over``),
which spares a transaction per batch on SQLite's single write lock.

Each mail is also marked sent right after the relay's 250 (``sent_marks``),
so that a ``kill -9`` in the middle of a batch sends again at most the one
mail whose 250 was on the wire, with the same Message-ID (SMTP gives no
exactly-once); the Maildir transport is idempotent per row.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import structlog
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailgate.faults import crash_point
from mailgate.outbox.sent_marks import SentMarks, sent_marks_for
from mailgate.outbox.transport import DeliveryResult, Transport
from mailgate.service import metrics
from mailgate.service.presence import Presence
from mailgate.store.db import transaction
from mailgate.store.instances import lease_free, stale_before
from mailgate.store.models import Event, Outbox
from mailgate.store.writes import OUTBOX

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    first_seconds: float = 30.0
    max_seconds: float = 3600.0
    give_up_after_seconds: float = 5 * 24 * 3600.0

    def next_delay(self, attempts: int) -> float:
        base = min(self.max_seconds, self.first_seconds * (2 ** max(0, attempts - 1)))
        # Jitter keeps many deferred mails from hitting a recovering relay at once.
        return float(base * random.uniform(0.8, 1.2))


def release_outbox_leases(sessions: sessionmaker[Session], marks: SentMarks | None = None) -> None:
    """Forget delivery leases of a dead worker (single host: nobody else holds them).

    What the dead worker had journaled as sent is marked sent first, in the
    same transaction: only a row whose 250 came but was not yet journaled is
    sent again, with the same Message-ID (the Maildir transport notices and
    writes no second copy).
    """
    marks = marks or sent_marks_for(sessions)
    with transaction(sessions) as session:
        marks.apply(session.connection(), datetime.now(UTC))
        session.execute(
            update(Outbox).where(Outbox.state == "queued").values(lease_until=None, lease_owner=None)
        )
    marks.applied()


_DUE = (
    select(
        OUTBOX.c.id,
        OUTBOX.c.ticket_id,
        OUTBOX.c.message_id,
        OUTBOX.c.mail_from,
        OUTBOX.c.rcpt,
        OUTBOX.c.raw,
        OUTBOX.c.attempts,
        OUTBOX.c.created_at,
    )
    .where(
        OUTBOX.c.state == "queued",
        OUTBOX.c.next_attempt_at <= bindparam("b_now"),
        lease_free(OUTBOX.c.lease_until, OUTBOX.c.lease_owner),
    )
    .order_by(OUTBOX.c.id)
    .limit(bindparam("b_limit"))
)
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_LEASE = (
    OUTBOX.update()
    .where(OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(lease_until=bindparam("b_until"), lease_owner=bindparam("b_owner"))
)
# Rows leased to us by a batch that failed with the database: free them.
_UNLEASE_MINE = (
    OUTBOX.update()
    .where(
        OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)),
        OUTBOX.c.state == "queued",
        OUTBOX.c.lease_owner.is_not_distinct_from(bindparam("b_owner")),
    )
    .values(lease_until=None, lease_owner=None)
)
# Rows leased but not tried (we stopped being sure we are alive): free them.
_UNLEASE = (
    OUTBOX.update()
    .where(OUTBOX.c.id.in_(bindparam("b_ids", expanding=True)), OUTBOX.c.state == "queued")
    .values(lease_until=None, lease_owner=None)
)
_MARK_SENT = (
    OUTBOX.update()
    .where(OUTBOX.c.id == bindparam("b_id"))
    .values(
        state="sent",
        sent_at=bindparam("b_now"),
        attempts=bindparam("b_attempts"),
        lease_until=None,
        lease_owner=None,
        last_error=None,
    )
)


class Due(NamedTuple):
    """An outbox row leased for one delivery attempt."""

    id: int
    ticket_id: int | None
    message_id: str
    mail_from: str
    rcpt: str
    raw: bytes
    attempts: int
    created_at: datetime


class OutboxWorker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport: Transport,
        policy: RetryPolicy,
        *,
        batch: int = 50,
        lease_seconds: float = 120.0,
        idle_poll_seconds: float = 2.0,
        marks: SentMarks | None = None,
        presence: Presence | None = None,
    ) -> None:
        self._sessions = sessions
        # This process's heartbeat: rows are leased in its name, and sent
        # only while it is sure to be alive (service/presence.py).
        self._presence = presence
        # Rows of a batch that failed with the database, still leased to us.
        self._unfinished: set[int] = set()
        self._marks = marks or sent_marks_for(sessions)
        self._marks_applied = False
        self._transport = transport
        self._policy = policy
        self._batch = batch
        self._lease = timedelta(seconds=lease_seconds)
        self._idle_poll = idle_poll_seconds
        self.wake = threading.Event()
        self._handed: list[Due] = []
        # Rows being sent right now: a processor's lease_due may lease them
        # again once a slow relay outlasts the lease, and must not hand them
        # over a second time.
        self._taken: set[int] = set()
        self._handed_lock = threading.Lock()

    def __enter__(self) -> OutboxWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the transport (the relay connection is reused between batches)."""
        self._transport.close()
        self._marks.close()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                worked = self.deliver_due()
            except Exception as exc:  # the worker must outlive a database hiccup
                log.error("outbox.loop_error", error=str(exc))
                # Mails of a batch whose record failed are journaled as sent:
                # apply that before leasing again, once their lease runs out.
                self._marks_applied = False
                worked = 0
            if worked == 0:
                self.wake.wait(self._idle_poll)
                self.wake.clear()
        self.close()

    def lease_due(self, conn: Connection, now: datetime | None = None) -> list[Due]:
        """Lease the due rows inside the caller's transaction.

        Give them to ``hand_over`` only after that transaction committed:
        rows of a rolled-back transaction must never be sent.
        """
        now = now or datetime.now(UTC)
        # Several instances on one PostgreSQL each take different rows; SQLite
        # has one writer at a time anyway.
        if not self._alive():
            return []
        due = _DUE_LOCKED if conn.dialect.name == "postgresql" else _DUE
        params = {"b_now": now, "b_stale": stale_before(now), "b_limit": self._batch}
        rows = [Due(*found) for found in conn.execute(due, params)]
        if rows:
            conn.execute(
                _LEASE,
                {"b_ids": [row.id for row in rows], "b_until": now + self._lease, "b_owner": self._owner()},
            )
        return rows

    def _owner(self) -> int | None:
        return None if self._presence is None else self._presence.id

    def _alive(self) -> bool:
        return self._presence is None or self._presence.fresh()

    def hand_over(self, rows: list[Due]) -> None:
        """Rows leased in a committed transaction, to be sent next."""
        with self._handed_lock:
            waiting = {row.id for row in self._handed} | self._taken
            fresh = [row for row in rows if row.id not in waiting]
            self._handed += fresh
        if fresh:
            self.wake.set()

    def deliver_due(self, now: datetime | None = None) -> int:
        """Send every due row once; returns how many were attempted."""
        if not self._marks_applied or self._unfinished:
            # A worker that died before us may have left marks: apply them
            # before leasing, or its sent rows would be leased and sent again.
            # Rows a failed batch left leased to us are freed in the same
            # transaction, after the marks: a sent one is not sent again.
            with transaction(self._sessions) as session:
                self._marks.apply(session.connection(), datetime.now(UTC))
                if self._unfinished:
                    session.connection().execute(
                        _UNLEASE_MINE, {"b_ids": sorted(self._unfinished), "b_owner": self._owner()}
                    )
            self._marks.applied()
            self._marks_applied = True
            self._unfinished.clear()
        with self._handed_lock:
            rows, self._handed = self._handed, []
            self._taken.update(row.id for row in rows)
        if not rows:
            with transaction(self._sessions) as session:
                rows = self.lease_due(session.connection(), now)
            if not rows:
                return 0
            with self._handed_lock:
                self._taken.update(row.id for row in rows)
        results: list[tuple[Due, DeliveryResult]] = []
        recorded = False
        try:
            for row in rows:
                if not self._alive():
                    # Cut off from the database for SAFE_SECONDS: another
                    # instance may take these rows over any moment now.
                    break
                result = self._transport.send(row.id, row.mail_from, row.rcpt, row.raw)
                if result.ok:
                    crash_point("outbox-relayed")  # the one resend a crash may cost
                    self._marks.sent(row.id, datetime.now(UTC))
                crash_point("outbox-sent")
                results.append((row, result))
            finished = datetime.now(UTC)
            untried = [row.id for row in rows[len(results) :]]
            with transaction(self._sessions) as session:
                for row, result in results:
                    self._record(session, row, result, finished)
                if untried:
                    session.connection().execute(_UNLEASE, {"b_ids": untried})
            recorded = True
            self._marks.recorded()
        finally:
            if not recorded:
                # The database failed mid-batch: nobody takes these over while
                # we beat, so we free them once it answers (above).
                self._unfinished.update(row.id for row in rows)
            with self._handed_lock:
                self._taken.difference_update(row.id for row in rows)
        return len(rows)

    def _record(self, session: Session, row: Due, result: DeliveryResult, now: datetime) -> None:
        attempts = row.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "lease_until": None,
            "lease_owner": None,
            "last_error": None,
        }
        bound = log.bind(outbox_id=row.id, ticket_id=row.ticket_id, message_id=row.message_id, rcpt=row.rcpt)
        if result.ok:
            # The common case, once per mail: a statement built once.
            session.connection().execute(_MARK_SENT, {"b_id": row.id, "b_attempts": attempts, "b_now": now})
            bound.info("outbox.sent", detail=result.detail, attempts=attempts)
            metrics.count("delivery", result="sent")
            metrics.observe("delivery_delay", (now - row.created_at).total_seconds())
            return
        else:
            too_old = (now - row.created_at).total_seconds() > self._policy.give_up_after_seconds
            if result.permanent or too_old:
                reason = (
                    result.detail
                    if result.permanent
                    else f"gave up after {attempts} attempts: {result.detail}"
                )
                values.update(state="failed", last_error=reason)
                bound.warning("outbox.failed", error=reason)
                metrics.count("delivery", result="failed")
                session.add(
                    Event(
                        ticket_id=row.ticket_id,
                        kind="delivery_failed",
                        detail={"outbox_id": row.id, "rcpt": row.rcpt, "error": reason},
                    )
                )
            else:
                delay = self._policy.next_delay(attempts)
                values.update(last_error=result.detail, next_attempt_at=now + timedelta(seconds=delay))
                bound.info("outbox.deferred", error=result.detail, retry_in=round(delay, 1))
                metrics.count("delivery", result="deferred")
        session.execute(update(Outbox).where(Outbox.id == row.id).values(**values))
