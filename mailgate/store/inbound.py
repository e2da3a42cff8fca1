"""The durable inbound queue: where a message is safe before we say yes.

Every ingest path (SMTP/LMTP, pipe, import, IMAP) hands raw messages to
:class:`InboundStore.accept`, which returns only after the rows are
committed. Only then may the caller answer 250, exit 0 or flag the IMAP
message. :class:`GroupCommitter` lets many SMTP sessions share one commit
(one fsync) while each is still answered only after that commit; on
SQLite that commit is an fsync of the spool journal (store/spool.py).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar, cast

import structlog
from sqlalchemy import Table, select
from sqlalchemy.orm import Session, sessionmaker

from mailgate.faults import crash_point
from mailgate.message import Envelope
from mailgate.store.db import read_only, transaction
from mailgate.store.models import Inbound

if TYPE_CHECKING:
    from mailgate.store.spool import Spool, Spooled

log = structlog.get_logger(__name__)

_INSERT_INBOUND = (
    cast(Table, Inbound.__table__).insert().returning(Inbound.__table__.c.id, sort_by_parameter_order=True)
)


@dataclass(frozen=True)
class InboundItem:
    """One raw message to store; ``source_key`` makes re-delivery idempotent."""

    raw: bytes
    envelope: Envelope
    source_key: str | None = None
    # Set when the message is kept only for an admin (e.g. over the size
    # limit): the row is stored as quarantined and never processed.
    quarantine_reason: str | None = None


class InboundStore:
    """Commits raw messages; calls ``on_accept`` after each commit."""

    def __init__(self, sessions: sessionmaker[Session], on_accept: Callable[[], None] | None = None) -> None:
        self._sessions = sessions
        self._on_accept = on_accept

    def accept(self, items: Sequence[InboundItem], *, known_new: bool = False) -> list[int | None]:
        """Store every item in one transaction and return their row ids.

        An item whose (source, source_key) is already stored is not stored
        again; its entry is None. ``known_new`` skips that lookup for keys the
        caller knows are new (the spool importer's first try; a unique index
        still refuses a double). Raises on any database failure, in which
        case nothing of the batch is stored.
        """
        results: list[int | None] = []
        with transaction(self._sessions) as session:
            keyed: dict[str, list[str]] = {}
            for item in items:
                if item.source_key is not None and not known_new:
                    keyed.setdefault(item.envelope.source, []).append(item.source_key)
            seen: set[tuple[str, str | None]] = {
                (source, key)
                for source, keys in keyed.items()
                for key in self._existing(session, source, keys)
            }
            fresh: list[dict[str, object]] = []
            slots: list[int | None] = []
            for item in items:
                identity = (item.envelope.source, item.source_key)
                if item.source_key is not None and identity in seen:
                    slots.append(None)
                    continue
                if item.source_key is not None:
                    seen.add(identity)
                slots.append(len(fresh))
                fresh.append(
                    {
                        "raw": item.raw,
                        "size": len(item.raw),
                        "source": item.envelope.source,
                        "source_key": item.source_key,
                        "mail_from": item.envelope.mail_from,
                        "rcpt_tos": list(item.envelope.rcpt_tos),
                        "received_at": item.envelope.received_at,
                        "state": "quarantined" if item.quarantine_reason else "pending",
                        "reason": item.quarantine_reason,
                        "attempts": 0,
                    }
                )
            # One multi-row INSERT … RETURNING for the whole group commit;
            # ORM objects cost more than the insert itself on this path.
            ids = list(session.connection().execute(_INSERT_INBOUND, fresh).scalars()) if fresh else []
            results = [None if slot is None else int(ids[slot]) for slot in slots]
        if self._on_accept is not None and any(r is not None for r in results):
            self._on_accept()
        return results

    @staticmethod
    def _existing(session: Session, source: str, keys: Iterable[str]) -> set[str]:
        wanted = list(keys)
        found: set[str] = set()
        # Chunked to stay under SQLite's bound-parameter limit.
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update(
                key
                for key in session.scalars(
                    select(Inbound.source_key).where(Inbound.source == source, Inbound.source_key.in_(chunk))
                )
                if key is not None
            )
        return found

    def last_uid(self, source: str, uidvalidity: int) -> int | None:
        """The UID of the newest message stored from an IMAP folder with this UIDVALIDITY."""
        query = (
            select(Inbound.source_key)
            .where(Inbound.source == source, Inbound.source_key.like(f"{uidvalidity}:%"))
            .order_by(Inbound.id.desc())
            .limit(1)
        )
        with read_only(), self._sessions() as session:
            key = session.scalar(query)
        uid = (key or "").partition(":")[2]
        return int(uid) if uid.isdigit() else None

    def known_keys(self, source: str, keys: Iterable[str]) -> set[str]:
        """Which of these source keys (e.g. IMAP "UIDVALIDITY:UID") are stored."""
        with read_only(), self._sessions() as session:
            return self._existing(session, source, keys)

    def stored_times(self, source: str, keys: Iterable[str]) -> dict[str, datetime]:
        """When each of these source keys that is stored was stored (its received_at)."""
        wanted = list(keys)
        found: dict[str, datetime] = {}
        with read_only(), self._sessions() as session:
            # Chunked to stay under SQLite's bound-parameter limit.
            for start in range(0, len(wanted), 500):
                query = select(Inbound.source_key, Inbound.received_at).where(
                    Inbound.source == source, Inbound.source_key.in_(wanted[start : start + 500])
                )
                found.update((key, at) for key, at in session.execute(query) if key is not None)
        return found


class SpoolBacklogFull(RuntimeError):
    """Too much spooled mail waits for the database: answer 451 for now."""


class GroupCommitter:
    """Batches concurrent ``accept`` calls into shared commits on one thread.

    Sessions that arrive while a commit is running wait for the next one, so
    under load one fsync covers many messages; when idle a message commits
    alone, at once. Each future resolves to the message's queue id, for the
    250 reply and the log.

    With a ``spool`` (SQLite, see store/spool.py) the shared commit is an
    fsync of the journal, and an importer thread moves the records into the
    inbound table afterwards; without one (PostgreSQL, whose writers do not
    queue behind each other) it is the database commit itself.
    """

    def __init__(
        self,
        store: InboundStore,
        *,
        spool: Spool | None = None,
        max_batch: int = 256,
        max_backlog_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._spool = spool
        self._max_batch = max_batch
        # Spooled but not yet imported (held in memory for the importer).
        # Past the limit new mail gets 451: when the database is down, the
        # sending MTAs keep their mail instead of our memory filling up.
        self._max_backlog = max_backlog_bytes
        self._backlog = 0
        self._backlog_lock = threading.Lock()
        self._queue: queue.Queue[tuple[InboundItem, Future[str]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._imports: queue.Queue[list[Spooled] | None] = queue.Queue()
        self._importer = threading.Thread(target=self._import_loop, name="spool-import", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._spool is not None:
            self._spool.claim()
            self._recover(self._spool)
            self._importer.start()
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._spool is not None:
            self._stopping.set()
            self._imports.put(None)
            self._importer.join(timeout=30)
            self._spool.close()

    def alive(self) -> bool:
        """Both threads running (the importer only with a spool): for the watchdog."""
        running = self._thread.is_alive()
        return running and (self._spool is None or self._importer.is_alive())

    def submit(self, item: InboundItem) -> Future[str]:
        future: Future[str] = Future()
        self._queue.put((item, future))
        return future

    def _recover(self, spool: Spool) -> None:
        """Import what a previous run spooled but did not import, before any new mail."""
        leftovers = spool.leftovers()
        if not leftovers:
            return
        stored = 0
        for start in range(0, len(leftovers), 500):
            stored += sum(1 for row in self._store.accept(leftovers[start : start + 500]) if row is not None)
        spool.discard_leftovers()
        log.warning(
            "spool.recovered", records=len(leftovers), stored=stored, already_stored=len(leftovers) - stored
        )

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            more, stopping = _waiting(self._queue, self._max_batch - 1)
            self._commit([first, *more])

    def _commit(self, batch: list[tuple[InboundItem, Future[str]]]) -> None:
        items = [item for item, _ in batch]
        size = sum(len(item.raw) for item in items)
        try:
            if self._spool is not None:
                with self._backlog_lock:
                    if self._backlog > self._max_backlog:
                        raise SpoolBacklogFull(
                            f"{self._backlog} bytes wait for the database; is it reachable?"
                        )
                spooled = self._spool.append(items)
                with self._backlog_lock:
                    self._backlog += size
                ids = [record.item.source_key or "" for record in spooled]
            else:
                ids = [str(row_id) for row_id in self._store.accept(items)]
        except Exception as exc:  # every failure becomes a 451/452 for each waiting sender
            log.error("inbound.commit_failed", error=str(exc), batch=len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        crash_point("inbound-committed")
        for (_, future), queue_id in zip(batch, ids, strict=True):
            future.set_result(queue_id)
        if self._spool is not None:
            self._imports.put(spooled)

    def _import_loop(self) -> None:
        assert self._spool is not None
        stopping = False
        while not stopping:
            first = self._imports.get()
            if first is None:
                break
            # Each entry is one group commit's records; a few groups per import.
            more, stopping = _waiting(self._imports, 8)
            records = [record for group in (first, *more) for record in group]
            if not self._import(records):
                return  # stopping with the database down: the records stay spooled
            crash_point("spool-imported")
            with self._backlog_lock:
                self._backlog -= sum(len(record.item.raw) for record in records)
            try:
                self._spool.imported(records)
            except OSError as exc:  # a segment left behind is imported (once) at the next start
                log.error("spool.cleanup_failed", error=str(exc))

    def _import(self, records: list[Spooled]) -> bool:
        """Store the records, retrying until the database takes them."""
        delay = 0.1
        known_new = True  # new keys: no lookup, on the first try only
        while True:
            try:
                self._store.accept([record.item for record in records], known_new=known_new)
                return True
            except Exception as exc:  # the records are safe on disk; keep trying
                log.error("spool.import_failed", error=str(exc), records=len(records), retry_in=delay)
                known_new = False
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)


_T = TypeVar("_T")


def _waiting(source: queue.Queue[_T | None], limit: int) -> tuple[list[_T], bool]:
    """What waits in ``source`` now, up to ``limit`` entries, and whether a stop (None) came."""
    found: list[_T] = []
    while len(found) < limit:
        try:
            entry = source.get_nowait()
        except queue.Empty:
            break
        if entry is None:
            return found, True
        found.append(entry)
    return found, False
