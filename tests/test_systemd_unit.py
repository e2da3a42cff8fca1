"""The systemd unit: its directives, `systemd-analyze verify`, and a real sd_notify exchange."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "mailgate.service"
SYSUSERS = ROOT / "systemd" / "mailgate.sysusers"
MAILGATE = Path(sys.executable).with_name("mailgate")


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {line}"
        assert not stripped.endswith("\\"), "continuation lines are not used in this unit"
        key, sep, value = stripped.partition("=")
        assert sep, f"not a directive: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in section if name == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert 1 == len(found), f"{key} set {len(found)} times"
    return found[0]


@pytest.fixture(scope="module")
def service() -> list[tuple[str, str]]:
    return parse_unit(UNIT)["Service"]


def test_unit_is_type_notify_with_watchdog(service: list[tuple[str, str]]) -> None:
    """The daemon reports readiness and liveness: Type=notify, main process only, 30 s watchdog."""
    assert "notify" == one(service, "Type")
    assert "main" == one(service, "NotifyAccess")
    assert "30" == one(service, "WatchdogSec")
    assert "on-failure" == one(service, "Restart")


def test_unit_starts_and_reloads_the_daemon(service: list[tuple[str, str]]) -> None:
    """ExecStart runs `mailgate -c /etc/mailgate/mailgate.yaml run`; reload sends SIGHUP."""
    assert ["/usr/bin/mailgate", "-c", "/etc/mailgate/mailgate.yaml", "run"] == shlex.split(
        one(service, "ExecStart")
    )
    assert ["/bin/kill", "-HUP", "$MAINPID"] == shlex.split(one(service, "ExecReload"))


def test_unit_runs_as_the_sysusers_user(service: list[tuple[str, str]]) -> None:
    """The service runs as user and group mailgate, which the sysusers snippet creates."""
    assert "mailgate" == one(service, "User")
    assert "mailgate" == one(service, "Group")
    assert [] == values(service, "DynamicUser")
    entries = [
        line.split() for line in SYSUSERS.read_text().splitlines() if line and not line.startswith("#")
    ]
    assert ["u", "mailgate"] == entries[0][:2]


def test_unit_keeps_state_config_and_secrets_in_their_places(
    service: list[tuple[str, str]],
) -> None:
    """State in /var/lib/mailgate, config in /etc/mailgate, reply key as a credential, umask 077."""
    assert "mailgate" == one(service, "StateDirectory")
    assert "mailgate" == one(service, "ConfigurationDirectory")
    assert "0077" == one(service, "UMask")
    assert ["reply-key:/etc/mailgate/reply.key"] == values(service, "LoadCredential")


def test_unit_is_hardened(service: list[tuple[str, str]]) -> None:
    """Every hardening directive the issue asks for is set to its strict value."""
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
    }
    assert expected == {key: one(service, key) for key in expected}
    assert "@system-service" == values(service, "SystemCallFilter")[0]


@dataclass(frozen=True)
class Verified:
    """What `systemd-analyze verify` said: its exit code, the lines about our unit, the rest."""

    returncode: int
    ours: list[str]
    others: list[str]


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is missing: `make services` installs Debian's systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def verify(unit_text: str, folder: Path) -> Verified:
    """`systemd-analyze verify` on our unit, written to ``folder`` with ExecStart at this checkout.

    By default verify also loads the units ours names (postgresql.service,
    targets) and prints whatever their packages got wrong. Those are not ours
    to judge: ``--recursive-errors=no`` keeps the exit code (and the output)
    to our unit alone, and of what is printed only lines naming our unit count.
    """
    unit = folder / UNIT.name
    unit.write_text(unit_text.replace("/usr/bin/mailgate", str(MAILGATE)))
    result = analyze("verify", "--recursive-errors=no", str(unit))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    ours = [line for line in lines if str(unit) in line or UNIT.name in line]
    return Verified(result.returncode, ours, [line for line in lines if line not in ours])


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong with our unit (ExecStart pointed at this checkout)."""
    verified = verify(UNIT.read_text(), tmp_path)
    assert (0, []) == (verified.returncode, verified.ours), verified


