"""Service levels: targets per priority, due times in business time, escalation.

The road of a ticket's clock::

    rules file (service_levels:) -> policy.ServiceLevel
    ticket created / changed      -> track.py writes due times and ``sla_next_at``
    daemon timer (timer.py)       -> finds due work through the ``sla_next_at`` index,
                                     escalates (escalate.py) and sends the digest (digest.py)
    mailgate report               -> compliance from the stored due times

Business-time arithmetic is pure (clock.py) and takes its moments as
arguments, so every rule about weekends, holidays and time zones is tested
without a database or a real clock.
"""
