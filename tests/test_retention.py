"""Retention on a helpdesk worked through the real daemon, with the clock moved.

The clock is moved honestly: `mailgate retention --as-of DATE` (a documented
option: "what goes by then") and, for the daemon's daily run, the documented
MAILGATE_RETENTION_AS_OF variable. Tickets are made over SMTP and closed with
`mailgate tickets set`, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.conftest import make_mail, run_cli, wait_until, write_config

POLICY = {"originals_days": 30, "tickets_days": 365, "quarantine_days": 14}
CLOSED_FILE = b"%PDF bob's payslip " + bytes(range(256)) * 8
OPEN_FILE = b"%PDF carol's contract " + bytes(range(256)) * 8


def _mail_with_files(sender: str, subject: str, message_id: str, *files: tuple[str, bytes]) -> bytes:
    head = make_mail(sender=sender, subject=subject, message_id=message_id).split(b"\r\n\r\n", 1)[0]
    head = head.replace(
        b"Content-Type: text/plain; charset=utf-8", b'Content-Type: multipart/mixed; boundary="b1"'
    )
    parts = ["--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"]
    for name, content in files:
        encoded = base64.encodebytes(content).decode().replace("\n", "\r\n")
        parts.append(
            f'--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="{name}"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}"
        )
    return head + b"\r\n\r\n" + "".join(parts).encode() + b"--b1--\r\n"


def _query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params))
    finally:
        engine.dispose()


def _bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()


def _raws(url: str) -> dict[int, bytes]:
    return {row[0]: _bytes(row[1]) for row in _query(url, "SELECT id, raw FROM inbound")}


def _blobs(url: str) -> set[bytes]:
    return {_bytes(row[0]) for row in _query(url, "SELECT content FROM attachment_blobs")}


def _snapshot(url: str) -> Any:
    """Everything retention may change, to compare before and after."""
    return (
        _raws(url),
        _blobs(url),
        sorted(tuple(str(v) for v in row) for row in _query(url, "SELECT id, raw, state FROM outbox")),
        sorted(tuple(str(v) for v in row) for row in _query(url, "SELECT * FROM articles")),
        sorted(tuple(str(v) for v in row) for row in _query(url, "SELECT * FROM tickets")),
    )


def _report(config: Path) -> dict[str, Any]:
    result = run_cli(config, "report", "--json")
    assert 0 == result.returncode, result.stderr.decode()
    report = json.loads(result.stdout)
    kept = ("totals", "by_priority", "by_queue", "first_contact_resolution", "csat")
    return {key: report[key] for key in kept}


def _retention(config: Path, *args: str) -> dict[str, Any]:
    result = run_cli(config, "retention", "--json", *args)
    assert 0 == result.returncode, result.stderr.decode()
    return dict(json.loads(result.stdout))


def _helpdesk(daemon_factory: Any, db_url: str, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    """Bob's (two files) and Dave's tickets are closed, Carol's (Bob's 2nd file) is open; a scan is held."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: hold scans\n    if: {subject: scan}\n    then: {quarantine: true}\n")
    daemon = daemon_factory(database={"url": db_url}, retention=POLICY, rules=str(rules))
    daemon.send(
        # The contract is Carol's too: it stays while her ticket is open.
        _mail_with_files(
            "Bob <bob@example.org>",
            "Salary question",
            "<b1@ex.org>",
            ("pay.pdf", CLOSED_FILE),
            ("contract.pdf", OPEN_FILE),
        ),
        mail_from="bob@example.org",
    )
    daemon.send(
        _mail_with_files("Carol <carol@example.org>", "Contract", "<c1@ex.org>", ("contract.pdf", OPEN_FILE)),
        mail_from="carol@example.org",
    )
    daemon.send(
        make_mail(sender="Dave <dave@example.org>", subject="VPN down", body="Dave's VPN secret words\n"),
        mail_from="dave@example.org",
    )
    daemon.send(make_mail(subject="scan of my passport", body="Passport number NL123\n"))
    wait_until(lambda: len(daemon.acks()) >= 3, timeout=60)
    tickets = json.loads(run_cli(daemon.config_path, "tickets", "list", "--json").stdout)
    refs = {t["subject"]: t["ref"] for t in tickets}
    for subject in ("Salary question", "VPN down"):
        closed = run_cli(daemon.config_path, "tickets", "set", refs[subject], "--status", "closed")
        assert 0 == closed.returncode, closed.stderr.decode()
    # Retention leaves mail that is still to be sent alone; let it go first.
    wait_until(lambda: not _query(db_url, "SELECT id FROM outbox WHERE state = 'queued'"), timeout=60)
    return daemon, refs


