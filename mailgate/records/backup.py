"""``mailgate backup FILE``: a consistent copy of a running installation.

What a 250 promised lives in three places: the database, the SMTP spool
journal (accepted, not yet imported) and the pipe folder (piped, not yet
imported). Mail moves from the last two into the first, never back, so the
copy takes them in that order: first the journal and the pipe folder, then
the database through SQLite's online backup API, which reads one consistent
snapshot while the daemon goes on writing (WAL: readers never block the
writer). A message imported between the two steps is then in both copies,
and the restored daemon's import stores it once (its key is the same); a
message cannot be in neither.

On PostgreSQL there is no journal (every 250 follows a commit) and the
database is read by ``pg_dump`` from one snapshot (records/postgres.py);
the pipe folder is copied first, for the same reason as above. The archive
is the same either way; the manifest's ``database`` says which kind it holds.

The archive is a gzip'd tar with ``manifest.json`` first: what was copied,
each file's size and SHA-256, the schema revision, row counts, and where
the reply key lives with a fingerprint of it. The key itself goes in only
when asked (``--include-secrets``): a backup is often kept where a key
should not be.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from mailgate.config import Config
from mailgate.store.db import sqlite_file
from mailgate.store.spool import Spool

FORMAT = "mailgate-backup"
VERSION = 1
DATABASE = "database/mailgate.db"
PG_DUMP = "database/mailgate.pgdump"  # pg_dump's custom format, uncompressed (the tar is gzip'd)
COUNTED = ("tickets", "articles", "inbound", "outbox", "events", "attachment_blobs")


class BackupError(Exception):
    """The backup cannot be made; ``str()`` says why in words."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    counts: dict[str, int]
    waiting: int  # messages copied from the journal and the pipe folder
    seconds: float
    database: dict[str, Any]  # the manifest's "database": kind, and on PostgreSQL versions
    # PostgreSQL's WAL settings (for the point-in-time recovery advice); empty on SQLite.
    settings: dict[str, str]


def key_fingerprint(path: Path) -> str | None:
    """A short SHA-256 of the signing key: tells keys apart without revealing one."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    except (OSError, UnicodeDecodeError):
        return None
    keys = [line for line in lines if line and not line.startswith("#")]
    return hashlib.sha256(keys[0].encode()).hexdigest()[:16] if keys else None


def make_backup(
    config: Config,
    target: Path,
    *,
    include_secrets: bool = False,
    progress: Callable[[int, int], None] | None = None,
    pg_bin: Path | None = None,
) -> BackupResult:
    """Write the archive to ``target``; ``pg_bin`` is where pg_dump is (PostgreSQL only)."""
    began = datetime.now(UTC)
    database = sqlite_file(config.database_url)
    if database is not None and not database.exists():
        raise BackupError(f"{database}: no database here to back up")
    target = target.resolve()
    work = Path(tempfile.mkdtemp(prefix=".mailgate-backup-", dir=target.parent))
    settings: dict[str, str] = {}
    try:
        if database is not None:
            waiting = _copy_waiting(config, Spool.for_database(database.resolve()).segments(), work)
            _snapshot(database, work / DATABASE)
            counts, revision = _describe(work / DATABASE)
            source: dict[str, Any] = {"kind": "sqlite"}
        else:
            from mailgate.records import postgres

            waiting = _copy_waiting(config, [], work)
            dumped = postgres.dump(config.database_url, work / PG_DUMP, pg_bin)
            counts, revision, source = dumped.counts, dumped.revision, dumped.source
            settings = dumped.settings
        key_path = config.path(config.secrets.reply_key_file)
        if include_secrets:
            if not key_path.is_file():
                raise BackupError(f"{key_path}: no reply key file to include")
            (work / "secrets").mkdir()
            shutil.copyfile(key_path, work / "secrets" / "reply.key")
            os.chmod(work / "secrets" / "reply.key", 0o600)
        files = sorted(p for p in work.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": began.isoformat(),
            "helpdesk": config.helpdesk.address,
            "database": source,
            "schema_revision": revision,
            "counts": counts,
            "waiting_messages": waiting,
            "reply_key": {
                "path": str(key_path),
                "fingerprint": key_fingerprint(key_path),
                "included": include_secrets,
            },
            "files": [
                {"path": p.relative_to(work).as_posix(), "size": p.stat().st_size, "sha256": sha256_of(p)}
                for p in files
            ],
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        partial = target.with_name(target.name + ".partial")
        total = sum(p.stat().st_size for p in files)
        with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
            archive.add(work / "manifest.json", arcname="manifest.json")
            for path in files:
                info = archive.gettarinfo(path, arcname=path.relative_to(work).as_posix())
                with open(path, "rb") as handle:
                    archive.addfile(info, _Counting(handle, total, progress))
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = (datetime.now(UTC) - began).total_seconds()
    return BackupResult(target, target.stat().st_size, counts, waiting, seconds, source, settings)


def _copy_waiting(config: Config, segments: list[Path], work: Path) -> int:
    """Mail that is durable but not yet in the database: journal segments, piped files."""
    copied = 0
    for segment in segments:
        destination = work / "spool" / segment.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(segment, destination)
        except FileNotFoundError:
            continue  # imported and retired meanwhile: its records are in the database
        copied += 1
    new = config.path(config.pipe_folder) / "new"
    if new.is_dir():
        for piped in sorted(new.iterdir()):
            destination = work / "incoming" / piped.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(piped, destination)
            except FileNotFoundError:
                continue
            copied += 1
    return copied


def _snapshot(database: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    copy = sqlite3.connect(destination)
    try:
        # All pages in one step: one read transaction, one consistent snapshot.
        # (Page by page would restart whenever the daemon writes meanwhile.)
        source.backup(copy, pages=-1)
        copy.execute("PRAGMA journal_mode=DELETE")
        status = copy.execute("PRAGMA quick_check").fetchone()[0]
        if status != "ok":
            raise BackupError(f"the copied database fails its check: {status}")
    finally:
        copy.close()
        source.close()


def _describe(database: Path) -> tuple[dict[str, int], str | None]:
    connection = sqlite3.connect(database)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        counts = {
            table: int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            for table in COUNTED
            if table in tables
        }
        revision = (
            connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
            if "alembic_version" in tables
            else None
        )
    finally:
        connection.close()
    return counts, revision


class _Counting:
    """A file read by tarfile that reports how many bytes went by (the progress bar)."""

    def __init__(self, handle: BinaryIO, total: int, report: Callable[[int, int], None] | None) -> None:
        self._handle = handle
        self._total = total
        self._report = report

    def read(self, size: int = -1) -> bytes:
        block = self._handle.read(size)
        if self._report is not None:
            self._report(len(block), self._total)
        return block


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(archive: tarfile.TarFile) -> dict[str, Any]:
    member = archive.extractfile("manifest.json")
    if member is None:
        raise BackupError("not a mailgate backup: no manifest.json")
    manifest = json.loads(member.read())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("not a mailgate backup: the manifest is of another format")
    if int(manifest.get("version", 0)) > VERSION:
        raise BackupError(f"made by a newer mailgate (backup format {manifest.get('version')})")
    return manifest
