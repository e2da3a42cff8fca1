"""`mailgate privacy export` and `erase` on a helpdesk worked through the real daemon.

Erase leaves no trace of the address: not in any table (SQLite and
PostgreSQL); on SQLite not in the database file, its WAL or the spool
folder either (deleted rows linger in free pages until rewritten); on
PostgreSQL not in a pg_dump of the database (bytea shown as text, so the
raw mail is searched byte for byte), and on both not in the installation's
storage folder. Reports keep their figures; running it again changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tests.conftest import make_mail, run_cli, wait_until
from tests.test_attachments import with_attachment

JAN = "jan.jansen@example.org"


def _text(value: object) -> str:
    if isinstance(value, memoryview):
        value = bytes(value)
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _everything(url: str) -> str:
    """Every value in every table, as text, lower-cased."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return "\n".join(
                _text(value)
                for table in inspect(connection).get_table_names()
                for row in connection.execute(text(f'SELECT * FROM "{table}"'))
                for value in row
            ).lower()
    finally:
        engine.dispose()


def _pg_dump_text(url: str) -> bytes:
    """The whole database as pg_dump writes it, with raw mail (bytea) as readable bytes, not hex."""
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    dumped = subprocess.run(
        ["pg_dump", "--format=plain", f"--dbname={libpq}"],
        capture_output=True,
        check=True,
        env={**os.environ, "PGOPTIONS": "-c bytea_output=escape"},
    )
    return dumped.stdout


def _stored_files(url: str, installation: Path) -> list[Path]:
    """Every file mailgate keeps: its storage folder, and on SQLite the database and its journal."""
    stored = list(installation.glob("var/**/*"))
    if url.startswith("sqlite"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        stored += [*folder.glob("mailgate.db*"), *folder.glob("mailgate.db.spool/*")]
    return [path for path in stored if path.is_file()]


def _report_totals(config: Path) -> Any:
    result = run_cli(config, "report", "--json")
    assert 0 == result.returncode, result.stderr.decode()
    return json.loads(result.stdout)["totals"]


def test_export_then_erase_leaves_no_trace(daemon_factory: Any, db_url: str, tmp_path: Path) -> None:
    daemon = daemon_factory(database={"url": db_url})
    daemon.send(with_attachment("payslip.pdf", b"%PDF jan's payslip", "<jan-1@example.org>"))
    daemon.send(
        make_mail(
            sender=f"Jan Jansen <{JAN}>",
            message_id="<jan-2@example.org>",
            subject="Wachtwoord verlopen",
            body="Mijn wachtwoord is verlopen. Groet, Jan Jansen\n",
        ),
        mail_from=JAN,
    )
    daemon.send(
        make_mail(
            sender="Piet <piet@example.org>",
            message_id="<piet-1@example.org>",
            headers={"Cc": f"Jan Jansen <{JAN}>"},
            body=f"Jan ({JAN}) has the same problem as I do.\n",
        ),
        mail_from="piet@example.org",
    )
    wait_until(lambda: len(daemon.acks()) >= 3, timeout=60)
    before = _report_totals(daemon.config_path)

    exported = tmp_path / "jan.zip"
    result = run_cli(daemon.config_path, "privacy", "export", JAN.upper(), "--output", str(exported))
    assert 0 == result.returncode, result.stderr.decode()
    with zipfile.ZipFile(exported) as archive:
        names = archive.namelist()
        tickets = json.loads(archive.read("tickets.json"))
        assert {"Wachtwoord verlopen"} <= {t["subject"] for t in tickets}
        assert any(name.startswith("mail/received-") for name in names)
        assert any(name.startswith("mail/sent-") for name in names)

    erased = run_cli(daemon.config_path, "privacy", "erase", JAN, "--yes")
    assert 0 == erased.returncode, erased.stderr.decode()
    assert b"erased " + JAN.encode() in erased.stdout
    again = run_cli(daemon.config_path, "privacy", "erase", JAN, "--yes")
    assert b"nothing is held about" in again.stdout
    assert before == _report_totals(daemon.config_path)
    assert 0 == daemon.stop()

    dump = _everything(db_url)
    assert JAN not in dump
    assert "jan jansen" not in dump
    assert "piet@example.org" in dump  # others keep theirs
    if db_url.startswith("postgresql"):
        dumped = _pg_dump_text(db_url).lower()
        assert b"piet@example.org" in dumped  # the search sees raw mail
        assert JAN.encode() not in dumped
        assert b"jan jansen" not in dumped
    stored = _stored_files(db_url, tmp_path)
    assert db_url.startswith("postgresql") or stored
    for path in stored:
        assert JAN.encode() not in path.read_bytes().lower(), path
