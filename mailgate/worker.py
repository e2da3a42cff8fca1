"""The processing worker: a child process of ``mailgate run``.

The daemon's own process answers SMTP, commits inbound rows and fetches
IMAP; parsing, threading, rules, templates and delivery run here, on the
second core (one Python process uses one core at a time, and processing is
where the time goes). The two talk only through the database plus one
wake-up socket: a byte means "new rows", so nothing is lost if either side
dies — the other finds the rows on its next look.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading

import structlog

from mailgate import faults
from mailgate.outbox.deliver import OutboxWorker
from mailgate.pipeline import Processor
from mailgate.reload import FileWatcher, watched_paths
from mailgate.runtime import Runtime

log = structlog.get_logger(__name__)

WAKE_FD_ENV = "MAILGATE_WAKE_FD"
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL us when the daemon dies, so no orphan keeps working."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        log.warning("worker.no_pdeathsig")
    if os.getppid() != parent_pid:
        # The parent died before prctl took effect.
        os._exit(1)


def run_worker(runtime: Runtime, wake: socket.socket, outbox: OutboxWorker) -> int:
    stop = threading.Event()
    processor = Processor(runtime, batch=runtime.config.processing.batch, outbox=outbox)
    faults.in_worker = True

    def read_wakeups() -> None:
        while not stop.is_set():
            try:
                data = wake.recv(4096)
            except OSError:
                data = b""
            if not data:
                # The daemon closed its end: it is stopping or gone.
                stop.set()
            processor.wake.set()
            outbox.wake.set()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, lambda *_: runtime.reload())
    watcher = FileWatcher(watched_paths(runtime.config), runtime.reload)
    threads = [
        threading.Thread(target=processor.run, args=(stop,), name="processor", daemon=True),
        threading.Thread(target=watcher.run, args=(stop,), name="reload-watch", daemon=True),
        threading.Thread(target=outbox.run, args=(stop,), name="outbox", daemon=True),
        threading.Thread(target=read_wakeups, name="wake", daemon=True),
    ]
    for thread in threads:
        thread.start()
    wake.sendall(b"R")  # ready
    log.info("worker.ready", pid=os.getpid())
    while not stop.wait(0.5):
        pass
    processor.wake.set()
    outbox.wake.set()
    for thread in threads[:3]:
        thread.join(timeout=30)
    log.info("worker.stopped")
    return 0
