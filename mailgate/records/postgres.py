"""Backup and restore of a PostgreSQL installation with PostgreSQL's own tools.

``pg_dump`` reads one consistent snapshot while the daemons go on writing
(MVCC: it takes no lock a writer waits for). mailgate opens a read-only
REPEATABLE READ transaction first, exports its snapshot and gives it to
``pg_dump --snapshot``: the row counts and schema revision in the manifest
are then those of exactly the rows in the dump, not of a moment later.

``pg_restore`` brings the dump back in one transaction, so a restore that
fails half-way leaves the target database as empty as it was. It runs with
``--no-owner --no-acl``: the tables belong to the user the target
configuration connects as, whatever the roles were where the backup came from.

The tools must be able to read what they are given: ``pg_dump`` refuses a
server of a newer major version than its own, and ``pg_restore`` an archive
written by a newer ``pg_dump``. Both are looked for on PATH, then in
Debian's ``/usr/lib/postgresql/MAJOR/bin`` (where several client versions
live side by side), or only in the folder named by ``--pg-bin``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from mailgate.records.backup import BackupError

# Tables a backup counts (the manifest's "counts") and a restore compares.
COUNTED = ("tickets", "articles", "inbound", "outbox", "events", "attachment_blobs")
# Who ran on the database (heartbeats, roles held): a daemon that started
# and stopped on an otherwise empty database leaves rows there, and the
# restore replaces them (records/restore.py).
PROCESS_TABLES = ("instances", "roles")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Connection:
    """How to reach the database: a libpq URI without the password, and the password apart.

    The password goes to the tools in PGPASSWORD, not on their command line,
    where every user of the machine could read it in ps.
    """

    uri: str
    password: str | None
    name: str

    @staticmethod
    def of(url: str) -> Connection:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise BackupError(f"not a PostgreSQL database URL: {parsed.render_as_string()}")
        bare = parsed.set(drivername="postgresql", password=None)
        return Connection(bare.render_as_string(hide_password=False), parsed.password, parsed.database or "")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = str(self.password)
        return env

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.uri, password=self.password, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise BackupError(f"cannot connect to the database {self.name!r}: {_first_line(exc)}") from None


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int
    version: str


def find_tool(name: str, needed_major: int, folder: Path | None = None) -> Tool:
    """``pg_dump`` or ``pg_restore`` of major version ``needed_major`` or newer."""
    if folder is not None:
        candidates = [folder / name]
    else:
        on_path = shutil.which(name)
        candidates = [Path(on_path)] if on_path else []
        debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=_folder_major, reverse=True)
        candidates += [path for path in debian if path not in candidates]
    found: list[Tool] = []
    for path in candidates:
        tool = _version_of(path)
        if tool is None:
            continue
        if tool.major >= needed_major:
            return tool
        found.append(tool)
    where = f"in {folder}" if folder is not None else "on PATH or in /usr/lib/postgresql/*/bin"
    if not found:
        raise BackupError(
            f"{name} was not found {where}: install the PostgreSQL {needed_major} client "
            f"(Debian/Ubuntu: apt install postgresql-client-{needed_major}) or name its folder with --pg-bin"
        )
    seen = ", ".join(f"{tool.path} is {tool.version}" for tool in found)
    raise BackupError(
        f"{name} must be of PostgreSQL {needed_major} or newer, and {seen}: install "
        f"postgresql-client-{needed_major} (or newer) or name its folder with --pg-bin"
    )


def _folder_major(path: Path) -> int:
    return int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0


def _version_of(path: Path) -> Tool | None:
    try:
        shown = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION.search(shown)
    if match is None:
        return None
    return Tool(path, int(match.group(1)), shown.strip().split(")", 1)[-1].strip().split(" ")[0])


def server_settings(connection: psycopg.Connection[Any]) -> dict[str, str]:
    names = ("server_version", "server_version_num", "wal_level", "archive_mode", "archive_command")
    return {name: str(_one(connection, sql.SQL("SHOW {}").format(sql.Identifier(name)))) for name in names}


@dataclass(frozen=True)
class Dumped:
    counts: dict[str, int]
    revision: str | None
    source: dict[str, Any]  # what the manifest says of the database
    settings: dict[str, str]  # the server's WAL settings, for the advice (not in the manifest)


def dump(url: str, destination: Path, folder: Path | None = None) -> Dumped:
    """One consistent snapshot of the database into ``destination`` (pg_dump's custom format)."""
    target = Connection.of(url)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with target.connect() as connection:
        settings = server_settings(connection)
        server_major = int(settings["server_version_num"]) // 10000
        tool = find_tool("pg_dump", server_major, folder)
        connection.rollback()
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        # The transaction stays open while pg_dump runs: its snapshot is only
        # importable while the exporting transaction lives.
        snapshot = str(_one(connection, sql.SQL("SELECT pg_export_snapshot()")))
        counts, revision = _describe(connection)
        _run(
            [
                str(tool.path),
                "--format=custom",
                # The archive is gzip'd as a whole; compressing here as well
                # would spend the time twice for nothing.
                "--compress=0",
                f"--snapshot={snapshot}",
                f"--file={destination}",
                f"--dbname={target.uri}",
            ],
            target,
            "pg_dump",
        )
        connection.rollback()
    return Dumped(
        counts,
        revision,
        {
            "kind": "postgresql",
            "server_version": settings["server_version"],
            "server_major": server_major,
            "pg_dump": str(tool.path),
            "pg_dump_version": tool.version,
            "pg_dump_major": tool.major,
            "database": target.name,
        },
        settings,
    )


def _describe(connection: psycopg.Connection[Any]) -> tuple[dict[str, int], str | None]:
    tables = mailgate_tables(connection)
    counts = {table: _count(connection, table) for table in COUNTED if table in tables}
    revision = None
    if "alembic_version" in tables:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = str(row[0]) if row else None
    return counts, revision


def mailgate_tables(connection: psycopg.Connection[Any]) -> set[str]:
    """The tables in the schema the connection writes to (mailgate keeps all of its own there)."""
    query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    rows = connection.execute(query).fetchall()
    return {str(row[0]) for row in rows}


def _count(connection: psycopg.Connection[Any], table: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    return int(_one(connection, query))


def _one(connection: psycopg.Connection[Any], query: sql.SQL | sql.Composed) -> Any:
    row = connection.execute(query).fetchone()
    if row is None:
        raise BackupError(f"the server answered nothing to {query.as_string(connection)}")
    return row[0]


def refuse_unfit_target(url: str) -> None:
    """The target must exist, hold no mailgate rows, and have no other session on it."""
    target = Connection.of(url)
    with target.connect(autocommit=True) as connection:
        # Another user's sessions show no backend_type to a user without
        # pg_read_all_stats, but they do show their user and application.
        others = connection.execute(
            "SELECT coalesce(usename, '?') || coalesce(' (' || nullif(application_name, '') || ')', '') "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND coalesce(backend_type, 'client backend') = 'client backend'"
        ).fetchall()
        if others:
            who = ", ".join(sorted({str(row[0]) for row in others}))
            raise BackupError(
                f"{len(others)} other sessions are connected to the database {target.name!r} (users: {who}): "
                "a mailgate daemon may be running on it; stop every instance first"
            )
        tables = mailgate_tables(connection) - {"alembic_version", *PROCESS_TABLES}
        held = {table: n for table in sorted(tables) if (n := _count(connection, table))}
    if held:
        listed = ", ".join(f"{n} {table}" for table, n in held.items())
        raise BackupError(
            f"the database {target.name!r} already holds {listed}: restore only into an empty installation "
            "(point database.url at a new, empty database: createdb -O USER NAME)"
        )


def restore(url: str, dump_file: Path, tool: Tool) -> dict[str, int]:
    """``pg_restore`` (``tool``, see find_tool) the dump in one transaction; the restored row counts."""
    target = Connection.of(url)
    _run(
        [
            str(tool.path),
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-acl",
            # Empty tables made by `mailgate db upgrade` or a daemon that never
            # took mail (refuse_unfit_target let them through) are replaced.
            "--clean",
            "--if-exists",
            f"--dbname={target.uri}",
            str(dump_file),
        ],
        target,
        "pg_restore",
    )
    with target.connect(autocommit=True) as connection:
        # pg_restore leaves the planner without statistics until autovacuum
        # gets there; the first day's queries should not pay for that.
        for table in sorted(mailgate_tables(connection)):
            connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        counts, _ = _describe(connection)
    return counts


def _run(command: Sequence[str], target: Connection, name: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=target.env(), check=False)
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        raise BackupError(f"{name} failed: {said}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
