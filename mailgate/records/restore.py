"""``mailgate restore FILE``: a backup back into an empty installation.

Refuses a live one: a database that holds mail, or a daemon running on it.
Every file is checked against the manifest before anything is written. The
database file goes where the configuration says; mail that was still in the
spool journal or the pipe folder goes back there, and the daemon imports it
at start like any leftover (each message keeps its key, so a message that
was in both the journal and the database is stored once).

The reply key is what makes the reply addresses in mail already sent work:
restored with ``--include-secrets`` backups when none is in place, and
otherwise compared with the backup's fingerprint, so a restore drill tells
at once that replies to old tickets would not thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailgate.config import Config
from mailgate.ingest.pipe import daemon_running, lock_held
from mailgate.records.backup import DATABASE, BackupError, key_fingerprint, read_manifest
from mailgate.store.db import sqlite_file
from mailgate.store.spool import Spool


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict[str, Any]
    database: Path
    waiting: int
    key_note: str


def restore_backup(config: Config, source: Path) -> RestoreResult:
    database = sqlite_file(config.database_url)
    if database is None:
        raise BackupError(
            "this installation is on PostgreSQL: restore with pg_restore (see docs/operations.md)"
        )
    database = database.resolve()
    _refuse_live(config, database)
    with tarfile.open(source, "r:gz") as archive:
        manifest = read_manifest(archive)
        work = Path(tempfile.mkdtemp(prefix=".mailgate-restore-", dir=database.parent))
        try:
            archive.extractall(work, filter="data")
            _verify(manifest, work)
            waiting = _place(config, database, work)
            key_note = _place_key(config, manifest, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return RestoreResult(manifest, database, waiting, key_note)


def _refuse_live(config: Config, database: Path) -> None:
    spool = Spool.for_database(database)
    if daemon_running(config.path(config.pipe_folder)) or lock_held(spool.folder / "lock"):
        raise BackupError("a mailgate daemon is running on this installation: stop it first")
    if not database.exists():
        return
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            held = sum(
                int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
                for table in ("inbound", "tickets")
                if table in tables
            )
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(
            f"{database}: exists and is not a database I can read ({exc}); move it away"
        ) from None
    if held:
        raise BackupError(
            f"{database} already holds {held} messages and tickets: restore only into an empty installation "
            "(point database.url at a new file, or move this one away)"
        )
    if spool.segments():
        raise BackupError(f"{spool.folder} holds journal segments: this installation is not empty")


def _verify(manifest: dict[str, Any], work: Path) -> None:
    listed = manifest.get("files") or []
    for entry in listed:
        path = work / entry["path"]
        if not path.is_file():
            raise BackupError(f"the backup lacks {entry['path']}, which its manifest lists")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise BackupError(f"{entry['path']} does not match its checksum: the backup is damaged")
    if not any(entry["path"] == DATABASE for entry in listed):
        raise BackupError("the backup holds no database")


def _place(config: Config, database: Path, work: Path) -> int:
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    partial = database.with_name(database.name + ".restoring")
    shutil.copyfile(work / DATABASE, partial)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, database)
    waiting = 0
    spool = Spool.for_database(database)
    for segment in sorted((work / "spool").glob("*.journal")) if (work / "spool").is_dir() else []:
        spool.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(segment, spool.folder / segment.name)
        waiting += 1
    incoming = work / "incoming"
    if incoming.is_dir():
        new = config.path(config.pipe_folder) / "new"
        new.mkdir(parents=True, exist_ok=True)
        for piped in sorted(incoming.iterdir()):
            shutil.copyfile(piped, new / piped.name)
            waiting += 1
    return waiting


def _place_key(config: Config, manifest: dict[str, Any], work: Path) -> str:
    key_path = config.path(config.secrets.reply_key_file)
    wanted = (manifest.get("reply_key") or {}).get("fingerprint")
    included = work / "secrets" / "reply.key"
    if included.is_file() and not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(included, key_path)
        os.chmod(key_path, 0o600)
        return f"reply key restored to {key_path}"
    present = key_fingerprint(key_path)
    if wanted is None:
        return "the backup names no reply key"
    if present == wanted:
        return f"reply key at {key_path} matches the backup's"
    where = (manifest.get("reply_key") or {}).get("path")
    return (
        f"WARNING: the reply key at {key_path} is {'missing' if present is None else 'a different one'}; "
        f"copy the key that was at {where} (fingerprint {wanted}) there, or replies to old tickets "
        "will not thread by their reply address"
    )
