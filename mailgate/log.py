"""Structured logs: console lines on a terminal, JSON lines otherwise.

That is for the daemon. A command a person types prints its result on
stdout and only warnings and errors on stderr, as a sentence-like line
(``words``); ``--log-format json`` gives it JSON lines too.

Secrets never reach a log call: configuration objects mark passwords as
``repr=False`` and nothing logs raw messages or tokens.
"""

from __future__ import annotations

import sys
from typing import Any


def get_logger(name: str) -> Any:
    """A logger that imports structlog on first use.

    The CLI's modules log rarely, and `mailgate --help` should not pay for
    structlog's import (a third of its start-up).
    """
    return _LazyLogger(name)


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attribute)


def setup(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    import logging

    import structlog

    stream = stream or sys.stderr
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else _words
        if fmt == "words"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # One write() per line (PrintLogger writes the newline separately):
        # the daemon and its worker share stderr, and lines must not interleave.
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def _words(_logger: Any, _name: str, event: dict[str, Any]) -> str:
    """``mailgate: warning: rules.reload_failed: file=rules.yaml reason=...``"""
    level = event.pop("level", "info")
    event.pop("timestamp", None)
    text = str(event.pop("event", ""))
    details = " ".join(f"{key}={value}" for key, value in event.items())
    return f"mailgate: {level}: {text}" + (f": {details}" if details else "")
