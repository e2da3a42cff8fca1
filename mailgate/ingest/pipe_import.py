"""The daemon's side of the pipe folder: import what ``mailgate ingest`` left.

While ``mailgate run`` runs it holds ``.daemon.lock`` (so ingest takes the
fast path) and listens on ``.wake``; each file in ``new/`` becomes an
inbound row whose source key is the file name, and is unlinked only after
that row is committed. A crash between the two imports the file again at
the next look and the key stores it once: exactly once, as with the spool.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from mailgate.faults import crash_point
from mailgate.ingest.files import pipe_item
from mailgate.ingest.pipe import LOCK_NAME, WAKE_NAME, read_dropped
from mailgate.store.inbound import InboundItem, InboundStore

log = structlog.get_logger(__name__)

# A safety net for lost wake-ups (a full socket buffer, a daemon restart).
POLL_SECONDS = 5.0
BATCH = 100
# A file in tmp/ was never acknowledged (ingest exits 0 only after the
# rename into new/): its writer died, and after an hour it is garbage.
STALE_TMP_SECONDS = 3600


class PipeFolder:
    """Holds the pipe folder for this daemon and imports its messages."""

    def __init__(self, folder: Path, store: InboundStore, default_rcpt: str) -> None:
        self.folder = folder
        self._store = store
        self._default_rcpt = default_rcpt
        self._lock_fd: int | None = None
        self._wake: socket.socket | None = None

    def open(self) -> None:
        """Create the folder, take its lock and listen for wake-ups."""
        for sub in ("tmp", "new"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        # One daemon per database already (the spool's lock); a second one
        # sharing the pipe folder would only share the work, so wait is wrong:
        # take the lock without blocking and let the other keep it if it has it.
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd
        wake_path = self.folder / WAKE_NAME
        wake_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(wake_path))
        # Writers run as the MTA's pipe user, which must be able to reach us.
        os.chmod(wake_path, 0o666)
        sock.settimeout(POLL_SECONDS)
        self._wake = sock

    def nudge(self) -> None:
        """Wake the import thread (so that it sees a stop at once)."""
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake.sendto(b"w", str(self.folder / WAKE_NAME))

    def close(self) -> None:
        if self._wake is not None:
            self._wake.close()
            self._wake = None
            (self.folder / WAKE_NAME).unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def run(self, stop: threading.Event) -> None:
        """Import on every wake-up and every few seconds until stopped."""
        while not stop.is_set():
            try:
                self.import_waiting()
            except Exception as exc:  # the files stay; the next look retries
                log.error("pipe.import_failed", error=str(exc))
            self._sleep()

    def _sleep(self) -> None:
        sock = self._wake
        if sock is None:
            time.sleep(POLL_SECONDS)
            return
        with contextlib.suppress(TimeoutError, OSError):
            sock.recv(64)
        # Drain wake-ups that arrived together: one look serves them all.
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, OSError):
            while sock.recv(64):
                pass
        sock.settimeout(POLL_SECONDS)

    def waiting(self) -> list[Path]:
        """Files waiting in ``new/``, oldest first (names start with the time)."""
        try:
            return sorted((self.folder / "new").iterdir(), key=lambda path: path.name)
        except FileNotFoundError:
            return []

    def import_waiting(self) -> int:
        """Import every waiting file; return how many rows were stored."""
        stored = 0
        files = self.waiting()
        for start in range(0, len(files), BATCH):
            stored += self._import(files[start : start + BATCH])
        self._clean_tmp()
        return stored

    def _import(self, files: list[Path]) -> int:
        items: list[InboundItem] = []
        readable: list[Path] = []
        for path in files:
            try:
                envelope, raw = read_dropped(path)
            except (OSError, ValueError) as exc:
                # Not ours or torn: keep it for an admin rather than lose it.
                log.error("pipe.unreadable", file=path.name, error=str(exc))
                with contextlib.suppress(OSError):
                    path.rename(self.folder / f"{path.name}.unreadable")
                continue
            items.append(self._item(path.name, envelope, raw))
            readable.append(path)
        if not items:
            return 0
        ids = self._store.accept(items)
        crash_point("pipe-imported")
        for path in readable:
            path.unlink(missing_ok=True)
        stored = sum(1 for row_id in ids if row_id is not None)
        log.info("pipe.imported", stored=stored, already_stored=len(ids) - stored)
        return stored

    def _item(self, name: str, envelope: dict[str, object], raw: bytes) -> InboundItem:
        sender = envelope.get("sender")
        recipients = envelope.get("recipients") or []
        item = pipe_item(
            raw,
            sender if isinstance(sender, str) else None,
            tuple(str(r) for r in recipients) if isinstance(recipients, list) else (),
            self._default_rcpt,
        )
        received = envelope.get("received_at")
        when = (
            datetime.fromtimestamp(received, UTC)
            if isinstance(received, int | float)
            else item.envelope.received_at
        )
        return replace(item, envelope=replace(item.envelope, received_at=when), source_key=name)

    def _clean_tmp(self) -> None:
        limit = time.time() - STALE_TMP_SECONDS
        with contextlib.suppress(FileNotFoundError):
            for path in (self.folder / "tmp").iterdir():
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < limit:
                        path.unlink()
