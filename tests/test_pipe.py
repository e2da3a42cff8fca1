"""`mailgate ingest` as an MTA's pipe transport runs it, next to a real daemon.

With the daemon running, ingest only makes the message durable in the pipe
folder and exits; the daemon imports and answers it. Without one, ingest
stores and processes inline, as before. Exit codes follow SPEC §4.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_mail, run_cli, ticket_count, tickets_json, wait_until


def _ingest(daemon: Any, raw: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_cli(daemon.config_path, "ingest", *args, input_bytes=raw)


def _pipe_folder(daemon: Any) -> Path:
    return Path(daemon.config_path).parent / "var" / "incoming"


def test_with_the_daemon_running_ingest_queues_and_the_daemon_answers(daemon_factory: Any) -> None:
    """Exit 0 once the file is durable; the daemon makes the ticket and the acknowledgement."""
    daemon = daemon_factory()
    result = _ingest(daemon, make_mail(message_id="<piped-1@example.org>"), "--sender", "alice@example.org")
    assert 0 == result.returncode, result.stderr.decode()
    assert result.stdout.startswith(b"queued for the running daemon: ")
    assert b"" == result.stderr
    wait_until(lambda: len(daemon.acks()) == 1, timeout=20)
    (ticket,) = tickets_json(daemon.config_path)
    assert "alice@example.org" == ticket["requester"]
    assert [] == list((_pipe_folder(daemon) / "new").iterdir())
    assert 0 == daemon.stop()


def test_the_fast_path_loads_no_database_library(daemon_factory: Any) -> None:
    """The per-message process imports neither SQLAlchemy nor pydantic, and costs little CPU."""
    daemon = daemon_factory()
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['mailgate', '-c', sys.argv[1], 'ingest']\n"
        "try:\n"
        "    runpy.run_module('mailgate', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    heavy = [m for m in ('sqlalchemy', 'pydantic', 'click') if m in sys.modules]\n"
        "    print('exit', stop.code, 'heavy', ','.join(heavy) or '-', file=sys.stderr)\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-c", probe, str(daemon.config_path)],
        input=make_mail(message_id="<piped-light@example.org>"),
        capture_output=True,
        timeout=60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert b"exit 0 heavy -" in result.stderr, result.stderr.decode()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # 50 ms on a quiet machine (make bench); generous here, the suite shares the cores.
    assert cpu < 0.5, f"ingest took {cpu:.3f} s of CPU"
    wait_until(lambda: len(daemon.acks()) == 1, timeout=20)
    assert 0 == daemon.stop()


def test_without_a_daemon_ingest_stores_and_processes_inline(daemon_factory: Any) -> None:
    """No daemon holds the pipe folder: the message is a ticket when ingest exits."""
    daemon = daemon_factory(start=False)
    result = _ingest(daemon, make_mail(message_id="<inline-1@example.org>"))
    assert 0 == result.returncode, result.stderr.decode()
    assert b"ticket" in result.stdout
    assert 1 == len(tickets_json(daemon.config_path))


def test_a_daemon_that_dies_after_storing_imports_the_file_once(daemon_factory: Any) -> None:
    """kill between the inbound commit and the file's removal: one ticket, one acknowledgement."""
    daemon = daemon_factory(env={"MAILGATE_CRASH_AT": "pipe-imported"})
    result = _ingest(daemon, make_mail(message_id="<piped-crash@example.org>"))
    assert 0 == result.returncode, result.stderr.decode()
    assert daemon.process is not None
    daemon.process.wait(timeout=20)
    assert 1 == len(list((_pipe_folder(daemon) / "new").iterdir()))
    daemon.env = {}
    daemon.start()
    wait_until(lambda: len(daemon.acks()) >= 1, timeout=20)
    wait_until(lambda: not list((_pipe_folder(daemon) / "new").iterdir()), timeout=20)
    assert 1 == len(tickets_json(daemon.config_path))
    assert 1 == len(daemon.acks())
    assert 0 == daemon.stop()


def test_a_message_left_while_the_daemon_stopped_is_imported_at_start(daemon_factory: Any) -> None:
    """The daemon stops after ingest's check: the file waits in new/ and the next start answers it."""
    daemon = daemon_factory()
    folder = _pipe_folder(daemon)
    assert 0 == daemon.stop()
    from mailgate.ingest.pipe import drop

    drop(folder, make_mail(message_id="<left-behind@example.org>"), "bob@example.org", ())
    daemon.start()
    wait_until(lambda: len(daemon.acks()) == 1, timeout=20)
    assert 1 == len(tickets_json(daemon.config_path))
    assert 0 == daemon.stop()


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"   \r\n", 65), (make_mail(body="x" * 3000), 65)],
    ids=["empty", "over-the-limit"],
)
def test_the_fast_path_refuses_for_good_with_65(daemon_factory: Any, raw: bytes, code: int) -> None:
    """Input that can never be a message is refused for good, with a reason in words."""
    daemon = daemon_factory(listen={"max_message_bytes": 2048})
    result = _ingest(daemon, raw)
    assert code == result.returncode
    assert result.stderr.startswith(b"mailgate: ")
    assert [] == list((_pipe_folder(daemon) / "new").iterdir())
    assert 0 == daemon.stop()


def test_a_full_pipe_folder_answers_75(tmp_path: Path, daemon_factory: Any) -> None:
    """A real full file system (1 MiB tmpfs) under the pipe folder: try again later, nothing half-written."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        daemon = daemon_factory(pipe_folder=str(small / "incoming"))
        big = make_mail(body=("y" * 76 + "\n") * 20000)
        result = _ingest(daemon, big)
        assert 75 == result.returncode, result.stderr.decode()
        assert b"disk is full" in result.stderr
        assert [] == list((small / "incoming" / "tmp").iterdir())
        small_mail = _ingest(daemon, make_mail(message_id="<after-full@example.org>"))
        assert 0 == small_mail.returncode
        wait_until(lambda: len(daemon.acks()) == 1, timeout=20)
        assert 0 == daemon.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_doctor_sees_a_killed_daemon_at_once(daemon_factory: Any) -> None:
    """kill -9, then doctor straight away: not running (the status file is still fresh)."""
    daemon = daemon_factory()
    daemon.wait_for("worker.ready", timeout=30, count=2)
    running = run_cli(daemon.config_path, "doctor")
    assert b"OK    daemon: running" in running.stdout, running.stdout.decode()
    daemon.kill()
    stopped = run_cli(daemon.config_path, "doctor")
    assert b"WARN  daemon: not running" in stopped.stdout, stopped.stdout.decode()


def test_commands_keep_logs_off_stdout_and_out_of_json(daemon_factory: Any) -> None:
    """A person's command prints results on stdout; nothing on stderr unless something is wrong."""
    daemon = daemon_factory()
    daemon.send(make_mail(message_id="<cli-words@example.org>"))
    wait_until(lambda: ticket_count(daemon.config_path), timeout=20)
    result = run_cli(daemon.config_path, "tickets", "set", "1", "--priority", "high")
    assert 0 == result.returncode, result.stderr.decode()
    assert b"" == result.stderr
    assert not result.stdout.lstrip().startswith(b"{")
    refused = run_cli(daemon.config_path, "tickets", "show", "999")
    assert 0 != refused.returncode
    assert refused.stderr.startswith(b"mailgate: ")
    assert 0 == daemon.stop()
