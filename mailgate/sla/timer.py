"""The daemon's service-level timer: escalations when due, the digest each morning.

It sleeps until the earliest ``sla_next_at`` (one indexed query) or the
next digest moment, but at most ``processing.sla_check_seconds``, because
tickets are created by a worker process that cannot wake it. An idle
daemon so makes one cheap query per wake-up and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy import func, select

from mailgate import faults
from mailgate.service.runtime import Runtime
from mailgate.sla.digest import digest_day, next_digest, send_digests
from mailgate.sla.escalate import scan
from mailgate.store.db import transaction
from mailgate.store.writes import TICKETS

log = structlog.get_logger(__name__)

_NEXT = select(func.min(TICKETS.c.sla_next_at))


def utc_now() -> datetime:
    return datetime.now(UTC)


class SlaTimer:
    """Runs the scans; ``clock`` is injected so tests can move time."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.on_queued = on_queued
        # The office day whose digests are done: later ticks that day skip the check.
        self._digest_done: date | None = None

    def tick(self, now: datetime) -> datetime | None:
        """Everything due by ``now``; returns the next moment anything falls due."""
        queued = 0
        while True:
            with transaction(self.runtime.sessions) as session:
                result = scan(session.connection(), self.runtime, now)
            if result.fired:
                faults.crash_point("sla.escalation_committed")
            queued += result.mails
            if not result.more:
                break
        plan = self.runtime.rules.digest
        day = digest_day(plan, now) if plan is not None else None
        if (
            plan is not None
            and day is not None
            and self.runtime.directory.agents + self.runtime.directory.queues
        ):
            with transaction(self.runtime.sessions) as session:
                queued += send_digests(session, self.runtime, plan, day, now)
        if queued and self.on_queued is not None:
            self.on_queued()
        with self.runtime.engine.connect() as conn:
            next_escalation = conn.execute(_NEXT).scalar()
        moments = [m for m in (next_escalation, next_digest(plan, now) if plan else None) if m is not None]
        return min(moments, default=None)

    def _next_escalation(self) -> datetime | None:
        with self.runtime.engine.connect() as conn:
            found: datetime | None = conn.execute(_NEXT).scalar()
        return found

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: tick, then sleep until the next due moment (capped)."""
        longest = self.runtime.config.processing.sla_check_seconds
        while not stop.is_set():
            now = self.clock()
            try:
                upcoming = self.tick(now)
            except Exception:  # a database hiccup must not end the timer; the work waits in the tables
                log.exception("sla.timer_failed")
                upcoming = now + timedelta(seconds=min(5.0, longest))
            delay = longest if upcoming is None else (upcoming - self.clock()).total_seconds()
            stop.wait(max(0.01, min(longest, delay)))
