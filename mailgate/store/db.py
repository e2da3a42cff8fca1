"""Engine and sessions: SQLite (WAL, synchronous=FULL) or PostgreSQL.

SQLite is made durable per commit (``synchronous=FULL`` in WAL mode fsyncs
the WAL on every commit) because a committed inbound row is what lets us
answer 250. Leases and delivery marks use a second engine with
``synchronous=NORMAL`` (``durable=False``): such a commit survives a killed
process like any other and is only undone by a power cut, which costs a
lease (taken again) or a mail sent once more with the same Message-ID, never
a message; it spares an fsync while every other writer waits.

Write transactions start with ``BEGIN IMMEDIATE``: in WAL mode a
deferred transaction that reads and later writes fails at once with
SQLITE_BUSY_SNAPSHOT when another writer committed in between, and the busy
timeout does not help there.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration. Checked against Alembic's own view by a test; kept
# here so that a start with a current schema does not import Alembic (a
# fifth of a second for every `mailgate ingest` an MTA runs).
HEAD_REVISION = "0001"


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite database URL; None for PostgreSQL or an in-memory database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, *, pool_size: int = 5, durable: bool = True) -> Engine:
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=pool_size)
        _make_sqlite_durable(engine, "FULL" if durable else "NORMAL")
        return engine
    # A database that went away must fail a call within seconds, not hang
    # it: heartbeats (store/instances.py) and SMTP answers (451) depend on it.
    return create_engine(url, pool_size=pool_size, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _make_sqlite_durable(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event own transaction start (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if _READ_ONLY.get() else "BEGIN IMMEDIATE")


# Set by read_only(): the transactions started meanwhile only read, so they
# begin deferred and never wait for (or hold up) SQLite's one writer.
_READ_ONLY: ContextVar[bool] = ContextVar("mailgate_read_only", default=False)


@contextmanager
def read_only() -> Iterator[None]:
    """Transactions begun inside only read: on SQLite they take no write lock.

    Everything else begins with ``BEGIN IMMEDIATE`` (see the module
    docstring); a status query, a metrics scrape or an IMAP "do we have
    these?" must not queue behind processing or block it.
    """
    token = _READ_ONLY.set(True)
    try:
        yield
    finally:
        _READ_ONLY.reset(token)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# SQLite has one writer at a time. Writers queue on a lock of our own —
# a thread lock within a process, flock(2) on "<db>.writelock" between
# processes (the daemon and its worker, or `mailgate ingest`) — instead of
# in SQLite's busy handler, which sleeps in growing steps and made an SMTP
# answer wait tens of milliseconds behind each processing batch. A waiter
# on flock is woken the moment the lock is free.
class SqliteWriteLock:
    def __init__(self, database: Path) -> None:
        self._thread_lock = threading.Lock()
        self._path = Path(f"{database}.writelock")
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


# One lock per database file, so that a durable and a lease engine on the
# same file (see make_engine) are still one writer at a time; found by
# engine first, because resolving the path on every transaction costs.
_WRITE_LOCKS: dict[str, SqliteWriteLock] = {}
_ENGINE_LOCKS: dict[int, tuple[str, SqliteWriteLock]] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(sessions: sessionmaker[Session]) -> SqliteWriteLock | nullcontext[None]:
    engine = sessions.kw.get("bind")
    if engine is None:
        return nullcontext()
    name = engine.url.database
    found = _ENGINE_LOCKS.get(id(engine))
    if found is not None and found[0] == name:  # ids are reused after an engine is gone
        return found[1]
    path = sqlite_file(engine.url)
    if path is None:
        return nullcontext()
    database = path.resolve()
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.setdefault(str(database), SqliteWriteLock(database))
        _ENGINE_LOCKS[id(engine)] = (name, lock)
    return lock


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with _write_lock(sessions), sessions() as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision(engine: Engine) -> str | None:
    """The newest migration according to Alembic's scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with read_only(), engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


# Any fixed number: the key of the PostgreSQL advisory lock that migrations hold.
_MIGRATION_LOCK = 0x6D61696C67617465  # "mailgate"


def upgrade(engine: Engine) -> bool:
    """Apply pending migrations; True when something was applied."""
    if current_revision(engine) == HEAD_REVISION:
        return False
    from alembic import command

    with _migrating(engine):
        # Several instances started at once on an empty PostgreSQL: the
        # first migrates, the others wait for it and then find nothing to do.
        if current_revision(engine) == HEAD_REVISION:
            return False
        command.upgrade(_alembic_config(engine), "head")
    return True


@contextmanager
def _migrating(engine: Engine) -> Iterator[None]:
    """One migration at a time per database (SQLite: its own write lock does it)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
            connection.commit()
