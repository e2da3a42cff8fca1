"""STARTTLS and SMTP AUTH on a listener reachable from outside the host.

Real TLS (a throwaway certificate made by openssl), a real daemon, smtplib
as the client.
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mailgate.ingest.smtp_auth import hash_password
from tests.conftest import HELPDESK, free_port, make_mail, run_cli, wait_until, write_config

PASSWORD = "correct horse battery"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _listener(certificate: tuple[Path, Path], **extra: Any) -> dict[str, Any]:
    cert, key = certificate
    smtp = {"host": "127.0.0.1", "port": free_port(), "tls_cert": str(cert), "tls_key": str(key), **extra}
    return {"smtp": smtp}


def _client(port: int, certificate: tuple[Path, Path]) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo()
    return client


def _tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_starttls_is_offered_and_mail_flows_over_it(daemon_factory: Any, certificate: Any) -> None:
    daemon = daemon_factory(listen=_listener(certificate))
    with _client(daemon.smtp_port, certificate) as client:
        assert client.has_extn("starttls")
        client.starttls(context=_tls(certificate))
        client.ehlo()
        # No users file: no AUTH mechanism (aiosmtpd still prints an empty AUTH line).
        assert "" == client.esmtp_features.get("auth", "").strip()
        client.sendmail("alice@example.org", [HELPDESK], make_mail(message_id="<tls@example.org>"))
    wait_until(lambda: daemon.acks(), timeout=15)
    assert 0 == daemon.stop()


def test_auth_is_required_and_only_over_tls(daemon_factory: Any, certificate: Any, tmp_path: Path) -> None:
    users = tmp_path / "smtp-users"
    users.write_text(f"# senders allowed on the public listener\nrelay:{hash_password(PASSWORD)}\n")
    daemon = daemon_factory(listen=_listener(certificate, users_file=str(users)))
    with _client(daemon.smtp_port, certificate) as client:
        # In clear: no AUTH offered, and no mail taken.
        assert not client.has_extn("auth")
        code, _ = client.mail("alice@example.org")
        assert 530 == code
        client.starttls(context=_tls(certificate))
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        code, _ = client.mail("alice@example.org")
        assert 530 == code  # still: authenticate first
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("relay", "wrong password")
        assert 535 == refused.value.smtp_code
        code, _ = client.login("relay", PASSWORD)
        assert 235 == code
        client.sendmail("alice@example.org", [HELPDESK], make_mail(message_id="<authed@example.org>"))
    wait_until(lambda: daemon.acks(), timeout=15)
    refusals = [line for line in daemon.lines if line.get("event") == "smtp.auth_refused"]
    # smtplib tries PLAIN, then LOGIN: each refusal is logged, with the name only.
    tried = {(line["user"], line["mechanism"]) for line in refusals}
    assert {("relay", "PLAIN"), ("relay", "LOGIN")} == tried
    log_text = "\n".join(str(line) for line in daemon.lines)
    assert PASSWORD not in log_text and "wrong password" not in log_text
    assert 0 == daemon.stop()


def test_a_users_file_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, listen={"smtp": {"port": free_port(), "users_file": "smtp-users"}})
    result = run_cli(config, "run")
    assert 2 == result.returncode  # a configuration error
    assert b"listen.smtp: Value error, users_file needs tls_cert too" in result.stderr


def test_a_broken_users_file_stops_the_start_with_its_line(tmp_path: Path, certificate: Any) -> None:
    users = tmp_path / "smtp-users"
    users.write_text("relay:not-a-hash\n")
    config = write_config(tmp_path, listen=_listener(certificate, users_file=str(users)))
    result = run_cli(config, "run")
    assert 1 == result.returncode
    assert f"{users}:1: expected NAME:HASH".encode() in result.stderr


def test_smtp_password_prints_a_line_that_verifies(tmp_path: Path) -> None:
    from mailgate.ingest.smtp_auth import load_users, verify_password

    config = write_config(tmp_path)
    result = run_cli(config, "smtp-password", "relay", input_bytes=f"{PASSWORD}\n{PASSWORD}\n".encode())
    assert 0 == result.returncode
    users = tmp_path / "smtp-users"
    users.write_bytes(result.stdout)
    stored = load_users(users)["relay"]
    assert verify_password(stored, PASSWORD.encode())
    assert not verify_password(stored, b"another password")
    assert PASSWORD.encode() not in result.stdout


def test_repeated_wrong_passwords_from_one_address_are_throttled() -> None:
    """Five refusals in five minutes: that address is refused unchecked until the window passes."""
    from types import SimpleNamespace

    from aiosmtpd.smtp import LoginPassword

    from mailgate.ingest.smtp_auth import FAILURE_WINDOW_SECONDS, Authenticator

    now = [1000.0]
    authenticator = Authenticator({"relay": hash_password(PASSWORD)}, clock=lambda: now[0])
    attacker = SimpleNamespace(peer=("192.0.2.7", 40000))
    neighbour = SimpleNamespace(peer=("192.0.2.8", 40000))

    def login(session: Any, password: str) -> bool:
        result = authenticator(None, session, None, "PLAIN", LoginPassword(b"relay", password.encode()))
        return bool(result.success)

    assert not any(login(attacker, f"guess {n}") for n in range(5))
    assert not login(attacker, PASSWORD)  # throttled: not even checked
    assert login(neighbour, PASSWORD)  # other addresses are not affected
    now[0] += FAILURE_WINDOW_SECONDS + 1
    assert login(attacker, PASSWORD)
