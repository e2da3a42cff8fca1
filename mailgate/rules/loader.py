"""Reading a rules file into a ``RuleSet``, or every reason it cannot be one.

Loading is pure: it reads one file and returns a new RuleSet or raises
``RulesError``, touching no global state, so the daemon may load a new file
while the old RuleSet keeps routing, and keep the old one if the new is bad.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from ruamel.yaml.error import MarkedYAMLError, YAMLError

from mailgate.rules import hours as hours_mod
from mailgate.rules.actions import LANGUAGE_CODE, ActionParser, Actions
from mailgate.rules.condition_syntax import ConditionParser
from mailgate.rules.conditions import Always, Condition
from mailgate.rules.engine import Defaults, Rule, RuleSet
from mailgate.rules.language import SUPPORTED
from mailgate.rules.model import PRIORITIES, Problem, RulesError
from mailgate.rules.service_levels import check_level_names, digest_plan, service_levels
from mailgate.rules.syntax import (
    Source,
    describe_type,
    entries,
    item_pos,
    node_pos,
    want_bool,
    want_choice,
    want_map,
    want_text,
    want_texts,
)
from mailgate.rules.yamlpos import Pos, load_positioned

TOP_KEYS = ("version", "defaults", "business_hours", "service_levels", "digest", "rules")
DEFAULT_KEYS = (
    "queue",
    "priority",
    "language",
    "languages",
    "ack",
    "sla",
    "requester",
    "acknowledge_forwards",
)
HOURS_KEYS = ("timezone", "days", "holidays", "holidays_from")
RULE_KEYS = ("name", "description", "when", "if", "then", "continue")
WHEN = ("new", "reply", "any")


def load_rules(
    path: Path | str,
    known_queues: set[str] | None = None,
    known_templates: set[str] | None = None,
    known_articles: set[str] | None = None,
) -> RuleSet:
    """Load and validate ``path``; raise RulesError listing every problem.

    ``known_articles``: the knowledge base's ids, so ``kb_articles`` naming
    another is a problem (the daemon leaves it out: the articles reload on
    their own, and a forced id that is gone is skipped and recorded).
    """
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as error:
        raise RulesError([Problem(name, 1, 1, f"cannot read the file: {error.strerror}")]) from error
    except UnicodeDecodeError as error:
        raise RulesError([Problem(name, 1, 1, f"not UTF-8 text: {error.reason}")]) from error
    return load_rules_text(text, name, known_queues, known_templates, known_articles)


def load_rules_text(
    text: str,
    file: str = "<rules>",
    known_queues: set[str] | None = None,
    known_templates: set[str] | None = None,
    known_articles: set[str] | None = None,
) -> RuleSet:
    """Like ``load_rules`` for text already in memory (tests, docs examples)."""
    src = Source(file)
    try:
        document, duplicates = load_positioned(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line, mark.column) if mark is not None else (0, 0)
        hint = ""
        lines = text.splitlines()
        if line < len(lines) and "\t" in lines[line]:
            hint = " (YAML does not allow tabs for indentation; use spaces)"
        src.problem((line, column), f"YAML: {error.problem or error.context}{hint}")
        raise RulesError(src.problems) from error
    except (YAMLError, ValueError) as error:
        src.problem((0, 0), f"YAML: {error}")
        raise RulesError(src.problems) from error
    for at, reason in duplicates:
        src.problem(at, reason)
    ruleset = _build(src, document, known_queues, known_templates, known_articles)
    if src.problems or ruleset is None:
        raise RulesError(sorted(src.problems, key=lambda p: (p.line, p.column)))
    return ruleset


def _build(
    src: Source,
    document: Any,
    known_queues: set[str] | None,
    known_templates: set[str] | None,
    known_articles: set[str] | None = None,
) -> RuleSet | None:
    if document is None:
        src.problem((0, 0), "the rules file is empty; it needs at least rules: or defaults:")
        return None
    if not want_map(src, document, (0, 0), "the rules file"):
        return None
    actions = ActionParser(src, known_queues, known_templates, known_articles)
    parts: dict[str, Any] = {}
    for key, value, _, at in entries(src, document, TOP_KEYS, "the rules file"):
        parts[key] = (value, at)
    if "version" in parts:
        version, at = parts["version"]
        if version != 1:
            src.problem(at, f"version must be 1, got {describe_type(version)}")
    schedules = _business_hours(src, *parts.get("business_hours", (None, (0, 0))))
    defaults = _defaults(src, actions, *parts.get("defaults", (None, (0, 0))))
    hours_node = parts.get("business_hours", (None,))[0]
    hours_names = {str(name) for name in hours_node} if isinstance(hours_node, dict) else set()
    conditions = ConditionParser(src, schedules, hours_names)
    rules = _rules(src, conditions, actions, *parts.get("rules", (None, (0, 0))))
    level_node, level_at = parts.get("service_levels", (None, (0, 0)))
    levels = service_levels(src, schedules, hours_names, actions, level_node, level_at)
    digest = digest_plan(src, schedules, hours_names, *parts.get("digest", (None, (0, 0))))
    if "service_levels" in parts:
        names = {str(key) for key in level_node} if isinstance(level_node, dict) else set()
        check_level_names(src, document, names)
    if defaults is None or rules is None:
        return None
    return RuleSet(tuple(rules), defaults, schedules, src.file, service_levels=levels, digest=digest)


def _defaults(src: Source, actions: ActionParser, node: Any, pos: Pos) -> Defaults | None:
    if node is None:
        _check_builtin_defaults(src, actions, {}, pos)
        return Defaults()
    if not want_map(src, node, pos, "defaults"):
        return None
    found: dict[str, Any] = {}
    for key, value, _, at in entries(src, node, DEFAULT_KEYS, "defaults"):
        if key == "queue":
            found[key] = want_text(src, value, at, "defaults.queue")
            if found[key]:
                actions.check_queue(found[key], at)
        elif key == "priority":
            found[key] = want_choice(src, value, at, "defaults.priority", PRIORITIES)
        elif key == "language":
            found[key] = want_text(src, value, at, "defaults.language")
            if found[key] and not LANGUAGE_CODE.match(found[key]):
                src.problem(at, f'defaults.language must be a code like "en" or "nl", got "{found[key]}"')
        elif key == "languages":
            codes = want_texts(src, value, at, "defaults.languages") or []
            found[key] = frozenset(code.lower() for code in codes)
            for code in found[key] - set(SUPPORTED):
                src.problem(
                    at, f'defaults.languages: "{code}" cannot be detected; known: {", ".join(SUPPORTED)}'
                )
        elif key == "ack":
            found["ack_template"] = actions.ack(value, at, "defaults.ack")[1]
        elif key == "requester":
            found[key] = actions.requester(value, at, "defaults.requester")
        elif key == "acknowledge_forwards":
            found[key] = want_bool(src, value, at, "defaults.acknowledge_forwards")
        else:
            found[key] = want_text(src, value, at, "defaults.sla")
    if any(value is None for key, value in found.items() if key != "ack_template"):
        return None
    _check_builtin_defaults(src, actions, found, pos)
    return Defaults(**found)


def _check_builtin_defaults(src: Source, actions: ActionParser, written: dict[str, Any], pos: Pos) -> None:
    """The built-in queue and template must exist too when the file relies on them."""
    builtin = Defaults()
    if (
        "queue" not in written
        and actions.known_queues is not None
        and builtin.queue not in actions.known_queues
    ):
        src.problem(
            pos, f'the default queue "{builtin.queue}" is not a known queue; set defaults: {{queue: ...}}'
        )
    template = builtin.ack_template
    if (
        "ack_template" not in written
        and template
        and actions.known_templates is not None
        and template not in actions.known_templates
    ):
        src.problem(
            pos,
            f'the default acknowledgement template "{template}" is not a known '
            "template; set defaults: {ack: ...} (or ack: false)",
        )


def _business_hours(src: Source, node: Any, pos: Pos) -> dict[str, hours_mod.BusinessHours]:
    schedules: dict[str, hours_mod.BusinessHours] = {}
    if node is None or not want_map(src, node, pos, "business_hours"):
        return schedules
    for name, spec, name_at, at in entries(src, node, [str(key) for key in node], "business_hours"):
        if not want_map(src, spec, at, f"business_hours.{name}"):
            continue
        zone = None
        days: dict[str, str] = {}
        holidays: set[date] = set()
        for key, value, _, value_at in entries(src, spec, HOURS_KEYS, f"business_hours.{name}"):
            where = f"business_hours.{name}.{key}"
            try:
                if key == "timezone":
                    text = want_text(src, value, value_at, where)
                    zone = hours_mod.load_zone(text) if text else None
                elif key == "days" and want_map(src, value, value_at, where):
                    for day, ranges, day_at, ranges_at in entries(src, value, [str(k) for k in value], where):
                        days[day] = _day(src, day, ranges, day_at, ranges_at, where)
                elif key == "holidays":
                    holidays |= _holidays(src, value, value_at, where)
                elif key == "holidays_from":
                    holidays |= _library_holidays(src, value, value_at, where)
            except hours_mod.HoursError as error:
                src.problem(value_at, f"{where}: {error}")
        if zone is None:
            if "timezone" not in spec:
                src.problem(name_at, f"business_hours.{name} needs timezone: (e.g. Europe/Amsterdam)")
            continue
        if not days:
            src.problem(name_at, f"business_hours.{name} needs days: (e.g. mon-fri: 08:30-17:00)")
            continue
        schedules[name] = hours_mod.build(name, zone, days, frozenset(holidays))
    return schedules


def _day(src: Source, day: str, ranges: Any, day_at: Pos, at: Pos, where: str) -> str:
    try:
        hours_mod.parse_days(day)
    except hours_mod.HoursError as error:
        src.problem(day_at, f"{where}: {error}")
        return "closed"
    text = want_text(src, ranges, at, f"{where}.{day}")
    if text is None:
        return "closed"
    try:
        hours_mod.parse_ranges(text)
    except hours_mod.HoursError as error:
        src.problem(at, f"{where}.{day}: {error}")
        return "closed"
    return text


def _library_holidays(src: Source, value: Any, pos: Pos, where: str) -> set[date]:
    """``holidays_from: NL`` or a list like ``[NL, DE-BY]``: dates from the holiday library."""
    found: set[date] = set()
    # Last year to ten years ahead: due times and reports never look further.
    this_year = date.today().year
    for spec in want_texts(src, value, pos, where) or []:
        found |= hours_mod.country_holidays(spec, range(this_year - 1, this_year + 11))
    return found


def _holidays(src: Source, value: Any, pos: Pos, where: str) -> set[date]:
    found: set[date] = set()
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        at = item_pos(value, index) if isinstance(value, list) else pos
        if isinstance(item, date):
            found.add(item)
            continue
        try:
            found.add(date.fromisoformat(str(item)))
        except ValueError:
            src.problem(at, f"{where}: expected a date like 2026-12-25, got {describe_type(item)}")
    return found


def _rules(
    src: Source, conditions: ConditionParser, actions: ActionParser, node: Any, pos: Pos
) -> list[Rule] | None:
    if node is None:
        return []
    if not isinstance(node, list):
        src.problem(pos, f"rules must be a list (lines starting with -), got {describe_type(node)}")
        return None
    rules: list[Rule] = []
    names: dict[str, int] = {}
    # For each kind of message, the catch-all rule that ends evaluation.
    closed_by: dict[str, Rule] = {}
    for index, item in enumerate(node):
        at = item_pos(node, index)
        rule = _rule(src, conditions, actions, item, at, index)
        name, when = _name_and_when(item, index)
        if name in names:
            src.problem(at, f'rule name "{name}" is already used at line {names[name]}')
        names.setdefault(name, at[0] + 1)
        # Reachability is judged even for rules with other problems, so the
        # admin learns about all of them in one round.
        kinds = ("new", "reply") if when == "any" else (when,)
        blockers = [closed_by[kind] for kind in kinds if kind in closed_by]
        if len(blockers) == len(kinds):
            label = " and ".join(sorted({blocker.label() for blocker in blockers}))
            src.problem(
                at,
                f'rule "{name}" can never match: {label} above matches every '
                f"{' and every '.join(_KIND_WORDS[kind] for kind in kinds)} and stops",
            )
        if rule is None:
            continue
        if isinstance(rule.condition, Always) and rule.stops:
            for kind in kinds:
                closed_by.setdefault(kind, rule)
        rules.append(rule)
    return rules


_KIND_WORDS = {"new": "new message", "reply": "reply"}


def _name_and_when(node: Any, index: int) -> tuple[str, str]:
    """A rule's name and kind as written, for messages about a broken rule."""
    if not isinstance(node, dict):
        return f"rule {index + 1}", "new"
    name, when = node.get("name"), node.get("when")
    return (
        name.strip() if isinstance(name, str) and name.strip() else f"rule {index + 1}",
        when if when in WHEN else "new",
    )


