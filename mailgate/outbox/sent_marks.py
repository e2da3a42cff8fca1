"""Each mail marked sent right after the relay's 250, not at the end of its batch.

The outbox sends a batch (up to 50 rows) and records the outcomes in one
transaction afterwards. Before this module, a ``kill -9`` of the delivery
worker in the middle of a batch lost every "sent" of that batch, and each of
those mails went out again (issue 10: 36 second copies from three kills).
SMTP gives no exactly-once, so one mail per relay connection (the one whose
250 was on the wire when the process died) may still go out twice; no more.

How the mark is made depends on the database, because of cost:

- **SQLite: an append-only journal file** (``<db>.sent``). After each 250
  the outbox row's id is appended with one ``write(2)``: no fsync (a killed
  process loses nothing the kernel has; a power cut may lose the last marks,
  which costs a resend with the same Message-ID, exactly as the
  ``synchronous=NORMAL`` delivery marks already accept, see store/db.py).
  The batch transaction still records every outcome; once it committed, the
  journal is emptied. Whoever takes over the rows of a dead worker (the
  daemon's ``release_outbox_leases``, or the worker itself at start) first
  applies the journal. A commit per mail instead would take SQLite's single
  write lock once per mail, queueing behind processing's write slices while
  the relay connection idles; measured in bench/README.md.
- **PostgreSQL: a small UPDATE committed per mail.** Several instances may
  share the outbox and take over each other's rows after the lease, so the
  mark must be in the database; PostgreSQL has no single write lock to
  queue behind. A mark whose commit fails (the database restarted right
  after the 250) is kept in memory and written before the worker frees its
  rows again.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol

import structlog
from sqlalchemy import Connection, bindparam
from sqlalchemy.orm import Session, sessionmaker

from mailgate.store.db import sqlite_file, transaction
from mailgate.store.writes import OUTBOX

log = structlog.get_logger(__name__)

# Only rows still queued: a journal applied twice (killed between the batch
# commit and emptying the journal) changes nothing, and a row that failed
# or was retried in between is not touched.
_MARK_SENT = (
    OUTBOX.update()
    .where(OUTBOX.c.id == bindparam("b_id"), OUTBOX.c.state == "queued")
    .values(
        state="sent",
        sent_at=bindparam("b_now"),
        attempts=OUTBOX.c.attempts + 1,
        lease_until=None,
        lease_owner=None,
        last_error=None,
    )
)


class SentMarks(Protocol):
    def sent(self, outbox_id: int, now: datetime) -> None:
        """The relay answered 250 for this row: make that survive a kill -9."""

    def recorded(self) -> None:
        """The batch's outcomes are committed: the marks so far are no longer needed."""

    def apply(self, conn: Connection, now: datetime) -> int:
        """Inside the caller's transaction: mark sent what a dead worker had sent."""

    def applied(self) -> None:
        """The transaction of ``apply`` committed."""

    def close(self) -> None: ...


class SentJournal:
    """SQLite: outbox ids appended to ``<db>.sent``, one line per relayed mail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    @staticmethod
    def for_database(database: Path) -> SentJournal:
        return SentJournal(database.with_name(database.name + ".sent"))

    def _open(self) -> int:
        if self._fd is None:
            # O_APPEND: after an ftruncate to 0 the next line starts at 0.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def sent(self, outbox_id: int, now: datetime) -> None:
        # One write of a whole line: a kill leaves at most a torn last line,
        # which read_ids ignores (that one mail goes out again).
        with self._lock:
            os.write(self._open(), b"%d\n" % outbox_id)

    def recorded(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)

    def read_ids(self) -> list[int]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        return [int(line) for line in complete.split(b"\n") if line.strip().isdigit()]

    def apply(self, conn: Connection, now: datetime) -> int:
        ids = self.read_ids()
        if not ids:
            return 0
        marked = conn.execute(_MARK_SENT, [{"b_id": row_id, "b_now": now} for row_id in ids]).rowcount
        log.info("outbox.sent_journal_applied", journaled=len(ids), marked=marked)
        return len(ids)

    def applied(self) -> None:
        # Truncated by path: the writer that filled it is dead (or is us).
        with self._lock:
            if self.path.exists():
                os.truncate(self.path, 0)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class CommitEach:
    """PostgreSQL: the row is marked sent in a transaction of its own."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        # Marks whose commit failed (the database went away right after the
        # relay's 250): kept here and written before the rows are freed, so
        # a database restart costs no resend (only a kill -9 on top of it).
        self._unwritten: dict[int, datetime] = {}

    def sent(self, outbox_id: int, now: datetime) -> None:
        try:
            with transaction(self._sessions) as session:
                session.connection().execute(_MARK_SENT, {"b_id": outbox_id, "b_now": now})
        except Exception:
            self._unwritten[outbox_id] = now
            raise

    def recorded(self) -> None:
        return None

    def apply(self, conn: Connection, now: datetime) -> int:
        if not self._unwritten:
            return 0
        conn.execute(_MARK_SENT, [{"b_id": row_id, "b_now": at} for row_id, at in self._unwritten.items()])
        log.info("outbox.unwritten_marks_applied", marks=len(self._unwritten))
        return len(self._unwritten)

    def applied(self) -> None:
        self._unwritten.clear()

    def close(self) -> None:
        return None


def sent_marks_for(sessions: sessionmaker[Session]) -> SentJournal | CommitEach:
    """The journal next to a SQLite file; a commit per mail elsewhere."""
    engine = sessions.kw.get("bind")
    database = sqlite_file(engine.url) if engine is not None else None
    if database is None:
        return CommitEach(sessions)
    return SentJournal.for_database(database.resolve())