def test_systemd_analyze_verify_is_judged_on_our_unit_only(tmp_path: Path) -> None:
    """Another package's broken unit does not fail the check; a fault in ours does."""
    # verify looks for the units ours names beside it first, so this stands
    # in for a machine where another package's postgresql.service is
    # outdated (syslog, unknown key) and does not even load (two ExecStart=).
    (tmp_path / "postgresql.service").write_text(
        "[Unit]\nDescription=another package\n[Service]\nStandardOutput=syslog\nNoSuchKey=1\n"
        "ExecStart=/bin/true\nExecStart=/bin/true\n"
    )
    noisy = verify(UNIT.read_text(), tmp_path)
    assert (0, []) == (noisy.returncode, noisy.ours), noisy
    # Plain `systemd-analyze verify` on the same files does complain about it
    # (and with --recursive-errors=yes it would also exit 1).
    plain = analyze("verify", str(tmp_path / UNIT.name))
    assert "postgresql.service: Service has more than one ExecStart=" in plain.stderr

    broken = verify(UNIT.read_text().replace("\n[Service]\n", "\n[Service]\nNoSuchKey=1\n", 1), tmp_path)
    assert 0 != broken.returncode
    assert 1 == len(broken.ours), broken
    assert "NoSuchKey" in broken.ours[0]


# -- a real sd_notify exchange -------------------------------------------------------


class NotifySocket:
    """The systemd side of sd_notify: a datagram socket collecting state lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[str] = []

    def wait_for(self, state: str, timeout: float) -> list[str]:
        """Read datagrams until one has the line ``state``; return what came until then."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                datagram = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.received.append(datagram)
            seen.append(datagram)
            if state in datagram.splitlines():
                return seen
        raise AssertionError(f"no {state} within {timeout} s; got {seen}")


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    folder = Path(tempfile.mkdtemp(prefix="mg-notify-"))
    listener = NotifySocket(folder / "notify")
    yield listener
    listener.sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_daemon_speaks_sd_notify(
    tmp_path: Path, notify_socket: NotifySocket, service: list[tuple[str, str]]
) -> None:
    """The unit's ExecStart says READY, WATCHDOG, RELOADING+READY on SIGHUP, STOPPING on SIGTERM."""
    config = tmp_path / "mailgate.yaml"
    config.write_text(
        "helpdesk: {address: helpdesk@example.com}\n"
        "database: {url: 'sqlite:///var/mailgate.db'}\n"
        "listen: {smtp: {host: 127.0.0.1, port: 0}}\n"
        "outbound: {maildir: var/outbox}\n"
        "secrets: {reply_key_file: var/reply.key}\n"
        "logging: {format: json, level: info}\n"
    )
    command = [
        str(MAILGATE)
        if part == "/usr/bin/mailgate"
        else str(config)
        if part == "/etc/mailgate/mailgate.yaml"
        else part
        for part in shlex.split(one(service, "ExecStart"))
    ]
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "2000000"}
    env.pop("WATCHDOG_PID", None)
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        daemon = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        notify_socket.wait_for("READY=1", timeout=30)
        notify_socket.wait_for("WATCHDOG=1", timeout=3)
        daemon.send_signal(signal.SIGHUP)
        reload = notify_socket.wait_for("RELOADING=1", timeout=10)
        reload += notify_socket.wait_for("READY=1", timeout=10)
        daemon.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout=10)
        code = daemon.wait(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    stderr = log_path.read_text()
    assert 0 == code, stderr
    reloading = next(d for d in reload if "RELOADING=1" in d.splitlines())
    assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.splitlines())
    assert '"event": "daemon.ready"' in stderr