def _rule(
    src: Source,
    conditions: ConditionParser,
    actions: ActionParser,
    node: Any,
    at: Pos,
    index: int,
) -> Rule | None:
    if not want_map(src, node, at, f"rule {index + 1}"):
        return None
    before = len(src.problems)
    name, when = _name_and_when(node, index)
    where = f'rule "{name}"'
    condition: Condition | None = Always()
    rule_actions: Actions | None = None
    continues = False
    description = ""
    for key, value, _, value_at in entries(src, node, RULE_KEYS, where):
        if key == "name":
            want_text(src, value, value_at, "name")
        elif key == "description":
            description = want_text(src, value, value_at, "description") or ""
        elif key == "when":
            want_choice(src, value, value_at, "when", WHEN)
        elif key == "if":
            condition = conditions.parse(value, value_at)
        elif key == "then":
            rule_actions = actions.parse(value, value_at)
        else:
            continues = bool(want_bool(src, value, value_at, "continue"))
    if "then" not in node:
        src.problem(at, f'rule "{name}" needs then: (what to do when it matches)')
    if rule_actions is not None and continues and rule_actions.terminal is not None:
        src.problem(
            at,
            f'rule "{name}": continue: true has no effect with {rule_actions.terminal}, which always stops',
        )
    if len(src.problems) > before or condition is None or rule_actions is None:
        return None
    return Rule(name, node_pos(node, at)[0] + 1, when, condition, rule_actions, continues, description)
