"""One message, from thread to stored: the middle of the road.

thread (which ticket?) -> rules (route, prioritise) -> store (ticket,
article, participants, event) -> agents (relay, note, commands) ->
acknowledgement. Runs inside the batch transaction that pipeline.py opens;
takes plain values (a parsed message, the guard's verdict) and returns a
plain Result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog
from sqlalchemy import Connection

from mailgate import guard
from mailgate.agents.auth import check_agent
from mailgate.agents.desk import handle_agent_mail, notify_agents
from mailgate.kb import command_address
from mailgate.kb.mailflow import resolve_self_service, with_suggestions
from mailgate.message import Address, Envelope, ParsedMessage, header_sender
from mailgate.rules import Decision, RuleContext
from mailgate.service.runtime import Runtime
from mailgate.sla import track as sla_track
from mailgate.sla.promise import promise
from mailgate.store.writes import (
    CoreTicketLookup,
    TicketView,
    add_participants,
    finish_inbound,
    insert_event,
    insert_ticket,
    ticket_times,
    ticket_view,
    touch_ticket,
    update_ticket,
)
from mailgate.threading.resolve import resolve
from mailgate.threading.subject import ticket_subject
from mailgate.tickets import dedupe, history, lifecycle, requester_road
from mailgate.tickets.articles import Incoming, store_incoming
from mailgate.tickets.bounces import record_bounce
from mailgate.tickets.notify import automatic_mail_permission, enqueue, mail_withheld, render_to, send_notice
from mailgate.tickets.rehome import acknowledged_before, join_awaiting, rehome_replies, remember_awaited

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Result:
    """What became of one inbound row."""

    inbound_id: int
    state: str  # done | duplicate | quarantined | dropped | rejected | bounce | failed | taken_over
    ticket_id: int | None = None
    article_id: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    """A leased inbound row, read in the claiming transaction."""

    id: int
    raw: bytes
    mail_from: str | None  # None: not recorded (see message.Envelope)
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
    # A delivery report's contents, read here so that the write transaction
    # only records it.
    report: guard.DeliveryReport | None = None


class MessageHandler:
    """What happens to one prepared message inside the batch transaction."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def handle(
        self, conn: Connection, row_id: int, claim: Claim, ready: Prepared, known: dict[str, tuple[int, int]]
    ) -> Result:
        if history.is_history(claim.source):
            # Recorded as it happened, dated by the mail, and nobody is mailed.
            with mail_withheld(conn, history.WITHHELD_REASON):
                return self._handle(conn, row_id, claim, ready, known, claim.received_at)
        return self._handle(conn, row_id, claim, ready, known, datetime.now(UTC))

    def _handle(
        self,
        conn: Connection,
        row_id: int,
        claim: Claim,
        ready: Prepared,
        known: dict[str, tuple[int, int]],
        now: datetime,
    ) -> Result:
        runtime = self.runtime
        message, envelope, verdict = ready.message, ready.envelope, ready.verdict
        bound = log.bind(inbound_id=row_id, message_id=message.message_id)

        if verdict.is_delivery_report:
            # DSNs never become tickets; one about our own mail is recorded.
            bounce = record_bounce(
                conn,
                ready.report,
                claim.rcpt_tos,
                helpdesk_address=runtime.config.helpdesk.address,
                keys=runtime.keys.keys,
                now=now,
            )
            bound.info("process.bounce", ticket_id=bounce.ticket_id, reason=bounce.reason)
            return self._finish(conn, row_id, "bounce", bounce.reason, now, ticket_id=bounce.ticket_id)

        # Folded only when the content matches too; see dedupe.py.
        seen = dedupe.sighting(known, ready.dedupe_key, message.message_id)
        if seen.duplicate_of is not None:
            article_id, ticket_id = seen.duplicate_of
            bound.info("process.duplicate", article_id=article_id, ticket_id=ticket_id)
            return self._finish(
                conn, row_id, "duplicate", seen.reason, now, ticket_id=ticket_id, article_id=article_id
            )

        if (kb_mail := command_address.kb_mail(runtime, message, envelope)) is not None:
            # The kb command address: an agent's search, never a ticket (docs/kb.md).
            key = ready.dedupe_key
            state, why = command_address.answer(conn, runtime, kb_mail, message, verdict, key, now)
            bound.info("process.kb_address", state=state, reason=why)
            return self._finish(conn, row_id, state, why, now)

        lookup = CoreTicketLookup(conn)
        thread = resolve(
            message,
            envelope,
            helpdesk_address=runtime.config.helpdesk.address,
            ref_prefix=runtime.config.helpdesk.ref_prefix,
            keys=runtime.keys,
            lookup=lookup,
            token_bases=runtime.directory.token_bases,
            identities=self._agent_identity,
        )
        thread = join_awaiting(conn, thread, message)
        ticket = lookup.view(thread.ticket_id) if thread.ticket_id is not None else None
        # From; without one, the envelope sender, else the Sender header.
        fallback = claim.mail_from or header_sender(message) or ""
        sender = message.sender.email if message.sender else fallback.lower()
        directory = runtime.directory
        recipients = [*envelope.rcpt_tos, *(a.email for a in (*message.to, *message.cc))]
        comment_queue = next((q for a in recipients if (q := directory.comment_queue(a)) is not None), None)
        is_agent = directory.agent_for(sender) is not None and (ticket is None or sender != ticket.requester)
        incoming = Incoming(
            row_id, ready.dedupe_key, message, verdict, thread.threaded_by, claim.received_at, sender
        )
        if ticket is not None and (is_agent or comment_queue is not None):
            check = check_agent(message, thread, directory, runtime.trusted_authserv_ids)
            article_id, why = handle_agent_mail(conn, runtime, ticket, incoming, check, comment_queue, now)
            dedupe.remember(known, ready.dedupe_key, message.message_id, article_id, ticket.id)
            dedupe.record_collision(conn, seen, ticket.id, article_id, message.message_id, now)
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
                our_addresses=runtime.config_addresses,
                now=claim.received_at,
                trusted_authserv_ids=runtime.trusted_authserv_ids,
                language=ticket.language if ticket is not None else None,
            ),
        )
        if decision.action != "accept":
            state = {"drop": "dropped", "quarantine": "quarantined", "reject": "rejected"}[decision.action]
            reason = f"rule: {decision.reason}"
            if decision.action == "reject" and decision.reject_template:
                reason += "; " + self._reject_notice(conn, message, decision, verdict, now)
            bound.info("process.rule_action", action=decision.action, reason=reason)
            return self._finish(conn, row_id, state, reason, now)

        is_new = ticket is None
        received = message
        who: requester_road.NewRequester | None = None
        if ticket is None:
            # The requester road: who the ticket is for (Reply-To, list, forward...).
            who = requester_road.decide(runtime, message, envelope, verdict, decision)
            message, verdict, sender = who.message, who.verdict, who.choice.email
            incoming = replace(incoming, message=message, sender=sender or incoming.sender)
            ticket = self._open_ticket(conn, message, decision, now, recipients, linked)
        else:
            self._apply_to_reply(conn, ticket, decision, now)

        article_id = store_incoming(
            conn,
            runtime,
            ticket.id,
            incoming,
            visibility="internal" if decision.internal else "public",
            kind="request" if is_new else "reply",
            text=message.new_text,
        )
        dedupe.remember(known, ready.dedupe_key, message.message_id, article_id, ticket.id)
        ours = runtime.is_our_address
        not_cc = who.not_cc if who is not None else frozenset()
        add_participants(
            conn,
            ticket.id,
            [(sender, "requester" if is_new else "cc")]
            + [
                (a.email, "cc")
                for a in (*received.to, *received.cc)
                if a.email and not ours(a.email) and a.email not in not_cc
            ],
            new_ticket=is_new,
        )
        # Tickets opened by replies to this mail, before it came, join it here.
        rehomed = rehome_replies(conn, ticket, received, now)
        if thread.threaded_by in ("new", "awaited") and (received.in_reply_to or received.references):
            remember_awaited(conn, ticket.id, received)
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
        if who is not None:
            requester_road.record(conn, runtime, ticket, who, row_id, received, now)
        dedupe.record_collision(conn, seen, ticket.id, article_id, message.message_id, now)
        if decision.notify:
            self._notify_by_rule(conn, ticket, message, decision, sender, now)
        if is_new:
            if who is not None and not who.acknowledge:
                insert_event(conn, ticket.id, "ack_suppressed", now, reason=who.ack_reason)
            else:
                self._acknowledge(conn, ticket, message, decision, verdict, now, claim.received_at, rehomed)
            notify_agents(conn, runtime, ticket, message, now, event="new")
        else:
            touch_ticket(conn, ticket.id, now)
            if not resolve_self_service(conn, runtime, ticket, message, sender, now):
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

    def _notify_by_rule(
        self,
        conn: Connection,
        ticket: TicketView,
        message: ParsedMessage,
        decision: Decision,
        sender: str,
        now: datetime,
    ) -> None:
        """The rules' `notify:` addresses hear of the mail (internal: no rate limit)."""
        article = {
            "sender": sender,
            "sender_name": message.sender.name if message.sender else "",
            "text": message.new_text,
        }
        for address in dict.fromkeys(a.lower() for a in decision.notify):
            if address == sender:
                continue
            mail = render_to(
                self.runtime,
                ticket,
                "rule_notify",
                Address(address),
                kind="rule_notify",
                extra={"article": article, "rules": list(decision.matched_rules)},
                in_reply_to=message.message_id,
                auto_submitted="auto-generated",
            )
            enqueue(conn, self.runtime, ticket.id, mail, automatic=False, now=now, visibility="internal")

    def _reject_notice(
        self,
        conn: Connection,
        message: ParsedMessage,
        decision: Decision,
        verdict: guard.GuardVerdict,
        now: datetime,
    ) -> str:
        """Tell the sender why their mail was refused, if we may answer them at all."""
        assert decision.reject_template is not None
        permission = automatic_mail_permission(conn, self.runtime, verdict, message.sender, now)
        if permission.refused is not None or message.sender is None:
            return f"no notice: {permission.refused}"
        send_notice(
            conn,
            self.runtime,
            decision.reject_template,
            message.sender,
            {
                "requester": {"name": message.sender.name, "email": message.sender.email},
                "original": {"subject": message.subject},
                # Only the admin's `reason:` text, never our rule's name or line.
                "reason": decision.reason.partition("): ")[2] or "it matched one of our filtering rules",
            },
            language=decision.language,
            queue=self.runtime.directory.template_folder(decision.queue),
            in_reply_to=message.message_id,
            now=now,
        )
        return f"notice {decision.reject_template!r} sent to {message.sender.email}"

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
        sla_track.requester_wrote(conn, self.runtime, ticket.id, now)
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
        sla_track.start(conn, self.runtime, ticket.id, decision.sla, decision.priority, now)
        if linked is not None:
            update_ticket(conn, ticket.id, linked_ticket_id=linked)
            insert_event(
                conn, ticket.id, "linked", now, previous_ticket=linked, reason="reply to a closed ticket"
            )
            insert_event(conn, linked, "followed_up", now, new_ticket=ticket.id)
        return ticket

    def _apply_to_reply(
        self, conn: Connection, ticket: TicketView, decision: Decision, now: datetime
    ) -> None:
        changes: dict[str, object] = {}
        # A rule written for replies may change fields; defaults never do.
        for name in ("priority", "queue", "category", "assignee"):
            if name in decision.changed:
                changes[name] = getattr(decision, name)
        if "tags" in decision.changed:
            changes["tags"] = sorted({*ticket.tags, *decision.tags})
        if changes:
            update_ticket(conn, ticket.id, **changes)
        if {"priority", "queue", "sla"} & decision.changed:
            sla = decision.sla if "sla" in decision.changed else None
            sla_track.refresh(conn, self.runtime, ticket.id, now, why="rule on a reply", sla=sla)

    def _acknowledge(
        self,
        conn: Connection,
        ticket: TicketView,
        message: ParsedMessage,
        decision: Decision,
        verdict: guard.GuardVerdict,
        now: datetime,
        received_at: datetime,
        rehomed: tuple[str, ...] = (),
    ) -> None:
        why_not = None
        sender = message.sender.email if message.sender else ""
        if decision.ack_template is None:
            why_not = decision.ack_reason or "rules say: no acknowledgement"
        elif too_old := history.too_old_to_acknowledge(
            received_at, message.date, datetime.now(UTC), self.runtime.config.limits.ack_max_age_days
        ):
            why_not = too_old
        elif rehomed and acknowledged_before(conn, ticket.id, sender):
            why_not = f"{sender} was already acknowledged on {', '.join(rehomed)}, merged into this ticket"
        else:
            permission = automatic_mail_permission(conn, self.runtime, verdict, message.sender, now)
            why_not = permission.refused
            if permission.limit_notice and message.sender is not None:
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
                why_not = f"{permission.refused}; sent the one daily limit notice"
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
            extra={"sla": promise(conn, self.runtime, ticket.id, ticket.language, now)},
            in_reply_to=message.message_id,
            references=references,
        )
        mail = with_suggestions(conn, self.runtime, ticket, message, mail, now, decision)
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
        # A history import dates everything by the mail; processing happened now.
        finish_inbound(conn, row_id, stored_state, reason, max(now, datetime.now(UTC)))
        return Result(row_id, state, ticket_id, article_id, reason)
