"""SPEC §2 promise 5: secrets come from files and never reach the logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import make_mail, wait_until


def test_no_secret_in_any_log_line(daemon_factory: Any, tmp_path: Path, sink: Any) -> None:
    """At debug level, through a failed relay login, no relay password and no reply key is logged."""
    password = "s3cret-relay-password-4711"
    (tmp_path / "relay-password").write_text(password + "\n")
    daemon = daemon_factory(
        logging={"format": "json", "level": "debug"},
        # The sink offers no AUTH: the login fails and the failure is logged.
        outbound={
            "smtp": {
                "host": "127.0.0.1",
                "port": sink.port,
                "username": "mailgate",
                "password_file": str(tmp_path / "relay-password"),
            }
        },
    )
    daemon.send(make_mail())
    wait_until(lambda: daemon.events("outbox.deferred"), timeout=20)
    key = (tmp_path / "reply.key").read_text().strip()
    logged = "\n".join(str(line) for line in daemon.lines)
    listed = daemon.cli("outbox", "list", "--json").stdout.decode()
    assert password not in logged and password not in listed
    assert key not in logged and key not in listed
    assert "outbox.deferred" in logged  # the failure itself is reported
