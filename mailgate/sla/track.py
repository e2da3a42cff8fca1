"""Keeping each ticket's due times right as it moves (the writes of due.py).

Called from the roads that change a ticket: creation, a rule on a reply,
``#priority``/``#queue`` and ``tickets set``, a status change, an agent's
public reply, a requester's reply. Each call runs in the caller's
transaction and writes at most one UPDATE and one event, so the due times
are exactly as durable as the change that moved them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from mailgate.service.runtime import Runtime
from mailgate.sla import clock
from mailgate.sla.due import Clock, clock_of, due_times, moved_dues, next_look
from mailgate.sla.policy import ServiceLevel
from mailgate.store.writes import TICKETS, insert_event, update_ticket

# The ticket columns a Clock is made of (the timer's scan selects them too).
CLOCK_COLUMNS = tuple(TICKETS.c[name] for name in Clock.__dataclass_fields__)
_CLOCK = select(*CLOCK_COLUMNS).where(TICKETS.c.id == bindparam("b_id"))


def read_clock(conn: Connection, ticket_id: int) -> Clock | None:
    row = conn.execute(_CLOCK, {"b_id": ticket_id}).first()
    return None if row is None else clock_of(row)


def level_of(runtime: Runtime, name: str | None) -> ServiceLevel | None:
    return runtime.rules.service_levels.get(name) if name else None


def start(
    conn: Connection, runtime: Runtime, ticket_id: int, sla: str | None, priority: str, created_at: datetime
) -> dict[str, datetime | None]:
    """A new ticket's level and due times (one UPDATE; nothing when it has no level)."""
    level = level_of(runtime, sla)
    if level is None:
        return {}
    dues = due_times(level, priority, created_at, 0)
    state = Clock(
        ticket_id, sla, priority, "new", created_at, None, None, None,
        dues["first_response_due"], None, dues["resolution_due"], None, 0,
    )  # fmt: skip
    update_ticket(conn, ticket_id, sla=sla, sla_next_at=next_look(level, state), **dues)
    return dues


def refresh(
    conn: Connection, runtime: Runtime, ticket_id: int, now: datetime, *, why: str, sla: str | None = None
) -> None:
    """Due times again after a change of priority, queue or level (``sla`` given: the new level)."""
    state = read_clock(conn, ticket_id)
    if state is None:
        return
    if sla is not None and sla != state.sla:
        state = replace(state, sla=sla)
        update_ticket(conn, ticket_id, sla=sla)
    level = level_of(runtime, state.sla)
    if level is None:
        return
    dues = moved_dues(level, state, state.sla_paused_seconds)
    changed = replace(
        state, first_response_due=dues["first_response_due"], resolution_due=dues["resolution_due"]
    )
    values: dict[str, Any] = {**dues, "sla_next_at": next_look(level, changed)}
    update_ticket(conn, ticket_id, **values)
    if dues != {"first_response_due": state.first_response_due, "resolution_due": state.resolution_due}:
        insert_event(
            conn, ticket_id, "sla_due_changed", now, why=why, sla=state.sla, priority=state.priority,
            **{key: _iso(value) for key, value in dues.items()},
        )  # fmt: skip


def status_changed(conn: Connection, runtime: Runtime, ticket_id: int, status: str, now: datetime) -> None:
    """Pause while pending (when the level says so), resume after, stop at resolution."""
    state = read_clock(conn, ticket_id)
    level = level_of(runtime, state.sla) if state is not None else None
    if state is None or level is None:
        return
    values: dict[str, Any] = {}
    if status == "pending" and level.pause_when_pending and state.sla_paused_at is None:
        values["sla_paused_at"] = now
        state = replace(state, sla_paused_at=now)
        insert_event(conn, ticket_id, "sla_paused", now)
    elif status != "pending" and state.sla_paused_at is not None:
        state, resumed = _resume(level, state, now)
        values.update(resumed)
        insert_event(
            conn,
            ticket_id,
            "sla_resumed",
            now,
            **{k: _iso(v) if isinstance(v, datetime) else v for k, v in resumed.items()},
        )
    if status == "resolved" and state.resolved_at is None:
        counted = clock.elapsed(level.hours, state.created_at, now) - state.sla_paused_seconds
        values["resolution_seconds"] = max(0, round(counted))
    values["sla_next_at"] = next_look(level, replace(state, status=status))
    update_ticket(conn, ticket_id, **values)


def _resume(level: ServiceLevel, state: Clock, now: datetime) -> tuple[Clock, dict[str, Any]]:
    """The paused time added to the targets; the due moments move by it."""
    assert state.sla_paused_at is not None
    paused = round(clock.elapsed(level.hours, state.sla_paused_at, now))
    total = state.sla_paused_seconds + paused
    dues = moved_dues(level, state, total)
    next_reply = (
        None if state.next_reply_due is None else clock.add(level.hours, state.next_reply_due, paused)
    )
    values: dict[str, Any] = {
        "sla_paused_at": None,
        "sla_paused_seconds": total,
        "next_reply_due": next_reply,
        **dues,
    }
    resumed = replace(
        state,
        sla_paused_at=None,
        sla_paused_seconds=total,
        next_reply_due=next_reply,
        first_response_due=dues["first_response_due"],
        resolution_due=dues["resolution_due"],
    )
    return resumed, values


def public_reply(conn: Connection, runtime: Runtime, ticket_id: int, now: datetime, *, first: bool) -> None:
    """An agent answered the requester: the first response (when ``first``) and any next reply are met."""
    state = read_clock(conn, ticket_id)
    level = level_of(runtime, state.sla) if state is not None else None
    if state is None or level is None:
        return
    values: dict[str, Any] = {"next_reply_due": None}
    if first:
        counted = clock.elapsed(level.hours, state.created_at, now) - _paused_so_far(level, state, now)
        values["first_response_seconds"] = max(0, round(counted))
        state = replace(state, first_response_at=now)
    state = replace(state, next_reply_due=None)
    values["sla_next_at"] = next_look(level, state)
    update_ticket(conn, ticket_id, **values)


def requester_wrote(conn: Connection, runtime: Runtime, ticket_id: int, now: datetime) -> None:
    """The requester wrote again after an answer: the next-reply target starts, if the level has one."""
    state = read_clock(conn, ticket_id)
    level = level_of(runtime, state.sla) if state is not None else None
    if state is None or level is None or state.first_response_at is None or state.next_reply_due is not None:
        return
    seconds = level.target("next_reply", state.priority)
    if seconds is None:
        return
    due = clock.add(level.hours, now, seconds)
    state = replace(state, next_reply_due=due)
    update_ticket(conn, ticket_id, next_reply_due=due, sla_next_at=next_look(level, state))


def _paused_so_far(level: ServiceLevel, state: Clock, now: datetime) -> int:
    running = clock.elapsed(level.hours, state.sla_paused_at, now) if state.sla_paused_at else 0
    return state.sla_paused_seconds + round(running)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
