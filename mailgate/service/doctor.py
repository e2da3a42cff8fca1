"""``mailgate doctor``: is this installation able to take and answer mail?

Each check looks at one thing an admin can fix (the database, the reply
key, the rules, the outbound relay, the listening ports, the queues) and
says OK, WARN or FAIL on one line, with what to do about it. Nothing is
changed: no file or folder is created, no mail is sent, no migration run.
The exit status is 1 when any check failed, else 0.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import smtplib
import socket
import ssl
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TextIO

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from mailgate.config import Config, LmtpListener, TcpListener
from mailgate.service.doctor_daemon import check_daemon
from mailgate.service.doctor_instances import check_instances, instances_json, read_instances
from mailgate.service.runtime import make_rules, make_templates
from mailgate.store.db import current_revision, head_revision, make_engine, read_only, sqlite_file
from mailgate.store.models import Inbound, Outbox
from mailgate.store.spool import Spool, read_segment
from mailgate.threading.tokens import load_keys

Status = Literal["OK", "WARN", "FAIL"]

# The relay and the ports must answer quickly; a hung check helps nobody.
NETWORK_TIMEOUT_SECONDS = 5.0
# Older than this, a pending message or queued mail means something is stuck.
PENDING_TOO_OLD = timedelta(minutes=5)
OUTBOX_TOO_OLD = timedelta(minutes=30)


@dataclass(frozen=True)
class Finding:
    """One check's verdict: what was looked at, what was found, what to do."""

    status: Status
    check: str
    detail: str
    advice: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.check}: {self.detail}"
        return f"{text} -> {self.advice}" if self.advice else text


def run_doctor(config: Config, out: TextIO, *, source: Path | None = None, as_json: bool = False) -> int:
    """Run every check, print one line each and a summary; 1 if any failed.

    With ``as_json``, one JSON document instead: the findings, and the
    instances sharing the database with their roles (docs/scale-out.md).
    """
    findings: list[Finding] = []
    for finding in _findings(config, source):
        findings.append(finding)
        if not as_json:
            out.write(finding.line() + "\n")
            out.flush()
    failed = sum(1 for f in findings if f.status == "FAIL")
    warned = sum(1 for f in findings if f.status == "WARN")
    if as_json:
        document = {
            "failed": failed,
            "warnings": warned,
            "findings": [dataclasses.asdict(f) for f in findings],
            "instances": _instances_or_none(config),
        }
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(f"doctor: {len(findings)} checks, {failed} failed, {warned} warnings\n")
    return 1 if failed else 0


def _instances_or_none(config: Config) -> list[dict[str, object]] | None:
    """Every instance sharing the database; None when it cannot be read."""
    engine = _open_database(config)
    if isinstance(engine, Finding):
        return None
    try:
        return instances_json(read_instances(engine))
    except Exception:  # the findings already say what is wrong with the database
        return None
    finally:
        engine.dispose()


def _findings(config: Config, source: Path | None) -> Iterator[Finding]:
    where = str(source) if source is not None else f"folder {config.base_dir}"
    yield Finding("OK", "configuration", f"loaded from {where}; helpdesk {config.helpdesk.address}")
    engine = _open_database(config)
    if isinstance(engine, Finding):
        yield engine
    else:
        try:
            database = check_database(config, engine)
            yield database
            if database.status != "FAIL":
                yield from check_queues(engine)
                yield from check_spool(config, engine)
                yield from _instance_findings(config, engine)
        finally:
            engine.dispose()
    yield check_reply_key(config)
    yield check_rules(config)
    yield from check_outbound(config)
    yield from check_listeners(config)
    # The running daemon's own view: workers and IMAP accounts.
    for found in check_daemon(config):
        yield Finding(found.status, found.check, found.detail)


def _instance_findings(config: Config, engine: Engine) -> Iterator[Finding]:
    try:
        for found in check_instances(config, engine):
            yield Finding(found.status, found.check, found.detail)
    except Exception as exc:  # the doctor reports every problem, it never crashes on one
        yield Finding("FAIL", "instances", f"{type(exc).__name__}: {exc}")


def _guarded(check: str, run: Callable[[], Finding]) -> Finding:
    """Run one check; any unexpected error becomes its FAIL line, not a traceback."""
    try:
        return run()
    except Exception as exc:  # the doctor reports every problem, it never crashes on one
        return Finding("FAIL", check, f"{type(exc).__name__}: {exc}")


# -- database --------------------------------------------------------------------


