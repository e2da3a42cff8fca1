"""The processing stage: a durable inbound row becomes an article.

Claim a batch of pending rows, parse and guard them (pure, outside the
write transaction), then hand them to handle.py in write transactions of
at most ``SLICE_SECONDS`` each. The inbound row is marked done in the same
transaction that stores what it caused, so a crash anywhere leaves it
either pending (processed again) or fully done: exactly once. A slice runs
without savepoints; if any message fails, it is rolled back whole and the
rest of the batch is redone one savepoint per message.

A row is leased and its attempt counted in a commit of its own before work
starts, so a message that crashes the process is quarantined after
``limits.max_attempts`` tries instead of looping for ever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from mailgate import guard
from mailgate.faults import crash_point
from mailgate.message import Envelope
from mailgate.outbox.deliver import Due, OutboxWorker
from mailgate.parse import parse
from mailgate.service import metrics
from mailgate.service.runtime import Runtime
from mailgate.store.db import transaction
from mailgate.store.instances import lease_free, stale_before
from mailgate.store.models import Inbound
from mailgate.store.writes import deferred_writes
from mailgate.tickets import lifecycle
from mailgate.tickets.dedupe import dedupe_key, known_messages
from mailgate.tickets.handle import Claim, MessageHandler, Prepared, Result

log = structlog.get_logger(__name__)

# The claim runs once per batch; statements built once (see store/writes.py).
_PENDING = (
    select(Inbound.id, Inbound.attempts, Inbound.reason)
    .where(Inbound.state == "pending", lease_free(Inbound.lease_until, Inbound.lease_owner))
    .order_by(Inbound.id)
    .limit(bindparam("b_limit"))
)
_LEASE_INBOUND = (
    update(Inbound)
    .where(Inbound.id.in_(bindparam("b_ids", expanding=True)))
    .values(attempts=Inbound.attempts + 1, lease_until=bindparam("b_until"), lease_owner=bindparam("b_owner"))
)
# PostgreSQL, at the start of each write transaction: the claimed rows that
# are still ours, locked until the commit. A row another instance took over
# while we were cut off (see store/instances.py) is left to it.
_STILL_OURS = (
    select(Inbound.id)
    .where(
        Inbound.id.in_(bindparam("b_ids", expanding=True)),
        Inbound.state == "pending",
        Inbound.lease_owner == bindparam("b_owner"),
    )
    .with_for_update()
)
_CLAIMED = (
    select(
        Inbound.id,
        Inbound.raw,
        Inbound.mail_from,
        Inbound.rcpt_tos,
        Inbound.source,
        Inbound.received_at,
        Inbound.attempts,
    )
    .where(Inbound.id.in_(bindparam("b_ids", expanding=True)))
    .order_by(Inbound.id)
)

# How long one processing transaction may hold SQLite's write lock before it
# commits and lets the other writers in (the spool importer, the delivery
# worker's marks, `mailgate ingest`).
SLICE_SECONDS = 0.010

# How often the processing loop looks for quiet tickets to close.
AUTO_CLOSE_EVERY = timedelta(minutes=5)


class Processor:
    def __init__(
        self,
        runtime: Runtime,
        *,
        batch: int = 32,
        lease_seconds: float = 300.0,
        outbox: OutboxWorker | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self._batch = batch
        self._lease = timedelta(seconds=lease_seconds)
        # The outbox worker of this process, if it has one: it gets the rows a
        # batch queued leased in the batch's own transaction. Otherwise
        # ``on_queued`` tells the delivery worker after each commit.
        self._outbox = outbox
        self._on_queued = on_queued
        self.wake = threading.Event()
        self._next_auto_close = datetime.now(UTC)
        self._handler = MessageHandler(runtime)
        # Rows a batch claimed but could not finish because the database failed.
        self._unfinished: set[int] = set()

    # -- driving -----------------------------------------------------------

    def run(self, stop: threading.Event, *, idle_poll_seconds: float = 2.0) -> None:
        while not stop.is_set():
            try:
                done = self.process_pending()
            except Exception as exc:  # keep processing after a database hiccup
                log.error("process.loop_error", error=str(exc))
                done = []
            self.maybe_auto_close()
            if not done:
                self.wake.wait(idle_poll_seconds)
                self.wake.clear()

    def maybe_auto_close(self, now: datetime | None = None) -> int:
        """Close quiet tickets, at most every few minutes (cheap indexed query)."""
        now = now or datetime.now(UTC)
        if now < self._next_auto_close:
            return 0
        self._next_auto_close = now + AUTO_CLOSE_EVERY
        if not self.runtime.may_run_timers():
            return 0
        try:
            with transaction(self.runtime.sessions) as session:
                return lifecycle.auto_close(session.connection(), self.runtime, now)
        except Exception as exc:  # a database hiccup must not stop processing
            log.error("lifecycle.auto_close_failed", error=str(exc))
            return 0

    def release_leases(self) -> None:
        """Forget leases at start-up: on a single host nobody else holds them."""
        with transaction(self.runtime.sessions) as session:
            session.execute(
                update(Inbound).where(Inbound.state == "pending").values(lease_until=None, lease_owner=None)
            )

    def process_pending(self, only_ids: Sequence[int] | None = None) -> list[Result]:
        """Claim up to one batch of pending rows and process them."""
        claimed = self._claim(only_ids)
        if not claimed:
            return []
        # Parsing and the guard are pure and the slowest part: done before the
        # write transaction, so the database is held only for the writes.
        prepared = [(claim, self._prepare(claim)) for claim in claimed]
        results: list[Result] = []
        try:
            while prepared:
                done = self._fast_slice(prepared)
                if done is None:
                    # The slow, safe path: each message in a savepoint of its own,
                    # so one that fails is recorded and the others still commit.
                    done = self._slow_batch(prepared)
                _measure(prepared[: len(done)], done)
                results += done
                del prepared[: len(done)]
        except Exception:
            # The database went away mid-batch. We live on and keep beating,
            # so nobody takes these rows over: give them back ourselves as
            # soon as the database answers (see _release_unfinished).
            self._unfinished.update(claim.id for claim, _ in prepared)
            raise
        crash_point("processed")
        return results

    def _release_unfinished(self) -> None:
        """Free the rows a failed batch left leased to us, its attempt uncounted.

        The failure was the database's, not the message's: counting it would
        quarantine mail after a few database restarts.
        """
        if not self._unfinished:
            return
        with transaction(self.runtime.lease_sessions) as session:
            session.execute(
                update(Inbound)
                .where(
                    Inbound.id.in_(sorted(self._unfinished)),
                    Inbound.state == "pending",
                    Inbound.lease_owner.is_not_distinct_from(self.runtime.owner),
                )
                .values(lease_until=None, lease_owner=None, attempts=Inbound.attempts - 1)
            )
        log.info("process.released_unfinished", rows=len(self._unfinished))
        self._unfinished.clear()

    def _fast_slice(self, prepared: list[tuple[Claim, Prepared | BaseException]]) -> list[Result] | None:
        """The first messages in one transaction without savepoints, or None.

        The transaction holds SQLite's single write lock, which other
        writers wait for, so it commits after ``SLICE_SECONDS``; the rest of
        the batch follows in further slices.

        Savepoints cost two statements and SQLAlchemy bookkeeping per
        message; nearly every batch has no failure, so it runs without them
        and only a slice that fails is rolled back whole and done again the
        slow way (its "process.stored" log lines then appear twice).
        """
        if isinstance(prepared[0][1], BaseException):
            return None
        results: list[Result] = []
        due: list[Due] = []
        try:
            with transaction(self.runtime.sessions) as session:
                conn = session.connection()
                ours = self._still_ours(conn, prepared)
                known = known_messages(conn, _mails(prepared))
                deadline = time.monotonic() + SLICE_SECONDS
                with deferred_writes(conn):
                    for claim, ready in prepared:
                        if not isinstance(ready, Prepared) or (results and time.monotonic() > deadline):
                            break
                        if ours is not None and claim.id not in ours:
                            results.append(_taken_over(claim))
                            continue
                        results.append(self._handler.handle(conn, claim.id, claim, ready, known))
                if self._outbox is not None:
                    due = self._outbox.lease_due(conn)
        except Exception as exc:  # redone message by message, each failure recorded
            log.info("process.batch_retried_one_by_one", error=f"{type(exc).__name__}: {exc}")
            return None
        if self._outbox is not None:
            self._outbox.hand_over(due)
        self._queued()
        return results

    def _slow_batch(self, prepared: list[tuple[Claim, Prepared | BaseException]]) -> list[Result]:
        with transaction(self.runtime.sessions) as session:
            ours = self._still_ours(session.connection(), prepared)
            known = known_messages(session.connection(), _mails(prepared))
            results = [
                _taken_over(claim)
                if ours is not None and claim.id not in ours
                else self._process_row(session, claim.id, claim, ready, known)
                for claim, ready in prepared
            ]
        if self._outbox is not None:
            self._outbox.wake.set()
        self._queued()
        return results

    def _still_ours(
        self, conn: Connection, prepared: list[tuple[Claim, Prepared | BaseException]]
    ) -> set[int] | None:
        """On PostgreSQL, the claimed rows we still hold (locked); None: all of them.

        SQLite has one daemon, whose leases nobody takes over while it runs.
        """
        owner = self.runtime.owner
        if owner is None or conn.dialect.name != "postgresql":
            return None
        ids = [claim.id for claim, _ in prepared]
        return set(conn.execute(_STILL_OURS, {"b_ids": ids, "b_owner": owner}).scalars())

    def _queued(self) -> None:
        if self._on_queued is not None:
            self._on_queued()

    def _prepare(self, claim: Claim) -> Prepared | BaseException:
        try:
            message = parse(claim.raw)
            envelope = Envelope(claim.mail_from, claim.rcpt_tos, claim.source, claim.received_at)
            verdict = guard.check(message, envelope, self.runtime.own, claim.raw)
            report = guard.parse_dsn(claim.raw) if verdict.is_delivery_report else None
        except Exception as exc:  # recorded on the row like any other failure
            return exc
        return Prepared(message, envelope, verdict, dedupe_key(message, claim.raw), report)

    def _claim(self, only_ids: Sequence[int] | None) -> list[Claim]:
        if not self.runtime.may_claim():
            return []
        self._release_unfinished()
        now = datetime.now(UTC)
        limits = self.runtime.config.limits
        # A lease lost to a power cut is harmless: the row is claimed again.
        with transaction(self.runtime.lease_sessions) as session:
            query = _PENDING
            if only_ids is not None:
                query = query.where(Inbound.id.in_(list(only_ids)))
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # Several instances on one database each take different rows.
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(
                query, {"b_now": now, "b_stale": stale_before(now), "b_limit": self._batch}
            ).all()
            claimed = []
            for row_id, attempts, reason in rows:
                if attempts >= limits.max_attempts:
                    why = f"processing failed {attempts} times; last error: {reason or 'the process died'}"
                    session.execute(
                        update(Inbound)
                        .where(Inbound.id == row_id)
                        .values(
                            state="quarantined",
                            reason=why,
                            lease_until=None,
                            lease_owner=None,
                            processed_at=now,
                        )
                    )
                    log.error("process.quarantined", inbound_id=row_id, reason=why)
                    continue
                claimed.append(row_id)
            if not claimed:
                return []
            session.execute(
                _LEASE_INBOUND,
                {"b_ids": claimed, "b_until": now + self._lease, "b_owner": self.runtime.owner},
            )
            found = session.execute(_CLAIMED, {"b_ids": claimed}).all()
        return [
            Claim(row_id, raw, mail_from, tuple(rcpt_tos or ()), source, received_at, attempts)
            for row_id, raw, mail_from, rcpt_tos, source, received_at, attempts in found
        ]

    def _process_row(
        self,
        session: Session,
        row_id: int,
        claim: Claim,
        ready: Prepared | BaseException,
        known: dict[str, tuple[int, int]],
    ) -> Result:
        conn = session.connection()
        try:
            if isinstance(ready, BaseException):
                raise ready
            with conn.begin_nested():
                return self._handler.handle(conn, row_id, claim, ready, known)
        except Exception as exc:  # one bad message must not stop the batch
            # The savepoint is gone; record why on the row and retry later.
            attempts = claim.attempts + 1
            reason = f"attempt {attempts}: {type(exc).__name__}: {exc}"[:2000]
            conn.execute(
                update(Inbound)
                .where(Inbound.id == row_id)
                .values(reason=reason, lease_until=datetime.now(UTC) + timedelta(seconds=30 * attempts))
            )
            log.exception("process.failed", inbound_id=row_id, attempt=attempts)
            return Result(row_id, "failed", reason=reason)

    # -- one message -------------------------------------------------------


def _taken_over(claim: Claim) -> Result:
    log.info("process.taken_over", inbound_id=claim.id)
    return Result(claim.id, "taken_over", reason="another instance took the lease over")


def _mails(prepared: list[tuple[Claim, Prepared | BaseException]]) -> list[tuple[str, str | None]]:
    """(dedupe key, Message-ID) of each prepared mail, for known_messages."""
    return [
        (ready.dedupe_key, ready.message.message_id) for _, ready in prepared if isinstance(ready, Prepared)
    ]


def _measure(prepared: list[tuple[Claim, Prepared | BaseException]], results: list[Result]) -> None:
    if not metrics.enabled():
        return
    now = datetime.now(UTC)
    for (claim, _), result in zip(prepared, results, strict=True):
        metrics.count("processed", state=result.state)
        if result.state != "failed":
            metrics.observe("processing_delay", (now - claim.received_at).total_seconds())
