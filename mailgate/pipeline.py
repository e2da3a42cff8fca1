"""The processing stage: a durable inbound row becomes an article.

parse -> guard -> thread -> rules -> store -> notify, for a batch of rows in
one transaction, each message in its own savepoint. The inbound row is
marked done in the same transaction that stores what it caused, so a crash
anywhere leaves it either pending (processed again) or fully done: exactly
once. A row is leased and its attempt counted in a commit of its own
before work starts, so a message that crashes the process is quarantined
after ``limits.max_attempts`` tries instead of looping for ever.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.orm import Session

from mailgate import guard, lifecycle
from mailgate.agents.auth import check_agent
from mailgate.agents.desk import Incoming, handle_agent_mail, notify_agents
from mailgate.attachments import store_attachments
from mailgate.bounces import record_bounce, suppressed
from mailgate.faults import crash_point
from mailgate.guard.ratelimit import RateLimits, automatic_mail_allowed
from mailgate.message import Envelope, ParsedMessage
from mailgate.notify import enqueue, render_to
from mailgate.parse import parse
from mailgate.rules import Decision, RuleContext
from mailgate.runtime import Runtime
from mailgate.store.db import transaction
from mailgate.store.models import Inbound
from mailgate.store.writes import (
    CoreTicketLookup,
    TicketView,
    add_participants,
    automatic_mail_counts,
    existing_articles,
    finish_inbound,
    insert_article,
    insert_event,
    insert_ticket,
    ticket_times,
    ticket_view,
    touch_ticket,
    update_ticket,
)
from mailgate.threading.resolve import resolve
from mailgate.threading.subject import ticket_subject

log = structlog.get_logger(__name__)

# The claim runs once per batch; statements built once (see store/writes.py).
_PENDING = (
    select(Inbound.id, Inbound.attempts, Inbound.reason)
    .where(
        Inbound.state == "pending",
        or_(Inbound.lease_until.is_(None), Inbound.lease_until < bindparam("b_now")),
    )
    .order_by(Inbound.id)
    .limit(bindparam("b_limit"))
)
_LEASE_INBOUND = (
    update(Inbound)
    .where(Inbound.id.in_(bindparam("b_ids", expanding=True)))
    .values(attempts=Inbound.attempts + 1, lease_until=bindparam("b_until"))
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

# How often the processing loop looks for quiet tickets to close.
AUTO_CLOSE_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Result:
    """What became of one inbound row."""

    inbound_id: int
    state: str  # done | duplicate | quarantined | dropped | rejected | bounce | failed
    ticket_id: int | None = None
    article_id: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    """A leased inbound row, read in the claiming transaction."""

    id: int
    raw: bytes
    mail_from: str
    rcpt_tos: tuple[str, ...]
    source: str
    received_at: datetime
    attempts: int


@dataclass(frozen=True)
class Prepared:
    """The pure part of processing, done outside the write transaction."""

    message: ParsedMessage
    envelope: Envelope
    verdict: guard.GuardVerdict
    dedupe_key: str


def dedupe_key(message: ParsedMessage, raw: bytes) -> str:
    """One key per message: its Message-ID, or its bytes when it has none."""
    if message.message_id:
        return f"mid:{message.message_id}"[:600]
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


class Processor:
    def __init__(
        self,
        runtime: Runtime,
        *,
        batch: int = 32,
        lease_seconds: float = 300.0,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self._batch = batch
        self._lease = timedelta(seconds=lease_seconds)
        self._on_outbox = on_outbox
        self.wake = threading.Event()
        self._next_auto_close = datetime.now(UTC)

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
        try:
            with transaction(self.runtime.sessions) as session:
                return lifecycle.auto_close(session.connection(), self.runtime, now)
        except Exception as exc:  # a database hiccup must not stop processing
            log.error("lifecycle.auto_close_failed", error=str(exc))
            return 0

    def release_leases(self) -> None:
        """Forget leases at start-up: on a single host nobody else holds them."""
        with transaction(self.runtime.sessions) as session:
            session.execute(update(Inbound).where(Inbound.state == "pending").values(lease_until=None))

    def process_pending(self, only_ids: Sequence[int] | None = None) -> list[Result]:
        """Claim up to one batch of pending rows and process them."""
        claimed = self._claim(only_ids)
        if not claimed:
            return []
        # Parsing and the guard are pure and the slowest part: done before the
        # write transaction, so the database is held only for the writes.
        prepared = [(claim, self._prepare(claim)) for claim in claimed]
        keys = [ready.dedupe_key for _, ready in prepared if isinstance(ready, Prepared)]
        results = self._fast_batch(prepared, keys)
        if results is None:
            # The slow, safe path: each message in a savepoint of its own, so
            # one that fails is recorded and the others still commit.
            results = []
            with transaction(self.runtime.sessions) as session:
                known = existing_articles(session.connection(), keys)
                for claim, ready in prepared:
                    results.append(self._process_row(session, claim.id, claim, ready, known))
        crash_point("processed")
        if self._on_outbox is not None:
            self._on_outbox()
        return results

    def _fast_batch(
        self, prepared: list[tuple[Claim, Prepared | BaseException]], keys: list[str]
    ) -> list[Result] | None:
        """The whole batch in one transaction without savepoints, or None.

        Savepoints cost two statements and SQLAlchemy bookkeeping per
        message; nearly every batch has no failure, so it runs without them
        and only a batch that fails is rolled back whole and done again the
        slow way (its "process.stored" log lines then appear twice).
        """
        if any(isinstance(ready, BaseException) for _, ready in prepared):
            return None
        try:
            with transaction(self.runtime.sessions) as session:
                conn = session.connection()
                known = existing_articles(conn, keys)
                return [
                    self.handle(conn, claim.id, claim, ready, known)
                    for claim, ready in prepared
                    if isinstance(ready, Prepared)
                ]
        except Exception as exc:  # redone message by message, each failure recorded
            log.info("process.batch_retried_one_by_one", error=f"{type(exc).__name__}: {exc}")
            return None

    def _prepare(self, claim: Claim) -> Prepared | BaseException:
        try:
            message = parse(claim.raw)
            envelope = Envelope(claim.mail_from, claim.rcpt_tos, claim.source, claim.received_at)
            verdict = guard.check(message, envelope, self.runtime.own, claim.raw)
        except Exception as exc:  # recorded on the row like any other failure
            return exc
        return Prepared(message, envelope, verdict, dedupe_key(message, claim.raw))

    def _claim(self, only_ids: Sequence[int] | None) -> list[Claim]:
        now = datetime.now(UTC)
        limits = self.runtime.config.limits
        with transaction(self.runtime.sessions) as session:
            query = _PENDING
            if only_ids is not None:
                query = query.where(Inbound.id.in_(list(only_ids)))
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # Several instances on one database each take different rows.
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query, {"b_now": now, "b_limit": self._batch}).all()
            claimed = []
            for row_id, attempts, reason in rows:
                if attempts >= limits.max_attempts:
                    why = f"processing failed {attempts} times; last error: {reason or 'the process died'}"
                    session.execute(
                        update(Inbound)
                        .where(Inbound.id == row_id)
                        .values(state="quarantined", reason=why, lease_until=None, processed_at=now)
                    )
                    log.error("process.quarantined", inbound_id=row_id, reason=why)
                    continue
                claimed.append(row_id)
            if not claimed:
                return []
            session.execute(_LEASE_INBOUND, {"b_ids": claimed, "b_until": now + self._lease})
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
                return self.handle(conn, row_id, claim, ready, known)
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

    def handle(
        self, conn: Connection, row_id: int, claim: Claim, ready: Prepared, known: dict[str, tuple[int, int]]
    ) -> Result:
        runtime = self.runtime
        now = datetime.now(UTC)
        message, envelope, verdict = ready.message, ready.envelope, ready.verdict
        bound = log.bind(inbound_id=row_id, message_id=message.message_id)

        if verdict.is_delivery_report:
            # DSNs never become tickets; one about our own mail is recorded.
            bounce = record_bounce(
                conn,
                claim.raw,
                claim.rcpt_tos,
                helpdesk_address=runtime.config.helpdesk.address,
                keys=runtime.keys.keys,
                now=now,
            )
            bound.info("process.bounce", ticket_id=bounce.ticket_id, reason=bounce.reason)
            return self._finish(conn, row_id, "bounce", bounce.reason, now, ticket_id=bounce.ticket_id)

        existing = known.get(ready.dedupe_key)
        if existing is not None:
            article_id, ticket_id = existing
            bound.info("process.duplicate", article_id=article_id, ticket_id=ticket_id)
            reason = f"same message as article {article_id} of ticket {ticket_id}"
            return self._finish(
                conn, row_id, "duplicate", reason, now, ticket_id=ticket_id, article_id=article_id
            )

        thread = resolve(
            message,
            envelope,
            helpdesk_address=runtime.config.helpdesk.address,
            ref_prefix=runtime.config.helpdesk.ref_prefix,
            keys=runtime.keys,
            lookup=CoreTicketLookup(conn),
            token_bases=runtime.directory.token_bases,
            identities=self._agent_identity,
        )
        ticket = ticket_view(conn, thread.ticket_id) if thread.ticket_id is not None else None
        sender = message.sender.email if message.sender else claim.mail_from.lower()
        directory = runtime.directory
        recipients = [*envelope.rcpt_tos, *(a.email for a in (*message.to, *message.cc))]
        comment_queue = next((q for a in recipients if (q := directory.comment_queue(a)) is not None), None)
        is_agent = directory.agent_for(sender) is not None and (ticket is None or sender != ticket.requester)
        if ticket is not None and (is_agent or comment_queue is not None):
            check = check_agent(message, thread, directory, frozenset(runtime.config.trusted_authserv_ids))
            incoming = Incoming(
                row_id, ready.dedupe_key, message, verdict, thread.threaded_by, claim.received_at
            )
            article_id, why = handle_agent_mail(conn, runtime, ticket, incoming, check, comment_queue, now)
            known[ready.dedupe_key] = (article_id, ticket.id)
            bound.info("process.agent_mail", ticket=ticket.ref, article_id=article_id, outcome=why)
            return self._finish(conn, row_id, "done", why, now, ticket_id=ticket.id, article_id=article_id)
        if comment_queue is not None:
            why = f"mail to the comment address of queue {comment_queue.name} does not answer a known ticket"
            return self._finish(conn, row_id, "quarantined", why, now)
        outcome = None
        linked: int | None = None
        if ticket is not None:
            outcome = lifecycle.classify_reply(
                ticket.status,
                from_requester=sender == ticket.requester,
                text=message.new_text,
                human=verdict.may_auto_reply,
                reopen_policy=directory.reopen_policy(ticket.queue),
            )
            if outcome.kind == "new_ticket":
                linked, ticket = ticket.id, None
        decision = runtime.rules.decide(
            message,
            envelope,
            RuleContext(
                is_reply=ticket is not None,
                ticket_status=ticket.status if ticket is not None else None,
                our_addresses=runtime.config.our_addresses,
                now=claim.received_at,
                trusted_authserv_ids=frozenset(runtime.config.trusted_authserv_ids),
                language=ticket.language if ticket is not None else None,
            ),
        )
        if decision.action != "accept":
            state = {"drop": "dropped", "quarantine": "quarantined", "reject": "rejected"}[decision.action]
            bound.info("process.rule_action", action=decision.action, reason=decision.reason)
            return self._finish(conn, row_id, state, f"rule: {decision.reason}", now)

        is_new = ticket is None
        if ticket is None:
            ticket = self._open_ticket(conn, message, decision, now, recipients, linked)
        else:
            self._apply_to_reply(conn, ticket, decision)

        article_id = insert_article(
            conn,
            ticket_id=ticket.id,
            inbound_id=row_id,
            dedupe_key=ready.dedupe_key,
            direction="in",
            visibility="internal" if decision.internal else "public",
            kind="request" if is_new else "reply",
            sender=sender,
            sender_name=message.sender.name if message.sender else "",
            recipients=[a.email for a in (*message.to, *message.cc)],
            message_id=message.message_id,
            subject=message.subject,
            body_text=message.new_text,
            body_full=message.text,
            body_html=message.html,
            threaded_by=thread.threaded_by,
            attachments=store_attachments(conn, message.attachments, runtime.config.limits),
            created_at=claim.received_at,
        )
        known[ready.dedupe_key] = (article_id, ticket.id)
        ours = runtime.is_our_address
        add_participants(
            conn,
            ticket.id,
            [(sender, "requester" if is_new else "cc")]
            + [(a.email, "cc") for a in (*message.to, *message.cc) if a.email and not ours(a.email)],
            new_ticket=is_new,
        )
        insert_event(
            conn,
            ticket.id,
            "created" if is_new else "article_added",
            now,
            article_id=article_id,
            threading=list(thread.reasons),
            guard=verdict.kind,
            guard_reasons=list(verdict.reasons),
            rules=list(decision.matched_rules),
        )
        if is_new:
            self._acknowledge(conn, ticket, message, decision, verdict, now)
            notify_agents(conn, runtime, ticket, message, now, event="new")
        else:
            touch_ticket(conn, ticket.id, now)
            self._follow_reply(conn, ticket, message, outcome, now)
        bound.info(
            "process.stored",
            ticket=ticket.ref,
            ticket_id=ticket.id,
            article_id=article_id,
            threaded_by=thread.threaded_by,
            guard=verdict.kind,
        )
        return self._finish(
            conn, row_id, "done", "; ".join(thread.reasons), now, ticket_id=ticket.id, article_id=article_id
        )

    def _agent_identity(self, sender: str) -> tuple[str, ...]:
        agent = self.runtime.directory.agent_for(sender)
        return (agent.address,) if agent is not None else ()

    def _follow_reply(
        self,
        conn: Connection,
        ticket: TicketView,
        message: ParsedMessage,
        outcome: lifecycle.ReplyOutcome | None,
        now: datetime,
    ) -> None:
        """What a requester-side reply does to the lifecycle, and who hears of it."""
        if outcome is None:
            return
        insert_event(conn, ticket.id, "reply_outcome", now, outcome=outcome.kind, reason=outcome.reason)
        if outcome.kind == "csat" and outcome.rating is not None:
            already = ticket_times(conn, ticket.id).csat_rating
            lifecycle.record_rating(conn, self.runtime, ticket, outcome.rating, already, now)
            return
        if outcome.kind == "quiet":
            return
        if outcome.kind in ("reopen", "answered"):
            ticket = lifecycle.set_status(conn, self.runtime, ticket, "open", now, by="requester")
        notify_agents(conn, self.runtime, ticket, message, now, event="reply")

    def _open_ticket(
        self,
        conn: Connection,
        message: ParsedMessage,
        decision: Decision,
        now: datetime,
        recipients: list[str] | None = None,
        linked: int | None = None,
    ) -> TicketView:
        prefix = self.runtime.config.helpdesk.ref_prefix
        queue = decision.queue
        # Mail to a queue's own address lands in that queue unless a rule said otherwise.
        if "queue" not in decision.changed:
            directory = self.runtime.directory
            routed = next((q for a in recipients or () if (q := directory.queue_for_address(a))), None)
            queue = routed.name if routed is not None else queue
            # A follow-up of a closed ticket stays with the people who knew it.
            previous = ticket_view(conn, linked) if linked is not None else None
            queue = previous.queue if previous is not None else queue
        ticket = insert_ticket(
            conn,
            prefix,
            subject=ticket_subject(message.subject, prefix)[:1000],
            status="new",
            priority=decision.priority,
            queue=queue,
            category=decision.category,
            tags=list(decision.tags),
            language=decision.language,
            requester=message.sender.email if message.sender else "",
            requester_name=" ".join((message.sender.name if message.sender else "").split()),
            assignee=decision.assignee,
            created_at=now,
            updated_at=now,
        )
        if linked is not None:
            update_ticket(conn, ticket.id, linked_ticket_id=linked)
            insert_event(
                conn, ticket.id, "linked", now, previous_ticket=linked, reason="reply to a closed ticket"
            )
            insert_event(conn, linked, "followed_up", now, new_ticket=ticket.id)
        return ticket

    def _apply_to_reply(self, conn: Connection, ticket: TicketView, decision: Decision) -> None:
        changes: dict[str, object] = {}
        # A rule written for replies may change fields; defaults never do.
        for name in ("priority", "queue", "category", "assignee"):
            if name in decision.changed:
                changes[name] = getattr(decision, name)
        if "tags" in decision.changed:
            changes["tags"] = sorted({*ticket.tags, *decision.tags})
        if changes:
            update_ticket(conn, ticket.id, **changes)

    def _acknowledge(
        self,
        conn: Connection,
        ticket: TicketView,
        message: ParsedMessage,
        decision: Decision,
        verdict: guard.GuardVerdict,
        now: datetime,
    ) -> None:
        why_not = None
        if decision.ack_template is None:
            why_not = decision.ack_reason or "rules say: no acknowledgement"
        elif not verdict.may_auto_reply:
            why_not = f"{verdict.kind}: {'; '.join(verdict.reasons)}"
        elif message.sender is None:
            why_not = "no sender address to answer"
        elif (bounced := suppressed(conn, message.sender.email)) is not None:
            why_not = (
                f"address suppressed after a bounce ({bounced}); clear with `mailgate suppressions clear`"
            )
        if why_not is None and message.sender is not None:
            limits = self.runtime.config.limits
            hour, day = automatic_mail_counts(conn, message.sender.email, now)
            rate = automatic_mail_allowed(
                hour,
                day,
                RateLimits(per_hour=limits.auto_replies_per_hour, per_day=limits.auto_replies_per_day),
            )
            if not rate.allowed:
                why_not = rate.reason
                if rate.send_limit_notice:
                    # Exactly one "no more automatic replies today" (it counts
                    # as sent, so the next one finds the day over its limit).
                    notice = render_to(
                        self.runtime,
                        ticket,
                        "limit_notice",
                        message.sender,
                        kind="limit_notice",
                        in_reply_to=message.message_id,
                    )
                    enqueue(conn, self.runtime, ticket.id, notice, automatic=True, now=now)
                    why_not += "; sent the one daily limit notice"
        if why_not is not None:
            insert_event(conn, ticket.id, "ack_suppressed", now, reason=why_not)
            log.info("process.ack_suppressed", ticket=ticket.ref, reason=why_not)
            return
        assert message.sender is not None and decision.ack_template is not None
        references = tuple(message.references) + ((message.message_id,) if message.message_id else ())
        mail = render_to(
            self.runtime,
            ticket,
            decision.ack_template,
            message.sender,
            kind="ack",
            in_reply_to=message.message_id,
            references=references,
        )
        enqueue(conn, self.runtime, ticket.id, mail, automatic=True, now=now)

    @staticmethod
    def _finish(
        conn: Connection,
        row_id: int,
        state: str,
        reason: str,
        now: datetime,
        *,
        ticket_id: int | None = None,
        article_id: int | None = None,
    ) -> Result:
        stored_state = {"duplicate": "done", "bounce": "done"}.get(state, state)
        finish_inbound(conn, row_id, stored_state, reason, now)
        return Result(row_id, state, ticket_id, article_id, reason)
