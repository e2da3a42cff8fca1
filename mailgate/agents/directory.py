"""The agent and queue directory (``agents:`` in the configuration).

Loading is pure, like the rules: one file in, a new ``Directory`` out, or a
``RulesError`` listing every ``file:line:column: reason`` at once, so a
SIGHUP with a broken file leaves the running directory in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.error import MarkedYAMLError, YAMLError

from mailgate.rules.model import Problem, RulesError
from mailgate.rules.syntax import (
    Source,
    did_you_mean,
    entries,
    item_pos,
    want_bool,
    want_choice,
    want_map,
    want_text,
)
from mailgate.rules.yamlpos import load_positioned

TOP_KEYS = ("agents", "queues", "lifecycle")
AGENT_KEYS = ("address", "name", "alternates", "queues", "language", "digest")
QUEUE_KEYS = ("address", "comment_address", "members", "reopen", "templates", "escalation")
LIFECYCLE_KEYS = ("close_resolved_after_hours", "close_pending_after_hours")
REOPEN_POLICIES = ("reopen", "new_ticket")
LANGUAGES = ("en", "nl")


@dataclass(frozen=True)
class Agent:
    """A person who answers tickets from their own mail client."""

    key: str
    address: str
    name: str
    alternates: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    language: str = "en"
    # The morning digest (docs/sla.md); an agent may turn it off.
    digest: bool = True

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.alternates)


@dataclass(frozen=True)
class Queue:
    """Where tickets wait: its addresses, who works it, what a late reply does."""

    name: str
    address: str | None = None
    comment_address: str | None = None
    members: tuple[str, ...] = ()
    reopen: str = "reopen"
    templates: str | None = None
    # The second line or team lead: hears of every service-level breach (docs/sla.md).
    escalation: str | None = None


@dataclass(frozen=True)
class Directory:
    agents: tuple[Agent, ...] = ()
    queues: tuple[Queue, ...] = ()
    # None: never close automatically.
    close_resolved_after_hours: float | None = 168.0
    close_pending_after_hours: float | None = None
    _by_address: dict[str, Agent] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for agent in self.agents:
            for address in agent.addresses:
                self._by_address[address] = agent

    def agent_for(self, address: str | None) -> Agent | None:
        """The agent who writes from ``address`` (their own or an alternate)."""
        return self._by_address.get((address or "").strip().lower())

    def agent_named(self, key_or_address: str) -> Agent | None:
        wanted = key_or_address.strip().lower()
        return next((a for a in self.agents if a.key.lower() == wanted), None) or self.agent_for(wanted)

    def queue(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)

    def members(self, queue_name: str) -> tuple[Agent, ...]:
        """Queue members: listed under the queue, or naming the queue themselves."""
        queue = self.queue(queue_name)
        listed = set(queue.members) if queue else set()
        return tuple(a for a in self.agents if a.key in listed or queue_name in a.queues)

    def reopen_policy(self, queue_name: str) -> str:
        queue = self.queue(queue_name)
        return queue.reopen if queue else "reopen"

    def template_folder(self, queue_name: str) -> str:
        queue = self.queue(queue_name)
        return (queue.templates if queue and queue.templates else None) or queue_name

    @property
    def addresses(self) -> frozenset[str]:
        """Every queue and comment address: mail to them is ours."""
        found: set[str] = set()
        for queue in self.queues:
            found.update(a for a in (queue.address, queue.comment_address) if a)
        return frozenset(found)

    def queue_for_address(self, address: str) -> Queue | None:
        wanted = address.strip().lower()
        return next((q for q in self.queues if q.address == wanted), None)

    def comment_queue(self, address: str) -> Queue | None:
        """The queue whose comment address this is, with or without a +token."""
        local, _, domain = address.strip().lower().rpartition("@")
        bare = f"{local.split('+', 1)[0]}@{domain}"
        return next((q for q in self.queues if q.comment_address in (address.lower(), bare)), None)

    @property
    def token_bases(self) -> tuple[str, ...]:
        """Comment addresses may carry a reply token as +detail, like the helpdesk's."""
        return tuple(
            q.comment_address for q in self.queues if q.comment_address and "+" not in q.comment_address
        )


