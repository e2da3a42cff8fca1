"""`mailgate report`: first response, resolution, service levels, quality and volume."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import click

from mailgate.cli import State, fail, main, pass_state


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: expected a date like 2026-11-01, got {value!r}")


@main.command()
@click.option("--days", type=click.IntRange(1, 3660), default=30, show_default=True, help="Period length.")
@click.option("--since", help="First day of the period (YYYY-MM-DD); overrides --days.")
@click.option("--until", help="Last day of the period (YYYY-MM-DD); default today.")
@click.option("--queue", help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="The whole report as one JSON object.")
@click.option("--csv", "as_csv", is_flag=True, help="Tickets created and resolved per day, as CSV.")
@click.option("--csv-sla", "as_sla_csv", is_flag=True,
              help="Service-level compliance per priority and queue, as CSV.")  # fmt: skip
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write an HTML page with charts to this file.")  # fmt: skip
@pass_state
def report(
    state: State,
    days: int,
    since: str | None,
    until: str | None,
    queue: str | None,
    as_json: bool,
    as_csv: bool,
    as_sla_csv: bool,
    html_file: Path | None,
) -> None:
    """How the helpdesk is doing: first-response and resolution times per
    priority, service-level compliance per priority and queue, first-contact
    resolution, satisfaction, backlog, and volume by queue and category.

    \b
      mailgate report                      # the last 30 days, as tables
      mailgate report --since 2026-10-01 --until 2026-10-31 --json
      mailgate report --queue network --csv > network.csv
      mailgate report --csv-sla > sla.csv   # targets met and breached
      mailgate report --html report.html   # a page with charts, no scripts
    """
    from mailgate.reports import Period, build_report
    from mailgate.reports.render import daily_csv, html, sla_csv, text
    from mailgate.store.db import read_only

    if as_json + as_csv + as_sla_csv > 1:
        fail("choose one of --json, --csv and --csv-sla")
    last = _day(until, "--until") or datetime.now(UTC).date()
    first = _day(since, "--since") or last - timedelta(days=days - 1)
    if first > last:
        fail("--since is after --until")
    period = Period(
        datetime.combine(first, time.min, tzinfo=UTC),
        datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
    )
    runtime = state.runtime(rules=False)
    with read_only(), runtime.engine.connect() as connection:
        found = build_report(connection, period, queue=queue)
    if html_file is not None:
        try:
            html_file.write_text(html(found), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {html_file}: {exc.strerror}")
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    elif as_csv:
        click.echo(daily_csv(found), nl=False)
    elif as_sla_csv:
        click.echo(sla_csv(found), nl=False)
    else:
        click.echo(text(found), nl=False)
        if html_file is not None:
            click.echo(f"HTML page written to {html_file}")
