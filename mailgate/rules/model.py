"""The plain values the rules stage takes and returns.

``RuleContext`` is what the caller knows about a message besides its content
(is it a reply, the ticket's status, the clock); ``Decision`` is what the rules
made of it, with a trace that says why, rule by rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal

Priority = Literal["low", "normal", "high", "urgent"]
Action = Literal["accept", "quarantine", "reject", "drop"]

PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
# A ticket's statuses, in the order of its life; the first three wait for work.
STATUSES: tuple[str, ...] = ("new", "open", "pending", "resolved", "closed")
OPEN_STATUSES: tuple[str, ...] = STATUSES[:3]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a rules file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.reason}"


class RulesError(Exception):
    """A rules file cannot be used; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class RuleContext:
    """What the caller knows about a message that its content does not say."""

    is_reply: bool = False
    ticket_status: str | None = None
    our_addresses: frozenset[str] = frozenset()
    now: datetime | None = None
    trusted_authserv_ids: frozenset[str] = frozenset()
    language: str | None = None


@dataclass(frozen=True)
class RuleTrace:
    """One rule's verdict: its name, its line in the file, and why."""

    name: str
    line: int
    matched: bool
    reason: str

    def __str__(self) -> str:
        verdict = "matched" if self.matched else "no match"
        return f"line {self.line}: {self.name}: {verdict}: {self.reason}"


def _no_trace() -> tuple[RuleTrace, ...]:
    return ()


@dataclass(frozen=True)
class Decision:
    """What the rules decided for one message, and why.

    ``trace`` is built on first access: with a thousand rules, writing a
    thousand explanations for every message would cost more than routing it,
    and the daemon only reads the trace when it logs at debug level or when
    ``mailgate rules test`` asks.
    """

    queue: str
    priority: Priority
    category: str | None
    tags: tuple[str, ...]
    assignee: str | None
    language: str
    sla: str | None
    ack_template: str | None
    ack_reason: str
    notify: tuple[str, ...]
    internal: bool
    action: Action
    reject_template: str | None
    reason: str
    # Names of the matched rules, in order; cheap, so always filled in.
    matched_rules: tuple[str, ...] = ()
    # Decision fields that a matched rule set (the rest are defaults). For a
    # reply, the caller applies only these to the existing ticket.
    changed: frozenset[str] = frozenset()
    # Where the requester of a new ticket comes from, in order, and who said
    # so (tickets/requester.py); explicit when an admin wrote the order.
    requester_order: tuple[str, ...] = ()
    requester_by: str = "the defaults"
    requester_explicit: bool = False
    # Whether the original sender of an agent's forward gets an acknowledgement.
    acknowledge_forwards: bool = True
    # Knowledge-base suggestions as the rules set them (None: the ``kb:``
    # configuration decides), and which rule said so (docs/kb.md).
    kb_suggest: bool | None = None
    kb_articles: tuple[str, ...] | None = None
    kb_by: str = ""
    explain: Callable[[], tuple[RuleTrace, ...]] = field(default=_no_trace, repr=False, compare=False)

    @cached_property
    def trace(self) -> tuple[RuleTrace, ...]:
        """One entry per rule evaluated, in file order."""
        return self.explain()

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view, trace included."""
        return {
            "queue": self.queue,
            "priority": self.priority,
            "category": self.category,
            "tags": list(self.tags),
            "assignee": self.assignee,
            "language": self.language,
            "sla": self.sla,
            "ack_template": self.ack_template,
            "ack_reason": self.ack_reason,
            "notify": list(self.notify),
            "internal": self.internal,
            "action": self.action,
            "reject_template": self.reject_template,
            "reason": self.reason,
            "matched_rules": list(self.matched_rules),
            "changed": sorted(self.changed),
            "requester_order": list(self.requester_order),
            "requester_by": self.requester_by,
            "acknowledge_forwards": self.acknowledge_forwards,
            "kb_suggest": self.kb_suggest,
            "kb_articles": None if self.kb_articles is None else list(self.kb_articles),
            "kb_by": self.kb_by,
            "trace": [
                {"rule": t.name, "line": t.line, "matched": t.matched, "reason": t.reason} for t in self.trace
            ],
        }
