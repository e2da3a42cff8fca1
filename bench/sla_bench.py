"""What the service-level timer costs with many open tickets.

    .venv/bin/python bench/sla_bench.py [--tickets 100000] [--due 50] [--idle-seconds 20]

Fills a throwaway SQLite database with ``--tickets`` open tickets that have
a service level (due moments spread over the next 30 days) and ``--due`` of
them whose warning is due now, then measures:

1. an idle scan (``SlaTimer.tick`` with nothing due): what the daemon pays
   at each wake-up, median of 50;
2. the scan that fires the ``--due`` warnings: marks, events and one mail
   per agent, in one transaction;
3. the CPU a real idle ``mailgate run`` (daemon and workers) uses on that
   database over ``--idle-seconds``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import insert

RULES = """\
service_levels:
  standard:
    business_hours: 24x7
    warn_at: 75%
    first_response: {urgent: 1h, high: 4h, normal: 8h, low: 16h}
    resolution: 40h
defaults: {sla: standard}
"""
AGENTS = """\
agents:
  alice: {address: alice@example.com, queues: [general]}
queues:
  general: {escalation: lead@example.com}
"""


def _config(folder: Path) -> Path:
    (folder / "rules.yaml").write_text(RULES)
    (folder / "agents.yaml").write_text(AGENTS)
    config = {
        "helpdesk": {"address": "helpdesk@example.com"},
        "database": {"url": f"sqlite:///{folder}/mailgate.db"},
        "listen": {"smtp": {"host": "127.0.0.1", "port": 0}},
        "outbound": {"maildir": str(folder / "outbox")},
        "secrets": {"reply_key_file": str(folder / "reply.key")},
        "rules": str(folder / "rules.yaml"),
        "agents": str(folder / "agents.yaml"),
        "logging": {"format": "json", "level": "warning"},
    }
    path = folder / "mailgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fill(runtime: object, tickets: int, due: int, now: datetime) -> None:
    from mailgate.store.db import transaction
    from mailgate.store.writes import TICKETS

    rows = []
    for number in range(tickets):
        created = now - timedelta(minutes=number % 600)
        fires = number < due
        # Most tickets' next look lies days ahead; ``due`` of them now.
        next_at = now - timedelta(seconds=1) if fires else now + timedelta(hours=1 + number % (30 * 24))
        rows.append({
            "ref": f"HD-{number + 1}", "subject": f"Problem {number}", "status": "open", "priority": "normal",
            "queue": "general", "tags": [], "language": "en", "requester": f"user{number}@example.org",
            "requester_name": "", "created_at": created, "updated_at": created, "sla": "standard",
            "first_response_due": next_at + timedelta(hours=2) if not fires else now + timedelta(minutes=30),
            "resolution_due": created + timedelta(hours=40), "sla_paused_seconds": 0, "sla_next_at": next_at,
        })  # fmt: skip
    with transaction(runtime.sessions) as session:  # type: ignore[attr-defined]
        for start in range(0, len(rows), 5000):
            session.execute(insert(TICKETS), rows[start : start + 5000])


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    from mailgate.config import load
    from mailgate.service.runtime import build
    from mailgate.sla.timer import SlaTimer

    with tempfile.TemporaryDirectory(prefix="mailgate-sla-bench-") as work:
        folder = Path(work)
        config_path = _config(folder)
        runtime = build(load(config_path))
        now = datetime.now(UTC)
        started = time.perf_counter()
        _fill(runtime, args.tickets, args.due, now)
        print(f"{args.tickets} open tickets with a level written in {time.perf_counter() - started:.1f} s")
        timer = SlaTimer(runtime)
        started = time.perf_counter()
        timer.tick(now)
        fired = time.perf_counter() - started
        print(f"scan firing {args.due} warnings (marks, events, one mail per person): {fired * 1000:.1f} ms")
        idle = []
        for _ in range(50):
            started = time.perf_counter()
            timer.tick(now)
            idle.append(time.perf_counter() - started)
        print(
            f"idle scan with {args.tickets} open tickets: median {statistics.median(idle) * 1000:.2f} ms, "
            f"max {max(idle) * 1000:.2f} ms (50 scans)"
        )
        runtime.close()
        if args.idle_seconds <= 0:
            return
        daemon = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "-c", str(config_path), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(12)  # imports, workers started, first timer scan: not idle time
            pids = _children(daemon.pid)
            before = _cpu_seconds(pids)
            time.sleep(args.idle_seconds)
            used = _cpu_seconds(pids) - before
            print(
                f"idle `mailgate run` ({len(pids)} processes) on that database: {used:.2f} CPU s in "
                f"{args.idle_seconds:.0f} s = {100 * used / args.idle_seconds:.2f}% of one core"
            )
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
