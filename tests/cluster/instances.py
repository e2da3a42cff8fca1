"""Several ``mailgate run`` daemons on one PostgreSQL, and the sink they mail to.

Each instance is a real process tree (``python -m mailgate -c CONFIG run`` and
its workers) in a session of its own, so ``kill9`` ends all of it at once,
as a host that loses power would. The instances share what docs/scale-out.md
says they must share: the database URL, the reply key file, rules, agents
and templates; each has its own listener ports, status file, pipe folder
and metrics port. Outbound mail of all of them goes to one ``RecordingSink``
that keeps every mail's Message-ID, so a resend of the same mail is told
apart from a second, different mail.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parents[2]
HELPDESK = "helpdesk@example.com"
# Put in every acknowledgement by the shared template: proves all instances read it.
ACK_MARK = "Cluster-shared ack template"

ACK_TEMPLATE = (
    "{% block subject %}[{{ ticket.ref }}] {{ ticket.subject }}{% endblock %}\n"
    "{% block body %}\n"
    "Hello {{ requester.name or requester.email }},\n\n"
    "we have your request {{ ticket.ref }}. Reply to this mail to add to it.\n\n"
    f"{ACK_MARK}\n"
    "{{ helpdesk.name }}\n"
    "{% endblock %}\n"
)

# Two agents and an escalation address, so that a breached service level
# mails three people (see docs/sla.md).
AGENTS = {
    "agents": {
        "alice": {"address": "alice@example.com", "name": "Alice Admin", "queues": ["general"]},
        "bob": {"address": "bob@example.com", "name": "Bob Beheer", "digest": False},
    },
    "queues": {"general": {"members": ["bob"], "escalation": "lead@example.com"}, "intake": {}},
}

# Urgent tickets (subject "URGENT") go to the agents' queue and are warned
# after 1 s and breached after 2 s: nobody answers them, so every one of them
# escalates. The rest land in a queue without members (no agent mail), so
# that the outbound flow is mostly acknowledgements.
RULES = """\
service_levels:
  fast:
    business_hours: 24x7
    timezone: Europe/Amsterdam
    warn_at: 50%
    first_response: {urgent: 2s, high: 1h, normal: 1h, low: 1h}
    resolution: 1h
    on_breach: {raise_priority: false, tag: sla-late}
defaults:
  sla: fast
  queue: intake
rules:
  - name: urgent by subject
    if: {subject: {contains: URGENT}}
    then: {priority: urgent, queue: general}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def instances_supported() -> bool:
    """Whether this mailgate knows ``instance: {name: ...}`` (issue 13's core)."""
    from mailgate.config import Config

    return "instance" in Config.model_fields


# -- the sink --------------------------------------------------------------------


@dataclass(frozen=True)
class OutMail:
    """One mail as the sink received it (one per SMTP transaction)."""

    rcpts: tuple[str, ...]
    message_id: str
    in_reply_to: str
    reply_to: str
    subject: str
    arrived: float
    # The body, for the few mails whose content is checked (escalations, acks).
    body: str


