"""Everything a running mailgate shares, built once from the configuration.

Reloadable parts (rules, agents, templates) are replaced whole on SIGHUP: a stage
reads ``runtime.rules`` once per message, so a message is never routed by a
half-loaded file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailgate.agents.directory import Directory, load_directory
from mailgate.config import Config
from mailgate.guard import OwnIdentity
from mailgate.guard.ratelimit import RateLimits
from mailgate.kb.library import Library, load_library, reload_library
from mailgate.rules import RuleSet, default_ruleset, load_rules
from mailgate.service.presence import Presence
from mailgate.store.db import make_engine, session_factory, sqlite_file, upgrade
from mailgate.store.instances import TIMERS
from mailgate.templates import TemplateSet
from mailgate.threading.tokens import ReplyKeys, load_keys

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    keys: ReplyKeys
    templates: TemplateSet
    rules: RuleSet
    directory: Directory = field(default_factory=Directory)
    kb: Library = field(default_factory=Library)
    # This process's heartbeat in a running daemon or worker (service/presence.py);
    # None for one-off commands, which lease nothing for long.
    presence: Presence | None = None
    own: OwnIdentity = field(init=False)
    config_addresses: frozenset[str] = field(init=False)
    trusted_authserv_ids: frozenset[str] = field(init=False)
    rate_limits: RateLimits = field(init=False)
    # The daemon and each worker reload the same files: only the daemon
    # reports a broken one, and only once until it changes (one edit used to
    # log the same problems five times).
    reports_reload_problems: bool = True
    _refused: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self._identify()

    def _identify(self) -> None:
        # Derived once per (re)load: the hot path asks for these for every
        # recipient of every message.
        self.config_addresses = self.config.our_addresses
        self.trusted_authserv_ids = frozenset(self.config.trusted_authserv_ids)
        limits = self.config.limits
        self.rate_limits = RateLimits(
            per_hour=limits.auto_replies_per_hour, per_day=limits.auto_replies_per_day
        )
        self.own = own_identity(self.config, self.directory)

    @cached_property
    def lease_sessions(self) -> sessionmaker[Session]:
        """Sessions for leases and delivery marks: commits a power cut may undo.

        On SQLite they skip the fsync (see store/db.py); elsewhere they are
        the ordinary sessions.
        """
        url = self.engine.url
        if sqlite_file(url) is None:
            return self.sessions
        return session_factory(make_engine(url.render_as_string(hide_password=False), durable=False))

    def may_run_timers(self) -> bool:
        """Auto-close, escalations, digests and retention run on one instance only."""
        return self.presence is None or self.presence.holds(TIMERS)

    @property
    def owner(self) -> int | None:
        """The ``lease_owner`` this process writes on what it claims."""
        return None if self.presence is None else self.presence.id

    def may_claim(self) -> bool:
        """False while this process cannot show it is alive (see service/presence.py)."""
        return self.presence is None or self.presence.fresh()

    def close(self) -> None:
        """Close the database connections (both engines)."""
        if "lease_sessions" in self.__dict__ and self.lease_sessions is not self.sessions:
            bind = self.lease_sessions.kw.get("bind")
            if bind is not None:
                bind.dispose()
        self.engine.dispose()

    def is_our_address(self, address: str) -> bool:
        """Ours: the helpdesk address or an alias, with or without +detail."""
        if self.config.helpdesk.accept_any_recipient:
            return True
        local, _, domain = address.lower().strip("<>").rpartition("@")
        ours = self.own.addresses
        # A queue may own a plus-address (helpdesk+network@), so the whole
        # address counts as well as its base.
        return f"{local.split('+', 1)[0]}@{domain}" in ours or f"{local}@{domain}" in ours

    def reload(self) -> list[str]:
        """Load rules, agents and templates anew; keep the running ones on any problem."""
        # The knowledge base keeps its own last good set: a broken article
        # must not hold back a fixed rules file, nor the other way round.
        self.kb = reload_library(self.config, self.kb, report=self.reports_reload_problems)
        try:
            templates = make_templates(self.config)
            rules = make_rules(self.config, templates)
            directory = make_directory(self.config)
        except Exception as exc:  # any broken file must leave the last good rules running
            problems = [str(p) for p in getattr(exc, "problems", [])] or [str(exc)]
            if self.reports_reload_problems and tuple(problems) != self._refused:
                log.error("reload.refused", problems=problems)
            else:
                log.debug("reload.refused", problems=problems)
            self._refused = tuple(problems)
            return problems
        self.templates, self.rules, self.directory = templates, rules, directory
        self._refused = ()
        self._identify()
        log.info("reload.applied")
        return []


def own_identity(config: Config, directory: Directory) -> OwnIdentity:
    """How the guard knows our own mail: every address of ours, queues' included."""
    return OwnIdentity(
        addresses=config.our_addresses | directory.addresses,
        message_id_domain=config.helpdesk.domain,
        loop_header_value=config.helpdesk.address,
    )


def make_templates(config: Config) -> TemplateSet:
    return TemplateSet(config.path(config.templates) if config.templates else None)


def make_rules(config: Config, templates: TemplateSet) -> RuleSet:
    if config.rules is None:
        return default_ruleset(language=config.helpdesk.language)
    return load_rules(Path(config.path(config.rules)), known_templates=templates.names())


def make_directory(config: Config) -> Directory:
    if config.agents is None:
        return Directory()
    return load_directory(config.path(config.agents), helpdesk_address=config.helpdesk.address)


def build(config: Config, *, migrate: bool = True, with_rules: bool = True) -> Runtime:
    """Everything a command needs; ``with_rules=False`` for read-only commands,
    which must work even while an admin's rules file is broken."""
    engine = make_engine(config.database_url)
    if migrate:
        upgrade(engine)
    templates = make_templates(config)
    rules = (
        make_rules(config, templates) if with_rules else default_ruleset(language=config.helpdesk.language)
    )
    return Runtime(
        config=config,
        engine=engine,
        sessions=session_factory(engine),
        keys=load_keys(config.path(config.secrets.reply_key_file)),
        templates=templates,
        rules=rules,
        directory=make_directory(config) if with_rules else Directory(),
        kb=load_library(config) if with_rules else Library(),
    )
