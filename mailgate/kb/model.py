"""Knowledge-base articles as plain values (issue 14).

An article is one Markdown file: front matter says what it is (id, a title
per language, keywords, the queues and categories it belongs to), the body
holds one section per language. Everything here is frozen so a loaded set
can be shared by every stage and swapped whole on reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# The languages an article is written in; the first is the fallback.
LANGUAGES = ("en", "nl")


@dataclass(frozen=True)
class Problem:
    """One reason a file cannot be used, with where it is."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Article:
    id: str
    titles: dict[str, str]
    # Keywords per language; "*" holds those for every language (error codes, product names).
    keywords: dict[str, tuple[str, ...]]
    # The Markdown source and its safe HTML, per language.
    bodies: dict[str, str]
    html: dict[str, str]
    queues: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    path: Path = Path()

    def language_for(self, language: str | None) -> str:
        """The language to show: the one asked for when written, else English, else any."""
        if language and language in self.bodies:
            return language
        return LANGUAGES[0] if LANGUAGES[0] in self.bodies else next(iter(self.bodies))

    def title(self, language: str | None) -> str:
        lang = language if language in self.titles else self.language_for(language)
        return self.titles.get(lang) or next(iter(self.titles.values()))

    def keywords_for(self, language: str) -> tuple[str, ...]:
        return (*self.keywords.get("*", ()), *self.keywords.get(language, ()))


@dataclass(frozen=True)
class KnowledgeBase:
    """A loaded, valid set of articles (possibly empty), by id."""

    articles: dict[str, Article] = field(default_factory=dict)
    folder: Path | None = None

    def get(self, article_id: str) -> Article | None:
        return self.articles.get(article_id.strip().lower())

    def __len__(self) -> int:
        return len(self.articles)


class KbError(Exception):
    """The folder holds broken files; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
