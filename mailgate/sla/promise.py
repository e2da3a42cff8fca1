"""What a mail may promise: the ticket's level, targets and due moments as words.

The acknowledgement template gets ``sla`` (None without a level) and says
what the policy says, never a constant; ``rules test`` shows the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection

from mailgate.service.runtime import Runtime
from mailgate.sla import wording
from mailgate.sla.due import due_times
from mailgate.sla.policy import ServiceLevel
from mailgate.sla.track import level_of, read_clock

log = structlog.get_logger(__name__)


def describe(
    level: ServiceLevel,
    priority: str,
    dues: dict[str, datetime | None],
    language: str,
    now: datetime,
) -> dict[str, Any]:
    """The template context for one ticket's promise."""
    zone = level.display_zone
    business = level.hours is not None
    found: dict[str, Any] = {"level": level.name, "timezone": zone.key, "business_hours": business}
    for name in ("first_response", "resolution"):
        seconds = level.target(name, priority)
        due = dues.get(f"{name}_due")
        found[name] = None
        if seconds is not None and due is not None:
            found[name] = {
                "target": wording.target(seconds, business, language),
                "due": wording.moment(due, zone, language, now),
                "due_iso": due.isoformat(),
            }
    return found


def promise(
    conn: Connection, runtime: Runtime, ticket_id: int, language: str, now: datetime
) -> dict[str, Any] | None:
    """``sla`` for a template about this ticket, from its stored due times.

    A bug in the wording must not fail the message it answers: the
    acknowledgement then goes out without a promise, and the log says why.
    """
    if not runtime.rules.service_levels:
        return None  # no levels defined: nothing to promise, and no read for it
    state = read_clock(conn, ticket_id)
    level = level_of(runtime, state.sla) if state is not None else None
    if state is None or level is None:
        return None
    dues = {"first_response_due": state.first_response_due, "resolution_due": state.resolution_due}
    try:
        return describe(level, state.priority, dues, language, now)
    except Exception:
        log.exception("sla.promise_failed", ticket_id=ticket_id)
        return None


def preview(
    levels: dict[str, ServiceLevel], sla: str | None, priority: str, arrival: datetime, language: str
) -> dict[str, Any] | None:
    """What a mail arriving at ``arrival`` would be promised (for ``rules test``)."""
    level = levels.get(sla) if sla else None
    if level is None:
        return None
    return describe(level, priority, due_times(level, priority, arrival, 0), language, arrival)
