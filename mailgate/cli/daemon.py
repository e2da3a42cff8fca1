"""`mailgate run`, the worker it starts, `doctor` and `db upgrade`."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from mailgate.cli import State, fail, main, pass_state
from mailgate.log import get_logger

log = get_logger(__name__)


@main.command()
@pass_state
def run(state: State) -> None:
    """Run the daemon in the foreground (SIGTERM stops, SIGHUP reloads)."""
    state.daemon_logs = True
    from mailgate.ingest.smtp_auth import UsersFileError, load_users
    from mailgate.service.daemon import run as run_daemon

    if state.config.listen.metrics is not None:
        # Before anything imports prometheus_client; the workers inherit it.
        from mailgate.service import metrics
        from mailgate.service.status import status_path

        folder = status_path(state.config).parent / "metrics"
        try:
            metrics.enable(folder)
        except OSError as exc:
            where = f"listen.metrics: cannot prepare {folder}: {exc.strerror}"
            fail(f"{where}; point status_file at a writable folder")
    smtp = state.config.listen.smtp
    if smtp is not None and smtp.users_file is not None:
        try:
            load_users(state.config.path(smtp.users_file))
        except UsersFileError as exc:
            fail(f"listen.smtp.users_file: {exc}")
    sys.exit(run_daemon(_runtime_when_database_answers(state), str(state.config_path.resolve())))


def _runtime_when_database_answers(state: State) -> Any:
    """Build the runtime; on PostgreSQL, wait for the server instead of exiting.

    A daemon started while its database restarts (a failover, a reboot in
    the wrong order) must not crash-loop under systemd: it waits, says so,
    and starts once the server answers. SQLite errors are the admin's to fix
    (a path, a permission) and end the command at once.
    """
    from sqlalchemy.exc import InterfaceError, OperationalError

    from mailgate.service import systemd
    from mailgate.store.db import sqlite_file

    delay = 1.0
    while True:
        try:
            return state.runtime()
        except (OperationalError, InterfaceError) as exc:
            if sqlite_file(state.config.database_url) is not None:
                raise
            reason = str(exc.orig or exc).strip().splitlines()[0]
            log.error("database.unavailable", error=reason, retry_in=delay)
            extend = int((delay + 30) * 1_000_000)
            systemd.notify(f"STATUS=waiting for the database: {reason}\nEXTEND_TIMEOUT_USEC={extend}")
            time.sleep(delay)
            delay = min(30.0, delay * 2)


@main.command("smtp-password")
@click.argument("name")
def smtp_password(name: str) -> None:
    """Print a users-file line for NAME (asks for the password).

    Append it to the file named by listen.smtp.users_file, e.g.
    `mailgate smtp-password relay >> /etc/mailgate/smtp-users`; the password
    itself is stored nowhere.
    """
    from mailgate.ingest.smtp_auth import hash_password

    if not name or ":" in name or any(char.isspace() for char in name):
        fail("NAME must be one word without ':'")
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if len(password) < 12:
        fail("use a password of at least 12 characters")
    click.echo(f"{name}:{hash_password(password)}")


@main.command(hidden=True)
# The roles of mailgate/service/worker.py (not imported here: every command would pay for it).
@click.option("--role", type=click.Choice(["processing", "delivery"]), default="processing")
@pass_state
def worker(state: State, role: str) -> None:
    """A worker process that `mailgate run` starts (internal)."""
    state.daemon_logs = True
    import os
    import socket

    from mailgate.service.daemon import make_outbox_worker
    from mailgate.service.presence import Presence, default_name
    from mailgate.service.worker import (
        DELIVERY_FD_ENV,
        INSTANCE_ENV,
        WAKE_FD_ENV,
        die_with_parent,
        run_worker,
    )

    fd = os.environ.get(WAKE_FD_ENV)
    if fd is None:
        fail("this command is started by `mailgate run`, not by hand")
    die_with_parent(int(os.environ.get("MAILGATE_PARENT_PID", os.getppid())))
    runtime = _runtime_when_database_answers(state)
    runtime.reports_reload_problems = False  # the daemon reports them
    parent = os.environ.get(INSTANCE_ENV)
    runtime.presence = Presence(
        runtime.lease_sessions,
        name=state.config.instance.name or default_name(),
        kind=role,
        parent_id=int(parent) if parent else None,
    )
    delivery_fd = os.environ.get(DELIVERY_FD_ENV)
    delivery = socket.socket(fileno=int(delivery_fd)) if delivery_fd else None
    # Only delivery sends: processing must not need the relay's secrets.
    outbox = make_outbox_worker(runtime) if role == "delivery" else None
    sys.exit(run_worker(runtime, socket.socket(fileno=int(fd)), outbox, role=role, delivery=delivery))


@main.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON document: the findings, and every instance sharing the database with its roles.",
)
@pass_state
def doctor(state: State, as_json: bool) -> None:
    """Check configuration, database, rules, relay and queues; say what to fix.

    Also lists the instances that share the database (several on one
    PostgreSQL: docs/scale-out.md), which of them holds each IMAP account and
    the timers, and those that stopped beating.
    """
    from mailgate.service.doctor import run_doctor

    # No runtime first: that would migrate and create files the doctor should inspect.
    sys.exit(run_doctor(state.config, sys.stdout, source=state.config_path, as_json=as_json))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: State) -> None:
    """Apply pending database migrations."""
    from mailgate.store.db import current_revision, make_engine, upgrade

    engine = make_engine(state.config.database_url)
    applied = upgrade(engine)
    click.echo(f"schema {'upgraded to' if applied else 'already at'} {current_revision(engine)}")
