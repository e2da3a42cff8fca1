"""How long `mailgate backup` and `mailgate restore` take on a big helpdesk.

Seeds TICKETS closed tickets (each with a request, an ack and its raw mail;
every tenth with an attachment, as bench/retention_bench.py does), then runs
the real commands as an admin would and prints their wall time and the sizes
of the database and the backup. Not part of `make test`.

    .venv/bin/python bench/backup_bench.py --tickets 100000
    .venv/bin/python bench/backup_bench.py --tickets 100000 --postgresql postgresql://postgres@127.0.0.1:5432/test

With --postgresql (a URL the bench may create and drop databases with), it
makes two throwaway databases on that server, one to back up and one to
restore into, and drops both at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from retention_bench import seed
from sqlalchemy.engine import make_url

from mailgate.records.backup import read_manifest
from mailgate.store.db import make_engine, session_factory, upgrade


def _config(folder: Path, url: str) -> Path:
    path = folder / "mailgate.yaml"
    path.write_text(
        "helpdesk: {address: helpdesk@example.com}\n"
        f"database: {{url: '{url}'}}\n"
        f"secrets: {{reply_key_file: {folder}/reply.key}}\n"
    )
    (folder / "reply.key").write_text("00" * 32 + "\n")
    return path


def _mailgate(config: Path, *args: str) -> float:
    began = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).with_name("mailgate")), "-c", str(config), *args],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - began


@contextmanager
def _databases(admin: str | None, work: Path) -> Iterator[tuple[str, str]]:
    """URLs of the database to back up and the one to restore into."""
    if admin is None:
        yield f"sqlite:///{work}/source/mailgate.db", f"sqlite:///{work}/restored/mailgate.db"
        return
    import psycopg

    server = make_url(admin).set(drivername="postgresql")
    names = [f"mg_bench_{uuid.uuid4().hex[:8]}_{role}" for role in ("source", "restored")]
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as connection:
        for name in names:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield tuple(  # type: ignore[misc]
            server.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
            for name in names
        )
    finally:
        with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as connection:
            for name in names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _size(url: str) -> int:
    engine = make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            return Path(make_url(url).database or "").stat().st_size
        with engine.connect() as connection:
            return int(connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=100000)
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        help="bench PostgreSQL on this server (the bench creates and drops databases)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="mailgate-backup-bench-") as work,
        _databases(args.postgresql, Path(work)) as (source_url, target_url),
    ):
        source, target = Path(work) / "source", Path(work) / "restored"
        source.mkdir()
        target.mkdir()
        engine = make_engine(source_url)
        upgrade(engine)
        began = time.monotonic()
        seed(session_factory(engine), args.tickets, datetime.now(UTC) - timedelta(days=1))
        engine.dispose()
        print(f"seeded {args.tickets} tickets in {time.monotonic() - began:.1f} s")
        database = _size(source_url)
        archive = Path(work) / "backup.tar.gz"
        backup_s = _mailgate(_config(source, source_url), "backup", str(archive), "--no-progress")
        restore_s = _mailgate(_config(target, target_url), "restore", str(archive))
        kind = "PostgreSQL" if args.postgresql else "SQLite"
        with tarfile.open(archive, "r:gz") as opened:
            files = read_manifest(opened)["files"]
        copied = sum(f["size"] for f in files if f["path"].startswith("database/"))
        print(
            f"{kind}: database {database / 1e6:.0f} MB; its copy in the backup {copied / 1e6:.0f} MB; "
            f"the backup {archive.stat().st_size / 1e6:.1f} MB (gzip; the seeded mail is all alike)"
        )
        print(f"mailgate backup: {backup_s:.1f} s; mailgate restore: {restore_s:.1f} s")


if __name__ == "__main__":
    main()
