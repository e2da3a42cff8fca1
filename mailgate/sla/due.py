"""A ticket's clock, pure: due times, what is breached, when to look next.

``Clock`` is the stored state of one ticket's service level; every function
here takes it and a level and returns plain values, so the rules about
pauses, priority changes and warnings are tested without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailgate.sla import clock
from mailgate.sla.policy import ServiceLevel

STOPPED = ("resolved", "closed")


@dataclass(frozen=True)
class Clock:
    """The SLA columns of one ticket, as stored."""

    id: int
    sla: str | None
    priority: str
    status: str
    created_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    first_response_due: datetime | None
    next_reply_due: datetime | None
    resolution_due: datetime | None
    sla_paused_at: datetime | None
    sla_paused_seconds: int


def clock_of(ticket: Any) -> Clock:
    """The clock of a stored ticket (an ORM row or anything with the same attributes)."""
    return Clock(
        **{name: getattr(ticket, name) for name in Clock.__dataclass_fields__}
        | {"sla_paused_seconds": ticket.sla_paused_seconds or 0}
    )


@dataclass(frozen=True)
class Stage:
    """One moment a target reaches: its warning or its breach."""

    target: str  # first_response | next_reply | resolution
    level: str  # warning | breach
    at: datetime
    due: datetime

    def key(self, ticket_id: int) -> str:
        """The once-only key: one per ticket, target and level (next reply: per cycle)."""
        cycle = f":{int(self.due.timestamp())}" if self.target == "next_reply" else ""
        return f"esc:{ticket_id}:{self.target}:{self.level}{cycle}"


def due_times(
    level: ServiceLevel, priority: str, created_at: datetime, paused_seconds: int
) -> dict[str, datetime | None]:
    """First-response and resolution due moments, the paused time added to the targets."""
    found: dict[str, datetime | None] = {}
    for target in ("first_response", "resolution"):
        seconds = level.target(target, priority)
        found[f"{target}_due"] = (
            None if seconds is None else clock.add(level.hours, created_at, seconds + paused_seconds)
        )
    return found


def moved_dues(level: ServiceLevel, state: Clock, paused_seconds: int) -> dict[str, datetime | None]:
    """Due times recomputed (new priority, more paused time), except of targets already met.

    A met target's due moment is history: the report judges it, and moving
    it after the fact would turn a late answer into a timely one.
    """
    dues = due_times(level, state.priority, state.created_at, paused_seconds)
    if state.first_response_at is not None:
        dues["first_response_due"] = state.first_response_due
    if state.resolved_at is not None or state.closed_at is not None:
        dues["resolution_due"] = state.resolution_due
    return dues


def open_targets(state: Clock) -> list[tuple[str, datetime]]:
    """Targets not yet met, with their due moments."""
    found = []
    if state.first_response_due is not None and state.first_response_at is None:
        found.append(("first_response", state.first_response_due))
    if state.next_reply_due is not None:
        found.append(("next_reply", state.next_reply_due))
    if state.resolution_due is not None and state.resolved_at is None and state.closed_at is None:
        found.append(("resolution", state.resolution_due))
    return found


def stages(level: ServiceLevel, state: Clock) -> list[Stage]:
    """Every warning and breach moment of the targets still open, earliest first."""
    found = []
    for target, due in open_targets(state):
        found.append(Stage(target, "breach", due, due))
        seconds = level.target(target, state.priority)
        if level.warn_at is not None and seconds is not None:
            before = (1 - level.warn_at) * seconds
            found.append(Stage(target, "warning", clock.add(level.hours, due, -before), due))
    return sorted(found, key=lambda stage: stage.at)


def watching(state: Clock) -> bool:
    """Whether the ticket's clock runs: not paused, not resolved or closed."""
    return state.sla is not None and state.sla_paused_at is None and state.status not in STOPPED


def next_look(level: ServiceLevel, state: Clock, after: datetime | None = None) -> datetime | None:
    """The first stage moment (after ``after``, when given) the timer must look at."""
    if not watching(state):
        return None
    moments = [stage.at for stage in stages(level, state) if after is None or stage.at > after]
    return min(moments, default=None)


def breaches(state: Clock, now: datetime) -> list[str]:
    """Targets missed: answered late, or still open past their due moment.

    A paused clock stands still, so a pending ticket is judged at the moment
    it was paused.
    """
    at = state.sla_paused_at or now
    missed = []
    for target, due, done in (
        ("first_response", state.first_response_due, state.first_response_at),
        ("next_reply", state.next_reply_due, None),
        ("resolution", state.resolution_due, state.resolved_at or state.closed_at),
    ):
        if due is not None and (done or at) > due:
            missed.append(target)
    return missed
