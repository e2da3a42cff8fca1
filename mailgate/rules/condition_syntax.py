"""From the ``if:`` part of a rule in YAML to a tree of ``Condition`` objects.

Several keys in one mapping must all match (an implicit ``all``). Every
problem is reported with its position; a condition with a problem becomes
None and the rule is dropped, but checking continues.
"""

from __future__ import annotations

import re
from typing import Any

from mailgate.rules import conditions as c
from mailgate.rules.auth import METHODS, RESULTS
from mailgate.rules.hours import BusinessHours
from mailgate.rules.language import SUPPORTED
from mailgate.rules.matchers import KINDS, TextMatcher, check_regex
from mailgate.rules.model import STATUSES
from mailgate.rules.syntax import (
    Source,
    describe_type,
    did_you_mean,
    entries,
    item_pos,
    want_bool,
    want_map,
    want_texts,
)
from mailgate.rules.yamlpos import Pos

# key -> (view attribute, lower-cased attribute, default match kind).
# Addresses are lower-cased by the view already, so they are their own copy.
_FIELDS: dict[str, tuple[str, str, str]] = {
    "from": ("from_address", "from_address", "glob"),
    "from.domain": ("from_domain", "from_domain", "glob"),
    "from.name": ("from_name", "from_name_lower", "contains"),
    "subject": ("subject", "subject_lower", "contains"),
    "body": ("body", "body_lower", "contains"),
}
_LISTS: dict[str, tuple[str, str]] = {
    "to": ("to", "glob"),
    "cc": ("cc", "glob"),
    "recipient": ("recipients", "glob"),
    "plus": ("plus_tags", "glob"),
}
_OTHER = (
    "all",
    "any",
    "not",
    "header",
    "attachment",
    "size",
    "language",
    "auth",
    "within_hours",
    "outside_hours",
    "reply",
    "ticket_status",
)
CONDITION_KEYS: tuple[str, ...] = (*_FIELDS, *_LISTS, *_OTHER)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _patterns(src: Source, value: Any, pos: Pos, what: str, kind: str) -> list[str] | None:
    # Patterns keep their spaces (" re:" is a different needle from "re:").
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        src.problem(pos, f"{what} must not be an empty list")
        return None
    patterns: list[str] = []
    for index, item in enumerate(items):
        where = item_pos(value, index) if isinstance(value, list) else pos
        if not isinstance(item, str) or not item:
            src.problem(where, f"{what} must be non-empty text, got {describe_type(item)}")
            return None
        if kind == "regex" and (error := check_regex(item)) is not None:
            src.problem(where, error)
            return None
        patterns.append(item)
    return patterns


def text_matcher(
    src: Source, value: Any, pos: Pos, what: str, default_kind: str, extra: tuple[str, ...] = ()
) -> TextMatcher | None:
    """A bare pattern or list uses ``default_kind``; a mapping names its kind.

    ``extra`` lists keys of the mapping that belong to the caller (``name``
    for headers) and are skipped here.
    """
    if not isinstance(value, dict):
        found = _patterns(src, value, pos, what, default_kind)
        return None if found is None else TextMatcher(default_kind, found)
    kinds: list[tuple[str, Any, Pos]] = []
    case_sensitive = False
    for key, item, _, value_at in entries(src, value, (*KINDS, "case_sensitive", *extra), what):
        if key in extra:
            continue
        if key == "case_sensitive":
            case_sensitive = bool(want_bool(src, item, value_at, f"{what}.case_sensitive"))
        else:
            kinds.append((key, item, value_at))
    if len(kinds) != 1:
        src.problem(pos, f"{what} needs exactly one of {', '.join(KINDS)}")
        return None
    kind, item, value_at = kinds[0]
    found = _patterns(src, item, value_at, f"{what}.{kind}", kind)
    return None if found is None else TextMatcher(kind, found, case_sensitive)


