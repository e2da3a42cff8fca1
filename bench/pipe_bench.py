"""The MTA pipe and the command line: what one `mailgate` process costs.

Starts a real ``mailgate run`` on a throwaway configuration (SQLite,
acknowledgements to an aiosmtpd sink in this process), then pipes
``--messages`` (200) mails through ``mailgate ingest``, one process after
another as Postfix's pipe transport does, each pinned to one core. Prints
the CPU per message (user + system of the ingest processes), messages per
second of wall time, and how long until the daemon acknowledged them all.
Then ``--without-daemon`` messages are piped with no daemon running (stored
and processed inline), and ``mailgate --help`` is timed.

    .venv/bin/python bench/pipe_bench.py [--messages 200] [--without-daemon 20] [--keep]

Targets (issue 11): at most 50 ms of CPU per message, at least 20 messages
per second on one core, ``mailgate --help`` within 150 ms.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller
from smtp_bench import AckSink, free_port, start_daemon, stop_daemon, wait_until_listening, write_config

TARGET_CPU_MS = 50.0
TARGET_RATE = 20.0
TARGET_HELP_MS = 150.0


def _mail(n: int) -> bytes:
    return (
        f"From: Requester {n} <user{n}@example.org>\r\nTo: helpdesk@bench.example\r\n"
        f"Subject: Piped request {n}\r\nMessage-ID: <pipe-{n}-{uuid.uuid4().hex}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello,\r\n\r\nmy laptop does not see the printer since this morning.\r\n\r\nRegards\r\n"
    ).encode()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pipe(mailgate: Path, config: Path, count: int, start: int) -> tuple[float, float]:
    """Pipe ``count`` mails one process at a time; return (CPU seconds, wall seconds)."""
    one_core = {sorted(os.sched_getaffinity(0))[0]}
    cpu_before, wall_before = _children_cpu(), time.monotonic()
    for n in range(start, start + count):
        result = subprocess.run(
            [str(mailgate), "-c", str(config), "ingest", "--sender", f"user{n}@example.org"],
            input=_mail(n),
            capture_output=True,
            preexec_fn=lambda: os.sched_setaffinity(0, one_core),
        )
        if result.returncode != 0:
            sys.exit(f"ingest exited {result.returncode}: {result.stderr.decode()}")
    return _children_cpu() - cpu_before, time.monotonic() - wall_before


def time_help(mailgate: Path, runs: int = 10) -> float:
    walls = []
    for _ in range(runs):
        began = time.monotonic()
        subprocess.run([str(mailgate), "--help"], capture_output=True, check=True)
        walls.append(time.monotonic() - began)
    return statistics.median(walls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--without-daemon", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    args = parser.parse_args(argv)
    mailgate = Path(sys.executable).with_name("mailgate")
    folder = Path(tempfile.mkdtemp(prefix="mailgate-pipe-bench-"))
    sink = AckSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    smtp_port = free_port()
    config = write_config(folder, smtp_port, controller.port)
    log_path = folder / "daemon.log"
    daemon = start_daemon(config, log_path, None)
    ok = True
    try:
        wait_until_listening(daemon, smtp_port, log_path)
        cpu, wall = pipe(mailgate, config, args.messages, 0)
        piped_at = time.monotonic()
        deadline = piped_at + 120
        while len(sink.arrived) < args.messages and time.monotonic() < deadline:
            sink.changed.wait(1)
            sink.changed.clear()
        answered = time.monotonic() - piped_at
        per_message = 1000 * cpu / args.messages
        rate = args.messages / wall
        print(f"pipe with the daemon running: {args.messages} messages in {wall:.1f} s = {rate:.1f} msgs/s")
        print(f"  CPU per message: {per_message:.1f} ms (target <= {TARGET_CPU_MS:.0f})")
        acked = len(sink.arrived)
        print(f"  acknowledged: {acked}/{args.messages}, the last {answered:.1f} s after the last pipe")
        ok &= per_message <= TARGET_CPU_MS and rate >= TARGET_RATE and len(sink.arrived) == args.messages
    finally:
        stop_daemon(daemon)
    if args.without_daemon:
        cpu, wall = pipe(mailgate, config, args.without_daemon, args.messages)
        print(
            f"pipe without a daemon (stored and processed inline): "
            f"{1000 * cpu / args.without_daemon:.0f} ms CPU per message, "
            f"{args.without_daemon / wall:.1f} msgs/s"
        )
    help_ms = 1000 * time_help(mailgate)
    print(f"mailgate --help: {help_ms:.0f} ms median of 10 (target <= {TARGET_HELP_MS:.0f})")
    ok &= help_ms <= TARGET_HELP_MS
    controller.stop()
    if args.keep:
        print(f"work folder kept: {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
