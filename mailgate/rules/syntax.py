"""Reading positioned YAML values and collecting every problem on the way.

``yamlpos`` keeps the line and column of every key, value and list item
(0-based). Validation never stops at the first problem: each check records a
``Problem`` and returns None, and the caller carries on with the rest of the
file, so an admin fixes everything in one round.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from mailgate.rules.model import Problem
from mailgate.rules.yamlpos import Pos, PosList, PosMap


class Source:
    """One rules file being validated: its name and the problems found."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, pos: Pos, reason: str) -> None:
        self.problems.append(Problem(self.file, pos[0] + 1, pos[1] + 1, reason))


def node_pos(node: Any, fallback: Pos = (0, 0)) -> Pos:
    """Where a mapping or list itself starts."""
    return node.at if isinstance(node, PosMap | PosList) else fallback


def key_pos(mapping: Any, key: object) -> Pos:
    if isinstance(mapping, PosMap):
        return mapping.key_at.get(key, mapping.at)
    return (0, 0)


def value_pos(mapping: Any, key: object) -> Pos:
    if isinstance(mapping, PosMap):
        return mapping.value_at.get(key, mapping.at)
    return (0, 0)


def item_pos(sequence: Any, index: int) -> Pos:
    if isinstance(sequence, PosList) and index < len(sequence.item_at):
        return sequence.item_at[index]
    return node_pos(sequence)


def describe_type(value: object) -> str:
    """What an admin wrote, in words: ``a number (42)``, ``a list``..."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, str):
        return f'text "{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean "queue"?)`` for a close match, else the valid choices."""
    options = sorted(choices)
    if not options:
        return " (none are defined)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    if len(options) <= 12:
        return "; expected one of: " + ", ".join(options)
    return ""


def entries(
    src: Source, mapping: Any, allowed: Iterable[str], where: str
) -> Iterator[tuple[str, Any, Pos, Pos]]:
    """The known keys of ``mapping`` with positions; unknown keys are problems."""
    known = set(allowed)
    for key, value in mapping.items():
        if not isinstance(key, str) or key not in known:
            src.problem(
                key_pos(mapping, key),
                f'unknown key "{key}" in {where}{did_you_mean(str(key), known)}',
            )
            continue
        yield key, value, key_pos(mapping, key), value_pos(mapping, key)


def want_map(src: Source, value: object, pos: Pos, what: str) -> bool:
    if isinstance(value, dict):
        return True
    src.problem(pos, f"{what} must be a mapping (key: value lines), got {describe_type(value)}")
    return False


def want_text(src: Source, value: object, pos: Pos, what: str) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    hint = " (put it in quotes)" if isinstance(value, int | float | date) else ""
    src.problem(pos, f"{what} must be text, got {describe_type(value)}{hint}")
    return None


def want_bool(src: Source, value: object, pos: Pos, what: str) -> bool | None:
    if isinstance(value, bool):
        return value
    src.problem(pos, f"{what} must be true or false, got {describe_type(value)}")
    return None


def want_texts(src: Source, value: object, pos: Pos, what: str) -> list[str] | None:
    """One text or a non-empty list of texts, each with its own position."""
    if isinstance(value, list):
        if not value:
            src.problem(pos, f"{what} must not be an empty list")
            return None
        texts = [want_text(src, item, item_pos(value, i), what) for i, item in enumerate(value)]
        return None if any(text is None for text in texts) else [t for t in texts if t]
    text = want_text(src, value, pos, what)
    return None if text is None else [text]


def want_choice(src: Source, value: object, pos: Pos, what: str, choices: Iterable[str]) -> str | None:
    ordered = list(choices)
    options = set(ordered)
    if not isinstance(value, str):
        src.problem(pos, f"{what} must be one of {', '.join(ordered)}, got {describe_type(value)}")
        return None
    text = want_text(src, value, pos, what)
    if text is None:
        return None
    if text not in options:
        src.problem(pos, f'{what} "{text}" is not known{did_you_mean(text, options)}')
        return None
    return text
