"""The SMTP spool: an fsync'd journal that lets us say 250 without the database.

On SQLite one writer holds the database at a time, and processing holds it
for a few milliseconds per slice; an SMTP answer that waited for its inbound
row to commit waited for that too. So the listener's group commit appends
the raw messages to a journal file and fsyncs it (one fsync per group, like
a commit), answers 250, and an importer thread copies the records into the
inbound table afterwards, in larger batches.

The journal is a folder of segment files next to the database
(``<db>.spool/<seq>.journal``). Each record is::

    b"MGS1" | header length (u32) | raw length (u64) | crc32 (u32) | header JSON | raw

A record's key (a random hex id) becomes the inbound row's ``source_key``,
so importing a record twice stores it once. A segment is deleted once it is
no longer written to and all its records are in the database. At start-up
every record left in the folder is imported before the listeners open: a
crash between the fsync and the import loses nothing. A torn record at the
end of a segment (a crash in the middle of a write) was never answered 250
and is ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy import URL

from mailgate.message import Envelope
from mailgate.store.db import sqlite_file
from mailgate.store.inbound import InboundItem

log = structlog.get_logger(__name__)

MAGIC = b"MGS1"
_HEAD = struct.Struct(">4sIQI")
# A new segment after this many bytes: old ones can then be deleted.
SEGMENT_BYTES = 16 * 1024 * 1024
KEY_PREFIX = "spool:"


@dataclass(frozen=True)
class Spooled:
    """A record written to the journal: its segment, and the item to import."""

    segment: int
    item: InboundItem


def _encode(key: str, item: InboundItem) -> bytes:
    envelope = item.envelope
    header = json.dumps(
        {
            "key": key,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "source": envelope.source,
            "received_at": envelope.received_at.isoformat(),
            "quarantine_reason": item.quarantine_reason,
        },
        separators=(",", ":"),
    ).encode()
    crc = zlib.crc32(item.raw, zlib.crc32(header))
    return _HEAD.pack(MAGIC, len(header), len(item.raw), crc) + header + item.raw


def read_segment(path: Path) -> Iterator[InboundItem]:
    """The complete records of one segment, in order; stops at a torn or bad one."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEAD.size <= len(data):
        magic, header_len, raw_len, crc = _HEAD.unpack_from(data, offset)
        start = offset + _HEAD.size
        end = start + header_len + raw_len
        if magic != MAGIC or end > len(data):
            break
        header, raw = data[start : start + header_len], data[start + header_len : end]
        if zlib.crc32(raw, zlib.crc32(header)) != crc:
            break
        fields = json.loads(header)
        yield InboundItem(
            raw=raw,
            envelope=Envelope(
                mail_from=fields["mail_from"],
                rcpt_tos=tuple(fields["rcpt_tos"]),
                source=fields["source"],
                received_at=datetime.fromisoformat(fields["received_at"]),
            ),
            source_key=KEY_PREFIX + fields["key"],
            quarantine_reason=fields["quarantine_reason"],
        )
        offset = end
    if offset < len(data):
        log.warning("spool.torn_record_ignored", segment=path.name, offset=offset, size=len(data))


class SpoolInUse(RuntimeError):
    """Another daemon writes this spool: two daemons on one SQLite database."""


class Spool:
    """Appends groups of messages to the journal; one fsync per group.

    ``append`` is called from one thread (the group committer); ``imported``
    from another (the importer).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segment = 0
        self._size = 0
        # Records written but not yet in the database, per segment.
        self._outstanding: dict[int, int] = {}
        self._lock_fd: int | None = None

    def claim(self) -> None:
        """Take the spool for this process, or raise SpoolInUse.

        Two daemons on one SQLite file would each import (and then delete)
        the other's journal at start; the second one must not start at all.
        The lock goes with the process.
        """
        if self._lock_fd is not None:
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SpoolInUse(
                f"{self.folder} is in use by pid {holder}: another `mailgate run` on this database"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    @staticmethod
    def for_database(database: Path) -> Spool:
        return Spool(database.with_name(database.name + ".spool"))

    @staticmethod
    def for_url(url: str | URL) -> Spool | None:
        """The spool of a SQLite database; None elsewhere (no single writer to avoid)."""
        database = sqlite_file(url)
        return None if database is None else Spool.for_database(database.resolve())

    def segments(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("*.journal"))

    def leftovers(self) -> list[InboundItem]:
        """Every record in the folder (at start-up, before anything is appended)."""
        return [item for path in self.segments() for item in read_segment(path)]

    def discard_leftovers(self) -> None:
        """Delete the segments ``leftovers`` read, once they are in the database."""
        for path in self.segments():
            path.unlink()
        _fsync_dir(self.folder)

    def append(self, items: list[InboundItem]) -> list[Spooled]:
        """Write the items durably; only then may they be answered 250."""
        with self._lock:
            if self._fd is None or self._size >= SEGMENT_BYTES:
                self._open_next()
            assert self._fd is not None
            spooled, chunks = [], []
            for item in items:
                key = uuid.uuid4().hex
                chunks.append(_encode(key, item))
                spooled.append(Spooled(self._segment, replace(item, source_key=KEY_PREFIX + key)))
            data = b"".join(chunks)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                os.fsync(self._fd)
            except OSError:
                # A partial write (a full disk) must not sit between good
                # records: cut it off, and write to a new segment next time.
                self._abandon()
                raise
            self._size += len(data)
            self._outstanding[self._segment] = self._outstanding.get(self._segment, 0) + len(items)
        return spooled

    def imported(self, spooled: list[Spooled]) -> None:
        """These records are in the database: delete segments nobody needs."""
        with self._lock:
            for record in spooled:
                self._outstanding[record.segment] -= 1
            for seq in [seq for seq in self._outstanding if seq != self._segment]:
                self._retire_if_done(seq)

    def close(self) -> None:
        """Close the journal; delete it too if everything in it was imported."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._retire_if_done(self._segment)

    def _abandon(self) -> None:
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            log.error("spool.truncate_failed", segment=self._segment, error=str(exc))
        os.close(self._fd)
        self._fd = None
        self._retire_if_done(self._segment)

    def _retire_if_done(self, seq: int) -> None:
        """Delete a segment none of whose records still wait for the database."""
        if self._outstanding.get(seq, 0) == 0:
            self._outstanding.pop(seq, None)
            self._path(seq).unlink(missing_ok=True)

    def _path(self, seq: int) -> Path:
        return self.folder / f"{seq:016d}.journal"

    def _open_next(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._retire_if_done(self._segment)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = [int(path.stem) for path in self.segments() if path.stem.isdigit()]
        self._segment = max([self._segment, *existing]) + 1
        self._fd = os.open(
            self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600
        )
        self._size = 0
        # The new file's name must be durable before a record in it counts.
        _fsync_dir(self.folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