def _shown_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _open_database(config: Config) -> Engine | Finding:
    url = config.database_url
    parsed = make_url(url)
    database = sqlite_file(parsed)
    if database is not None and not database.exists():
        # make_engine would create the folder; the doctor changes nothing.
        return Finding(
            "FAIL",
            "database",
            f"{database} does not exist",
            "start the daemon once or run `mailgate db upgrade` (as the service user)",
        )
    if parsed.get_backend_name() != "sqlite" and "connect_timeout" not in parsed.query:
        # libpq waits for ever on an unreachable host unless told otherwise.
        url = parsed.update_query_dict(
            {"connect_timeout": str(int(NETWORK_TIMEOUT_SECONDS))}
        ).render_as_string(hide_password=False)
    try:
        return make_engine(url, pool_size=1)
    except Exception as exc:  # a bad URL or a missing driver is a finding
        return Finding("FAIL", "database", f"{_shown_url(config.database_url)}: {exc}")


def check_database(config: Config, engine: Engine) -> Finding:
    """The database answers and its schema is at the newest migration."""
    shown = _shown_url(config.database_url)
    try:
        current = current_revision(engine)
    except Exception as exc:  # every connection problem is reported as such
        message = str(exc).splitlines()[0]
        advice = "check database.url, that the server runs, and the credentials"
        if "readonly" in message or "unable to open" in message:
            advice = "run the doctor as the service user: sudo -u mailgate mailgate doctor"
        return Finding("FAIL", "database", f"{shown}: {message}", advice)
    head = head_revision(engine)
    if current is None:
        return Finding("FAIL", "database", f"{shown} has no mailgate schema", "run `mailgate db upgrade`")
    if current != head:
        return Finding(
            "WARN",
            "database",
            f"{shown} is at migration {current}, the code expects {head}",
            "run `mailgate db upgrade` (the daemon also upgrades when it starts)",
        )
    return Finding("OK", "database", f"{shown} reachable, migrations current ({current})")


def check_queues(engine: Engine) -> Iterator[Finding]:
    """Pending, quarantined, queued and failed rows, and how old the oldest waiting ones are."""
    now = datetime.now(UTC)
    with read_only(), engine.connect() as connection:
        by_state = select(Inbound.state, func.count()).group_by(Inbound.state)
        inbound: dict[str, int] = {state: count for state, count in connection.execute(by_state)}
        by_state = select(Outbox.state, func.count()).group_by(Outbox.state)
        outbox: dict[str, int] = {state: count for state, count in connection.execute(by_state)}
        oldest_pending = connection.execute(
            select(func.min(Inbound.received_at)).where(Inbound.state == "pending")
        ).scalar()
        oldest_queued = connection.execute(
            select(func.min(Outbox.created_at)).where(Outbox.state == "queued")
        ).scalar()
        last_error = connection.execute(
            select(Outbox.last_error)
            .where(Outbox.state == "queued", Outbox.last_error.is_not(None))
            .order_by(Outbox.id.desc())
            .limit(1)
        ).scalar()

    pending = inbound.get("pending", 0)
    age = _age(now, oldest_pending)
    detail = f"{pending} pending" + (f", oldest {_duration(age)} old" if age is not None else "")
    if age is not None and age > PENDING_TOO_OLD:
        yield Finding(
            "WARN",
            "inbound queue",
            detail,
            "is `mailgate run` running? see `journalctl -u mailgate` for process errors",
        )
    else:
        yield Finding("OK", "inbound queue", detail)

    quarantined = inbound.get("quarantined", 0)
    if quarantined:
        yield Finding(
            "WARN",
            "quarantine",
            f"{quarantined} messages quarantined",
            "inspect with `mailgate quarantine list`, replay with `mailgate quarantine retry ID`",
        )
    else:
        yield Finding("OK", "quarantine", "empty")

    queued, failed = outbox.get("queued", 0), outbox.get("failed", 0)
    age = _age(now, oldest_queued)
    detail = f"{queued} queued" + (f" (oldest {_duration(age)} old)" if age is not None else "")
    detail += f", {failed} failed, {outbox.get('sent', 0)} sent"
    if age is not None and age > OUTBOX_TOO_OLD:
        reason = f"last error: {last_error}; " if last_error else ""
        yield Finding(
            "WARN",
            "outbox",
            detail,
            f"{reason}check the relay and `mailgate outbox list --state queued`",
        )
    elif failed:
        yield Finding("WARN", "outbox", detail, "see why with `mailgate outbox list --state failed`")
    else:
        yield Finding("OK", "outbox", detail)


