"""`backup` and `restore`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mailgate.cli import State, fail, main, pass_state

_PG_BIN = click.option(
    "--pg-bin",
    type=click.Path(file_okay=False, path_type=Path),
    help="PostgreSQL only: the folder of pg_dump and pg_restore "
    "(default: PATH, then /usr/lib/postgresql/VERSION/bin).",
)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--include-secrets", is_flag=True, help="Also copy the reply key into the backup.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_PG_BIN
@pass_state
def backup(state: State, file: Path, include_secrets: bool, no_progress: bool, pg_bin: Path | None) -> None:
    """Write a consistent, compressed backup of this installation to FILE.

    Safe while the daemon runs: nothing stops, no mail waits. SQLite is
    copied with its online backup; PostgreSQL with pg_dump from one snapshot
    (pg_dump of the server's major version or newer must be installed), and
    the server's settings for point-in-time recovery are checked.
    """
    from mailgate.records.backup import BackupError, make_backup

    config = state.config
    if file.exists():
        fail(f"{file} exists; name a new file")
    from tqdm import tqdm

    bar: Any = tqdm(unit="B", unit_scale=True, desc="backup", disable=no_progress, file=sys.stderr)

    def pages(done: int, total: int) -> None:
        bar.total = total
        bar.update(done)

    try:
        result = make_backup(config, file, include_secrets=include_secrets, progress=pages, pg_bin=pg_bin)
    except (BackupError, OSError) as exc:
        fail(f"backup failed: {exc}")
    finally:
        bar.close()
    counts = ", ".join(f"{n} {name}" for name, n in result.counts.items())
    waiting = (
        f"{result.waiting} journal segments and piped messages not yet imported"
        if result.database["kind"] == "sqlite"
        else f"{result.waiting} piped messages not yet imported"
    )
    click.echo(
        f"backup written to {result.path} ({result.size / 1e6:.1f} MB, {result.seconds:.1f} s): {counts}; "
        + waiting
    )
    if not include_secrets:
        click.echo(f"the reply key is not in it: keep {config.path(config.secrets.reply_key_file)} safe too")
    if result.settings:
        _postgresql_advice(result.database, result.settings)


def _postgresql_advice(database: dict[str, Any], settings: dict[str, str]) -> None:
    """What the server offers besides the nightly dump: point-in-time recovery."""
    click.echo(
        f"server: PostgreSQL {settings['server_version']}; dumped with pg_dump {database['pg_dump_version']} "
        f"({database['pg_dump']})"
    )
    pitr = settings["wal_level"] in ("replica", "logical") and settings["archive_mode"] in ("on", "always")
    archive = settings["archive_command"] or "(none)"
    click.echo(
        f"  point-in-time recovery: {'ready' if pitr else 'not set up'} "
        f"(wal_level={settings['wal_level']}, archive_mode={settings['archive_mode']}, "
        f"archive_command={archive})"
    )
    if not pitr:
        click.echo(
            "  a restore brings back the moment of the last backup; to lose less, archive the WAL "
            "(wal_level=replica, archive_mode=on, archive_command) with a base backup from pg_basebackup "
            "(docs/operations.md)"
        )


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_PG_BIN
@pass_state
def restore(state: State, file: Path, pg_bin: Path | None) -> None:
    """Restore a backup made by `mailgate backup` into this (empty) installation.

    Refuses when the database already holds mail or a daemon runs on it;
    every file is checked against the backup's manifest first. On PostgreSQL
    the database named by database.url must exist and be empty (createdb);
    pg_restore loads it in one transaction. Start the daemon afterwards: it
    imports the mail that was still waiting.
    """
    from mailgate.records.backup import BackupError
    from mailgate.records.restore import restore_backup

    try:
        result = restore_backup(state.config, file, pg_bin=pg_bin)
    except (BackupError, OSError, ValueError) as exc:
        fail(f"restore refused: {exc}")
    counts = ", ".join(f"{n} {name}" for name, n in (result.manifest.get("counts") or {}).items())
    made = result.manifest.get("created_at")
    click.echo(f"restored {file} (made {made}) into {result.database}: {counts}")
    waiting = "journal segments and piped messages" if result.kind == "sqlite" else "piped messages"
    click.echo(f"{result.waiting} {waiting} are imported when the daemon starts")
    if result.key_note.startswith("WARNING"):
        click.echo(f"mailgate: {result.key_note}", err=True)
    else:
        click.echo(result.key_note)


@main.group()
def privacy() -> None:
    """A person's data on request: export it, or erase it (GDPR/AVG)."""


@privacy.command("export")
@click.argument("address")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Default: ADDRESS.zip.")
@pass_state
def privacy_export(state: State, address: str, output: Path | None) -> None:
    """Write everything held about ADDRESS as a readable zip archive."""
    from mailgate.records.privacy import export, normalise

    try:
        address = normalise(address)
    except ValueError as exc:
        fail(str(exc))
    target = output or Path(f"{address}.zip")
    if target.exists():
        fail(f"{target} exists; name a new file with --output")
    runtime = state.runtime(rules=False)
    held = export(runtime.sessions, address, target)
    click.echo(
        f"wrote {target}: {len(held.tickets)} tickets, {len(held.own_articles)} messages written by "
        f"{address}, {len(held.articles)} that name it, {len(held.inbound) + len(held.outbox)} mails"
    )


@privacy.command("erase")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def privacy_erase(state: State, address: str, yes: bool) -> None:
    """Remove or anonymise everything held about ADDRESS, everywhere.

    Tickets and their times stay (reports keep their figures); the address,
    the person's names, what they wrote and their attachments go. Running it
    again changes nothing.
    """
    from mailgate.records.privacy import BlobsBusy, erase, normalise

    try:
        address = normalise(address)
    except ValueError as exc:
        fail(str(exc))
    if not yes:
        click.confirm(f"Erase everything held about {address}? This cannot be undone", abort=True, err=True)
    runtime = state.runtime(rules=False)
    try:
        held = erase(runtime.sessions, runtime.engine, address)
    except BlobsBusy as exc:
        fail(f"nothing was erased: {exc}; try again when it has finished")
    if held.empty():
        click.echo(f"nothing is held about {address}")
        return
    click.echo(
        f"erased {address}: {len(held.tickets)} tickets anonymised, {len(held.own_articles)} messages "
        f"it wrote emptied, {len(held.articles)} others cleaned, "
        f"{len(held.inbound) + len(held.outbox)} mails rewritten; "
        "recorded as a 'privacy_erased' event without the address"
    )
    waiting = _waiting_mentions(state, address)
    if waiting:
        click.echo(
            f"mailgate: {waiting} messages not yet imported mention {address}: run this again "
            "once the daemon has imported them",
            err=True,
        )


def _waiting_mentions(state: State, address: str) -> int:
    from mailgate.store.db import sqlite_file
    from mailgate.store.spool import Spool

    config = state.config
    files: list[Path] = []
    database = sqlite_file(config.database_url)
    if database is not None:
        files += Spool.for_database(database.resolve()).segments()
    new = config.path(config.pipe_folder) / "new"
    if new.is_dir():
        files += list(new.iterdir())
    needle = address.encode()
    return sum(1 for path in files if needle in path.read_bytes().lower())


@main.command()
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing.")
@click.option("--as-of", help="As if it were this date (YYYY-MM-DD or ISO time, UTC): what goes by then.")
@click.option("--json", "as_json", is_flag=True, help="What went (or would go) as one JSON object.")
@pass_state
def retention(state: State, dry_run: bool, as_of: str | None, as_json: bool) -> None:
    """Apply the retention policies of the configuration now (the daemon does it daily).

    Raw mails and attachments of old resolved/closed tickets, whole old
    tickets (anonymised: report figures stay), old quarantined mail; each
    only when its `retention:` limit is set. Running it again changes nothing.
    """
    import json
    from datetime import UTC, datetime

    from mailgate.records.retention import parse_as_of, run

    try:
        now = parse_as_of(as_of) if as_of else datetime.now(UTC)
    except ValueError:
        fail(f"--as-of: expected a date like 2027-01-31, got {as_of!r}")
    policy = state.config.retention
    if not policy.enabled:
        click.echo("retention is off: no retention limit is set in the configuration", err=True)
    runtime = state.runtime(rules=False)
    plan = run(runtime.sessions, runtime.engine, policy, now, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, **plan.as_dict()}, indent=2))
        return
    verb = "would go" if dry_run else "removed"
    click.echo(f"retention as of {now:%Y-%m-%d %H:%M} UTC{' (dry run: nothing changed)' if dry_run else ''}")
    for name, section, days in (
        ("raw mail and attachments", plan.originals, policy.originals_days),
        ("whole tickets anonymised", plan.anonymise, policy.tickets_days),
    ):
        if days is None:
            click.echo(f"  {name}: off")
            continue
        refs = section["tickets"]
        shown = ", ".join(refs[:50]) + (f" and {len(refs) - 50} more" if len(refs) > 50 else "")
        click.echo(
            f"  {name} (after {days} days): {len(refs)} tickets, {section['mails']} mails and "
            f"{section['attachments']} attachments {verb}{': ' + shown if refs else ''}"
        )
    if policy.quarantine_days is None:
        click.echo("  quarantined and dropped mail: off")
    else:
        ids = ", ".join(str(i) for i in plan.quarantine[:50])
        click.echo(
            f"  quarantined and dropped mail (after {policy.quarantine_days} days): "
            f"{len(plan.quarantine)} messages {verb}{': ' + ids if ids else ''}"
        )
