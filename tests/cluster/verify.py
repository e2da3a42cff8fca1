"""What became of every mail: counted in the database and at the sink.

``check`` compares what the test gave the cluster (``Sent``) with the
tickets and articles in PostgreSQL and the mails at the sink:

* every accepted mail is exactly one inbound article (lost: none; doubled:
  more than one), a request on a ticket of its own, a reply on its request's;
* ticket refs are unique;
* each requester got exactly one acknowledgement (one Message-ID); the same
  Message-ID arriving again is a *resend* (allowed: at most one per kill);
* no service-level warning or breach was mailed twice for one ticket to one
  person.

``ClaimWatch`` measures a takeover: the rows leased at the moment of a kill,
and how long until the last of them was finished by someone else.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.cluster.instances import ACK_MARK, RecordingSink
from tests.cluster.mailflow import Sent

REF = re.compile(r"\[([A-Z]+-\d+)\]")


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(libpq_url(url), connect_timeout=5) as connection:
        return list(connection.execute(sql, params).fetchall())


def bare(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>").strip()


@dataclass
class Findings:
    mails: int = 0
    requests: int = 0
    replies: int = 0
    imap: int = 0
    again: int = 0
    unaccepted: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    misthreaded: list[str] = field(default_factory=list)
    tickets: int = 0
    extra_tickets: int = 0
    duplicate_refs: list[str] = field(default_factory=list)
    refs_out_of_order: int = 0
    acks_missing: list[str] = field(default_factory=list)
    acks_doubled: list[str] = field(default_factory=list)
    ack_resends: int = 0
    ack_resend_examples: list[str] = field(default_factory=list)
    acks_without_shared_template: int = 0
    escalation_mails: int = 0
    escalation_resends: int = 0
    escalations_doubled: list[str] = field(default_factory=list)
    sla_marks: dict[str, int] = field(default_factory=dict)
    inbound_states: dict[str, int] = field(default_factory=dict)
    outbox_states: dict[str, int] = field(default_factory=dict)
    # Inbound rows processed more than 30 s after they arrived, and the longest wait:
    # a claim that sat (a dead owner's, or one orphaned by a database restart).
    slow_rows: int = 0
    longest_wait: float = 0.0
    # Inbound rows still pending at the end, with their leases: a claim nobody took over.
    stuck: list[str] = field(default_factory=list)
    refused_answers: Counter[str] = field(default_factory=Counter)

    def problems(self, allowed_resends: int) -> list[str]:
        found = []
        for name in ("unaccepted", "lost", "doubled", "misthreaded", "duplicate_refs", "acks_missing"):
            values = getattr(self, name)
            if values:
                found.append(f"{name}: {len(values)}, e.g. {values[:5]}")
        if self.acks_doubled:
            found.append(f"acks_doubled (two different acks): {self.acks_doubled[:5]}")
        if self.escalations_doubled:
            found.append(f"escalations_doubled: {self.escalations_doubled[:5]}")
        if self.extra_tickets:
            found.append(f"{self.extra_tickets} tickets that no request made")
        if self.ack_resends > allowed_resends:
            found.append(
                f"{self.ack_resends} same-Message-ID ack resends, more than {allowed_resends} "
                f"(one per kill): {self.ack_resend_examples[:5]}"
            )
        if self.acks_without_shared_template:
            found.append(f"{self.acks_without_shared_template} acks not made from the shared template")
        stuck = {k: v for k, v in self.inbound_states.items() if k != "done"}
        if stuck:
            found.append(f"inbound rows not done: {stuck}; {self.stuck[:3]} ... {self.stuck[-2:]}")
        if set(self.outbox_states) - {"sent"}:
            found.append(f"outbox rows not sent: {self.outbox_states}")
        return found

    def summary(self) -> str:
        return (
            f"mails {self.mails} (requests {self.requests}, replies {self.replies}, imap {self.imap}, "
            f"second copies {self.again}); "
            f"tickets {self.tickets} (refs duplicated {len(self.duplicate_refs)}, "
            f"out of id order {self.refs_out_of_order}); lost {len(self.lost)}; doubled {len(self.doubled)}; "
            f"misthreaded {len(self.misthreaded)}; unaccepted {len(self.unaccepted)}; "
            f"acks missing {len(self.acks_missing)}, doubled {len(self.acks_doubled)}, "
            f"resent {self.ack_resends}; escalation mails {self.escalation_mails} "
            f"(resent {self.escalation_resends}, doubled {len(self.escalations_doubled)}); "
            f"sla marks {self.sla_marks}; inbound {self.inbound_states}; outbox {self.outbox_states}; "
            f"processed over 30 s after arrival {self.slow_rows} (longest {self.longest_wait:.0f} s)"
        )


def check(url: str, sent: Sequence[Sent], sink: RecordingSink) -> Findings:
    found = Findings(mails=len(sent))
    for mail in sent:
        for refusal in mail.refusals:
            found.refused_answers[refusal.split(": ", 1)[-1][:40]] += 1
    articles: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for message_id, ticket_id, article_id in query(
        url, "SELECT message_id, ticket_id, id FROM articles WHERE direction = 'in'"
    ):
        articles[bare(message_id)].append((ticket_id, article_id))
    tickets = {
        tid: (ref, requester) for tid, ref, requester in query(url, "SELECT id, ref, requester FROM tickets")
    }
    found.tickets = len(tickets)
    found.duplicate_refs = [
        str(ref) for (ref,) in query(url, "SELECT ref FROM tickets GROUP BY ref HAVING count(*) > 1")
    ]
    numbers = [int(ref.rpartition("-")[2]) for _, (ref, _) in sorted(tickets.items()) if ref[-1:].isdigit()]
    found.refs_out_of_order = sum(1 for a, b in itertools.pairwise(numbers) if b <= a)
    found.inbound_states = dict(query(url, "SELECT state, count(*) FROM inbound GROUP BY state"))
    found.outbox_states = dict(query(url, "SELECT state, count(*) FROM outbox GROUP BY state"))
    found.sla_marks = dict(query(url, "SELECT kind, count(*) FROM sla_marks GROUP BY kind"))
    slow, longest = query(
        url,
        "SELECT count(*) FILTER (WHERE processed_at - received_at > interval '30 seconds'),"
        " coalesce(extract(epoch FROM max(processed_at - received_at)), 0) FROM inbound",
    )[0]
    found.slow_rows, found.longest_wait = int(slow), float(longest)
    found.stuck = [
        f"inbound {row_id} ({source}, received {received:%H:%M:%S}) attempts {attempts}, leased until "
        + (f"{lease:%H:%M:%S}" if lease else "-")
        + f" by {owner}"
        for row_id, source, received, attempts, lease, owner in query(
            url,
            "SELECT i.id, i.source, i.received_at, i.attempts, i.lease_until,"
            " coalesce(o.name || '/' || o.kind || ' pid ' || o.pid, i.lease_owner::text)"
            " FROM inbound i LEFT JOIN instances o ON o.id = i.lease_owner"
            " WHERE i.state = 'pending' ORDER BY i.id",
        )
    ]

    ticket_of: dict[str, int] = {}
    made_by_us: set[int] = set()
    for mail in sent:
        if mail.kind == "again":
            # The same message again: stored once (checked with its first copy).
            found.again += 1
            if mail.accepted_at is None:
                found.unaccepted.append(f"{mail.message_id} (again; {mail.refusals[-3:]})")
            continue
        found.requests += mail.kind == "request"
        found.replies += mail.kind == "reply"
        found.imap += mail.kind == "imap"
        if mail.accepted_at is None:
            found.unaccepted.append(f"{mail.message_id} ({mail.kind}; {mail.refusals[-3:]})")
            continue
        stored = articles.get(bare(mail.message_id), [])
        if not stored:
            found.lost.append(f"{mail.message_id} ({mail.kind}, accepted by {mail.accepted_by})")
            continue
        if len(stored) > 1:
            found.doubled.append(f"{mail.message_id} ({mail.kind}): articles {stored}")
        ticket_id = stored[0][0]
        ticket_of[mail.message_id] = ticket_id
        if mail.kind in ("request", "imap"):
            made_by_us.add(ticket_id)
            requester = tickets.get(ticket_id, ("", ""))[1]
            if requester.lower() != mail.sender.lower():
                found.misthreaded.append(f"{mail.message_id}: on ticket {ticket_id} of {requester}")
    for mail in sent:
        if mail.kind != "reply" or mail.parent not in ticket_of or mail.message_id not in ticket_of:
            continue
        if ticket_of[mail.message_id] != ticket_of[mail.parent]:
            found.misthreaded.append(
                f"reply {mail.message_id} on ticket {ticket_of[mail.message_id]}, "
                f"its request on {ticket_of[mail.parent]}"
            )
    found.extra_tickets = len(set(tickets) - made_by_us)
    _check_acks(found, sent, sink)
    _check_escalations(found, sink)
    return found


def _check_acks(found: Findings, sent: Sequence[Sent], sink: RecordingSink) -> None:
    by_rcpt: dict[str, list[Any]] = defaultdict(list)
    for mail in sink.mails():
        if mail.subject.startswith("[SLA]"):
            continue
        for rcpt in mail.rcpts:
            by_rcpt[rcpt].append(mail)
    for request in sent:
        if request.kind not in ("request", "imap") or request.accepted_at is None:
            continue
        acks = [
            m
            for m in by_rcpt.get(request.sender.lower(), [])
            if bare(m.in_reply_to) == bare(request.message_id)
        ]
        other = [m for m in by_rcpt.get(request.sender.lower(), []) if m not in acks]
        distinct = {m.message_id for m in acks}
        if not acks:
            found.acks_missing.append(request.message_id)
            continue
        if len(distinct) > 1 or other:
            found.acks_doubled.append(f"{request.sender}: {sorted(distinct)} + {len(other)} other")
        resent = len(acks) - len(distinct)
        if resent:
            found.ack_resends += resent
            found.ack_resend_examples.append(
                f"{request.sender} {acks[0].message_id} x{len(acks)} at "
                + ", ".join(time.strftime("%H:%M:%S", time.gmtime(m.arrived)) for m in acks)
            )
        found.acks_without_shared_template += sum(1 for m in acks if ACK_MARK not in m.body)


def _check_escalations(found: Findings, sink: RecordingSink) -> None:
    """Each (person, ticket, breach or warning) in at most one escalation mail."""
    copies: Counter[tuple[str, str]] = Counter()
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for mail in sink.mails():
        if not mail.subject.startswith("[SLA]") or "tickets" in mail.subject.lower():
            continue
        for rcpt in mail.rcpts:
            copies[(rcpt, mail.message_id)] += 1
            breaches, _, warnings = mail.body.partition("close to being missed")
            for level, text in (("breach", breaches), ("warning", warnings)):
                for ref in REF.findall(text):
                    seen[(rcpt, level, ref)].add(mail.message_id)
    found.escalation_mails = sum(copies.values())
    found.escalation_resends = sum(count - 1 for count in copies.values())
    found.escalations_doubled = [
        f"{level} of {ref} to {rcpt} in {len(ids)} mails"
        for (rcpt, level, ref), ids in seen.items()
        if len(ids) > 1
    ]


def settle(
    url: str,
    sent: Sequence[Sent],
    sink: RecordingSink,
    timeout: float,
    also: Callable[[], bool] = lambda: True,
) -> float:
    """Wait until nothing is pending or queued and every request has its ack;
    the seconds it took (``timeout`` if it never did)."""
    began = time.monotonic()
    wanted = {bare(m.message_id) for m in sent if m.kind in ("request", "imap") and m.accepted_at}
    while time.monotonic() - began < timeout:
        with contextlib.suppress(Exception):
            acked = {bare(m.in_reply_to) for m in sink.mails()}
            busy = query(
                url,
                "SELECT (SELECT count(*) FROM inbound WHERE state = 'pending')"
                " + (SELECT count(*) FROM outbox WHERE state = 'queued')",
            )[0][0]
            if busy == 0 and wanted <= acked and also():
                return time.monotonic() - began
        time.sleep(0.2)
    return timeout


@dataclass
class Takeover:
    """The rows leased when an instance was killed, and when the last was finished."""

    label: str
    killed_at: float
    inbound: list[int]
    outbox: list[int]
    finished_at: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.killed_at

    def describe(self) -> str:
        took = "not finished" if self.seconds is None else f"{self.seconds:.1f} s"
        return f"{self.label}: {len(self.inbound)} inbound + {len(self.outbox)} outbox rows leased, {took}"


class ClaimWatch:
    """Snapshot the leased rows right after a kill, then poll until all are finished."""

    def __init__(
        self, url: str, label: str, killed_at: float, instance: str | None = None, timeout: float = 400.0
    ) -> None:
        inbound, outbox = self._leased(url, instance)
        self.result = Takeover(label, killed_at, inbound, outbox)
        self._url = url
        self._timeout = timeout
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _leased(url: str, instance: str | None) -> tuple[list[int], list[int]]:
        """Rows leased by the processes of ``instance`` (by lease_owner, issue 13's
        core); without owners, every row leased now (the live instances' finish at once)."""
        found: dict[str, list[int]] = {}
        for table, state in (("inbound", "pending"), ("outbox", "queued")):
            leased = f"SELECT id FROM {table} WHERE state = '{state}' AND lease_until > now()"
            owned = (
                leased
                + " AND lease_owner IN (SELECT id FROM instances WHERE name = %s AND stopped_at IS NULL)"
            )
            rows: list[tuple[Any, ...]] = []
            with contextlib.suppress(Exception):
                rows = query(url, owned, instance) if instance else query(url, leased)
            found[table] = [row[0] for row in rows]
        return found["inbound"], found["outbox"]

    def _run(self) -> None:
        result = self.result
        if not result.inbound and not result.outbox:
            result.finished_at = result.killed_at
            return
        while time.time() - result.killed_at < self._timeout:
            with contextlib.suppress(Exception):
                left = query(
                    self._url,
                    "SELECT (SELECT count(*) FROM inbound WHERE id = ANY(%s) AND state = 'pending')"
                    " + (SELECT count(*) FROM outbox WHERE id = ANY(%s) AND state = 'queued')",
                    result.inbound,
                    result.outbox,
                )[0][0]
                if left == 0:
                    result.finished_at = time.time()
                    return
            time.sleep(0.1)

    def join(self, timeout: float | None = None) -> Takeover:
        self._thread.join(timeout)
        return self.result


def stored_at(url: str, message_id: str, timeout: float) -> float | None:
    """Poll until an inbound article with this Message-ID exists; its time.time()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if query(
                url,
                "SELECT 1 FROM articles WHERE direction = 'in' AND message_id IN (%s, %s)",
                message_id,
                bare(message_id),
            ):
                return time.time()
        time.sleep(0.05)
    return None


def inbound_stored_at(url: str, raw_marker: str, timeout: float) -> float | None:
    """Poll until an IMAP inbound row holding ``raw_marker`` is stored; its time.time()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if query(
                url,
                "SELECT 1 FROM inbound WHERE source LIKE 'imap%%' AND position(%s in raw) > 0",
                raw_marker.encode(),
            ):
                return time.time()
        time.sleep(0.05)
    return None
