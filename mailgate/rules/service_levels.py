"""The ``service_levels:`` and ``digest:`` sections of the rules file.

Same habits as the rest of the rules loader: every problem is recorded with
its line and column and the walk carries on, so an admin fixes the whole
file in one round; a name that does not exist gets a "did you mean".
"""

from __future__ import annotations

import re
from datetime import time
from typing import Any

from mailgate.rules.actions import ActionParser
from mailgate.rules.hours import BusinessHours, HoursError, load_zone
from mailgate.rules.model import PRIORITIES
from mailgate.rules.syntax import (
    Source,
    describe_type,
    did_you_mean,
    entries,
    node_pos,
    value_pos,
    want_bool,
    want_map,
    want_text,
)
from mailgate.rules.yamlpos import Pos
from mailgate.sla.durations import duration
from mailgate.sla.policy import BreachActions, DigestPlan, ServiceLevel

LEVEL_KEYS = (
    "business_hours",
    "pause_when_pending",
    "warn_at",
    "first_response",
    "next_reply",
    "resolution",
    "on_breach",
    "description",
    "timezone",
)
BREACH_KEYS = ("raise_priority", "queue", "tag")
DIGEST_KEYS = ("at", "business_hours")
AROUND_THE_CLOCK = ("24x7", "always")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def service_levels(
    src: Source,
    schedules: dict[str, BusinessHours],
    hours_names: set[str],
    actions: ActionParser,
    node: Any,
    pos: Pos,
) -> dict[str, ServiceLevel]:
    levels: dict[str, ServiceLevel] = {}
    if node is None or not want_map(src, node, pos, "service_levels"):
        return levels
    for name, spec, name_at, at in entries(src, node, [str(key) for key in node], "service_levels"):
        level = _level(src, schedules, hours_names, actions, name, spec, name_at, at)
        if level is not None:
            levels[name] = level
    return levels


def _level(
    src: Source,
    schedules: dict[str, BusinessHours],
    hours_names: set[str],
    actions: ActionParser,
    name: str,
    spec: Any,
    name_at: Pos,
    at: Pos,
) -> ServiceLevel | None:
    where = f"service_levels.{name}"
    if not want_map(src, spec, at, where):
        return None
    before = len(src.problems)
    values: dict[str, Any] = {}
    hours: BusinessHours | None = None
    for key, value, _, value_at in entries(src, spec, LEVEL_KEYS, where):
        what = f"{where}.{key}"
        if key == "business_hours":
            text = want_text(src, value, value_at, what)
            if text is None or text.lower() in AROUND_THE_CLOCK:
                continue
            if text not in hours_names:
                src.problem(
                    value_at,
                    f'{what}: no business_hours named "{text}"{did_you_mean(text, hours_names)} '
                    '(or write "24x7")',
                )
            hours = schedules.get(text)
            if hours is not None and not any(hours.opening):
                src.problem(value_at, f'{what}: business_hours "{text}" is never open')
        elif key == "timezone":
            text = want_text(src, value, value_at, what)
            try:
                values["zone"] = load_zone(text) if text else None
            except HoursError as error:
                src.problem(value_at, f"{what}: {error}")
        elif key == "pause_when_pending":
            values[key] = want_bool(src, value, value_at, what)
        elif key == "warn_at":
            values[key] = _share(src, value, value_at, what)
        elif key in ("first_response", "next_reply", "resolution"):
            values[key] = _targets(src, value, value_at, what)
        elif key == "on_breach":
            values[key] = _breach(src, actions, value, value_at, what)
        else:
            want_text(src, value, value_at, what)
    if "business_hours" not in spec:
        src.problem(name_at, f'{where} needs business_hours: (a name from business_hours, or "24x7")')
    if not any(key in spec for key in ("first_response", "next_reply", "resolution")):
        src.problem(name_at, f"{where} needs at least one of first_response, next_reply, resolution")
    if len(src.problems) > before:
        return None
    return ServiceLevel(name=name, hours=hours, line=name_at[0] + 1, **values)


def _one_duration(src: Source, value: Any, pos: Pos, what: str) -> int | None:
    text = str(value) if isinstance(value, str) else None
    seconds = duration(text) if text is not None else None
    if seconds is None or seconds <= 0:
        src.problem(pos, f'{what} must be a duration like "30m", "4h" or "2d", got {describe_type(value)}')
        return None
    return seconds


