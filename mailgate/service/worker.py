"""The worker processes: children of ``mailgate run``.

The daemon's own process answers SMTP, commits inbound rows and fetches
IMAP. A *processing* worker parses, threads, routes, stores and queues the
answers; a *delivery* worker sends the queued mail. One Python process uses
one core at a time, and the two share nothing but the database: in one
process the delivery thread's SMTP chatter competed with processing for the
interpreter while processing held SQLite's write lock (a separate delivery
process raised processing from about 345 to 440 mails/s on two cores).

They talk only through the database plus wake-up sockets: a byte means
"new rows", so nothing is lost if any side dies — the others find the rows
on their next look. The daemon wakes the processing worker after each
inbound commit; the processing worker wakes the delivery worker after each
commit that queued mail, over a datagram socket the daemon made for them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import threading
from collections.abc import Callable

import structlog

from mailgate import faults
from mailgate.outbox.deliver import OutboxWorker
from mailgate.service.reload import FileWatcher, watched_paths
from mailgate.service.runtime import Runtime
from mailgate.tickets.pipeline import Processor

log = structlog.get_logger(__name__)

WAKE_FD_ENV = "MAILGATE_WAKE_FD"
# A datagram socket: the processing worker sends on it, the delivery worker receives.
DELIVERY_FD_ENV = "MAILGATE_DELIVERY_FD"
# The daemon's heartbeat row (store/instances.py): the parent of ours.
INSTANCE_ENV = "MAILGATE_INSTANCE_ID"
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


def run_worker(
    runtime: Runtime,
    wake: socket.socket,
    outbox: OutboxWorker | None,
    *,
    role: str,
    delivery: socket.socket | None = None,
) -> int:
    """Run one worker until the daemon closes ``wake`` or SIGTERM comes.

    ``role`` is "processing" (wakes the delivery worker through
    ``delivery``) or "delivery" (sends with ``outbox``, woken through
    ``delivery``).
    """
    stop = threading.Event()
    faults.in_worker = True
    presence = runtime.presence
    work: list[tuple[str, Callable[[threading.Event], None], threading.Event]] = []
    if role == "processing":
        if delivery is not None:
            # Never wait on a full buffer: wake-ups are pending then anyway.
            delivery.setblocking(False)
        processor = Processor(
            runtime,
            batch=runtime.config.processing.batch,
            on_queued=None if delivery is None else (lambda: _poke(delivery)),
        )
        work.append(("processor", processor.run, processor.wake))
    else:
        if outbox is None:
            raise ValueError("the delivery worker needs an outbox")
        work.append(("outbox", outbox.run, outbox.wake))
        if delivery is not None:
            _listen(delivery, outbox.wake, stop)

    def read_wakeups() -> None:
        while not stop.is_set():
            try:
                data = wake.recv(4096)
            except OSError:
                data = b""
            if not data:
                # The daemon closed its end: it is stopping or gone.
                stop.set()
            for _, _, event in work:
                event.set()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, lambda *_: runtime.reload())
    threads = [threading.Thread(target=run, args=(stop,), name=name, daemon=True) for name, run, _ in work]
    if role == "processing":
        # Rules, agents and templates are applied here: reload them on change.
        watcher = FileWatcher(watched_paths(runtime.config), runtime.reload)
        threads.append(threading.Thread(target=watcher.run, args=(stop,), name="reload-watch", daemon=True))
    beat_stop = threading.Event()
    beating = None
    if presence is not None:
        presence.start()
        # Stopped after the work: until then this process's leases must hold.
        beating = threading.Thread(target=presence.run, args=(beat_stop,), name="presence", daemon=True)
        beating.start()
    for thread in threads:
        thread.start()
    threading.Thread(target=read_wakeups, name="wake", daemon=True).start()
    wake.sendall(b"R")  # ready
    log.info("worker.ready", pid=os.getpid(), role=role)
    while not stop.wait(0.5):
        pass
    for _, _, event in work:
        event.set()
    for thread in threads:
        thread.join(timeout=30)
    beat_stop.set()
    if beating is not None:
        beating.join(timeout=10)
    log.info("worker.stopped", role=role)
    return 0


def _poke(sock: socket.socket) -> None:
    # A full buffer means wake-ups are pending already; an error means the
    # delivery worker is gone, and the daemon restarts it.
    with contextlib.suppress(OSError):
        sock.send(b"q")


def _listen(sock: socket.socket, event: threading.Event, stop: threading.Event) -> None:
    def read() -> None:
        while not stop.is_set():
            try:
                sock.recv(4096)
            except OSError:
                return
            event.set()

    threading.Thread(target=read, name="delivery-wake", daemon=True).start()
