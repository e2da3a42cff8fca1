"""Expected outcomes for regression mails, so rule changes can be checked in CI.

Next to ``printer.eml`` an admin may keep ``printer.expect.yaml``::

    given: {reply: true, ticket_status: open}   # optional: the situation
    queue: hardware
    priority: high
    ack: none
    matched: [vip, hardware]

``mailgate rules test`` then compares the decision with it and exits 1 on
any difference. docs/rules.md uses the same format for its examples.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from mailgate.rules.actions import means_no_ack
from mailgate.rules.model import Decision, RuleContext
from mailgate.rules.syntax import did_you_mean

FIELDS = (
    "action",
    "queue",
    "priority",
    "category",
    "tags",
    "assignee",
    "language",
    "sla",
    "ack",
    "notify",
    "internal",
    "reject_template",
    "kb_suggest",
    "kb_articles",
    "matched",
    "changed",
)
GIVEN = ("reply", "ticket_status", "language", "our_addresses", "trusted_authserv_ids")


# Words that mean "no acknowledgement" in an expectation, as in the rules file.
@dataclasses.dataclass(frozen=True)
class Expectation:
    """The situation a mail is routed in, and what the decision must say."""

    given: dict[str, Any]
    fields: dict[str, Any]
    problems: tuple[str, ...] = ()


def sidecar(mail: Path) -> Path:
    """``x.eml`` -> ``x.expect.yaml``."""
    return mail.with_name(mail.stem + ".expect.yaml")


def parse_expectation(text: str) -> Expectation:
    """An Expectation; problems with the file itself are listed, not raised."""
    try:
        data = YAML(typ="safe").load(io.StringIO(text)) or {}
    except YAMLError as error:
        return Expectation({}, {}, (f"not valid YAML: {error}",))
    if not isinstance(data, dict):
        return Expectation({}, {}, ("must be a mapping of field: expected value",))
    given = data.pop("given", None) or {}
    problems = [f'unknown field "{key}"{did_you_mean(str(key), FIELDS)}' for key in data if key not in FIELDS]
    if not isinstance(given, dict):
        problems.append("given must be a mapping")
        given = {}
    problems += [f'unknown given "{key}"{did_you_mean(str(key), GIVEN)}' for key in given if key not in GIVEN]
    return Expectation(given, data, tuple(problems))


def load_expectation(path: Path) -> Expectation:
    try:
        return parse_expectation(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        return Expectation({}, {}, (f"cannot read: {error}",))


def apply_given(context: RuleContext, given: dict[str, Any]) -> RuleContext:
    """The caller's context with the expectation's situation laid over it."""
    changes: dict[str, Any] = {}
    if "reply" in given:
        changes["is_reply"] = bool(given["reply"])
    for key in ("ticket_status", "language"):
        if key in given:
            changes[key] = given[key]
    for key in ("our_addresses", "trusted_authserv_ids"):
        if key in given:
            changes[key] = frozenset(str(item).lower() for item in given[key] or ())
    return dataclasses.replace(context, **changes)


def _actual(decision: Decision, key: str) -> Any:
    if key == "ack":
        return decision.ack_template
    if key == "matched":
        return list(decision.matched_rules)
    if key == "changed":
        return sorted(decision.changed)
    value = getattr(decision, key)
    return list(value) if isinstance(value, tuple) else value


def _normal(key: str, value: Any) -> Any:
    if key == "ack" and means_no_ack(value):
        return None
    if key == "kb_suggest" and isinstance(value, str):
        return {"on": True, "off": False}.get(value.lower(), value)
    if key in ("tags", "notify", "matched", "kb_articles") and isinstance(value, str):
        return [value]
    if key == "changed" and isinstance(value, list):
        return sorted(value)
    return value


def mismatches(decision: Decision, expectation: Expectation) -> list[str]:
    """One line per expected field the decision does not have, plus file problems."""
    found = list(expectation.problems)
    for key, wanted in expectation.fields.items():
        if key not in FIELDS:
            continue
        expected, actual = _normal(key, wanted), _actual(decision, key)
        if expected != actual:
            found.append(f"{key}: expected {expected!r}, got {actual!r}")
    return found