def _targets(src: Source, value: Any, pos: Pos, what: str) -> dict[str, int]:
    """One duration for every priority, or a mapping priority -> duration."""
    if not isinstance(value, dict):
        seconds = _one_duration(src, value, pos, what)
        return {} if seconds is None else dict.fromkeys(PRIORITIES, seconds)
    found: dict[str, int] = {}
    for priority, item, _, item_at in entries(src, value, PRIORITIES, what):
        seconds = _one_duration(src, item, item_at, f"{what}.{priority}")
        if seconds is not None:
            found[priority] = seconds
    return found


def _share(src: Source, value: Any, pos: Pos, what: str) -> float | None:
    """``75%`` or ``0.75``; ``false`` for no warning."""
    if value is False or value is None:
        return None
    share: float | None = None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            share = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    if share is None or not 0 < share < 1:
        src.problem(pos, f'{what} must be a share below 100% like "75%" or 0.75, got {describe_type(value)}')
        return None
    return share


def _breach(src: Source, actions: ActionParser, value: Any, pos: Pos, what: str) -> BreachActions:
    found: dict[str, Any] = {}
    if not want_map(src, value, pos, what):
        return BreachActions()
    for key, item, _, item_at in entries(src, value, BREACH_KEYS, what):
        if key == "raise_priority":
            found[key] = bool(want_bool(src, item, item_at, f"{what}.{key}"))
        elif key == "queue":
            found[key] = want_text(src, item, item_at, f"{what}.queue")
            if found[key]:
                actions.check_queue(found[key], item_at)
        else:
            tag = want_text(src, item, item_at, f"{what}.tag")
            if tag is not None and not re.fullmatch(r"[\w.-]{1,50}", tag):
                src.problem(item_at, f"{what}.tag must be one word of letters, digits, '.', '-' or '_'")
            found[key] = tag
    return BreachActions(**found)


def digest_plan(
    src: Source, schedules: dict[str, BusinessHours], hours_names: set[str], node: Any, pos: Pos
) -> DigestPlan | None:
    if node is None or not want_map(src, node, pos, "digest"):
        return None
    at: time | None = None
    hours: BusinessHours | None = None
    for key, value, _, value_at in entries(src, node, DIGEST_KEYS, "digest"):
        text = want_text(src, str(value) if isinstance(value, int) else value, value_at, f"digest.{key}")
        if text is None:
            continue
        if key == "at":
            match = _CLOCK.match(text)
            if match is None or int(match[1]) > 23 or int(match[2]) > 59:
                src.problem(value_at, f'digest.at must be a time like "08:30", got {describe_type(value)}')
                continue
            at = time(int(match[1]), int(match[2]))
        else:
            if text not in hours_names:
                src.problem(value_at, f'digest.business_hours: no business_hours named "{text}"'
                            f"{did_you_mean(text, hours_names)}")  # fmt: skip
            hours = schedules.get(text)
    for key in DIGEST_KEYS:
        if key not in node:
            src.problem(node_pos(node, pos), f"digest needs {key}:")
    if at is None or hours is None:
        return None
    return DigestPlan(at, hours, node_pos(node, pos)[0] + 1)


def check_level_names(src: Source, document: Any, levels: set[str]) -> None:
    """Every ``sla:`` in defaults and rules names a level the file defines."""
    if not isinstance(document, dict):
        return
    found: list[tuple[Any, Pos]] = []
    defaults = document.get("defaults")
    if isinstance(defaults, dict) and "sla" in defaults:
        found.append((defaults["sla"], value_pos(defaults, "sla")))
    rules = document.get("rules")
    for rule in rules if isinstance(rules, list) else []:
        then = rule.get("then") if isinstance(rule, dict) else None
        if isinstance(then, dict) and "sla" in then:
            found.append((then["sla"], value_pos(then, "sla")))
    for name, at in found:
        if isinstance(name, str) and name.strip() and name.strip() not in levels:
            src.problem(
                at, f'sla "{name.strip()}" is not defined under service_levels{did_you_mean(name, levels)}'
            )
