"""Skipping rules that cannot match, without changing what matches.

Big rule files are mostly "mail from this customer's domain goes to that
queue" or "mail to this address goes there". Testing each of those one by
one costs about half a microsecond per rule in CPython; looking the sender's
domain up in a dict costs that once. So each rule gets a *screen*: a
necessary condition of the form "this lower-cased value equals X" or "ends
with .X / @X", taken from its conditions. Per message we look up which
screens hit, and test only those rules plus the ones without a screen, in
file order, so first-match-wins is exactly what it would be without the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailgate.rules import conditions as c
from mailgate.rules.view import MessageView

# Suffix screens only cut at these characters, so a message's candidate
# suffixes are few: "a@b.example.org" gives "@b.example.org", ".example.org", ".org".
_CUTS = ".@"


@dataclass(frozen=True)
class Screen:
    """The rule can only match if a value of ``source`` is in ``exact`` or ends
    with one of ``suffixes``."""

    source: str
    exact: frozenset[str]
    suffixes: tuple[str, ...]


def _from_matcher(source: str, op: str, arg: Any) -> list[Screen] | None:
    if op == "equals":
        return [Screen(source, frozenset({arg}), ())]
    if op == "member":
        return [Screen(source, frozenset(arg), ())]
    suffixes: tuple[str, ...] = ()
    exact: frozenset[str] = frozenset()
    if op == "endswith":
        suffixes = arg
    elif op == "exact_or_suffix":
        exact, suffixes = arg
    else:
        return None
    if not all(suffix[0] in _CUTS for suffix in suffixes):
        return None
    return [Screen(source, exact, suffixes)]


def screens(condition: c.Condition) -> list[Screen] | None:
    """Alternative screens (any may hit), or None when the rule has none."""
    if isinstance(condition, c.FieldMatch | c.AnyValueMatch | c.HeaderMatch):
        matcher = condition.matcher
        if matcher is None or matcher.case_sensitive:
            return None
        if isinstance(condition, c.HeaderMatch):
            source = "header:" + condition.name.lower()
        elif isinstance(condition, c.FieldMatch):
            source = condition.source
        else:
            source = condition.attr
        return _from_matcher(source, matcher.op, matcher.arg)
    if isinstance(condition, c.AllOf):
        # Every child is necessary, so any child's screen will do.
        for child in condition.children:
            found = screens(child)
            if found is not None:
                return found
        return None
    if isinstance(condition, c.AnyOf):
        union: list[Screen] = []
        for child in condition.children:
            found = screens(child)
            if found is None:
                return None
            union.extend(found)
        return union
    return None


def _values(view: MessageView, source: str) -> Sequence[str]:
    if source.startswith("header:"):
        return view.headers_lower.get(source[7:], ())
    value = getattr(view, source)
    return (value,) if isinstance(value, str) else tuple(value)


def _suffixes(value: str) -> list[str]:
    return [value[i:] for i, char in enumerate(value) if char in _CUTS]


class RuleIndex:
    """Positions of the rules worth testing for one message, in file order."""

    def __init__(self, conditions: Sequence[c.Condition]) -> None:
        self.always: list[int] = []
        self.exact: dict[str, dict[str, set[int]]] = {}
        self.suffix: dict[str, dict[str, set[int]]] = {}
        for position, condition in enumerate(conditions):
            found = screens(condition)
            if found is None:
                self.always.append(position)
                continue
            for screen in found:
                for value in screen.exact:
                    self.exact.setdefault(screen.source, {}).setdefault(value, set()).add(position)
                for suffix in screen.suffixes:
                    self.suffix.setdefault(screen.source, {}).setdefault(suffix, set()).add(position)
        self.screened = len(conditions) - len(self.always)

    def positions(self, view: MessageView) -> list[int]:
        """Unscreened rules plus the screened ones whose screen hits."""
        if not self.screened:
            return self.always
        hits: set[int] = set()
        for source, table in self.exact.items():
            for value in _values(view, source):
                found = table.get(value)
                if found:
                    hits |= found
        for source, table in self.suffix.items():
            for value in _values(view, source):
                for suffix in _suffixes(value):
                    found = table.get(suffix)
                    if found:
                        hits |= found
        if not hits:
            return self.always
        return sorted([*self.always, *hits])