def _address(src: Source, value: object, pos: tuple[int, int], what: str) -> str | None:
    text = want_text(src, value, pos, what)
    if text is None:
        return None
    local, at, domain = text.lower().rpartition("@")
    if not at or not local or "." not in domain or " " in text:
        src.problem(pos, f'{what} "{text}" is not a mail address like alice@example.com')
        return None
    return text.lower()


def _hours(src: Source, value: object, pos: tuple[int, int], what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    src.problem(pos, f"{what} must be a positive number of hours or null (never)")
    return None


def _list(src: Source, value: object, pos: tuple[int, int], what: str) -> list[tuple[Any, tuple[int, int]]]:
    if isinstance(value, str):
        return [(value, pos)]
    if not isinstance(value, list):
        src.problem(pos, f"{what} must be a list, got {type(value).__name__}")
        return []
    return [(item, item_pos(value, index)) for index, item in enumerate(value)]


def _agents(src: Source, section: Any, pos: tuple[int, int]) -> list[tuple[Agent, tuple[int, int]]]:
    found: list[tuple[Agent, tuple[int, int]]] = []
    if not want_map(src, section, pos, "agents"):
        return found
    for key, body in section.items():
        at = section.key_at.get(key, pos)
        if not want_map(src, body, at, f'agent "{key}"'):
            continue
        values: dict[str, Any] = {"key": str(key), "name": str(key)}
        for name, value, _key_at, value_at in entries(src, body, AGENT_KEYS, f'agent "{key}"'):
            if name == "address":
                values["address"] = _address(src, value, value_at, "address")
            elif name == "name":
                values["name"] = want_text(src, value, value_at, "name") or str(key)
            elif name == "alternates":
                values["alternates"] = tuple(
                    a
                    for item, item_at in _list(src, value, value_at, "alternates")
                    if (a := _address(src, item, item_at, "alternate address"))
                )
            elif name == "queues":
                values["queues"] = tuple(
                    q
                    for item, item_at in _list(src, value, value_at, "queues")
                    if (q := want_text(src, item, item_at, "queue name"))
                )
            elif name == "language":
                values["language"] = want_choice(src, value, value_at, "language", LANGUAGES) or "en"
            elif name == "digest":
                values["digest"] = want_bool(src, value, value_at, "digest") is not False
        if "address" not in body:
            src.problem(at, f'agent "{key}" needs an address')
        # An agent with a bad address is still listed for the cross-checks (so
        # one typo does not cascade into "not an agent" everywhere); load
        # fails anyway because the problem is recorded.
        values["address"] = values.get("address") or ""
        found.append((Agent(**values), at))
    return found


def _queues(
    src: Source, section: Any, pos: tuple[int, int]
) -> list[tuple[Queue, tuple[int, int], dict[str, Any]]]:
    found: list[tuple[Queue, tuple[int, int], dict[str, Any]]] = []
    if not want_map(src, section, pos, "queues"):
        return found
    for key, body in section.items():
        at = section.key_at.get(key, pos)
        if body is None:
            found.append((Queue(str(key)), at, {}))
            continue
        if not want_map(src, body, at, f'queue "{key}"'):
            continue
        values: dict[str, Any] = {"name": str(key)}
        member_pos: dict[str, Any] = {}
        for name, value, _key_at, value_at in entries(src, body, QUEUE_KEYS, f'queue "{key}"'):
            if name in ("address", "comment_address", "escalation"):
                values[name] = _address(src, value, value_at, name.replace("_", " "))
            elif name == "members":
                members = []
                for item, item_at in _list(src, value, value_at, "members"):
                    if (member := want_text(src, item, item_at, "member")) is not None:
                        members.append(member)
                        member_pos[member] = item_at
                values["members"] = tuple(members)
            elif name == "reopen":
                values["reopen"] = want_choice(src, value, value_at, "reopen", REOPEN_POLICIES) or "reopen"
            elif name == "templates":
                values["templates"] = want_text(src, value, value_at, "templates")
        found.append((Queue(**values), at, member_pos))
    return found


def load_directory_text(text: str, file: str = "<agents>", *, helpdesk_address: str = "") -> Directory:
    src = Source(file)
    try:
        document, duplicates = load_positioned(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        src.problem((mark.line, mark.column) if mark else (0, 0), f"YAML: {error.problem or error.context}")
        raise RulesError(src.problems) from error
    except (YAMLError, ValueError) as error:
        raise RulesError([Problem(file, 1, 1, f"YAML: {error}")]) from error
    for at, reason in duplicates:
        src.problem(at, reason)
    if document is None:
        return Directory()
    if not want_map(src, document, (0, 0), "the agents file"):
        raise RulesError(src.problems)
    agents: list[tuple[Agent, tuple[int, int]]] = []
    queues: list[tuple[Queue, tuple[int, int], dict[str, Any]]] = []
    lifecycle: dict[str, float | None] = {}
    for name, value, _key_at, value_at in entries(src, document, TOP_KEYS, "the agents file"):
        if name == "agents":
            agents = _agents(src, value, value_at)
        elif name == "queues":
            queues = _queues(src, value, value_at)
        elif name == "lifecycle" and want_map(src, value, value_at, "lifecycle"):
            for key, hours, _k, hours_at in entries(src, value, LIFECYCLE_KEYS, "lifecycle"):
                lifecycle[key] = _hours(src, hours, hours_at, key)
    _cross_check(src, agents, queues, helpdesk_address)
    if src.problems:
        raise RulesError(src.problems)
    # Agents with a bad address were kept only for the checks above.
    return Directory(tuple(a for a, _ in agents if a.address), tuple(q for q, _, _ in queues), **lifecycle)


def _cross_check(
    src: Source,
    agents: list[tuple[Agent, tuple[int, int]]],
    queues: list[tuple[Queue, tuple[int, int], dict[str, Any]]],
    helpdesk_address: str,
) -> None:
    """Names that must refer to something, and addresses that must be unique."""
    keys = {agent.key for agent, _ in agents}
    names = {queue.name for queue, _, _ in queues}
    owner: dict[str, str] = {}
    if helpdesk_address:
        owner[helpdesk_address.lower()] = "the helpdesk address"
    for agent, at in agents:
        for wanted in agent.queues:
            if wanted not in names:
                src.problem(
                    at, f'agent "{agent.key}": queue "{wanted}" is not defined{did_you_mean(wanted, names)}'
                )
        for address in agent.addresses:
            if not address:
                continue
            if address in owner:
                src.problem(at, f'agent "{agent.key}": {address} is already {owner[address]}')
            owner[address] = f'agent "{agent.key}"'
    for listed, at, member_pos in queues:
        queue = listed
        for member in queue.members:
            if member not in keys:
                src.problem(
                    member_pos.get(member, at),
                    f'queue "{queue.name}": member "{member}" is not an agent{did_you_mean(member, keys)}',
                )
        for address in [a for a in (queue.address, queue.comment_address) if a]:
            if address in owner:
                src.problem(at, f'queue "{queue.name}": {address} is already {owner[address]}')
            owner[address] = f'queue "{queue.name}"'
        if queue.comment_address and queue.address and queue.comment_address == queue.address:
            src.problem(at, f'queue "{queue.name}": the comment address must differ from the queue address')


def load_directory(path: Path, *, helpdesk_address: str = "") -> Directory:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RulesError([Problem(str(path), 1, 1, f"cannot read the file: {error.strerror}")]) from error
    return load_directory_text(text, str(path), helpdesk_address=helpdesk_address)
