"""What `mailgate doctor` learns from the running daemon: its status file.

The daemon rewrites ``status.json`` every few seconds (mailgate.service.status);
an old file means the daemon is wedged, and each IMAP account's state, last
UID, backlog and last error are reported from it. Whether it runs at all is
told at once by the lock it holds on the pipe folder while it lives (the
kernel drops it when the process dies, even by ``kill -9``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from mailgate.config import Config
from mailgate.ingest.pipe import LOCK_NAME, daemon_running
from mailgate.service.status import read_status, status_path

# The daemon writes every 5 s; three missed writes mean it is not running.
STALE_AFTER_SECONDS = 15.0


class DaemonFinding(NamedTuple):
    status: Literal["OK", "WARN", "FAIL"]
    check: str
    detail: str


def check_daemon(config: Config, now: datetime | None = None) -> Iterator[DaemonFinding]:
    path = status_path(config)
    state = read_status(path)
    if state is None:
        yield DaemonFinding("WARN", "daemon", f"no status file at {path}: is `mailgate run` running?")
        yield from _accounts_without_status(config)
        return
    written = datetime.fromisoformat(str(state.get("written_at")))
    age = ((now or datetime.now(UTC)) - written).total_seconds()
    pipe_folder = config.path(config.pipe_folder)
    if (pipe_folder / LOCK_NAME).exists() and not daemon_running(pipe_folder):
        yield DaemonFinding(
            "WARN", "daemon", f"not running (pid {state.get('pid')} stopped; its status is {age:.0f} s old)"
        )
        age = float("inf")
    elif age > STALE_AFTER_SECONDS:
        yield DaemonFinding(
            "WARN", "daemon", f"status last written {age:.0f} s ago (pid {state.get('pid')}): not running?"
        )
    else:
        workers = state.get("workers") or []
        alive = sum(1 for w in workers if w.get("alive"))
        restarts = sum(int(w.get("restarts", 0)) for w in workers)
        listeners = ", ".join(state.get("listeners") or []) or "none"
        detail = f"running (pid {state.get('pid')}), listening on {listeners}"
        detail += f"; {alive}/{len(workers)} workers alive"
        yield DaemonFinding(
            "OK" if alive == len(workers) else "FAIL", "daemon", detail + f", {restarts} restarts"
        )
    known = {account.get("name"): account for account in state.get("imap") or []}
    for account in config.imap:
        yield _account_finding(account.name, known.get(account.name), stale=age > STALE_AFTER_SECONDS)


def _account_finding(name: str, status: dict[str, Any] | None, *, stale: bool) -> DaemonFinding:
    check = f"imap {name}"
    if status is None:
        return DaemonFinding("WARN", check, "no state reported by the daemon yet")
    if status.get("state") == "standby" and not stale:
        # Several instances on one database: one fetches, see its "instance" line.
        return DaemonFinding("OK", check, "standing by: another instance holds this account")
    detail = (
        f"{status.get('state')}; last UID {status.get('last_uid')}, backlog {status.get('backlog')}, "
        f"{status.get('stored')} stored since start"
    )
    if status.get("last_error"):
        detail += f"; last error: {status['last_error']}"
    if stale:
        return DaemonFinding("WARN", check, detail + " (old status: daemon not running?)")
    if status.get("state") in ("auth_failed", "backoff"):
        return DaemonFinding(
            "FAIL", check, detail + ": check the account's host, credentials and certificate"
        )
    return DaemonFinding("OK", check, detail)


def _accounts_without_status(config: Config) -> Iterator[DaemonFinding]:
    for account in config.imap:
        yield DaemonFinding("WARN", f"imap {account.name}", "unknown until the daemon runs")
