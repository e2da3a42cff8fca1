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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mailgate import guard
from mailgate.faults import crash_point
from mailgate.guard.ratelimit import RateLimits, automatic_mail_allowed
from mailgate.message import Envelope, ParsedMessage
from mailgate.notify import enqueue, render_to
from mailgate.parse import parse
from mailgate.rules import Decision, RuleContext
from mailgate.runtime import Runtime
from mailgate.store.db import transaction
from mailgate.store.models import Article, Inbound, Ticket
from mailgate.store.tickets import (
    SqlTicketLookup,
    add_event,
    add_participant,
    article_with_key,
    automatic_mail_counts,
)
from mailgate.threading.resolve import ThreadDecision, resolve
from mailgate.threading.subject import ticket_subject

log = structlog.get_logger(__name__)

REOPENING_STATUSES = ("resolved", "closed")


@dataclass(frozen=True)
class Result:
    """What became of one inbound row."""

    inbound_id: int
    state: str  # done | duplicate | quarantined | dropped | rejected | bounce | failed
    ticket_id: int | None = None
    article_id: int | None = None
    reason: str = ""


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

    # -- driving -----------------------------------------------------------

    def run(self, stop: threading.Event, *, idle_poll_seconds: float = 2.0) -> None:
        while not stop.is_set():
            try:
                done = self.process_pending()
            except Exception as exc:  # noqa: BLE001 - keep processing after a database hiccup
                log.error("process.loop_error", error=str(exc))
                done = []
            if not done:
                self.wake.wait(idle_poll_seconds)
                self.wake.clear()

    def release_leases(self) -> None:
        """Forget leases at start-up: on a single host nobody else holds them."""
        with transaction(self.runtime.sessions) as session:
            session.execute(
                update(Inbound).where(Inbound.state == "pending").values(lease_until=None)
            )

    def process_pending(self, only_ids: Sequence[int] | None = None) -> list[Result]:
        """Claim up to one batch of pending rows and process them."""
        claimed = self._claim(only_ids)
        if not claimed:
            return []
        results: list[Result] = []
        with transaction(self.runtime.sessions) as session:
            for row in session.scalars(select(Inbound).where(Inbound.id.in_(claimed)).order_by(Inbound.id)):
                results.append(self._process_row(session, row))
        crash_point("processed")
        if self._on_outbox is not None:
            self._on_outbox()
        return results

    def _claim(self, only_ids: Sequence[int] | None) -> list[int]:
        now = datetime.now(UTC)
        limits = self.runtime.config.limits
        with transaction(self.runtime.sessions) as session:
            query = (
                select(Inbound.id, Inbound.attempts, Inbound.reason)
                .where(
                    Inbound.state == "pending",
                    or_(Inbound.lease_until.is_(None), Inbound.lease_until < now),
                )
                .order_by(Inbound.id)
                .limit(self._batch)
            )
            if only_ids is not None:
                query = query.where(Inbound.id.in_(list(only_ids)))
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # Several instances on one database each take different rows.
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
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
            if claimed:
                session.execute(
                    update(Inbound)
                    .where(Inbound.id.in_(claimed))
                    .values(attempts=Inbound.attempts + 1, lease_until=now + self._lease)
                )
        return claimed

    def _process_row(self, session: Session, row: Inbound) -> Result:
        try:
            with session.begin_nested():
                result = self.handle(session, row)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the batch
            # The savepoint is gone; record why on the row and retry later.
            backoff = timedelta(seconds=30 * max(1, row.attempts))
            row.reason = f"attempt {row.attempts}: {type(exc).__name__}: {exc}"[:2000]
            row.lease_until = datetime.now(UTC) + backoff
            log.exception("process.failed", inbound_id=row.id, attempt=row.attempts)
            return Result(row.id, "failed", reason=row.reason)
        return result

    # -- one message -------------------------------------------------------

    def handle(self, session: Session, row: Inbound) -> Result:
        runtime = self.runtime
        now = datetime.now(UTC)
        message = parse(row.raw)
        envelope = Envelope(row.mail_from, tuple(row.rcpt_tos or ()), row.source, row.received_at)
        bound = log.bind(inbound_id=row.id, message_id=message.message_id)
        verdict = guard.check(message, envelope, runtime.own, row.raw)

        if verdict.is_delivery_report:
            return self._finish(row, "bounce", f"delivery report, not a request: {'; '.join(verdict.reasons)}", now)

        key = dedupe_key(message, row.raw)
        existing = article_with_key(session, key)
        if existing is not None:
            bound.info("process.duplicate", article_id=existing.id, ticket_id=existing.ticket_id)
            return self._finish(
                row, "duplicate", f"same message as article {existing.id} of ticket {existing.ticket_id}",
                now, ticket_id=existing.ticket_id, article_id=existing.id,
            )

        thread = resolve(
            message,
            envelope,
            helpdesk_address=runtime.config.helpdesk.address,
            ref_prefix=runtime.config.helpdesk.ref_prefix,
            keys=runtime.keys,
            lookup=SqlTicketLookup(session),
        )
        ticket = session.get(Ticket, thread.ticket_id) if thread.ticket_id is not None else None
        decision = runtime.rules.decide(
            message,
            envelope,
            RuleContext(
                is_reply=ticket is not None,
                ticket_status=ticket.status if ticket is not None else None,
                our_addresses=runtime.config.our_addresses,
                now=row.received_at,
                trusted_authserv_ids=frozenset(runtime.config.trusted_authserv_ids),
                language=ticket.language if ticket is not None else None,
            ),
        )
        if decision.action != "accept":
            state = {"drop": "dropped", "quarantine": "quarantined", "reject": "rejected"}[decision.action]
            bound.info("process.rule_action", action=decision.action, reason=decision.reason)
            return self._finish(row, state, f"rule: {decision.reason}", now)

        if ticket is None:
            ticket = self._open_ticket(session, message, decision, now)
        else:
            self._apply_to_reply(session, ticket, decision, verdict, now)

        sender = message.sender.email if message.sender else row.mail_from.lower()
        article = Article(
            ticket_id=ticket.id,
            inbound_id=row.id,
            dedupe_key=key,
            direction="in",
            visibility="internal" if decision.internal else "public",
            kind="request" if thread.ticket_id is None else "reply",
            sender=sender,
            sender_name=message.sender.name if message.sender else "",
            recipients=[a.email for a in (*message.to, *message.cc)],
            message_id=message.message_id,
            subject=message.subject,
            body_text=message.new_text,
            body_full=message.text,
            body_html=message.html,
            threaded_by=thread.threaded_by,
            created_at=row.received_at,
        )
        session.add(article)
        session.flush()
        self._record_people(session, ticket, message, sender, is_new=thread.ticket_id is None)
        add_event(
            session,
            ticket.id,
            "created" if thread.ticket_id is None else "article_added",
            article_id=article.id,
            threading=list(thread.reasons),
            guard=verdict.kind,
            guard_reasons=list(verdict.reasons),
            rules=list(decision.matched_rules),
        )
        if thread.ticket_id is None:
            self._acknowledge(session, ticket, article, message, decision, verdict, now)
        ticket.updated_at = now
        bound.info(
            "process.stored",
            ticket=ticket.ref,
            ticket_id=ticket.id,
            article_id=article.id,
            threaded_by=thread.threaded_by,
            guard=verdict.kind,
        )
        return self._finish(row, "done", "; ".join(thread.reasons), now, ticket_id=ticket.id, article_id=article.id)

    def _open_ticket(self, session: Session, message: ParsedMessage, decision: Decision, now: datetime) -> Ticket:
        prefix = self.runtime.config.helpdesk.ref_prefix
        ticket = Ticket(
            # The reference needs the id; a unique placeholder fills the gap.
            ref=f"new-{uuid.uuid4().hex}",
            subject=ticket_subject(message.subject, prefix)[:1000],
            status="new",
            priority=decision.priority,
            queue=decision.queue,
            category=decision.category,
            tags=list(decision.tags),
            language=decision.language,
            requester=message.sender.email if message.sender else "",
            requester_name=" ".join((message.sender.name if message.sender else "").split()),
            assignee=decision.assignee,
            created_at=now,
            updated_at=now,
        )
        session.add(ticket)
        session.flush()
        ticket.ref = f"{prefix}-{ticket.id}"
        return ticket

    def _apply_to_reply(
        self, session: Session, ticket: Ticket, decision: Decision, verdict: guard.GuardVerdict, now: datetime
    ) -> None:
        # A rule written for replies may change fields; defaults never do.
        for name in ("priority", "queue", "category", "assignee"):
            if name in decision.changed:
                setattr(ticket, name, getattr(decision, name))
        if "tags" in decision.changed:
            ticket.tags = sorted({*(ticket.tags or []), *decision.tags})
        if ticket.status in REOPENING_STATUSES and verdict.may_auto_reply:
            add_event(session, ticket.id, "reopened", previous=ticket.status, reason="requester replied")
            ticket.status = "open"
            ticket.resolved_at = None
            ticket.closed_at = None

    def _record_people(
        self, session: Session, ticket: Ticket, message: ParsedMessage, sender: str, *, is_new: bool
    ) -> None:
        ours = self.runtime.is_our_address
        add_participant(session, ticket.id, sender, "requester" if is_new else "cc")
        for address in (*message.to, *message.cc):
            if address.email and not ours(address.email):
                add_participant(session, ticket.id, address.email, "cc")

    def _acknowledge(
        self,
        session: Session,
        ticket: Ticket,
        article: Article,
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
        if why_not is None and message.sender is not None:
            limits = self.runtime.config.limits
            hour, day = automatic_mail_counts(session, message.sender.email, now)
            rate = automatic_mail_allowed(
                hour, day, RateLimits(per_hour=limits.auto_replies_per_hour, per_day=limits.auto_replies_per_day)
            )
            if not rate.allowed:
                why_not = rate.reason
        if why_not is not None:
            add_event(session, ticket.id, "ack_suppressed", reason=why_not)
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
        enqueue(session, self.runtime, ticket, mail, automatic=True)

    @staticmethod
    def _finish(
        row: Inbound, state: str, reason: str, now: datetime, *, ticket_id: int | None = None,
        article_id: int | None = None,
    ) -> Result:
        row.state = {"duplicate": "done", "bounce": "done"}.get(state, state)
        row.reason = reason[:2000]
        row.lease_until = None
        row.processed_at = now
        return Result(row.id, state, ticket_id, article_id, reason)


def thread_summary(thread: ThreadDecision) -> str:
    return f"{thread.threaded_by}: {'; '.join(thread.reasons)}"
