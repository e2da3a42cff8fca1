"""Evaluating a rule set: first match wins, unless a rule says ``continue``.

``RuleSet.decide`` is pure: the same message, envelope and context always
give the same decision, and nothing is shared between calls, so the daemon
can swap in a freshly loaded RuleSet while the old one finishes a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from mailgate.message import Envelope, ParsedMessage
from mailgate.rules.actions import DEFAULT_REQUESTER_ORDER, Actions
from mailgate.rules.conditions import Condition, ViewTest
from mailgate.rules.hours import BusinessHours
from mailgate.rules.index import RuleIndex
from mailgate.rules.language import SUPPORTED
from mailgate.rules.model import Action, Decision, Priority, RuleContext, RuleTrace
from mailgate.rules.view import MessageView

if TYPE_CHECKING:
    # Only for annotations: mailgate.sla.policy itself imports the rules package.
    from mailgate.sla.policy import DigestPlan, ServiceLevel

# Which rule set each knowledge-base field, for the reason shown.
_KB_BY = ("kb_suggest_by", "kb_articles_by")
_PAST = {"quarantine": "quarantined", "reject": "rejected", "drop": "dropped"}


@dataclass(frozen=True)
class Rule:
    """One validated rule from the file."""

    name: str
    line: int
    when: str  # "new", "reply" or "any"
    condition: Condition
    actions: Actions
    continues: bool = False
    description: str = ""

    @property
    def stops(self) -> bool:
        """Whether evaluation ends when this rule matches."""
        return not self.continues or self.actions.terminal is not None

    def applies_to(self, is_reply: bool) -> bool:
        return self.when == "any" or (self.when == "reply") == is_reply

    def label(self) -> str:
        return f'rule "{self.name}" (line {self.line})'


@dataclass(frozen=True)
class Defaults:
    """What a message gets when no rule says otherwise."""

    queue: str = "general"
    priority: Priority = "normal"
    language: str = "en"
    # Languages the acknowledgement templates exist in; a detected language
    # outside this set falls back to ``language``. None accepts any.
    languages: frozenset[str] | None = None
    ack_template: str | None = "ack"
    sla: str | None = None
    # ``defaults: requester:``; None: the built-in order.
    requester: tuple[str, ...] | None = None
    # ``defaults: acknowledge_forwards:``: does the original sender of an
    # agent's forward get the acknowledgement?
    acknowledge_forwards: bool = True


@dataclass(frozen=True)
class Lane:
    """The rules for one kind of message (new or reply), ready for the hot loop.

    Each rule's test is prebuilt, so the loop does one call and one truth
    test per rule; the index narrows each message to the rules that can match.
    """

    pairs: tuple[tuple[ViewTest, Rule], ...]
    index: RuleIndex

    @classmethod
    def of(cls, rules: tuple[Rule, ...], is_reply: bool) -> Lane:
        pairs = tuple((rule.condition.fast(), rule) for rule in rules if rule.applies_to(is_reply))
        return cls(pairs, RuleIndex([rule.condition for _, rule in pairs]))


@dataclass(frozen=True)
class RuleSet:
    """A loaded, validated rules file, ready to route messages."""

    rules: tuple[Rule, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    business_hours: dict[str, BusinessHours] = field(default_factory=dict)
    source: str = "(built-in defaults)"
    # Service levels by name and the morning digest (docs/sla.md).
    service_levels: dict[str, ServiceLevel] = field(default_factory=dict)
    digest: DigestPlan | None = None
    new_lane: Lane = field(init=False, repr=False, compare=False)
    reply_lane: Lane = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen dataclasses set derived fields through object.__setattr__.
        object.__setattr__(self, "new_lane", Lane.of(self.rules, False))
        object.__setattr__(self, "reply_lane", Lane.of(self.rules, True))

    def decide(self, message: ParsedMessage, envelope: Envelope, context: RuleContext) -> Decision:
        """Route one message; never raises because of what the message contains."""
        view = MessageView(message, envelope, context)
        lane = self.reply_lane if context.is_reply else self.new_lane
        pairs = lane.pairs
        matched: list[Rule] = []
        errors: dict[int, str] = {}
        try:
            for position in lane.index.positions(view):
                test, rule = pairs[position]
                if test(view):
                    matched.append(rule)
                    if rule.stops:
                        break
        except Exception:
            # A bug in a condition must not lose or bounce the message: start
            # again rule by rule, counting a failing rule as "no match".
            matched = self._careful(view, pairs, errors)
        return self._decision(view, matched, errors)

    def _careful(
        self,
        view: MessageView,
        pairs: tuple[tuple[ViewTest, Rule], ...],
        errors: dict[int, str],
    ) -> list[Rule]:
        matched: list[Rule] = []
        for test, rule in pairs:
            try:
                ok = test(view)
            except Exception as error:
                errors[id(rule)] = f"error while testing, counted as no match: {error!r}"
                continue
            if ok:
                matched.append(rule)
                if rule.stops:
                    break
        return matched

    def _language(self, view: MessageView, chosen: str | None) -> str:
        """A rule's choice, else the caller's, else detected, else the default."""
        if chosen:
            return chosen
        if view.context.language:
            return view.context.language.lower()
        try:
            detected = view.language
        except Exception:
            detected = None
        allowed = self.defaults.languages or frozenset(SUPPORTED)
        return detected if detected in allowed else self.defaults.language

    def _decision(self, view: MessageView, matched: list[Rule], errors: dict[int, str]) -> Decision:
        defaults = self.defaults
        is_reply = view.context.is_reply
        values: dict[str, object] = {
            "queue": defaults.queue,
            "priority": defaults.priority,
            "category": None,
            "assignee": None,
            "language": None,
            "sla": defaults.sla,
            "internal": False,
        }
        tags: list[str] = []
        notify: list[str] = []
        ack_rule: Rule | None = None
        ack_template = None if is_reply else defaults.ack_template
        final: Rule | None = None
        changed: set[str] = set()
        requester_rule: Rule | None = None
        # Later matching rules win, as for the other single-valued fields.
        kb: dict[str, object] = {}
        for rule in matched:
            actions = rule.actions
            for name in ("kb_suggest", "kb_articles"):
                value = getattr(actions, name)
                if value is not None:
                    kb[name] = value
                    kb[name + "_by"] = rule.label()
            if actions.requester is not None:
                requester_rule = rule
            for name in ("queue", "priority", "category", "assignee", "language", "sla", "internal"):
                value = getattr(actions, name)
                if value is not None:
                    values[name] = value
            tags.extend(tag for tag in actions.tags if tag not in tags)
            notify.extend(address for address in actions.notify if address not in notify)
            if actions.ack_set:
                ack_rule, ack_template = rule, actions.ack_template
            if actions.terminal is not None:
                final = rule
            changed |= actions.fields()

        action = final.actions.terminal if final is not None else "accept"
        if final is not None:
            ack_template = None
            ack_reason = f"no acknowledgement: the message is {_PAST[str(action)]}"
        elif ack_rule is not None:
            ack_reason = (
                f'template "{ack_template}" chosen by {ack_rule.label()}'
                if ack_template
                else f"{ack_rule.label()} says to send none"
            )
        elif is_reply:
            ack_reason = (
                "no acknowledgement for a reply to an existing ticket "
                "(a rule with when: reply can choose one)"
            )
        else:
            ack_reason = (
                f'template "{ack_template}" from the defaults'
                if ack_template
                else "the defaults say to send none"
            )

        if final is not None:
            why = final.actions.terminal_reason
            reason = f"{_PAST[str(action)]} by {final.label()}" + (f": {why}" if why else "")
        elif matched:
            reason = "matched " + ", ".join(rule.label() for rule in matched)
        else:
            reason = "no rule matched; defaults apply"

        return Decision(
            queue=str(values["queue"]),
            priority=cast(Priority, values["priority"]),
            category=cast("str | None", values["category"]),
            tags=tuple(tags),
            assignee=cast("str | None", values["assignee"]),
            language=self._language(view, cast("str | None", values["language"])),
            sla=cast("str | None", values["sla"]),
            ack_template=ack_template,
            ack_reason=ack_reason,
            notify=tuple(notify),
            internal=bool(values["internal"]),
            action=cast(Action, action),
            reject_template=final.actions.reject_template if final is not None else None,
            reason=reason,
            matched_rules=tuple(rule.name for rule in matched),
            changed=frozenset(changed),
            requester_order=(
                requester_rule.actions.requester or ()
                if requester_rule is not None
                else defaults.requester or DEFAULT_REQUESTER_ORDER
            ),
            requester_by=(
                requester_rule.label()
                if requester_rule is not None
                else "defaults.requester"
                if defaults.requester
                else "the defaults"
            ),
            requester_explicit=requester_rule is not None or defaults.requester is not None,
            acknowledge_forwards=defaults.acknowledge_forwards,
            kb_suggest=cast("bool | None", kb.get("kb_suggest")),
            kb_articles=cast("tuple[str, ...] | None", kb.get("kb_articles")),
            kb_by=" and ".join(dict.fromkeys(str(kb[k]) for k in _KB_BY if k in kb)),
            explain=self._explainer(view, matched, errors),
        )

    def _explainer(
        self, view: MessageView, matched: list[Rule], errors: dict[int, str]
    ) -> Callable[[], tuple[RuleTrace, ...]]:
        """The trace, computed on demand from the same view and verdicts."""
        hits = {id(rule) for rule in matched}
        last = matched[-1] if matched and matched[-1].stops else None
        is_reply = view.context.is_reply

        def explain() -> tuple[RuleTrace, ...]:
            trace: list[RuleTrace] = []
            for rule in self.rules:
                if not rule.applies_to(is_reply):
                    reason = (
                        "skipped: only for replies; this is a new message"
                        if rule.when == "reply"
                        else "skipped: only for new messages; this is a reply"
                    )
                elif id(rule) in errors:
                    reason = errors[id(rule)]
                else:
                    try:
                        reason = rule.condition.explain(view)
                    except Exception as error:
                        reason = f"cannot explain: {error!r}"
                trace.append(RuleTrace(rule.name, rule.line, id(rule) in hits, reason))
                if rule is last:
                    break
            return tuple(trace)

        return explain


def default_ruleset(default_queue: str = "general", language: str = "en") -> RuleSet:
    """The rules used when no rules file is configured: one queue, an "ack"."""
    return RuleSet(defaults=Defaults(queue=default_queue, language=language, ack_template="ack"))
