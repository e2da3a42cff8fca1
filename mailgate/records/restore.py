"""``mailgate restore FILE``: a backup back into an empty installation.

Refuses a live one: a database that holds mail, or a daemon running on it.
Every file is checked against the manifest before anything is written. The
database file goes where the configuration says; mail that was still in the
spool journal or the pipe folder goes back there, and the daemon imports it
at start like any leftover (each message keeps its key, so a message that
was in both the journal and the database is stored once).

On PostgreSQL the target is the (empty) database the configuration names:
``pg_restore`` loads the dump in one transaction (records/postgres.py), the
restored row counts are compared with the manifest's, and mail that was in
the pipe folder goes back there. A backup of one kind of database does not
go into the other: the error says so.

The reply key is what makes the reply addresses in mail already sent work:
restored with ``--include-secrets`` backups when none is in place, and
otherwise compared with the backup's fingerprint, so a restore drill tells
at once that replies to old tickets would not thread.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailgate.config import Config
from mailgate.ingest.pipe import daemon_running, lock_held
from mailgate.records.backup import (
    DATABASE,
    PG_DUMP,
    BackupError,
    key_fingerprint,
    read_manifest,
    sha256_of,
)
from mailgate.store.db import sqlite_file
from mailgate.store.spool import Spool

if TYPE_CHECKING:
    from mailgate.records.postgres import Tool


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict[str, Any]
    database: str  # the file, or the PostgreSQL database's name
    kind: str  # sqlite | postgresql
    waiting: int
    key_note: str


def restore_backup(config: Config, source: Path, *, pg_bin: Path | None = None) -> RestoreResult:
    """Restore ``source`` into the installation ``config`` names; ``pg_bin``: where pg_restore is."""
    database = sqlite_file(config.database_url)
    with tarfile.open(source, "r:gz") as archive:
        manifest = read_manifest(archive)
        kind = (manifest.get("database") or {}).get("kind", "sqlite")
        here = "sqlite" if database is not None else "postgresql"
        if kind != here:
            raise BackupError(
                f"this is a backup of a {_NAMES.get(kind, kind)} installation and the configuration names "
                f"a {_NAMES[here]} database: restore it into a {_NAMES.get(kind, kind)} one"
            )
        if database is not None:
            database = database.resolve()
            _refuse_live(config, database)
            scratch: Path | None = database.parent
        else:
            from mailgate.records import postgres

            if daemon_running(config.path(config.pipe_folder)):
                raise BackupError("a mailgate daemon is running on this installation: stop it first")
            postgres.refuse_unfit_target(config.database_url)
            # Before unpacking a large archive: is there a pg_restore that can read it?
            archive_major = int((manifest.get("database") or {}).get("pg_dump_major", 0))
            pg_restore = postgres.find_tool("pg_restore", archive_major, pg_bin)
            scratch = source.resolve().parent if os.access(source.resolve().parent, os.W_OK) else None
        work = Path(tempfile.mkdtemp(prefix=".mailgate-restore-", dir=scratch))
        try:
            archive.extractall(work, filter="data")
            _verify(manifest, work, PG_DUMP if database is None else DATABASE)
            if database is not None:
                _place(database, work)
                name = str(database)
            else:
                _load_postgresql(config, manifest, work, pg_restore)
                name = postgres.Connection.of(config.database_url).name
            _forget_old_processes(f"sqlite:///{database}" if database is not None else config.database_url)
            waiting = _place_waiting(config, database, work)
            key_note = _place_key(config, manifest, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return RestoreResult(manifest, name, here, waiting, key_note)


_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _load_postgresql(config: Config, manifest: dict[str, Any], work: Path, pg_restore: Tool) -> None:
    from mailgate.records import postgres

    counts = postgres.restore(config.database_url, work / PG_DUMP, pg_restore)
    wanted = manifest.get("counts") or {}
    differ = {table: (n, counts.get(table)) for table, n in wanted.items() if counts.get(table) != n}
    if differ:
        said = ", ".join(f"{table}: {got} rows, the backup had {n}" for table, (n, got) in differ.items())
        raise BackupError(f"the restored database does not hold what the backup counted ({said})")


def _forget_old_processes(url: str) -> None:
    """The restored database names the processes of the installation it came from.

    Their heartbeats and roles (``instances``, ``roles``) say nothing about
    this one, where none of them runs, and the mail they held leased at the
    moment of the backup would wait for those leases (on SQLite a new
    process may even be given an old one's id). So those rows go, and the
    leases of mail still to be processed or sent are released.
    """
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            tables = set(inspect(connection).get_table_names())
            for table in ("roles", "instances"):
                if table in tables:
                    connection.execute(text(f"DELETE FROM {table}"))
            for table, waiting in (("inbound", "pending"), ("outbox", "queued")):
                if table not in tables:
                    continue
                columns = {column["name"] for column in inspect(connection).get_columns(table)}
                leases = [f"{name} = NULL" for name in ("lease_until", "lease_owner") if name in columns]
                if leases:
                    update = f"UPDATE {table} SET {', '.join(leases)} WHERE state = :state"
                    connection.execute(text(update), {"state": waiting})
    finally:
        engine.dispose()


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


def _verify(manifest: dict[str, Any], work: Path, database: str) -> None:
    listed = manifest.get("files") or []
    for entry in listed:
        path = work / entry["path"]
        if not path.is_file():
            raise BackupError(f"the backup lacks {entry['path']}, which its manifest lists")
        if sha256_of(path) != entry["sha256"]:
            raise BackupError(f"{entry['path']} does not match its checksum: the backup is damaged")
    if not any(entry["path"] == database for entry in listed):
        raise BackupError("the backup holds no database")


def _place(database: Path, work: Path) -> None:
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    partial = database.with_name(database.name + ".restoring")
    shutil.copyfile(work / DATABASE, partial)
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, database)


def _place_waiting(config: Config, database: Path | None, work: Path) -> int:
    """Journal segments (SQLite) and piped mail back where the daemon imports them at start."""
    waiting = 0
    segments = sorted((work / "spool").glob("*.journal")) if (work / "spool").is_dir() else []
    for segment in segments:
        if database is None:
            raise BackupError("a PostgreSQL backup cannot hold journal segments")
        spool = Spool.for_database(database)
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
