"""When did each message of a mailbox arrive, and in which order to import it.

A Maildir lists its files in whatever order the filesystem keeps them, not
the order they came in; importing in listing order puts replies before the
mail they answer (issue 10). Every Maildir writer names a delivered file
``<seconds>.<unique>.<host>`` (the maildir(5) convention, e.g.
``1700000000.M123456P789.mx``), so the name says when it was delivered.
Where a name does not, the topmost ``Received`` header (the last hop, our
own MTA's delivery) says it, then the sender's ``Date``. An mbox keeps
messages in the order they were appended, so its order is its file order;
its ``From `` separator line carries the delivery time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from mailgate.content.headers import parse_date

# "<seconds>." optionally followed by "M<microseconds>" (Dovecot, Postfix,
# Courier) as the first part of the unique name.
_MAILDIR_TIME = re.compile(r"^(?P<seconds>\d{9,11})(?:\.(?:[^.]*?M(?P<usec>\d{1,6}))?)?")
_HEADER = re.compile(rb"^(?P<name>[!-9;-~]+):[ \t]*(?P<value>.*(?:\r?\n[ \t].*)*)", re.MULTILINE)


def maildir_name_time(key: str) -> datetime | None:
    """The delivery time in a Maildir file name, or None when it has none."""
    match = _MAILDIR_TIME.match(key)
    if match is None:
        return None
    seconds = int(match["seconds"])
    micro = int(match["usec"]) if match["usec"] else 0
    try:
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=min(micro, 999_999))
    except (OverflowError, OSError, ValueError):
        return None


def header_time(headers: bytes) -> datetime | None:
    """The topmost Received header's date, else the Date header's, else None."""
    received = date = None
    for match in _HEADER.finditer(headers):
        name = match["name"].lower()
        value = match["value"].decode("latin-1")
        if name == b"received" and received is None:
            # RFC 5321 section 4.4: the date-time follows the last ";".
            _, semicolon, when = value.rpartition(";")
            received = parse_date(when) if semicolon else None
        elif name == b"date" and date is None:
            date = parse_date(value)
    return received or date


def mbox_from_line_time(from_line: str) -> datetime | None:
    """The date of an mbox ``From `` line, given without ``From `` as
    ``mailbox`` hands it over: ``sender Thu Nov 14 22:13:20 2023`` (UTC by convention)."""
    parts = from_line.split()
    if len(parts) < 6:
        return None
    try:
        # asctime dates: "Thu Nov 14 22:13:20 2023" read as an RFC 5322 date.
        day, month, mday, clock, year = parts[1:6]
        parsed = parsedate_to_datetime(f"{day}, {mday} {month} {year} {clock} +0000")
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.astimezone(UTC)
