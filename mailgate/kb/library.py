"""The running knowledge base: articles plus their index, swapped whole.

Like the rules, a reload that finds any broken file keeps the last good set
and says why (once per distinct set of problems). At start there is no last
good set: a broken folder then leaves the helpdesk running without articles
rather than refusing mail, and `mailgate kb check` names every problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from mailgate.config import Config
from mailgate.kb.loader import check_folder
from mailgate.kb.model import KnowledgeBase, Problem
from mailgate.kb.search import SearchIndex

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Library:
    kb: KnowledgeBase = field(default_factory=KnowledgeBase)
    index: SearchIndex = field(default_factory=lambda: SearchIndex(KnowledgeBase()))
    # The problems of the newest attempt that was refused (empty when it loaded).
    refused: tuple[Problem, ...] = ()
    # Modification stamps of the loaded files, to skip rebuilding an unchanged set.
    stamp: tuple[tuple[str, float, int], ...] = ()


def _stamp(config: Config) -> tuple[tuple[str, float, int], ...]:
    if config.kb is None:
        return ()
    folder = config.path(config.kb.folder)
    stamps = []
    for path in sorted(folder.rglob("*.md")) if folder.is_dir() else []:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append((str(path), stat.st_mtime, stat.st_size))
    return tuple(stamps)


def load_library(config: Config) -> Library:
    """The configured knowledge base, or an empty one (with its problems) when broken."""
    return reload_library(config, Library(), report=True)


def reload_library(config: Config, current: Library, *, report: bool) -> Library:
    if config.kb is None:
        return Library()
    stamp = _stamp(config)
    if stamp == current.stamp and current.stamp:
        return current
    kb, problems = check_folder(config.path(config.kb.folder))
    if problems:
        refused = tuple(problems)
        if report and refused != current.refused:
            log.error("kb.reload_refused", problems=[str(p) for p in problems], kept=len(current.kb.articles))
        return Library(current.kb, current.index, refused, current.stamp)
    log.info("kb.loaded", articles=len(kb.articles), folder=str(kb.folder))
    return Library(kb, SearchIndex(kb), (), stamp)
