"""Kills, restarts and a database restart while mail flows: shared by the
short cluster test and ``bench/soak.py``.

Each action is logged with its wall-clock time, so that a lost or doubled
mail can be put next to what happened to the cluster at that moment.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.cluster.instances import Cluster, Instance, instances_supported
from tests.cluster.mailflow import ImapFeeder
from tests.cluster.pg_server import PgServer
from tests.cluster.verify import ClaimWatch, Takeover, inbound_stored_at


@dataclass
class Handover:
    """An IMAP account's holder killed: how long until a new mail there was stored."""

    killed: str
    # How the holder was found: "doctor" (mailgate doctor --json) or "guess".
    how: str
    seconds: float | None
    new_holder: str | None = None


@dataclass
class Chaos:
    cluster: Cluster
    database_url: str
    pg: PgServer | None = None
    feeder: ImapFeeder | None = None
    imap_account: str | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(13))
    log: list[str] = field(default_factory=list)
    watches: list[ClaimWatch] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    restart_seconds: list[float] = field(default_factory=list)
    pg_outages: list[float] = field(default_factory=list)
    kills: int = 0
    restarts: int = 0
    # Instances killed and not yet listening again: not picked for another kill.
    down: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        with self._lock:
            self.log.append(f"{stamp} {text}")

    def pick(self) -> Instance | None:
        """A random running instance that is not down already (None if there is none)."""
        with self._lock:
            up = [i for i in self.cluster.instances if i.alive() and i.name not in self.down]
            chosen = self.rng.choice(up) if up else None
            if chosen is not None:
                self.down.add(chosen.name)
            return chosen

    def kill(self, instance: Instance) -> float:
        with self._lock:
            self.down.add(instance.name)
        instance.kill9()
        killed_at = time.time()
        self.kills += 1
        self.note(f"kill -9 {instance.name} (pid {instance.process.pid if instance.process else '?'})")
        owner = instance.name if instances_supported() else None
        label = f"kill {self.kills} ({instance.name})"
        self.watches.append(ClaimWatch(self.database_url, label, killed_at, owner))
        return killed_at

    def restart(self, instance: Instance) -> None:
        took = self.cluster.restart(instance)
        with self._lock:
            self.down.discard(instance.name)
        self.restarts += 1
        self.restart_seconds.append(took)
        self.note(f"{instance.name} accepts SMTP again, {took:.1f} s after its start")

    def kill_and_restart(self, instance: Instance | None = None, pause: float = 0.0) -> None:
        target = instance or self.pick()
        if target is None:
            self.note("no instance to kill: all are down")
            return
        self.kill(target)
        time.sleep(pause)
        self.restart(target)

    def imap_handover(self, pause: float = 0.0, timeout: float = 60.0) -> Handover | None:
        """Kill the instance holding the IMAP account, drop a mail there, time its storing.

        None (nothing done) when the holder is down already, being restarted."""
        assert self.feeder is not None and self.imap_account is not None
        holder = self.cluster.imap_holder(self.imap_account)
        how = "doctor"
        if holder is None:
            # This mailgate does not say who holds it (every instance fetches).
            how = "guess"
            holder = self.pick()
            if holder is None:
                return None
        with self._lock:
            if holder.name in self.down and how == "doctor":
                return None
        killed_at = self.kill(holder)
        probe = self.feeder.append_one()
        marker = probe.message_id.strip("<>")
        stored = inbound_stored_at(self.database_url, marker, timeout)
        seconds = None if stored is None else stored - killed_at
        new_holder = self.cluster.imap_holder(self.imap_account)
        handover = Handover(holder.name, how, seconds, new_holder.name if new_holder else None)
        self.handovers.append(handover)
        took = "never" if seconds is None else f"{seconds:.1f} s"
        self.note(f"IMAP hand-over from {holder.name} ({how}): probe stored {took} after the kill")
        time.sleep(pause)
        self.restart(holder)
        return handover

    def restart_postgresql(self, mode: str = "fast") -> None:
        assert self.pg is not None
        self.note(f"PostgreSQL restart ({mode})")
        away = self.pg.restart("immediate" if mode == "immediate" else "fast")
        self.pg_outages.append(away)
        self.note(f"PostgreSQL back after {away:.1f} s")

    def takeovers(self, timeout: float = 0.0) -> list[Takeover]:
        deadline = time.monotonic() + timeout
        return [watch.join(max(0.0, deadline - time.monotonic())) for watch in self.watches]


def run_when(condition: Callable[[], bool], action: Callable[[], object], stop: threading.Event) -> bool:
    """Wait for ``condition`` (or ``stop``), then run ``action``; False if stopped first."""
    while not condition():
        if stop.wait(0.05):
            return False
    action()
    return True
