"""What a service level promises: targets per priority, counted how.

A ``ServiceLevel`` is a plain value built by the rules loader; nothing here
reads a clock or a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    # Only for annotations: importing the rules package here would import this module back.
    from mailgate.rules.hours import BusinessHours

# The targets a level may set, in the order a ticket meets them.
TARGETS: tuple[str, ...] = ("first_response", "next_reply", "resolution")


@dataclass(frozen=True)
class BreachActions:
    """What happens to a ticket when a target is breached (all optional)."""

    raise_priority: bool = False
    queue: str | None = None
    tag: str | None = None

    @property
    def any(self) -> bool:
        return self.raise_priority or self.queue is not None or self.tag is not None


@dataclass(frozen=True)
class ServiceLevel:
    """One named level: targets in seconds of counted time, per priority."""

    name: str
    # None: counted around the clock (24x7).
    hours: BusinessHours | None
    first_response: Mapping[str, int] = field(default_factory=dict)
    resolution: Mapping[str, int] = field(default_factory=dict)
    next_reply: Mapping[str, int] = field(default_factory=dict)
    pause_when_pending: bool = True
    # Share of a target after which the assignee is warned; None: no warning.
    warn_at: float | None = 0.75
    on_breach: BreachActions = BreachActions()
    line: int = 0
    # Where promises are shown for a 24x7 level (a business-hours level uses its calendar's).
    zone: ZoneInfo | None = None

    @property
    def display_zone(self) -> ZoneInfo:
        return self.hours.zone if self.hours is not None else self.zone or ZoneInfo("UTC")

    def target(self, which: str, priority: str) -> int | None:
        """Seconds of counted time for ``which`` at ``priority``, or None (no target)."""
        targets: Mapping[str, int] = getattr(self, which)
        return targets.get(priority)

    @property
    def counted(self) -> str:
        return "24x7" if self.hours is None else f"business hours {self.hours.name}"


@dataclass(frozen=True)
class DigestPlan:
    """The morning digest: at ``at`` office time on ``hours``' working days."""

    at: time
    hours: BusinessHours
    line: int = 0