class _SinkHandler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[OutMail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        _head, _, body = raw.partition(b"\r\n\r\n")
        subject = _unfold(headers.get("Subject", ""))
        mail = OutMail(
            rcpts=tuple(address.lower() for address in envelope.rcpt_tos),
            message_id=_unfold(headers.get("Message-ID", "")),
            in_reply_to=_unfold(headers.get("In-Reply-To", "")),
            reply_to=_unfold(headers.get("Reply-To", "")),
            subject=subject,
            arrived=time.time(),
            body=_text_of(raw) if subject.startswith("[SLA]") or ACK_MARK.encode() in body else "",
        )
        with self.lock:
            self.mails.append(mail)
        return "250 2.0.0 Ok"


def _unfold(value: object) -> str:
    return " ".join(str(value).split())


def _text_of(raw: bytes) -> str:
    from email import message_from_bytes

    message = message_from_bytes(raw)
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


class RecordingSink:
    """A real SMTP server (aiosmtpd) recording every mail it is given."""

    def __init__(self, port: int | None = None) -> None:
        self.handler = _SinkHandler()
        self.port = port or free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> RecordingSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def mails(self) -> list[OutMail]:
        with self.handler.lock:
            return list(self.handler.mails)

    def to(self, address: str) -> list[OutMail]:
        address = address.lower()
        return [mail for mail in self.mails() if address in mail.rcpts]


# -- the instances ---------------------------------------------------------------


@dataclass
class Instance:
    """One ``mailgate run`` (and its workers) with its own folder and ports."""

    name: str
    folder: Path
    config_path: Path
    smtp_port: int
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    # (monotonic time, returncode) of exits nobody asked for.
    crashes: list[tuple[float, int]] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.folder / "mailgate.log"

    def start(self, env: dict[str, str] | None = None) -> Instance:
        if self.alive():
            raise RuntimeError(f"{self.name} is running already")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f'{{"event": "harness.start", "n": {self.starts}, "at": {time.time()}}}\n'.encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailgate", "-c", str(self.config_path), "run"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                env={**os.environ, **(env or {})},
                # Its own session: kill9 takes the daemon and its workers together.
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def accepts_smtp(self) -> bool:
        """EHLO answered with 250 on this instance's listener."""
        try:
            with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as client:
                return 250 == client.ehlo("probe.example")[0]
        except (OSError, smtplib.SMTPException):
            return False

    def wait_smtp(self, timeout: float = 60.0) -> float:
        """Wait until the listener answers; the seconds it took."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}\n{self.log_tail()}")
            if self.accepts_smtp():
                return time.monotonic() - began
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept SMTP within {timeout} s\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the whole process tree at once."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1
        with self.log_path.open("ab") as log:
            log.write(f'{{"event": "harness.kill9", "at": {time.time()}}}\n'.encode())

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return 0 if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the exit (SIGKILL after ``timeout``); the exit code."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return -9

    def log_lines(self) -> list[dict[str, Any]]:
        found = []
        with contextlib.suppress(OSError), self.log_path.open("rb") as log:
            for raw in log:
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if isinstance(line, dict):
                        found.append(line)
        return found

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "mailgate", "-c", str(self.config_path), *args],
            capture_output=True,
            timeout=timeout,
            cwd=self.folder,
            check=False,
        )


@dataclass(frozen=True)
class ImapSettings:
    """One IMAP account that every instance is configured with."""

    name: str
    port: int
    username: str
    password: str


class Cluster:
    """N instances sharing one database, reply key, rules, agents and templates."""

    def __init__(
        self,
        base: Path,
        database_url: str,
        sink_port: int,
        *,
        count: int = 3,
        imap: Sequence[ImapSettings] = (),
        log_level: str = "info",
        workers: int | None = None,
        sla_check_seconds: float = 0.5,
    ) -> None:
        self.base = base
        self.database_url = database_url
        shared = base / "shared"
        (shared / "templates" / "en").mkdir(parents=True, exist_ok=True)
        (shared / "templates" / "en" / "ack.txt").write_text(ACK_TEMPLATE)
        (shared / "rules.yaml").write_text(RULES)
        (shared / "agents.yaml").write_text(yaml.safe_dump(AGENTS))
        # Made once, before any instance starts: each would otherwise make its own.
        key = shared / "reply.key"
        if not key.exists():
            key.write_text(secrets.token_hex(32) + "\n")
            key.chmod(0o600)
        self.shared = shared
        self.instances = [
            self._instance(f"mg{number}", shared, sink_port, imap, log_level, workers, sla_check_seconds)
            for number in range(1, count + 1)
        ]

    def _instance(
        self,
        name: str,
        shared: Path,
        sink_port: int,
        imap: Sequence[ImapSettings],
        log_level: str,
        workers: int | None,
        sla_check_seconds: float,
    ) -> Instance:
        folder = self.base / name
        folder.mkdir(parents=True, exist_ok=True)
        smtp_port, metrics_port = free_port(), free_port()
        processing: dict[str, Any] = {"sla_check_seconds": sla_check_seconds}
        if workers is not None:
            processing["workers"] = workers
        document: dict[str, Any] = {
            "helpdesk": {"address": HELPDESK, "name": "Example IT Helpdesk"},
            "database": {"url": self.database_url},
            "listen": {
                "smtp": {"host": "127.0.0.1", "port": smtp_port},
                "metrics": {"host": "127.0.0.1", "port": metrics_port},
            },
            "outbound": {
                "smtp": {"host": "127.0.0.1", "port": sink_port, "timeout": 10},
                "retry_first_seconds": 1,
                "retry_max_seconds": 5,
            },
            "secrets": {"reply_key_file": str(shared / "reply.key")},
            "rules": str(shared / "rules.yaml"),
            "agents": str(shared / "agents.yaml"),
            "templates": str(shared / "templates"),
            # Every request comes from its own address, but replies and
            # escalations go to a few: no limit may hold an answer back.
            "limits": {"auto_replies_per_hour": 1_000_000, "auto_replies_per_day": 1_000_000},
            "processing": processing,
            "status_file": str(folder / "status.json"),
            "pipe_folder": str(folder / "pipe"),
            "logging": {"format": "json", "level": log_level},
            "imap": [
                {
                    "name": account.name,
                    "host": "127.0.0.1",
                    "port": account.port,
                    "security": "none",
                    "username": account.username,
                    "password": account.password,
                    "timeout": 10.0,
                    "idle": True,
                    "poll_interval": 2.0,
                    "finish_grace_seconds": 1.0,
                    "auth_retry_seconds": 2.0,
                }
                for account in imap
            ],
        }
        if instances_supported():
            document["instance"] = {"name": name}
        config_path = folder / "mailgate.yaml"
        config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        return Instance(name, folder, config_path, smtp_port, metrics_port)

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    def migrate(self) -> None:
        """`mailgate db upgrade` once, as the operator does before starting instances."""
        done = self.instances[0].cli("db", "upgrade")
        if done.returncode != 0:
            raise RuntimeError(f"mailgate db upgrade failed: {done.stderr.decode()}")

    def start_all(self, timeout: float = 90.0) -> None:
        for instance in self.instances:
            instance.start()
        for instance in self.instances:
            instance.wait_smtp(timeout)

    def stop_all(self, timeout: float = 60.0) -> dict[str, int]:
        """SIGTERM every running instance (together); their exit codes."""
        running = [instance for instance in self.instances if instance.alive()]
        for instance in running:
            assert instance.process is not None
            instance.process.send_signal(signal.SIGTERM)
        # Once only: a second SIGTERM during the shutdown would kill it outright.
        return {instance.name: instance.wait(timeout) for instance in running}

    def kill_all(self) -> None:
        for instance in self.instances:
            if instance.alive():
                instance.kill9()

    def restart(self, instance: Instance, timeout: float = 90.0) -> float:
        """Start a dead instance again and wait for its listener; the seconds it took."""
        instance.start()
        return instance.wait_smtp(timeout)

    def smtp_ports(self) -> list[int]:
        return [instance.smtp_port for instance in self.instances]

    def unexpected_exits(self) -> list[str]:
        """Instances that exited without being killed or stopped by the harness."""
        return [
            f"{instance.name} exited with {instance.process.returncode}"
            for instance in self.instances
            if instance.process is not None and instance.process.poll() is not None
        ]

    def doctor_json(self, instance: Instance | None = None) -> dict[str, Any] | None:
        """`mailgate doctor --json` of one instance, or None if this mailgate has none."""
        done = (instance or self.instances[0]).cli("doctor", "--json")
        try:
            found = json.loads(done.stdout)
        except ValueError:
            return None
        return found if isinstance(found, dict) else {"findings": found}

    def imap_holder(self, account: str) -> Instance | None:
        """The instance that holds the IMAP account, per `mailgate doctor --json`.

        None when doctor does not say (a mailgate without issue 13's roles),
        or nobody holds it now.
        """
        report = None
        for instance in self.instances:
            if instance.alive():
                report = self.doctor_json(instance)
                break
        if not report:
            return None
        names = {instance.name: instance for instance in self.instances}
        for entry in report.get("instances", []) or []:
            if not isinstance(entry, dict) or entry.get("state") != "live":
                continue
            roles = [str(role) for role in entry.get("roles") or []]
            if f"imap:{account}" in roles and entry.get("name") in names:
                return names[str(entry["name"])]
        return None
