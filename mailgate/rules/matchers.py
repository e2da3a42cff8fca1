"""How one string is compared with a pattern from the rules file.

Four kinds: ``contains`` (substring), ``equals``, ``glob`` (``*``, ``?``,
``[abc]``) and ``regex`` (Python ``re`` syntax, searched anywhere). All are
case-insensitive unless the rule says ``case_sensitive: true``. Patterns are
compiled once, when the file is loaded; several patterns in one condition
are joined into a single regex where that is possible, so a list of fifty
domains costs one regex call per message, not fifty.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

KINDS: tuple[str, ...] = ("contains", "equals", "glob", "regex")


def _quote(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return '"' + shown.replace('"', '\\"').replace("\n", "\\n") + '"'


class TextMatcher:
    """One or more patterns of one kind; true when any of them matches."""

    __slots__ = ("_needles", "_regexes", "case_sensitive", "kind", "patterns")

    def __init__(self, kind: str, patterns: list[str], case_sensitive: bool = False) -> None:
        self.kind = kind
        self.patterns = tuple(patterns)
        self.case_sensitive = case_sensitive
        flags = 0 if case_sensitive else re.IGNORECASE
        self._needles: tuple[str, ...] = tuple(
            p if case_sensitive else p.lower() for p in patterns
        )
        self._regexes: tuple[re.Pattern[str], ...] = ()
        if kind == "glob":
            # fnmatch.translate anchors each glob at both ends ("\Z").
            self._regexes = (re.compile("|".join(fnmatch.translate(p) for p in patterns), flags),)
        elif kind == "regex":
            try:
                self._regexes = (re.compile("|".join(f"(?:{p})" for p in patterns), flags),)
            except re.error:
                # Inline global flags such as "(?x)" only work at the start of
                # a pattern, so such patterns cannot be joined; keep them apart.
                self._regexes = tuple(re.compile(p, flags) for p in patterns)

    def matches(self, value: str, value_lower: str | None = None) -> bool:
        """Whether ``value`` matches; pass ``value_lower`` if already computed."""
        kind = self.kind
        if kind == "contains":
            haystack = value if self.case_sensitive else (value_lower or value.lower())
            return any(needle in haystack for needle in self._needles)
        if kind == "equals":
            candidate = value if self.case_sensitive else (value_lower or value.lower())
            return candidate in self._needles
        if kind == "glob":
            return self._regexes[0].match(value) is not None
        return any(regex.search(value) is not None for regex in self._regexes)

    def matches_any(self, values: Iterable[str]) -> bool:
        """Whether any of ``values`` matches."""
        return any(self.matches(value) for value in values)

    def first_match(self, values: Iterable[str]) -> str | None:
        """The first of ``values`` that matches, for explanations."""
        for value in values:
            if self.matches(value):
                return value
        return None

    def describe(self) -> str:
        """``glob "*.example.org"`` or ``contains any of "a", "b"``."""
        shown = ", ".join(_quote(p) for p in self.patterns)
        many = "any of " if len(self.patterns) > 1 else ""
        case = " (case-sensitive)" if self.case_sensitive else ""
        return f"{self.kind} {many}{shown}{case}"


def check_regex(pattern: str) -> str | None:
    """The compile error of ``pattern`` as an admin-readable string, or None."""
    try:
        re.compile(pattern)
    except re.error as error:
        where = f" at position {error.pos}" if error.pos is not None else ""
        return f"bad regex {_quote(pattern)}: {error.msg}{where}"
    return None


quote = _quote
