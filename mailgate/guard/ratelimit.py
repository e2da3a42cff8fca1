"""How many automatic mails one address may get: a pure decision.

Even with every loop guard in place, a misconfigured peer (an auto-responder
that strips every header, a forwarding loop through a third system) can make
us answer the same address again and again. The limits cap the damage.
The caller counts what the outbox sent to the address and stores what we
decide; this module only decides, so it is tested without a clock or a
database.

When the daily limit is first reached, one notice ("no more automatic
replies today") may go out, so a real person knows why the acknowledgements
stopped. The caller must count that notice as a sent automatic mail: the
day count is then above the limit and no second notice follows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RateDecision", "RateLimits", "automatic_mail_allowed"]


@dataclass(frozen=True)
class RateLimits:
    """Automatic mails allowed per recipient address."""

    per_hour: int = 5
    per_day: int = 20

    def __post_init__(self) -> None:
        if self.per_hour < 1 or self.per_day < 1:
            raise ValueError("rate limits must be at least 1")


@dataclass(frozen=True)
class RateDecision:
    """May this automatic mail go out, and why (for the log and the ticket)."""

    allowed: bool
    send_limit_notice: bool
    reason: str


def automatic_mail_allowed(sent_last_hour: int, sent_last_day: int, limits: RateLimits) -> RateDecision:
    """Decide for one automatic mail to an address that already got some."""
    if sent_last_hour < 0 or sent_last_day < 0:
        raise ValueError("sent counts cannot be negative")
    if sent_last_hour >= limits.per_hour:
        # A burst: stay silent and let the next hour decide, including about
        # the daily notice.
        return RateDecision(False, False, f"hourly limit reached: {sent_last_hour} of {limits.per_hour} sent")
    if sent_last_day == limits.per_day:
        return RateDecision(
            False,
            True,
            f"daily limit reached: {sent_last_day} of {limits.per_day} sent; one notice allowed",
        )
    if sent_last_day > limits.per_day:
        return RateDecision(False, False, f"daily limit reached: {sent_last_day} of {limits.per_day} sent")
    return RateDecision(
        True,
        False,
        f"within limits: {sent_last_hour}/{limits.per_hour} this hour, "
        f"{sent_last_day}/{limits.per_day} today",
    )
