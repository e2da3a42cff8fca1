"""Routing and priority rules: a YAML file in, a ``Decision`` with reasons out.

    ruleset = load_rules(path, known_queues=..., known_templates=...)
    decision = ruleset.decide(message, envelope, context)

See docs/rules.md for the file format.
"""

from mailgate.rules.engine import Defaults, Rule, RuleSet, default_ruleset
from mailgate.rules.language import detect_language
from mailgate.rules.loader import load_rules, load_rules_text
from mailgate.rules.model import Decision, Problem, RuleContext, RulesError, RuleTrace

__all__ = [
    "Decision",
    "Defaults",
    "Problem",
    "Rule",
    "RuleContext",
    "RuleSet",
    "RuleTrace",
    "RulesError",
    "default_ruleset",
    "detect_language",
    "load_rules",
    "load_rules_text",
]
