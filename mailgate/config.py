"""The main configuration file (SPEC §4).

Only ``helpdesk.address`` is required. Unknown keys and wrong types are
errors that name the key's path, e.g. ``listen.smtp.port: Input should be a
valid integer``. Relative paths resolve against the configuration file's
folder, so a config can be moved with its ``var/`` and ``config/`` siblings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailgate.defaults import MAX_MESSAGE_BYTES, PIPE_FOLDER, resolve


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` says which key and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Helpdesk(_Strict):
    address: str
    name: str = "Helpdesk"
    ref_prefix: str = "HD"
    language: str = "en"
    # Extra addresses that are ours (aliases, queue addresses); mail to any
    # other domain-local address is refused with 550.
    aliases: tuple[str, ...] = ()
    accept_any_recipient: bool = False

    @field_validator("address")
    @classmethod
    def _address_has_domain(cls, value: str) -> str:
        local, sep, domain = value.strip().lower().rpartition("@")
        if not sep or not local or not domain or "+" in local:
            raise ValueError("must be a plain address like helpdesk@example.com")
        return f"{local}@{domain}"

    @field_validator("ref_prefix")
    @classmethod
    def _prefix_is_word(cls, value: str) -> str:
        if not value.isalnum():
            raise ValueError("must be letters and digits only, e.g. HD")
        return value.upper()

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]


class Database(_Strict):
    url: str = "sqlite:///var/mailgate.db"


class TcpListener(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    # STARTTLS is offered when a certificate is configured (needed whenever
    # the listener is reachable from outside the host).
    tls_cert: str | None = None
    tls_key: str | None = None
    # With a users file every session must AUTH (after STARTTLS) before MAIL;
    # lines made by `mailgate smtp-password NAME`. See ingest/smtp_auth.py.
    users_file: str | None = None
    # Several instances on one host may listen on the same port: the kernel
    # spreads connections over them and stops sending to one that died
    # (SO_REUSEPORT; docs/scale-out.md).
    reuse_port: bool = False

    @model_validator(mode="after")
    def _auth_needs_tls(self) -> TcpListener:
        if self.users_file is not None and self.tls_cert is None:
            raise ValueError("users_file needs tls_cert too: passwords are only taken over TLS")
        return self


class LmtpListener(_Strict):
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)
    path: str | None = None
    # As for listen.smtp: one port shared by the instances on this host.
    reuse_port: bool = False


class MetricsListener(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)


class Listen(_Strict):
    smtp: TcpListener | None = TcpListener(host="127.0.0.1", port=2525)
    lmtp: LmtpListener | None = None
    # Prometheus metrics over HTTP at /metrics (see mailgate/service/metrics.py).
    metrics: MetricsListener | None = None
    # 552 at DATA above this many bytes.
    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, ge=1024)


class OAuth2(_Strict):
    token_file: str | None = None
    token_command: str | None = None


class ImapAccount(_Strict):
    name: str
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    verify_certificate: bool = True
    ca_file: str | None = None
    username: str
    password: str | None = Field(default=None, repr=False)
    password_file: str | None = None
    oauth2: OAuth2 | None = None
    folder: str = "INBOX"
    # After the raw message is durably stored: move it to this folder, or
    # (when unset) flag it \\Seen and leave it.
    move_to: str | None = None
    queue: str | None = None
    idle: bool = True
    poll_interval: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=5000)
    max_message_bytes: int | None = None
    timeout: float = Field(default=30.0, gt=0)
    # The recipient stored with each fetched message (default: username).
    address: str | None = None
    # IDLE is re-issued before the server's 30-minute limit (RFC 2177).
    idle_renew_seconds: float = Field(default=1500.0, gt=0, le=1740)
    # A message another instance stored is finished (flag/move) after this.
    finish_grace_seconds: float = Field(default=30.0, ge=0)
    # After an authentication failure, try again this much later.
    auth_retry_seconds: float = Field(default=300.0, gt=0)


class OutboundSmtp(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "none"
    verify_certificate: bool = True
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: str | None = None
    timeout: float = Field(default=30.0, gt=0)


class Outbound(_Strict):
    smtp: OutboundSmtp | None = None
    maildir: str | None = None
    # Retry schedule for temporary failures, then give up and record it.
    retry_first_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    give_up_after_seconds: float = Field(default=5 * 24 * 3600.0, gt=0)


class Secrets(_Strict):
    # One key per line; the first signs, all verify (rotation).
    reply_key_file: str = "var/reply.key"


class Limits(_Strict):
    auto_replies_per_hour: int = Field(default=5, ge=1)
    auto_replies_per_day: int = Field(default=20, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    # Attachments: each file up to this size is stored (once per content
    # hash); larger ones, and any past the per-message total, are listed on
    # the article with the reason but not kept.
    max_attachment_bytes: int = Field(default=25 * 1024 * 1024, ge=0)
    max_attachments_bytes_per_message: int = Field(default=50 * 1024 * 1024, ge=0)
    # Mail older than this (its delivery time, or its Date when that is
    # earlier) is never acknowledged automatically, however it came in: a
    # mailbox of old mail fetched or imported must not answer settled matters.
    ack_max_age_days: float = Field(default=7.0, gt=0)


class Processing(_Strict):
    # Processing runs in this many child processes, and delivery in one
    # more (0: both as threads of the daemon itself). More than one
    # processing worker only helps on PostgreSQL.
    workers: int = Field(default=1, ge=0, le=16)
    # Messages claimed and parsed together. They are written in slices of
    # at most about 10 ms each, so a big batch does not hold SQLite's write
    # lock long; bigger is faster under load (8: 408 acks/s, 32: 460).
    batch: int = Field(default=32, ge=1, le=500)
    # The service-level timer sleeps until the next known due moment, but
    # at most this long: a ticket created meanwhile (by a worker process)
    # is seen within it. One indexed query per wake-up (docs/sla.md).
    sla_check_seconds: float = Field(default=30.0, gt=0, le=3600)


class Retention(_Strict):
    """How long mail content is kept (records/retention.py; docs/operations.md).

    Each limit is in days and off (kept for ever) when unset: a helpdesk must
    not lose what it holds because of a default the admin never chose.
    Age counts from a resolved or closed ticket's last change.
    """

    # The raw original mails (received and sent) and attachments of
    # resolved/closed tickets; the articles stay readable.
    originals_days: int | None = Field(default=None, ge=1)
    # Whole resolved/closed tickets are anonymised: content and addresses go,
    # the figures reports use (times, priority, queue, category, CSAT) stay.
    tickets_days: int | None = Field(default=None, ge=1)
    # Mail that never became part of a ticket (quarantined or dropped).
    quarantine_days: int | None = Field(default=None, ge=1)

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.originals_days, self.tickets_days, self.quarantine_days))


class InstanceSettings(_Strict):
    # This daemon's name in `mailgate doctor`, the metrics and the logs; the
    # host name if unset. Several instances on one PostgreSQL (docs/scale-out.md)
    # are told apart by it, so give each its own.
    name: str | None = Field(default=None, min_length=1, max_length=200)


class Logging(_Strict):
    format: Literal["auto", "console", "json"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class KbScope(_Strict):
    """Suggestions for one queue or category: off, or given articles first."""

    suggest: bool = True
    # Offered in every acknowledgement of the queue/category, before any found by search.
    articles: tuple[str, ...] = ()


class Kb(_Strict):
    """The knowledge base (issue 14, docs/kb.md)."""

    # One Markdown file per article; reloaded on change, the last good set kept.
    folder: str = "kb"
    # Where `#kb draft` writes new article files for an admin to review.
    drafts_folder: str = "var/kb-drafts"
    # Agents mail search words here (docs/kb.md); None: the helpdesk's +kb address.
    address: str | None = None
    # Offer matching articles in the acknowledgement.
    suggest: bool = True
    # No suggestion is better than a wrong one: matches below this score are not shown.
    min_score: float = Field(default=12.0, ge=0)
    max_suggestions: int = Field(default=3, ge=0, le=3)
    queues: dict[str, KbScope] = {}
    categories: dict[str, KbScope] = {}


class Config(_Strict):
    helpdesk: Helpdesk
    database: Database = Database()
    listen: Listen = Listen()
    imap: tuple[ImapAccount, ...] = ()
    outbound: Outbound = Outbound()
    rules: str | None = None
    agents: str | None = None
    templates: str | None = None
    kb: Kb | None = None
    secrets: Secrets = Secrets()
    limits: Limits = Limits()
    processing: Processing = Processing()
    retention: Retention = Retention()
    logging: Logging = Logging()
    instance: InstanceSettings = InstanceSettings()
    trusted_authserv_ids: tuple[str, ...] = ()
    # Where the daemon keeps its state for `mailgate doctor` (IMAP accounts, workers).
    status_file: str = "var/status.json"
    # `mailgate ingest` with the daemon running leaves each message here (ingest/pipe.py).
    pipe_folder: str = PIPE_FOLDER
    # Filled in by load(): the folder relative paths resolve against.
    base_dir: Annotated[Path, Field(exclude=True)] = Path(".")

    def path(self, value: str) -> Path:
        """Resolve a path from the file against the configuration's folder."""
        return resolve(self.base_dir, value)

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def outbox_maildir(self) -> Path | None:
        if self.outbound.smtp is not None and self.outbound.maildir is None:
            return None
        return self.path(self.outbound.maildir or "var/outbox")

    @property
    def our_addresses(self) -> frozenset[str]:
        return frozenset({self.helpdesk.address, *(a.lower() for a in self.helpdesk.aliases)})


def load(path: Path) -> Config:
    """Read and validate the configuration file, or raise ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such configuration file "
            "(pass -c FILE, set MAILGATE_CONFIG, or copy config/mailgate.example.yaml)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return from_mapping(document, base_dir=path.resolve().parent, source=str(path))


def from_mapping(document: object, *, base_dir: Path, source: str = "config") -> Config:
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with at least helpdesk.address")
    try:
        return Config.model_validate({**document, "base_dir": base_dir})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            lines.append(f"{source}: {key}: {message}")
        raise ConfigError("\n".join(lines)) from None


def read_secret(config: Config, inline: str | None, file: str | None) -> str | None:
    """A secret from a file (systemd credentials, 0600 files) or inline config.

    ``$CREDENTIALS_DIRECTORY`` is consulted for bare file names so that
    ``LoadCredential=`` works without spelling the runtime path.
    """
    if file:
        candidate = Path(file)
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not candidate.is_absolute() and creds and (Path(creds) / candidate).exists():
            candidate = Path(creds) / candidate
        else:
            candidate = config.path(file)
        return candidate.read_text(encoding="utf-8").strip()
    return inline
