"""One error type per reason, each mapped once to what the sender sees.

The SMTP/LMTP listener, the pipe command and the processing stage all map
failures through this table, so a reason cannot answer 451 on one path and
5xx on another. SPEC §2: internal failure is never 5xx.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass
from enum import Enum

# sysexits.h, as the MTA's pipe transports read them (SPEC §4).
EX_OK = 0
EX_DATAERR = 65
EX_TEMPFAIL = 75


@dataclass(frozen=True)
class Reply:
    smtp: str
    exit_code: int


class Outcome(Enum):
    ACCEPTED = Reply("250 2.0.0 Message accepted", EX_OK)
    STORE_FAILED = Reply("451 4.3.0 Temporary failure storing the message, try again later", EX_TEMPFAIL)
    DISK_FULL = Reply("452 4.3.1 Insufficient system storage, try again later", EX_TEMPFAIL)
    TOO_BIG = Reply("552 5.3.4 Message too big for this helpdesk", EX_DATAERR)
    EMPTY = Reply("554 5.6.0 Empty message", EX_DATAERR)

    @property
    def smtp(self) -> str:
        return self.value.smtp

    @property
    def exit_code(self) -> int:
        return self.value.exit_code


def storage_outcome(error: BaseException) -> Outcome:
    """Map a failure to store a message to its temporary outcome."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return Outcome.DISK_FULL
    # SQLAlchemy wraps the driver's error in ``orig``; looked up by name so
    # that importing this table (every CLI command does) does not load SQLAlchemy.
    original = getattr(error, "orig", None) or error
    if isinstance(original, sqlite3.OperationalError) and "full" in str(original).lower():
        return Outcome.DISK_FULL
    text = str(original).lower()
    if "no space left" in text or "disk full" in text or "could not extend file" in text:
        return Outcome.DISK_FULL
    return Outcome.STORE_FAILED