def test_dry_run_then_run_removes_old_originals(daemon_factory: Any, db_url: str, tmp_path: Path) -> None:
    """A dry run lists and changes nothing; a run removes old closed tickets' mail and files only."""
    daemon, refs = _helpdesk(daemon_factory, db_url, tmp_path)
    config = daemon.config_path
    report = _report(config)
    before = _snapshot(db_url)
    in_40_days = (datetime.now(UTC) + timedelta(days=40)).isoformat()

    planned = _retention(config, "--dry-run", "--as-of", in_40_days)
    assert before == _snapshot(db_url)
    assert [refs["Salary question"], refs["VPN down"]] == planned["originals"]["tickets"]
    assert 2 == planned["originals"]["attachments"]
    assert [] == planned["anonymise"]["tickets"]
    held = _query(db_url, "SELECT id FROM inbound WHERE state = 'quarantined'")
    assert [held[0][0]] == planned["quarantine"]["messages"]
    words = run_cli(config, "retention", "--dry-run", "--as-of", in_40_days)
    assert b"would go" in words.stdout and refs["Salary question"].encode() in words.stdout

    done = _retention(config, "--as-of", in_40_days)
    assert planned["originals"] == done["originals"]
    raws = b"\n".join(_raws(db_url).values())
    assert b"Dave's VPN secret words" not in raws
    assert b"Passport number" not in raws
    assert [] == json.loads(run_cli(config, "quarantine", "list", "--json").stdout)
    assert b"Subject: Contract" in raws  # the open ticket keeps its original
    assert {OPEN_FILE} == _blobs(db_url)
    shown = run_cli(config, "tickets", "show", refs["VPN down"])
    assert b"Dave's VPN secret words" in shown.stdout  # the article itself stays readable
    assert report == _report(config)

    after = _snapshot(db_url)
    again = _retention(config, "--as-of", in_40_days)
    assert [] == again["originals"]["tickets"] and [] == again["quarantine"]["messages"]
    assert after == _snapshot(db_url)


def test_whole_old_tickets_are_anonymised_and_reports_keep_their_figures(
    daemon_factory: Any, db_url: str, tmp_path: Path
) -> None:
    """After tickets_days the closed tickets lose content and addresses; open ones and report totals stay."""
    daemon, refs = _helpdesk(daemon_factory, db_url, tmp_path)
    config = daemon.config_path
    report = _report(config)
    in_400_days = (datetime.now(UTC) + timedelta(days=400)).isoformat()

    done = _retention(config, "--as-of", in_400_days)
    assert [refs["Salary question"], refs["VPN down"]] == done["anonymise"]["tickets"]
    assert [] == done["originals"]["tickets"]  # already gone with the rest
    assert report == _report(config)
    everything = "\n".join(
        str(value)
        for table in ("tickets", "articles", "participants", "inbound", "outbox", "events")
        for row in _query(db_url, f"SELECT * FROM {table}")
        for value in row
    )
    for trace in ("bob@example.org", "dave@example.org", "Salary question", "secret words"):
        assert trace not in everything, trace
    assert "carol@example.org" in everything and "Contract" in everything
    assert {OPEN_FILE} == _blobs(db_url)
    shown = run_cli(config, "tickets", "show", refs["Salary question"])
    assert 0 == shown.returncode, shown.stderr.decode()
    assert b"removed by the retention policy" in shown.stdout
    assert 0 == _retention(config, "--as-of", in_400_days)["anonymise"]["mails"]
    assert [] == _retention(config, "--as-of", in_400_days)["anonymise"]["tickets"]


def test_daemon_runs_retention_once_a_day(daemon_factory: Any, db_url: str, tmp_path: Path) -> None:
    """The daemon applies the policy at its daily run, and a restart the same day does not run it again."""
    daemon, _ = _helpdesk(daemon_factory, db_url, tmp_path)
    daemon.wait_for("retention.ran", timeout=30)  # at start, with nothing due yet
    assert b"Dave's VPN secret words" in b"\n".join(_raws(db_url).values())
    assert 0 == daemon.stop()

    daemon.env["MAILGATE_RETENTION_AS_OF"] = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    daemon.start()
    ran = daemon.wait_for("retention.ran", timeout=60)
    assert 2 == ran["originals_tickets"] and 1 == ran["quarantine"]
    assert 0 == daemon.stop()
    raws = b"\n".join(_raws(db_url).values())
    assert b"Dave's VPN secret words" not in raws and b"Subject: Contract" in raws
    assert {OPEN_FILE} == _blobs(db_url)

    daemon.start()
    waiting = daemon.wait_for("retention.next", timeout=30)
    assert waiting["last_run"].startswith(daemon.env["MAILGATE_RETENTION_AS_OF"][:10])
    assert 0 == daemon.stop()
    assert [] == daemon.events("retention.ran")
    assert 2 == len(_query(db_url, "SELECT id FROM events WHERE kind = 'retention_run'"))


