"""The ``mailgate`` command (SPEC §4).

One module per area: ``daemon`` (run, doctor, db), ``intake`` (ingest,
import), ``rules``, ``tickets`` (and templates), ``queues`` (quarantine,
outbox, suppressions). They register on the ``main`` group defined here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mailgate import log as log_setup
from mailgate.defaults import config_path
from mailgate.errors import EX_TEMPFAIL
from mailgate.log import get_logger

if TYPE_CHECKING:
    from mailgate.config import Config

log = get_logger(__name__)


class State:
    def __init__(self, config_option: str | None, log_format: str | None = None) -> None:
        self.config_path: Path = config_path(config_option)
        self._config: Config | None = None
        self.log_format = log_format
        # Set by `run` and `worker` before they read the configuration: the
        # daemon logs as the configuration says; other commands only warn in words.
        self.daemon_logs = False

    @property
    def config(self) -> Config:
        # Imported here: pydantic's models cost a third of a second, which
        # `mailgate --help` and the pipe's fast path must not pay.
        from mailgate import config as config_module

        if self._config is None:
            try:
                self._config = config_module.load(self.config_path)
            except config_module.ConfigError as exc:
                fail(str(exc), code=EX_TEMPFAIL if "no such configuration" in str(exc) else 2)
            logging = self._config.logging
            if self.daemon_logs:
                log_setup.setup(self.log_format or logging.format, logging.level)
            else:
                quiet = "error" if logging.level == "error" else "warning"
                log_setup.setup(self.log_format or "words", quiet)
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
@click.option(
    "--log-format",
    type=click.Choice(["words", "json"]),
    help="Warnings and errors on stderr as lines of words (default for commands) or JSON.",
)
@click.pass_context
def main(ctx: click.Context, config_option: str | None, log_format: str | None) -> None:
    """mailgate: a helpdesk that lives in your mail.

    Mail to the helpdesk address becomes a ticket; replies stay on it; rules
    route it; requesters and agents answer from their own mail client.
    """
    log_setup.setup(log_format or "words", "warning")
    ctx.obj = State(config_option, log_format)


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
from mailgate.cli import kb as _kb  # noqa: E402, F401
from mailgate.cli import queues as _queues  # noqa: E402, F401
from mailgate.cli import records as _records  # noqa: E402, F401
from mailgate.cli import report as _report  # noqa: E402, F401
from mailgate.cli import rules as _rules  # noqa: E402, F401
from mailgate.cli import tickets as _tickets  # noqa: E402, F401
