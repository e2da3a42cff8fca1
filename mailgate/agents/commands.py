"""``#commands`` at the top of an agent's mail (SPEC §1, agent journey 3).

Commands are read only from the first lines of what the agent wrote
(``ParsedMessage.new_text``: the quoted notification is already gone), so a
``#close`` quoted from an older mail further down never acts. Parsing is
pure; the caller decides whether the sender may command at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailgate.agents.directory import Directory
from mailgate.rules.model import PRIORITIES, STATUSES

# A command line: "#word" and an optional value; "# heading" (a space
# after the hash) is prose, not a command.
_COMMAND = re.compile(r"^#(?P<name>[A-Za-z][\w-]*)(?:[ \t]+(?P<value>.*?))?\s*$")
# "#kb ..." is checked by mailgate/kb/mailflow.py (it needs the loaded articles).
KNOWN = ("status", "resolve", "close", "priority", "assign", "queue", "tag", "internal", "merge", "kb")
# "#merge HD-12", "#merge 12", "#merge #12": the ticket this mail is about is
# merged into the one named (whether that ticket exists is checked by the caller).
_TICKET_NAME = re.compile(r"(?:[A-Za-z][A-Za-z0-9]*-|#)?\d{1,11}")
_NO_VALUE = ("resolve", "close", "internal")


@dataclass(frozen=True)
class Command:
    name: str
    value: str
    line: str


@dataclass(frozen=True)
class Commands:
    """The command lines found, and the text with them removed."""

    commands: tuple[Command, ...]
    text: str

    @property
    def internal(self) -> bool:
        return any(c.name == "internal" for c in self.commands)


@dataclass(frozen=True)
class Changes:
    """What valid commands ask for; ``errors`` says why the rest cannot be done."""

    status: str | None = None
    priority: str | None = None
    assignee: str | None = None
    unassign: bool = False
    queue: str | None = None
    tags: tuple[str, ...] = ()
    merge_into: str | None = None
    errors: tuple[str, ...] = ()
    applied: tuple[str, ...] = field(default=())

    @property
    def any(self) -> bool:
        return bool(
            self.status
            or self.priority
            or self.assignee
            or self.unassign
            or self.queue
            or self.tags
            or self.merge_into
        )


def split_commands(text: str) -> Commands:
    """Take the ``#`` lines from the top of ``text`` (blank lines between them allowed)."""
    lines = text.replace("\r\n", "\n").split("\n")
    found: list[Command] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line:
            index += 1
            continue
        match = _COMMAND.match(line)
        if match is None:
            break
        found.append(Command(match["name"].lower(), (match["value"] or "").strip(), line))
        index += 1
    rest = "\n".join(lines[index:]).strip("\n")
    return Commands(tuple(found), rest + "\n" if rest.strip() else "")


def interpret(commands: Commands, directory: Directory, sender_key: str | None = None) -> Changes:
    """Check every command's value against the directory; collect changes and errors."""
    values: dict[str, object] = {}
    tags: list[str] = []
    errors: list[str] = []
    applied: list[str] = []
    queues = {q.name for q in directory.queues}
    for command in commands.commands:
        name, value = command.name, command.value
        if name not in KNOWN:
            errors.append(f"{command.line}: unknown command; known: " + ", ".join(f"#{k}" for k in KNOWN))
            continue
        if name in _NO_VALUE:
            if value:
                errors.append(f"{command.line}: #{name} takes no value")
                continue
            if name != "internal":
                values["status"] = "resolved" if name == "resolve" else "closed"
                applied.append(command.line)
            continue
        if not value:
            errors.append(f"{command.line}: #{name} needs a value")
            continue
        if name == "status":
            if value.lower() not in STATUSES:
                errors.append(f"{command.line}: status must be one of {', '.join(STATUSES)}")
                continue
            values["status"] = value.lower()
        elif name == "priority":
            if value.lower() not in PRIORITIES:
                errors.append(f"{command.line}: priority must be one of {', '.join(PRIORITIES)}")
                continue
            values["priority"] = value.lower()
        elif name == "assign":
            if value.lower() in ("nobody", "none", "-"):
                values["unassign"] = True
            else:
                agent = directory.agent_named(sender_key if value.lower() == "me" and sender_key else value)
                if agent is None:
                    errors.append(f"{command.line}: no agent called {value!r}")
                    continue
                values["assignee"] = agent.address
        elif name == "queue":
            if queues and value not in queues:
                errors.append(
                    f"{command.line}: no queue called {value!r}; known: {', '.join(sorted(queues))}"
                )
                continue
            values["queue"] = value
        elif name == "tag":
            words = [w.strip(",").lower() for w in value.split()]
            if not all(re.fullmatch(r"[\w.-]{1,50}", w) for w in words):
                errors.append(f"{command.line}: a tag is one word of letters, digits, '.', '-' or '_'")
                continue
            tags.extend(words)
        elif name == "merge":
            if not _TICKET_NAME.fullmatch(value):
                errors.append(f"{command.line}: #merge takes one ticket, e.g. #merge HD-12")
                continue
            values["merge_into"] = value
        applied.append(command.line)
    return Changes(tags=tuple(dict.fromkeys(tags)), errors=tuple(errors), applied=tuple(applied), **values)  # type: ignore[arg-type]  # values holds only Changes fields
