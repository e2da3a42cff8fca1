"""How one string is compared with a pattern from the rules file.

Four kinds: ``contains`` (substring), ``equals``, ``glob`` (``*``, ``?``,
``[abc]``) and ``regex`` (Python ``re`` syntax, searched anywhere). All are
case-insensitive unless the rule says ``case_sensitive: true``; the caller
then passes the value lower-cased (the message view keeps lower-cased copies).

Everything is decided once, at load time. A glob such as ``*.example.org``
is really ``str.endswith``, and ``helpdesk@example.com`` is an equality; the
regex that ``fnmatch`` would build for them costs several times more, because
its leading ``.*`` scans and backtracks. With a thousand rules per message
that difference is the whole time budget.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any

KINDS: tuple[str, ...] = ("contains", "equals", "glob", "regex")
_WILD = re.compile(r"[*?\[]")

StrTest = Callable[[str], bool]
Getter = Callable[[Any], Any]


def quote(text: str) -> str:
    """A value as explanations show it: quoted, one line, at most 60 chars."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    return '"' + shown.replace('"', '\\"').replace("\n", "\\n") + '"'


def _glob_form(patterns: list[str], flags: int) -> tuple[str, Any]:
    """The cheapest test for a list of globs: equality, prefix, suffix or regex."""
    exact: set[str] = set()
    suffixes: list[str] = []
    prefixes: list[str] = []
    rest: list[str] = []
    for pattern in patterns:
        inner = pattern.strip("*")
        if _WILD.search(inner):
            rest.append(pattern)
        elif pattern == inner:
            exact.add(pattern)
        elif pattern == "*" + inner and inner:
            suffixes.append(inner)
        elif pattern == inner + "*" and inner:
            prefixes.append(inner)
        else:
            rest.append(pattern)
    if rest or (prefixes and (exact or suffixes)):
        # Other shapes are rare; one anchored regex keeps them correct.
        regex = re.compile("|".join(fnmatch.translate(p) for p in patterns), flags)
        return "match", regex.match
    if exact and suffixes:
        # "example.org" together with "*.example.org" is the usual way to say
        # "this domain and its subdomains".
        return "exact_or_suffix", (frozenset(exact), tuple(suffixes))
    if suffixes:
        return "endswith", tuple(suffixes)
    if prefixes:
        return "startswith", tuple(prefixes)
    return ("equals", next(iter(exact))) if len(exact) == 1 else ("member", frozenset(exact))


class TextMatcher:
    """One or more patterns of one kind; true when any of them matches."""

    __slots__ = ("arg", "case_sensitive", "kind", "op", "patterns", "test")

    def __init__(self, kind: str, patterns: list[str], case_sensitive: bool = False) -> None:
        self.kind = kind
        self.patterns = tuple(patterns)
        self.case_sensitive = case_sensitive
        flags = 0 if case_sensitive else re.IGNORECASE
        needles = list(patterns) if case_sensitive else [p.lower() for p in patterns]
        # The shape of the test ("equals", "endswith"...) and its argument;
        # the rule index reads these to skip rules that cannot match.
        self.op: str
        self.arg: Any
        if kind == "contains":
            self.op, self.arg = (
                ("contains", needles[0]) if len(needles) == 1 else ("contains_any", tuple(needles))
            )
        elif kind == "equals":
            self.op, self.arg = (
                ("equals", needles[0]) if len(needles) == 1 else ("member", frozenset(needles))
            )
        elif kind == "glob":
            self.op, self.arg = _glob_form(needles, flags)
        else:
            self.op, self.arg = "search", _compile_regexes(patterns, flags)
        self.test: StrTest = self.over(lambda value: value)

    def over(self, get: Getter) -> Callable[[Any], bool]:
        """A test of ``get(x)``, fused into one closure for the common shapes."""
        op, arg = self.op, self.arg
        if op == "contains":
            return lambda x: arg in get(x)
        if op == "equals":
            return lambda x: get(x) == arg
        if op == "member":
            return lambda x: get(x) in arg
        if op == "endswith":
            return lambda x: get(x).endswith(arg)
        if op == "startswith":
            return lambda x: get(x).startswith(arg)
        if op == "match":
            return lambda x: arg(get(x)) is not None
        if op == "exact_or_suffix":
            exact, suffixes = arg

            def exact_or_suffix(x: Any) -> bool:
                value = get(x)
                return value in exact or value.endswith(suffixes)

            return exact_or_suffix
        if op == "search" and len(arg) == 1:
            find = arg[0]
            return lambda x: find(get(x)) is not None
        if op == "contains_any":

            def contains_any(x: Any) -> bool:
                value = get(x)
                for needle in arg:  # noqa: SIM110 - a loop beats any() per call
                    if needle in value:
                        return True
                return False

            return contains_any

        def search(x: Any) -> bool:
            value = get(x)
            for find in arg:  # noqa: SIM110 - as above
                if find(value) is not None:
                    return True
            return False

        return search

    def over_any(self, get: Getter) -> Callable[[Any], bool]:
        """A test that any string in the sequence ``get(x)`` matches."""
        op, arg = self.op, self.arg
        if op == "equals":
            return lambda x: arg in get(x)
        if op == "member":
            return lambda x: not arg.isdisjoint(get(x))
        test = self.test

        def any_value(x: Any) -> bool:
            for value in get(x):  # noqa: SIM110 - a loop beats any() per call
                if test(value):
                    return True
            return False

        return any_value

    def matches(self, value: str) -> bool:
        """Whether ``value`` matches, lower-casing it when the match ignores case."""
        return self.test(value if self.case_sensitive else value.lower())

    def first_match(self, values: Iterable[str]) -> str | None:
        """The first of ``values`` that matches, for explanations."""
        for value in values:
            if self.matches(value):
                return value
        return None

    def describe(self) -> str:
        """``glob "*.example.org"`` or ``contains any of "a", "b"``."""
        shown = ", ".join(quote(p) for p in self.patterns)
        many = "any of " if len(self.patterns) > 1 else ""
        case = " (case-sensitive)" if self.case_sensitive else ""
        return f"{self.kind} {many}{shown}{case}"


def _compile_regexes(patterns: list[str], flags: int) -> tuple[Callable[[str], Any], ...]:
    try:
        return (re.compile("|".join(f"(?:{p})" for p in patterns), flags).search,)
    except re.error:
        # Inline global flags such as "(?x)" only work at the start of a
        # pattern, so such patterns cannot be joined; keep them apart.
        return tuple(re.compile(p, flags).search for p in patterns)


def check_regex(pattern: str) -> str | None:
    """The compile error of ``pattern`` as an admin-readable string, or None."""
    try:
        re.compile(pattern)
    except re.error as error:
        where = f" at position {error.pos}" if error.pos is not None else ""
        return f"bad regex {quote(pattern)}: {error.msg}{where}"
    return None