def _age(now: datetime, then: datetime | None) -> timedelta | None:
    if then is None:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(now - then, timedelta(0))


def _duration(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


# -- secrets and rules ---------------------------------------------------------------


def check_spool(config: Config, engine: Engine) -> Iterator[Finding]:
    """Mail in the SQLite spool journal that is not in the database yet."""
    spool = Spool.for_url(config.database_url)
    if spool is None:
        return
    # The journal keeps imported records until its file is full or the
    # daemon stops; only those not in the inbound table are waiting.
    keys = sorted({item.source_key or "" for segment in spool.segments() for item in read_segment(segment)})
    stored: set[str | None] = set()
    with read_only(), engine.connect() as connection:
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = keys[start : start + 500]
            query = select(Inbound.source_key).where(Inbound.source_key.in_(chunk))
            stored.update(connection.execute(query).scalars())
    waiting = len(set(keys) - stored)
    if waiting == 0:
        yield Finding("OK", "spool", "nothing waiting for import")
        return
    yield Finding(
        "OK",
        "spool",
        f"{waiting} message{'s' if waiting != 1 else ''} not yet in the database; "
        "a running daemon imports them at once, "
        "a stopped one at its next start",
    )


def check_reply_key(config: Config) -> Finding:
    """The reply key file exists, holds keys, and only its owner can read it."""
    path = config.path(config.secrets.reply_key_file)
    if not path.exists():
        if str(path).startswith("/run/credentials/") and not os.environ.get("CREDENTIALS_DIRECTORY"):
            return Finding(
                "WARN",
                "reply key",
                f"{path} is a systemd credential, readable only inside the service",
                "check the file named by LoadCredential=reply-key:... in the unit instead",
            )
        return Finding(
            "WARN",
            "reply key",
            f"{path} does not exist",
            "the daemon creates one on first start; back it up: without it reply addresses break",
        )
    try:
        keys = load_keys(path, create=False)
    except (OSError, ValueError) as exc:
        return Finding(
            "FAIL",
            "reply key",
            f"{path}: {exc}",
            "the file must hold one hex key per line and be readable by the service user",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    count = f"{len(keys.keys)} key(s)"
    if mode & 0o077:
        return Finding("WARN", "reply key", f"{path} has mode {mode:04o}, {count}", f"chmod 600 {path}")
    return Finding("OK", "reply key", f"{path}: {count}, mode {mode:04o}")


def check_rules(config: Config) -> Finding:
    """Templates and the rules file load as the daemon would load them."""
    try:
        templates = make_templates(config)
        rules = make_rules(config, templates)
    except Exception as exc:  # every loading problem is a finding with its reasons
        problems = [str(p) for p in getattr(exc, "problems", [])] or [f"{type(exc).__name__}: {exc}"]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Finding(
            "FAIL",
            "rules",
            problems[0] + more,
            "fix the file; `mailgate rules check` lists every problem",
        )
    where = config.path(config.rules) if config.rules else "built-in defaults"
    return Finding("OK", "rules", f"{where}: {len(rules.rules)} rules load")


# -- outbound ----------------------------------------------------------------------------


def check_outbound(config: Config) -> Iterator[Finding]:
    smtp = config.outbound.smtp
    if smtp is not None:
        yield _guarded("outbound relay", lambda: check_relay(config))
    maildir = config.outbox_maildir
    if maildir is not None:
        yield _guarded("outbound maildir", lambda: check_maildir(maildir))


def check_relay(config: Config) -> Finding:
    """Connect to the relay, EHLO, QUIT: the outbox worker can hand mail over."""
    smtp = config.outbound.smtp
    assert smtp is not None
    where = f"{smtp.host}:{smtp.port}"
    context = ssl.create_default_context()
    if not smtp.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client: smtplib.SMTP
    try:
        if smtp.security == "tls":
            client = smtplib.SMTP_SSL(
                smtp.host,
                smtp.port,
                local_hostname=config.helpdesk.domain,
                timeout=NETWORK_TIMEOUT_SECONDS,
                context=context,
            )
        else:
            client = smtplib.SMTP(
                smtp.host,
                smtp.port,
                local_hostname=config.helpdesk.domain,
                timeout=NETWORK_TIMEOUT_SECONDS,
            )
        with client:
            code, reply = client.ehlo()
            if code != 250:
                return Finding(
                    "FAIL",
                    "outbound relay",
                    f"{where} answered EHLO with {code} {reply.decode(errors='replace')}",
                    "check outbound.smtp and the relay's client restrictions",
                )
            if smtp.security == "starttls":
                if not client.has_extn("starttls"):
                    return Finding(
                        "FAIL",
                        "outbound relay",
                        f"{where} does not offer STARTTLS",
                        "set outbound.smtp.security to none or tls, or enable STARTTLS there",
                    )
                client.starttls(context=context)
                client.ehlo()
            client.quit()
    except (OSError, smtplib.SMTPException) as exc:
        return Finding(
            "FAIL",
            "outbound relay",
            f"cannot talk SMTP to {where}: {exc or type(exc).__name__}",
            "start the relay or fix outbound.smtp; meanwhile mail waits in the outbox",
        )
    return Finding("OK", "outbound relay", f"{where} answers EHLO ({smtp.security})")


def check_maildir(maildir: Path) -> Finding:
    """The outbox Maildir (or the folder it will be made in) takes a file."""
    if not maildir.exists():
        parent = next((p for p in maildir.parents if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK | os.X_OK):
            return Finding("OK", "outbound maildir", f"{maildir} will be created on first delivery")
        return Finding(
            "FAIL",
            "outbound maildir",
            f"{maildir} does not exist and {parent} is not writable",
            "create it, writable by the service user (StateDirectory= is /var/lib/mailgate)",
        )
    folder = maildir / "tmp" if (maildir / "tmp").is_dir() else maildir
    probe = folder / f".doctor-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return Finding(
            "FAIL",
            "outbound maildir",
            f"cannot write in {folder}: {exc.strerror}",
            "make it writable by the service user",
        )
    return Finding("OK", "outbound maildir", f"{maildir} is writable")


# -- listeners ----------------------------------------------------------------------------


def check_listeners(config: Config) -> Iterator[Finding]:
    domain = config.helpdesk.domain
    if config.listen.smtp is not None:
        smtp = config.listen.smtp
        yield _guarded("listen smtp", lambda: check_tcp_port("listen smtp", smtp, domain))
    if config.listen.lmtp is not None:
        lmtp = config.listen.lmtp
        if lmtp.path:
            yield _guarded("listen lmtp", lambda: check_unix_socket(config.path(lmtp.path or "")))
        else:
            yield _guarded("listen lmtp", lambda: check_tcp_port("listen lmtp", lmtp, domain))


def check_tcp_port(check: str, listener: TcpListener | LmtpListener, domain: str) -> Finding:
    """Free (we could bind it), or busy and greeting like mailgate (the daemon runs)."""
    port = listener.port if listener.port is not None else 24
    where = f"{listener.host}:{port}"
    if port == 0:
        return Finding("OK", check, f"{listener.host}, any free port")
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The daemon binds with SO_REUSEADDR too, so TIME_WAIT is no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((listener.host, port))
        except OSError as exc:
            bind_error = exc
        else:
            return Finding("OK", check, f"{where} is free")
    if bind_error.errno == errno.EACCES:
        return Finding(
            "FAIL",
            check,
            f"{where}: permission denied",
            "ports below 1024 need CAP_NET_BIND_SERVICE (see docs/deployment.md) or use 2525/2424",
        )
    if bind_error.errno != errno.EADDRINUSE:
        return Finding("FAIL", check, f"cannot bind {where}: {bind_error.strerror}", "check listen.*.host")
    banner = _banner(listener.host, port)
    if banner.startswith(f"220 {domain} ") and "mailgate" in banner:
        return Finding("OK", check, f"{where} in use by a running mailgate ({banner})")
    return Finding(
        "WARN",
        check,
        f"{where} is in use by another program ({banner or 'no SMTP greeting'})",
        "stop it or change the port; the daemon cannot start while the port is taken",
    )


def _banner(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=NETWORK_TIMEOUT_SECONDS) as conn:
            return conn.recv(512).decode("ascii", "replace").strip().splitlines()[0]
    except (OSError, IndexError):
        return ""


def check_unix_socket(path: Path) -> Finding:
    """An LMTP socket path: its folder is writable (the daemon replaces the socket)."""
    if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(NETWORK_TIMEOUT_SECONDS)
            try:
                conn.connect(str(path))
            except OSError:
                pass
            else:
                return Finding("OK", "listen lmtp", f"{path} answers (the daemon is probably running)")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return Finding(
            "FAIL",
            "listen lmtp",
            f"cannot create {path}: {path.parent} is not writable",
            "use a folder the service user owns, e.g. RuntimeDirectory=mailgate -> /run/mailgate",
        )
    return Finding("OK", "listen lmtp", f"{path} can be created")
