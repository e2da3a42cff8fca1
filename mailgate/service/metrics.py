"""Prometheus metrics, summed over the daemon and its worker processes.

With ``listen.metrics`` set, ``mailgate run`` serves ``/metrics``. Counters
and histograms are kept by whichever process does the work (listener,
processing, delivery) in prometheus_client's multiprocess mode: each
process writes its values to files in a folder next to ``status.json``,
and the daemon sums them per scrape. Queue depths are read from the
database at scrape time, so they are right even after a restart.

prometheus_client decides at import time whether it runs in multiprocess
mode, so nothing imports it before :func:`enable` has set the folder (the
worker processes inherit the setting); without ``listen.metrics`` it is
never imported and every ``count``/``observe`` is a no-op.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, func, select

from mailgate.store.db import read_only
from mailgate.store.instances import list_instances
from mailgate.store.models import Inbound, Outbox, Ticket

log = structlog.get_logger(__name__)

FOLDER_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from one mail being answered within 10 ms to a backlog of minutes.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_metrics: dict[str, Any] = {}
_lock = threading.Lock()


def enable(folder: Path) -> None:
    """Switch this process and the workers it starts to multiprocess mode."""
    shutil.rmtree(folder, ignore_errors=True)  # values of an earlier run
    folder.mkdir(mode=0o700, parents=True)
    os.environ[FOLDER_ENV] = str(folder)


def enabled() -> bool:
    return FOLDER_ENV in os.environ


def _metric(name: str) -> Any:
    found = _metrics.get(name)
    if found is not None:
        return found
    with _lock:
        if not _metrics:
            from prometheus_client import Counter, Histogram

            _metrics.update(
                smtp=Counter(
                    "mailgate_smtp_messages",
                    "Messages offered over SMTP/LMTP, by listener and answer",
                    ["listener", "result"],
                ),
                processed=Counter(
                    "mailgate_processed_messages", "Inbound messages processed, by outcome", ["state"]
                ),
                processing_delay=Histogram(
                    "mailgate_processing_delay_seconds",
                    "From a message's arrival to the commit of its ticket or article",
                    buckets=_BUCKETS,
                ),
                delivery=Counter(
                    "mailgate_deliveries", "Outgoing mail delivery attempts, by result", ["result"]
                ),
                delivery_delay=Histogram(
                    "mailgate_delivery_delay_seconds",
                    "From an outgoing mail being queued to its delivery to the relay",
                    buckets=_BUCKETS,
                ),
            )
        return _metrics[name]


def count(name: str, amount: float = 1.0, **labels: str) -> None:
    if not enabled():
        return
    metric = _metric(name)
    (metric.labels(**labels) if labels else metric).inc(amount)


def observe(name: str, seconds: float) -> None:
    if enabled():
        _metric(name).observe(max(0.0, seconds))


class _QueueCollector:
    """Queue depths and worker health, read when Prometheus scrapes."""

    def __init__(self, engine: Engine, workers: Callable[[], list[dict[str, Any]]]) -> None:
        self._engine = engine
        self._workers = workers

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        inbound = GaugeMetricFamily("mailgate_inbound_messages", "Inbound rows by state", labels=["state"])
        outbox = GaugeMetricFamily("mailgate_outbox_messages", "Outbox rows by state", labels=["state"])
        tickets = GaugeMetricFamily("mailgate_tickets", "Tickets by status", labels=["status"])
        oldest = GaugeMetricFamily(
            "mailgate_oldest_pending_seconds", "Age of the oldest inbound message not yet processed"
        )
        # Every instance on the database, not just this one (docs/scale-out.md).
        instances = GaugeMetricFamily(
            "mailgate_instances", "Daemons sharing the database, by state", labels=["state"]
        )
        heartbeat = GaugeMetricFamily(
            "mailgate_instance_heartbeat_age_seconds",
            "Seconds since each daemon's last heartbeat",
            labels=["instance", "host", "pid"],
        )
        roles = GaugeMetricFamily(
            "mailgate_role_held",
            "1 for the live daemon holding each role (an IMAP account, the timers)",
            labels=["role", "instance"],
        )
        try:
            with read_only(), self._engine.connect() as connection:
                for state, number in connection.execute(
                    select(Inbound.state, func.count()).group_by(Inbound.state)
                ):
                    inbound.add_metric([state], number)
                for state, number in connection.execute(
                    select(Outbox.state, func.count()).group_by(Outbox.state)
                ):
                    outbox.add_metric([state], number)
                for status, number in connection.execute(
                    select(Ticket.status, func.count()).group_by(Ticket.status)
                ):
                    tickets.add_metric([status], number)
                first = connection.execute(
                    select(func.min(Inbound.received_at)).where(Inbound.state == "pending")
                ).scalar()
                now = datetime.now(UTC)
                daemons = [row for row in list_instances(connection, now) if row.kind == "daemon"]
        except Exception as exc:  # a scrape must answer even with the database away
            log.warning("metrics.database_unavailable", error=str(exc))
        else:
            yield from (inbound, outbox, tickets)
            oldest.add_metric([], (now - first).total_seconds() if first else 0.0)
            yield oldest
            for state in ("live", "stale", "stopped"):
                instances.add_metric([state], sum(1 for row in daemons if row.state == state))
            for row in daemons:
                if row.state != "stopped":
                    age = (now - row.heartbeat_at).total_seconds()
                    heartbeat.add_metric([row.name, row.host, str(row.pid)], age)
                for role in row.roles:
                    roles.add_metric([role, row.name], 1)
            yield from (instances, heartbeat, roles)
        alive = GaugeMetricFamily(
            "mailgate_workers_alive", "Worker processes alive, by role", labels=["role"]
        )
        restarts = CounterMetricFamily(
            "mailgate_worker_restarts", "Worker processes restarted, by role", labels=["role"]
        )
        by_role: dict[str, list[int]] = {}
        for worker in self._workers():
            totals = by_role.setdefault(str(worker["role"]), [0, 0])
            totals[0] += 1 if worker["alive"] else 0
            totals[1] += int(worker["restarts"])
        for role, (living, restarted) in sorted(by_role.items()):
            alive.add_metric([role], living)
            restarts.add_metric([role], restarted)
        yield alive
        yield restarts


class MetricsServer:
    """``/metrics`` over HTTP, on a thread of the daemon."""

    def __init__(self, host: str, port: int, engine: Engine, workers: Callable[[], list[dict[str, Any]]]):
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=os.environ[FOLDER_ENV])  # type: ignore[no-untyped-call]
        registry.register(_QueueCollector(engine, workers))
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        log.info("metrics.listening", address=f"{host}:{port}")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def process_died(pid: int) -> None:
    """Forget a dead worker's live gauges (its counters stay in the sums)."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
