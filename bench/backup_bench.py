"""How long `mailgate backup` and `mailgate restore` take on a big SQLite helpdesk.

Seeds TICKETS closed tickets (each with a request, an ack and its raw mail;
every tenth with an attachment, as bench/retention_bench.py does), then runs
the real commands as an admin would and prints their wall time and the sizes
of the database and the backup. Not part of `make test`.

    .venv/bin/python bench/backup_bench.py --tickets 100000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from retention_bench import seed

from mailgate.store.db import make_engine, session_factory, upgrade


def _config(folder: Path) -> Path:
    path = folder / "mailgate.yaml"
    path.write_text(
        "helpdesk: {address: helpdesk@example.com}\n"
        f"database: {{url: 'sqlite:///{folder}/mailgate.db'}}\n"
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=100000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailgate-backup-bench-") as work:
        source, target = Path(work) / "source", Path(work) / "restored"
        source.mkdir()
        target.mkdir()
        engine = make_engine(f"sqlite:///{source}/mailgate.db")
        upgrade(engine)
        began = time.monotonic()
        seed(session_factory(engine), args.tickets, datetime.now(UTC) - timedelta(days=1))
        engine.dispose()
        print(f"seeded {args.tickets} tickets in {time.monotonic() - began:.1f} s")
        database = (source / "mailgate.db").stat().st_size
        archive = Path(work) / "backup.tar.gz"
        backup_s = _mailgate(_config(source), "backup", str(archive), "--no-progress")
        restore_s = _mailgate(_config(target), "restore", str(archive))
        print(f"database {database / 1e6:.0f} MB; backup {archive.stat().st_size / 1e6:.0f} MB (gzip)")
        print(f"mailgate backup: {backup_s:.1f} s; mailgate restore: {restore_s:.1f} s")


if __name__ == "__main__":
    main()