def parse_size(src: Source, value: Any, pos: Pos, what: str) -> int | None:
    """``2048``, ``"500 KB"``, ``"5MB"``, ``"1 GiB"`` in bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        src.problem(pos, f'{what} must be a size like 2048 or "5 MB", got {describe_type(value)}')
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class ConditionParser:
    """Parses ``if:`` trees; knows the file's business-hours names."""

    def __init__(
        self, src: Source, hours: dict[str, BusinessHours], hours_names: set[str] | None = None
    ) -> None:
        self.src = src
        self.hours = hours
        # Names of schedules that exist but are broken: their problems are
        # reported already, so a reference to them is not a second problem.
        self.hours_names = (hours_names or set()) | set(hours)

    def parse(self, node: Any, pos: Pos, what: str = "if") -> c.Condition | None:
        """A mapping of conditions, all of which must match."""
        src = self.src
        if not want_map(src, node, pos, what):
            return None
        if not node:
            src.problem(pos, f"{what} is empty; leave it out to match every message")
            return None
        parsed = [
            self.one(key, value, key_at, value_at)
            for key, value, key_at, value_at in entries(src, node, CONDITION_KEYS, what)
        ]
        if len(parsed) != len(node) or any(condition is None for condition in parsed):
            return None
        found = [condition for condition in parsed if condition is not None]
        return found[0] if len(found) == 1 else c.AllOf(found)

    def one(self, key: str, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        src = self.src
        if key in _FIELDS:
            attr, lower_attr, kind = _FIELDS[key]
            matcher = text_matcher(src, value, value_at, key, kind)
            return None if matcher is None else c.FieldMatch(key, attr, lower_attr, matcher)
        if key in _LISTS:
            attr, kind = _LISTS[key]
            matcher = text_matcher(src, value, value_at, key, kind)
            return None if matcher is None else c.AnyValueMatch(key, attr, matcher)
        method = getattr(self, "_" + key)
        result: c.Condition | None = method(value, key_at, value_at)
        return result

    def _combine(self, key: str, value: Any, value_at: Pos) -> list[c.Condition] | None:
        if not isinstance(value, list) or not value:
            self.src.problem(
                value_at, f"{key} must be a non-empty list of conditions, got {describe_type(value)}"
            )
            return None
        children = [
            self.parse(item, item_pos(value, i), f"{key} item {i + 1}") for i, item in enumerate(value)
        ]
        return (
            None
            if any(child is None for child in children)
            else [child for child in children if child is not None]
        )

    def _all(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        children = self._combine("all", value, value_at)
        return None if children is None else c.AllOf(children)

    def _any(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        children = self._combine("any", value, value_at)
        return None if children is None else c.AnyOf(children)

    def _not(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        child = self.parse(value, value_at, "not")
        return None if child is None else c.Not(child)

    def _header(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        src = self.src
        if not want_map(src, value, value_at, "header"):
            return None
        name = value.get("name")
        if not isinstance(name, str) or not name.strip():
            src.problem(value_at, "header needs name: (the header's name, e.g. X-Priority)")
            return None
        rest = {k: v for k, v in value.items() if k != "name"}
        if "exists" in rest:
            if len(rest) > 1:
                src.problem(
                    value_at, "header takes exists: or a match (equals, contains, glob, regex), not both"
                )
                return None
            exists = want_bool(src, rest["exists"], value_at, "header.exists")
            return None if exists is None else c.HeaderMatch(name.strip(), exists, None)
        if not rest:
            src.problem(value_at, "header needs exists: or one of equals, contains, glob, regex")
            return None
        matcher = text_matcher(src, value, value_at, "header", "equals", extra=("name",))
        return None if matcher is None else c.HeaderMatch(name.strip(), None, matcher)

    def _attachment(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        src = self.src
        if isinstance(value, bool):
            return c.AttachmentMatch(value)
        if not isinstance(value, dict):
            src.problem(
                value_at,
                "attachment must be true, false, or a mapping with name: "
                f"and/or type:, got {describe_type(value)}",
            )
            return None
        before = len(src.problems)
        name = kind = None
        for key, item, _, at in entries(src, value, ("name", "type"), "attachment"):
            if key == "name":
                name = text_matcher(src, item, at, "attachment.name", "glob")
            else:
                kind = text_matcher(src, item, at, "attachment.type", "glob")
        if len(src.problems) > before:
            return None
        if name is None and kind is None:
            src.problem(value_at, "attachment needs name: and/or type:")
            return None
        return c.AttachmentMatch(True, name, kind)

    def _size(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        src = self.src
        if not want_map(src, value, value_at, "size"):
            return None
        before = len(src.problems)
        bounds: dict[str, int | None] = {"over": None, "under": None}
        for key, item, _, at in entries(src, value, ("over", "under"), "size"):
            bounds[key] = parse_size(src, item, at, f"size.{key}")
        over, under = bounds["over"], bounds["under"]
        if len(src.problems) > before:
            return None
        if over is None and under is None:
            src.problem(value_at, "size needs over: and/or under:")
            return None
        if over is not None and under is not None and over >= under:
            src.problem(value_at, "size can never match: over is not below under")
            return None
        return c.SizeMatch(over, under)

    def _language(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        codes = want_texts(self.src, value, value_at, "language")
        if codes is None:
            return None
        unknown = [code for code in codes if code.lower() not in SUPPORTED]
        for code in unknown:
            self.src.problem(
                value_at, f'language "{code}" cannot be detected{did_you_mean(code.lower(), SUPPORTED)}'
            )
        return None if unknown else c.LanguageMatch(frozenset(x.lower() for x in codes))

    def _auth(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        src = self.src
        if not want_map(src, value, value_at, "auth"):
            return None
        wanted: dict[str, frozenset[str]] = {}
        for method, item, _, at in entries(src, value, METHODS, "auth"):
            results = want_texts(src, item, at, f"auth.{method}")
            if results is None:
                continue
            for result in results:
                if result.lower() not in RESULTS:
                    src.problem(
                        at,
                        f'auth.{method} result "{result}" is not an RFC 8601 '
                        f"result{did_you_mean(result.lower(), RESULTS)}",
                    )
            wanted[method] = frozenset(result.lower() for result in results)
        if len(wanted) != len(value) or not wanted:
            if not wanted and not value:
                src.problem(value_at, "auth needs at least one method, e.g. dmarc: pass")
            return None
        return c.AuthMatch(wanted)

    def _hours(self, value: Any, value_at: Pos, key: str, within: bool) -> c.Condition | None:
        names = want_texts(self.src, value, value_at, key)
        if names is None or len(names) != 1:
            if names is not None:
                self.src.problem(value_at, f"{key} takes one business_hours name")
            return None
        hours = self.hours.get(names[0])
        if hours is None:
            if names[0] not in self.hours_names:
                self.src.problem(
                    value_at,
                    f'{key}: no business_hours named "{names[0]}"{did_you_mean(names[0], self.hours_names)}',
                )
            return None
        return c.HoursMatch(hours, within)

    def _within_hours(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        return self._hours(value, value_at, "within_hours", True)

    def _outside_hours(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        return self._hours(value, value_at, "outside_hours", False)

    def _reply(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        reply = want_bool(self.src, value, value_at, "reply")
        return None if reply is None else c.ReplyMatch(reply)

    def _ticket_status(self, value: Any, key_at: Pos, value_at: Pos) -> c.Condition | None:
        statuses = want_texts(self.src, value, value_at, "ticket_status")
        if statuses is None:
            return None
        bad = [status for status in statuses if status not in STATUSES]
        for status in bad:
            self.src.problem(
                value_at, f'ticket_status "{status}" is not a status{did_you_mean(status, STATUSES)}'
            )
        return None if bad else c.StatusMatch(frozenset(statuses))
