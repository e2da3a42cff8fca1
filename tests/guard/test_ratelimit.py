"""The per-address limit on automatic mail, with its one daily notice."""

# STYLE.md wants the expected value on the left, which SIM300 calls a Yoda condition.

from __future__ import annotations

import pytest

from mailgate.guard.ratelimit import RateDecision, RateLimits, automatic_mail_allowed

LIMITS = RateLimits(per_hour=3, per_day=10)


def test_within_limits_is_allowed() -> None:
    """Below both limits the mail goes out and no notice is due."""
    decision = automatic_mail_allowed(2, 9, LIMITS)
    assert (True, False) == (decision.allowed, decision.send_limit_notice)


def test_hourly_limit_blocks_without_notice() -> None:
    """A burst is silenced for the hour; no notice is sent for it."""
    decision = automatic_mail_allowed(3, 5, LIMITS)
    assert RateDecision(False, False, "hourly limit reached: 3 of 3 sent") == decision


def test_first_hit_of_the_daily_limit_allows_one_notice() -> None:
    """Reaching the day limit blocks the mail but allows the one notice."""
    decision = automatic_mail_allowed(0, 10, LIMITS)
    assert (False, True) == (decision.allowed, decision.send_limit_notice)


def test_after_the_notice_nothing_more_goes_out() -> None:
    """Once the notice is counted, the day stays silent."""
    decision = automatic_mail_allowed(0, 11, LIMITS)
    assert (False, False) == (decision.allowed, decision.send_limit_notice)


def test_a_day_of_traffic_sends_the_limit_plus_one_notice() -> None:
    """Simulating 30 triggers spread over hours: exactly per_day mails and one notice."""
    sent_today, notices = 0, 0
    for trigger in range(30):
        sent_this_hour = 0 if trigger % 3 == 0 else trigger % 3  # a new hour every 3 triggers
        decision = automatic_mail_allowed(sent_this_hour, sent_today, LIMITS)
        if decision.allowed or decision.send_limit_notice:
            sent_today += 1
            notices += decision.send_limit_notice
    assert (11, 1) == (sent_today, notices)


@pytest.mark.parametrize(("hour", "day"), [(-1, 0), (0, -1)])
def test_negative_counts_are_refused(hour: int, day: int) -> None:
    """Negative counts are a caller bug, not a decision."""
    with pytest.raises(ValueError):
        automatic_mail_allowed(hour, day, LIMITS)


def test_limits_must_be_positive() -> None:
    """A zero limit is refused when the limits are built."""
    with pytest.raises(ValueError):
        RateLimits(per_hour=0, per_day=10)
