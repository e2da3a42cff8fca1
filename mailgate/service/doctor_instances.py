"""What `mailgate doctor` says about the instances sharing this database.

Read from the ``instances`` and ``roles`` tables (store/instances.py), so
it covers every daemon on every host, not just the one whose status file
is here: which are live, which hold which IMAP account and the timers,
which stopped beating recently, and whether this host's clock agrees with
PostgreSQL's (heartbeats compare times written by different hosts).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from mailgate.config import Config
from mailgate.service.doctor_daemon import DaemonFinding
from mailgate.store.db import read_only
from mailgate.store.instances import (
    SAFE_SECONDS,
    STALE_SECONDS,
    TIMERS,
    InstanceRow,
    imap_role,
    list_instances,
    unheld_roles,
)

# A dead instance is worth a warning for this long; after that it is history.
RECENT = timedelta(hours=1)
# Clocks further apart than this eat the margin between SAFE and STALE.
CLOCK_SKEW_WARN = STALE_SECONDS - SAFE_SECONDS


def read_instances(engine: Engine, now: datetime | None = None) -> list[InstanceRow]:
    with read_only(), engine.connect() as conn:
        return list_instances(conn, now or datetime.now(UTC))


def instances_json(rows: list[InstanceRow], now: datetime | None = None) -> list[dict[str, Any]]:
    """The instances for `doctor --json` and `mailgate instances --json`."""
    now = now or datetime.now(UTC)
    return [
        {
            "id": row.id,
            "name": row.name,
            "kind": row.kind,
            "parent_id": row.parent_id,
            "host": row.host,
            "pid": row.pid,
            "state": row.state,
            "roles": list(row.roles),
            "listeners": list(row.listeners),
            "started_at": row.started_at.isoformat(),
            "heartbeat_at": row.heartbeat_at.isoformat(),
            "heartbeat_age_seconds": round((now - row.heartbeat_at).total_seconds(), 1),
            "stopped_at": row.stopped_at.isoformat() if row.stopped_at else None,
        }
        for row in rows
    ]


def check_instances(config: Config, engine: Engine, now: datetime | None = None) -> Iterator[DaemonFinding]:
    now = now or datetime.now(UTC)
    with read_only(), engine.connect() as conn:
        rows = list_instances(conn, now)
        unheld = set(unheld_roles(conn, now))
        skew = _clock_skew(conn)
    daemons = [row for row in rows if row.kind == "daemon"]
    workers: dict[int, list[InstanceRow]] = {}
    for row in rows:
        if row.parent_id is not None:
            workers.setdefault(row.parent_id, []).append(row)
    for daemon in daemons:
        found = _daemon_finding(daemon, workers.get(daemon.id, []), now)
        if found is not None:
            yield found
    if any(daemon.state == "live" for daemon in daemons):
        wanted = [TIMERS, *(imap_role(account.name) for account in config.imap)]
        for role in wanted:
            if role in unheld:
                yield DaemonFinding(
                    "WARN", f"role {role}", "held by no live instance: nobody does this work right now"
                )
    if skew is not None and abs(skew) > CLOCK_SKEW_WARN:
        yield DaemonFinding(
            "WARN",
            "clock",
            f"this host's clock is {skew:+.1f} s off PostgreSQL's; instances compare heartbeats by time: "
            "keep every host in sync (NTP, e.g. systemd-timesyncd or chrony)",
        )


def _daemon_finding(daemon: InstanceRow, workers: list[InstanceRow], now: datetime) -> DaemonFinding | None:
    check = f"instance {daemon.name}"
    where = f"pid {daemon.pid} on {daemon.host}, id {daemon.id}"
    age = (now - daemon.heartbeat_at).total_seconds()
    if daemon.state == "stopped":
        return None
    if daemon.state == "stale":
        if now - daemon.heartbeat_at > RECENT:
            return None
        return DaemonFinding(
            "WARN",
            check,
            f"no heartbeat for {age:.0f} s ({where}): killed, hung or cut off from the database; "
            "its claimed mail and its roles went to the live instances",
        )
    roles = ", ".join(daemon.roles) or "no roles"
    living = [w for w in workers if w.state == "live"]
    kinds = ", ".join(sorted(w.kind for w in living)) or "none"
    detail = f"live ({where}), last heartbeat {age:.0f} s ago; holds {roles}; workers: {kinds}"
    if daemon.listeners:
        detail += f"; listening on {', '.join(daemon.listeners)}"
    dead = [w for w in workers if w.state == "stale"]
    if dead:
        return DaemonFinding("WARN", check, detail + f"; {len(dead)} worker(s) stopped beating")
    return DaemonFinding("OK", check, detail)


def _clock_skew(conn: Any) -> float | None:
    """Seconds this host's clock is ahead of PostgreSQL's; None on SQLite (one host)."""
    if conn.dialect.name != "postgresql":
        return None
    theirs: datetime = conn.execute(text("SELECT now()")).scalar_one()
    return (datetime.now(UTC) - theirs).total_seconds()
