"""The ``mailgate`` command (SPEC §4).

One module per area: ``daemon`` (run, doctor, db), ``intake`` (ingest,
import), ``rules``, ``tickets`` (and templates), ``queues`` (quarantine,
outbox, suppressions). They register on the ``main`` group defined here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
import structlog

from mailgate import config as config_module
from mailgate import log as log_setup
from mailgate.errors import EX_TEMPFAIL

log = structlog.get_logger(__name__)


class State:
    def __init__(self, config_option: str | None) -> None:
        self.config_path = config_module.config_path(config_option)
        self._config: config_module.Config | None = None

    @property
    def config(self) -> config_module.Config:
        if self._config is None:
            try:
                self._config = config_module.load(self.config_path)
            except config_module.ConfigError as exc:
                fail(str(exc), code=EX_TEMPFAIL if "no such configuration" in str(exc) else 2)
            log_setup.setup(self._config.logging.format, self._config.logging.level)
        return self._config

    def runtime(self, *, migrate: bool = True, rules: bool = True) -> Any:
        from mailgate.rules import RulesError
        from mailgate.service.runtime import build

        try:
            return build(self.config, migrate=migrate, with_rules=rules)
        except RulesError as exc:
            # Each problem names its file (rules or agents) and line.
            fail("the configuration has problems:\n" + "\n".join(str(p) for p in exc.problems), code=2)


def fail(message: str, *, code: int = 1) -> NoReturn:
    click.echo(f"mailgate: {message}", err=True)
    sys.exit(code)


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_option",
    metavar="CONFIG",
    help="Configuration file (default: $MAILGATE_CONFIG, else ./config/mailgate.yaml).",
)
@click.pass_context
def main(ctx: click.Context, config_option: str | None) -> None:
    """mailgate: a helpdesk that lives in your mail.

    Mail to the helpdesk address becomes a ticket; replies stay on it; rules
    route it; requesters and agents answer from their own mail client.
    """
    log_setup.setup("auto", "warning")
    ctx.obj = State(config_option)


# -- output helpers --------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]], max_width: int = 60) -> None:
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any, max_width: int) -> str:
    text = " ".join(str("" if value is None else value).split())
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def short_time(value: str | None) -> str:
    return "" if not value else value[:16].replace("T", " ")


def emit(
    rows: list[dict[str, Any]],
    *,
    as_json: bool,
    empty: str,
    headers: list[str],
    cells: Callable[[dict[str, Any]], list[Any]],
) -> None:
    """Print a listing: JSON for machines, a table for people, a sentence when empty."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        click.echo(empty)
    else:
        table(headers, [cells(row) for row in rows])


# Importing the modules registers their commands on `main`.
from mailgate.cli import agents as _agents  # noqa: E402, F401
from mailgate.cli import daemon as _daemon  # noqa: E402, F401
from mailgate.cli import intake as _intake  # noqa: E402, F401
from mailgate.cli import queues as _queues  # noqa: E402, F401
from mailgate.cli import report as _report  # noqa: E402, F401
from mailgate.cli import rules as _rules  # noqa: E402, F401
from mailgate.cli import tickets as _tickets  # noqa: E402, F401
