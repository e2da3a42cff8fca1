"""Reload when the admin's files change on disk, not only on SIGHUP.

A cheap poll of modification times (rules, agents, templates) every couple
of seconds: no inotify dependency, and it works on every filesystem the
configuration may live on. A change calls the same reload as SIGHUP, which
keeps the last good rules when the new file is broken.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from mailgate.config import Config

log = structlog.get_logger(__name__)


def watched_paths(config: Config) -> list[Path]:
    paths = [config.path(value) for value in (config.rules, config.agents) if value]
    if config.templates:
        paths.append(config.path(config.templates))
    if config.kb is not None:
        paths.append(config.path(config.kb.folder))
    return paths


def _stamp(paths: Iterable[Path]) -> tuple[tuple[str, float, int], ...]:
    stamps = []
    for path in paths:
        candidates = [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]
        for candidate in candidates:
            try:
                stat = candidate.stat()
            except OSError:
                stamps.append((str(candidate), 0.0, -1))
                continue
            stamps.append((str(candidate), stat.st_mtime, stat.st_size))
    return tuple(stamps)


class FileWatcher:
    def __init__(self, paths: list[Path], on_change: Callable[[], object], interval: float = 2.0) -> None:
        self._paths = paths
        self._on_change = on_change
        self._interval = interval

    def run(self, stop: threading.Event) -> None:
        if not self._paths:
            # Nothing to watch, but stay alive: the watchdog counts this thread.
            stop.wait()
            return
        last = _stamp(self._paths)
        while not stop.wait(self._interval):
            current = _stamp(self._paths)
            if current != last:
                last = current
                log.info("reload.file_changed", paths=[str(p) for p in self._paths])
                try:
                    self._on_change()
                except Exception as exc:  # a failed reload keeps the old rules
                    log.error("reload.failed", error=str(exc))
