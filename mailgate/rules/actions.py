"""The ``then:`` part of a rule: what a matching rule sets or does.

Scalar fields (queue, priority...) are overwritten by later matching rules
when ``continue: true`` lets evaluation go on; tags and notify addresses add
up. ``quarantine``, ``reject`` and ``drop`` end evaluation: once a message is
refused, nothing later may route it back in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailgate.rules.model import PRIORITIES
from mailgate.rules.syntax import (
    Source,
    describe_type,
    did_you_mean,
    entries,
    item_pos,
    want_bool,
    want_choice,
    want_map,
    want_text,
    want_texts,
)
from mailgate.rules.yamlpos import Pos

ACTION_KEYS: tuple[str, ...] = (
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
    "requester",
    "kb_suggest",
    "kb_articles",
    "quarantine",
    "reject",
    "drop",
)
# Words that mean "send no acknowledgement" besides YAML's false and null.
NO_ACK = frozenset({"none", "no"})


def means_no_ack(value: Any) -> bool:
    """false, null, "none" or "no" (any case): send no acknowledgement."""
    return value is None or value is False or (isinstance(value, str) and value.lower() in NO_ACK)


# Where the requester of a new ticket may come from (tickets/requester.py).
REQUESTER_SOURCES: tuple[str, ...] = ("forward", "list", "reply_to", "sender", "from")
# Without a ``requester:`` anywhere: an authenticated agent's forward, a
# DMARC-rewritten list mail's poster, Reply-To when From is a noreply or role
# address, else From. ``sender`` is only used when an admin asks for it.
DEFAULT_REQUESTER_ORDER: tuple[str, ...] = ("forward", "list", "reply_to", "from")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")
# ``kb_suggest:`` values besides YAML's true and false (YAML 1.2 reads on/off as text).
KB_SWITCH = {"on": True, "yes": True, "off": False, "no": False}
# The shape of a knowledge-base article id (mailgate/kb/loader.py checks the same).
ARTICLE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class Actions:
    """What one rule sets; None means "leave as is"."""

    queue: str | None = None
    priority: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    assignee: str | None = None
    language: str | None = None
    sla: str | None = None
    # "set" is True when the rule says anything about the acknowledgement;
    # ack_template None with set True means "send none".
    ack_set: bool = False
    ack_template: str | None = None
    notify: tuple[str, ...] = ()
    internal: bool | None = None
    # The order of requester sources, e.g. ("reply_to", "from"); None: as is.
    requester: tuple[str, ...] | None = None
    # Knowledge-base suggestions in the acknowledgement (docs/kb.md): on or
    # off, and articles offered first; None: as the ``kb:`` configuration says.
    kb_suggest: bool | None = None
    kb_articles: tuple[str, ...] | None = None
    # "quarantine", "reject" or "drop"; None means accept.
    terminal: str | None = None
    reject_template: str | None = None
    terminal_reason: str | None = None

    def fields(self) -> frozenset[str]:
        """The Decision fields this rule changes."""
        names = {
            name
            for name in ("queue", "priority", "category", "assignee", "language", "sla")
            if getattr(self, name) is not None
        }
        names |= {name for name in ("tags", "notify") if getattr(self, name)}
        if self.ack_set:
            names.add("ack_template")
        if self.internal is not None:
            names.add("internal")
        if self.requester is not None:
            names.add("requester")
        names |= {name for name in ("kb_suggest", "kb_articles") if getattr(self, name) is not None}
        if self.terminal is not None:
            names.add("action")
        return frozenset(names)


class ActionParser:
    """Parses ``then:`` mappings, checking names against the known sets."""

    def __init__(
        self,
        src: Source,
        known_queues: set[str] | None,
        known_templates: set[str] | None,
        known_articles: set[str] | None = None,
    ) -> None:
        self.src = src
        self.known_queues = known_queues
        self.known_templates = known_templates
        # The ids of the loaded knowledge base, when the caller has one (`rules check`).
        self.known_articles = known_articles

    def check_queue(self, name: str, pos: Pos) -> None:
        if self.known_queues is not None and name not in self.known_queues:
            self.src.problem(pos, f'unknown queue "{name}"{did_you_mean(name, self.known_queues)}')

    def check_template(self, name: str, pos: Pos) -> None:
        if self.known_templates is not None and name not in self.known_templates:
            self.src.problem(pos, f'unknown template "{name}"{did_you_mean(name, self.known_templates)}')

    def ack(self, value: Any, pos: Pos, what: str) -> tuple[bool, str | None]:
        """(valid, template): false, null, "none" or "no" mean no acknowledgement."""
        if means_no_ack(value):
            return True, None
        template = want_text(self.src, value, pos, what)
        if template is None:
            return False, None
        self.check_template(template, pos)
        return True, template

    def requester(self, value: Any, pos: Pos, what: str) -> tuple[str, ...] | None:
        """One source or a list of them, in order: ``reply_to`` or ``[list, reply_to, from]``."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            self.src.problem(
                pos,
                f"{what} must be one of {', '.join(REQUESTER_SOURCES)} or a list of them, "
                f"got {describe_type(value)}",
            )
            return None
        order: list[str] = []
        for item in items:
            name = item.strip().lower().replace("-", "_")
            if name not in REQUESTER_SOURCES:
                hint = did_you_mean(name, REQUESTER_SOURCES)
                self.src.problem(pos, f'{what}: unknown source "{item}"{hint}')
                return None
            if name not in order:
                order.append(name)
        return tuple(order)

    def kb_suggest(self, value: Any, pos: Pos) -> bool | None:
        """true/false, or on/off, yes/no as text."""
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in KB_SWITCH:
            return KB_SWITCH[value.strip().lower()]
        self.src.problem(pos, f"kb_suggest must be on or off (true or false), got {describe_type(value)}")
        return None

    def kb_articles(self, value: Any, pos: Pos) -> tuple[str, ...] | None:
        """Article ids offered first; ``[]`` offers none forced (not even the configuration's)."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.src.problem(pos, f"kb_articles must be a list of article ids, got {describe_type(value)}")
            return None
        found: list[str] = []
        ok = True
        for index, item in enumerate(items):
            at = item_pos(items, index) if items is value else pos
            if not isinstance(item, str) or not ARTICLE_ID.match(item.strip().lower()):
                self.src.problem(at, f"kb_articles: {describe_type(item)} is not an article id like vpn-809")
                ok = False
                continue
            article = item.strip().lower()
            known = self.known_articles
            if known is not None and article not in known:
                hint = did_you_mean(article, known)
                self.src.problem(at, f'kb_articles: unknown article "{article}"{hint}')
                ok = False
                continue
            if article not in found:
                found.append(article)
        if len(found) > 3:
            self.src.problem(pos, f"kb_articles: at most 3 articles are offered, this names {len(found)}")
            ok = False
        return tuple(found) if ok else None

    def parse(self, node: Any, pos: Pos) -> Actions | None:
        src = self.src
        if not want_map(src, node, pos, "then"):
            return None
        if not node:
            src.problem(pos, "then is empty: say what the rule does")
            return None
        before = len(src.problems)
        found: dict[str, Any] = {}
        terminals: list[str] = []
        for key, value, _, at in entries(src, node, ACTION_KEYS, "then"):
            if key in ("queue", "category", "assignee", "sla"):
                found[key] = want_text(src, value, at, key)
                if key == "queue" and found[key]:
                    self.check_queue(found[key], at)
            elif key == "priority":
                found[key] = want_choice(src, value, at, key, PRIORITIES)
            elif key == "language":
                found[key] = language = want_text(src, value, at, key)
                if language and not LANGUAGE_CODE.match(language):
                    src.problem(at, f'language must be a code like "en" or "nl", got "{language}"')
            elif key in ("tags", "notify"):
                found[key] = tuple(want_texts(src, value, at, key) or ())
                for address in found[key] if key == "notify" else ():
                    if not _ADDRESS.match(address):
                        src.problem(at, f'notify: "{address}" is not a mail address')
            elif key == "internal":
                found[key] = want_bool(src, value, at, key)
            elif key == "requester":
                found[key] = self.requester(value, at, "requester")
            elif key == "ack":
                found["ack_set"], found["ack_template"] = self.ack(value, at, "ack")
            elif key == "kb_suggest":
                found[key] = self.kb_suggest(value, at)
            elif key == "kb_articles":
                found[key] = self.kb_articles(value, at)
            else:
                terminals.append(key)
                self._terminal(key, value, at, found)
        if len(terminals) > 1:
            src.problem(
                pos,
                f"a rule can only do one of quarantine, reject, drop; this one says {', '.join(terminals)}",
            )
        if found.get("kb_suggest") is False and found.get("kb_articles"):
            src.problem(pos, "kb_articles offers articles but kb_suggest is off in the same rule; drop one")
        if len(src.problems) > before:
            return None
        return Actions(**found)

    def _terminal(self, key: str, value: Any, at: Pos, found: dict[str, Any]) -> None:
        """``quarantine``/``drop``: true or a reason; ``reject``: also a notice."""
        src = self.src
        found["terminal"] = key
        if value is True:
            return
        if key == "reject" and isinstance(value, dict):
            for name, item, _, item_at in entries(src, value, ("notice", "reason"), "reject"):
                if name == "notice":
                    found["reject_template"] = want_text(src, item, item_at, "reject.notice")
                    if found["reject_template"]:
                        self.check_template(found["reject_template"], item_at)
                else:
                    found["terminal_reason"] = want_text(src, item, item_at, "reject.reason")
            return
        if isinstance(value, str) and value.strip():
            found["terminal_reason"] = value.strip()
            return
        shape = (
            "true, a reason, or {notice: TEMPLATE, reason: TEXT}" if key == "reject" else "true or a reason"
        )
        src.problem(at, f"{key} must be {shape}, got {describe_type(value)}")
