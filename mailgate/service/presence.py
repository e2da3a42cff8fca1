"""This process's heartbeat, and the roles its daemon holds (store/instances.py).

Every ``mailgate run`` and each of its workers keeps a ``Presence``: a thread
that writes the heartbeat every ``BEAT_SECONDS``. The daemon's also takes or
keeps its roles (the IMAP accounts and the timers) in the same transaction.
Work that must happen on one instance only asks ``holds(role)``; work on
leased rows asks ``fresh()``. Both turn false as soon as the last good beat
is ``SAFE_SECONDS`` old, so a process cut off from the database stops before
another may take over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from mailgate.store import instances
from mailgate.store.db import read_only, transaction

log = structlog.get_logger(__name__)


def default_name() -> str:
    return socket.gethostname()


class Presence:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        name: str,
        kind: str,
        parent_id: int | None = None,
        roles: Sequence[str] = (),
        listeners: Callable[[], list[str]] | None = None,
    ) -> None:
        self._sessions = sessions
        self.name = name
        self.kind = kind
        self.parent_id = parent_id
        self._wanted = tuple(roles)
        self._listeners = listeners
        self.id: int | None = None
        self._last_ok = float("-inf")
        self._held: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        # Set on every change of what we hold; and per watcher, on a loss.
        self._changed = threading.Condition(self._lock)
        self._watchers: list[tuple[str, threading.Event]] = []
        self._failing = False
        self._beating = threading.Lock()

    # -- asked by the work ------------------------------------------------

    def fresh(self) -> bool:
        """May this process act on its leases right now?"""
        return self.id is not None and time.monotonic() - self._last_ok < instances.SAFE_SECONDS

    def holds(self, role: str) -> bool:
        """Does this process's daemon hold ``role`` right now?

        A daemon knows from its own beats; a worker asks the database,
        which is fine for the rare things it asks about (auto-close).
        """
        if not self.fresh():
            return False
        if role in self._wanted:
            return role in self._held
        if self.parent_id is None:
            return False
        try:
            with read_only(), self._sessions() as session:
                return instances.holder_of(session.connection(), role) == self.parent_id
        except Exception as exc:  # a database hiccup: not ours until we know
            log.warning("presence.role_check_failed", role=role, error=str(exc))
            return False

    def held(self) -> frozenset[str]:
        return self._held if self.fresh() else frozenset()

    def run_holding(
        self,
        role: str,
        work: Callable[[threading.Event], None],
        stop: threading.Event,
        *,
        standby: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work`` while we hold ``role``; it must return when its event is set.

        The event is set when the role is lost (another daemon took it, or
        we could not beat for ``SAFE_SECONDS``), or by ``release_work`` once
        ``stop`` is set.
        """
        while not stop.is_set():
            if not self.holds(role):
                if standby is not None:
                    standby()
                with self._changed:
                    self._changed.wait(instances.BEAT_SECONDS)
                continue
            lost = threading.Event()
            with self._lock:
                self._watchers.append((role, lost))
            log.info("presence.role_taken", role=role, instance=self.name, instance_id=self.id)
            try:
                work(lost)
            finally:
                with self._lock:
                    self._watchers.remove((role, lost))
            if not stop.is_set():
                log.warning("presence.role_lost", role=role, instance=self.name, instance_id=self.id)

    # -- the heartbeat ----------------------------------------------------

    def start(self) -> None:
        """Register and beat once now, so that work can start at once; never raises."""
        self._beat_once()

    def run(self, stop: threading.Event) -> None:
        """Beat until ``stop``; then say we stopped, freeing leases and roles at once."""
        while not stop.wait(self._next_wait()):
            self._beat_once()
            self._tell_watchers()
        self._lose_all()
        self._stop()

    def _next_wait(self) -> float:
        return instances.BEAT_SECONDS if not self._failing else 1.0

    def _beat_once(self) -> None:
        # The daemon also beats from its event loop's side once its listeners are up.
        with self._beating:
            self._beat_locked()

    def _beat_locked(self) -> None:
        now = datetime.now(UTC)
        started = time.monotonic()
        try:
            with transaction(self._sessions) as session:
                conn = session.connection()
                if self.id is None or not instances.beat(conn, self.id, now, self._current_listeners()):
                    # First beat, or our row was marked stopped while we
                    # lived (our parent thought us dead): a new identity, so
                    # nothing done under the old one is confused with ours.
                    self.id = instances.register(
                        conn,
                        name=self.name,
                        kind=self.kind,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        parent_id=self.parent_id,
                        now=now,
                    )
                held = instances.claim_roles(conn, self.id, self._wanted, now) if self._wanted else set()
        except Exception as exc:  # the database is away: stop acting once SAFE_SECONDS pass
            if not self._failing:
                log.error("presence.beat_failed", instance=self.name, kind=self.kind, error=str(exc))
            self._failing = True
            return
        if self._failing:
            log.info("presence.beat_resumed", instance=self.name, kind=self.kind, instance_id=self.id)
        self._failing = False
        # Counted from before the transaction: a slow commit must not stretch the lease.
        self._last_ok = started
        with self._changed:
            if frozenset(held) != self._held:
                for role in sorted(set(held) ^ self._held):
                    log.info(
                        "presence.role",
                        role=role,
                        held=role in held,
                        instance=self.name,
                        instance_id=self.id,
                    )
                self._held = frozenset(held)
            self._changed.notify_all()

    def _current_listeners(self) -> list[str] | None:
        return None if self._listeners is None else self._listeners()

    def _tell_watchers(self) -> None:
        with self._lock:
            for role, lost in self._watchers:
                if not self.holds_locked(role):
                    lost.set()

    def holds_locked(self, role: str) -> bool:
        return self.fresh() and role in self._held

    def _lose_all(self) -> None:
        with self._changed:
            self._held = frozenset()
        self.release_work()

    def release_work(self) -> None:
        """Make every ``run_holding`` return its work now (the daemon is stopping)."""
        with self._changed:
            for _, lost in self._watchers:
                lost.set()
            self._changed.notify_all()

    def _stop(self) -> None:
        if self.id is None:
            return
        try:
            with transaction(self._sessions) as session:
                instances.stop(session.connection(), self.id, datetime.now(UTC))
        except Exception as exc:  # the others take over once our heartbeat is stale
            log.warning("presence.stop_unrecorded", instance=self.name, error=str(exc))

    def worker_died(self, pid: int) -> None:
        """Our worker ``pid`` died: free its leases now (not after STALE_SECONDS)."""
        if self.id is None:
            return
        try:
            with transaction(self._sessions) as session:
                instances.stop_pid(session.connection(), self.id, pid, datetime.now(UTC))
        except Exception as exc:  # its heartbeat goes stale anyway
            log.warning("presence.worker_stop_unrecorded", pid=pid, error=str(exc))