def _ingested(url: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Bob's ticket (two files) closed, Carol's (Bob's second file) open; stored by `mailgate ingest`,
    which stores and processes the mail itself when no daemon runs (these tests need none)."""
    config = write_config(tmp_path, database={"url": url}, retention=POLICY)
    for mail in (
        _mail_with_files(
            "Bob <bob@example.org>",
            "Salary question",
            "<b1@ex.org>",
            ("pay.pdf", CLOSED_FILE),
            ("contract.pdf", OPEN_FILE),
        ),
        _mail_with_files("Carol <carol@example.org>", "Contract", "<c1@ex.org>", ("contract.pdf", OPEN_FILE)),
    ):
        stored = run_cli(config, "ingest", input_bytes=mail)
        assert 0 == stored.returncode, stored.stderr.decode()
    refs = {t["subject"]: t["ref"] for t in json.loads(run_cli(config, "tickets", "list", "--json").stdout)}
    closed = run_cli(config, "tickets", "set", refs["Salary question"], "--status", "closed")
    assert 0 == closed.returncode, closed.stderr.decode()
    return config, refs


def test_on_postgresql_a_file_that_new_mail_is_storing_stays(tmp_path: Path) -> None:
    """Several instances on one PostgreSQL: while one stores a mail carrying the same file as an old
    closed ticket (it found the file already stored, so it only lists it), retention on another
    must not delete that file under it. Retention waits for the storing transaction, then sees it."""
    import hashlib
    import subprocess
    import sys

    from mailgate.config import Limits
    from mailgate.message import Attachment
    from mailgate.store.writes import insert_article
    from mailgate.tickets.attachment_store import store_attachments
    from tests.conftest import _pg_create, _pg_drop

    name = _pg_create()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        config, refs = _ingested(url, tmp_path)
        ((carol,),) = _query(url, "SELECT id FROM tickets WHERE ref = :ref", ref=refs["Contract"])
        same = Attachment(
            "pay.pdf", "application/pdf", len(CLOSED_FILE), hashlib.sha256(CLOSED_FILE).hexdigest()
        )
        same = Attachment(same.filename, same.content_type, same.size, same.sha256, CLOSED_FILE)
        engine = create_engine(url)
        try:
            with engine.connect() as storing:
                # The other instance's processing transaction, as articles.py runs it.
                listed = store_attachments(storing, [same], Limits())
                assert [True] == [item["stored"] for item in listed]
                insert_article(
                    storing,
                    ticket_id=carol,
                    inbound_id=None,
                    dedupe_key="race-test",
                    direction="in",
                    visibility="public",
                    kind="reply",
                    sender="carol@example.org",
                    sender_name="Carol",
                    recipients=[],
                    message_id="<c2@ex.org>",
                    subject="Re: Contract",
                    body_text="And my payslip.",
                    body_full="And my payslip.",
                    body_html=None,
                    threaded_by="test",
                    attachments=listed,
                    created_at=datetime.now(UTC),
                )
                retention = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "mailgate",
                        "-c",
                        str(config),
                        "retention",
                        "--json",
                        "--as-of",
                        (datetime.now(UTC) + timedelta(days=40)).isoformat(),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                # Until retention has finished, or waits for this transaction.
                wait_until(
                    lambda: (
                        retention.poll() is not None
                        or _query(
                            url,
                            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'",
                        )
                    ),
                    timeout=60,
                )
                storing.commit()
            out, err = retention.communicate(timeout=60)
            assert 0 == retention.returncode, err.decode()
        finally:
            engine.dispose()
        assert [refs["Salary question"]] == json.loads(out)["originals"]["tickets"]
        assert {OPEN_FILE, CLOSED_FILE} == _blobs(url)
    finally:
        _pg_drop(name)


def test_on_postgresql_files_a_backup_holds_wait_for_the_next_run(tmp_path: Path) -> None:
    """While something reads the attachment table for longer than the run waits (pg_dump does, from
    start to end), the run removes the rest, says it left the files, and the next run removes them."""
    from tests.conftest import _pg_create, _pg_drop

    name = _pg_create()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        config, refs = _ingested(url, tmp_path)
        in_40_days = (datetime.now(UTC) + timedelta(days=40)).isoformat()
        engine = create_engine(url)
        try:
            with engine.connect() as reader:
                reader.execute(text("SELECT count(*) FROM attachment_blobs"))  # held to the end
                held = run_cli(config, "retention", "--json", "--as-of", in_40_days)
                reader.rollback()
        finally:
            engine.dispose()
        assert 0 == held.returncode, held.stderr.decode()
        assert b"retention.files_deferred" in held.stderr
        done = json.loads(held.stdout)
        assert [refs["Salary question"]] == done["originals"]["tickets"]
        assert 0 == done["attachment_files_removed"]
        assert {OPEN_FILE, CLOSED_FILE} == _blobs(url)

        later = _retention(config, "--as-of", in_40_days)
        assert [] == later["originals"]["tickets"]
        assert 1 == later["attachment_files_removed"]
        assert {OPEN_FILE} == _blobs(url)
    finally:
        _pg_drop(name)
