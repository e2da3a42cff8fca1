"""A forwarded mail inside another: who wrote it, what it said, what the forwarder added.

Two shapes reach a helpdesk. Inline: the client writes a separator and a
block of the original's header fields into the body ("---------- Forwarded
message ---------" from Gmail, "-------- Forwarded Message --------" from
Thunderbird, "Begin forwarded message:" from Apple Mail, quoted with "> ",
Outlook's bare "From: … Sent: … To: … Subject:" block), each localised
(Dutch "Doorgestuurd bericht" and "Van: … Verzonden: … Aan: … Onderwerp:",
German "Weitergeleitete Nachricht" and "Von: … Gesendet: … An: … Betreff:",
French "Message transféré" and "De : … Envoyé : … À : … Objet :").
Attached: the original travels whole as a ``message/rfc822`` part.

This module only reads; whether a forward may change the ticket's
requester is the requester policy's decision (tickets/requester.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mailgate.content import reply_patterns as p
from mailgate.message import Address, ParsedMessage

# Separators that only a forward writes. "Original Message" is left out on
# purpose: Outlook writes it above replies too, so it counts only together
# with a forward prefix in the subject (see ``_GENERIC``).
_FORWARD_SEPARATOR = re.compile(
    r"^-*\s*(?:forwarded message|doorgestuurd bericht|weitergeleitete nachricht|message transféré"
    r"|message réexpédié|mensaje reenviado|messaggio inoltrato|mensagem encaminhada)\s*-*\s*:?$",
    re.IGNORECASE,
)
# "-----Original Message-----" and Outlook on the web's line of underscores.
_GENERIC = re.compile(
    r"^(?:_{8,}|-*\s*(?:original message|oorspronkelijk bericht"
    r"|ursprüngliche nachricht|message d'origine)\s*-*)$",
    re.IGNORECASE,
)
# Forward prefixes of the subject, as the clients above write them.
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|fw|doorst|wg|tr|trs|wtr|enc|rv|i)\s*:", re.IGNORECASE)

# The original's header fields, by meaning, in English, Dutch, German and
# French (Thunderbird's French writes "Sujet" and "Pour").
_LABELS: dict[str, tuple[str, ...]] = {
    "from": ("from", "van", "von", "de", "afzender"),
    "subject": ("subject", "onderwerp", "betreff", "objet", "sujet"),
    "date": ("date", "datum", "sent", "verzonden", "verstuurd", "gesendet", "envoyé", "envoye"),
    "to": ("to", "aan", "an", "à", "a", "pour"),
    "cc": ("cc", "kopie (cc)", "kopie", "copie à", "copie"),
    "reply_to": ("reply-to", "antwoord aan", "antwort an", "répondre à"),
}
_FIELD = re.compile(
    r"^\*?(?P<label>"
    + "|".join(sorted((re.escape(w) for ws in _LABELS.values() for w in ws), key=len, reverse=True))
    + r")\*?\s*[:\uff1a]\*?\s*(?P<value>.*)$",
    re.IGNORECASE,
)
_MEANING = {word: meaning for meaning, words in _LABELS.items() for word in words}
# "Name <a@b>", "Name [mailto:a@b]", "a@b", "'Name' via List <a@b>".
_ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
# The fields a header block must have for us to trust it names the original.
_REQUIRED = frozenset({"from"})
MAX_HEADER_LINES = 12


@dataclass(frozen=True)
class Forwarded:
    """The original message found inside a forward."""

    sender: Address | None
    subject: str
    text: str
    # What the forwarder wrote above the original ("can you look at this?").
    note: str
    # gmail | thunderbird | apple | outlook | attached: for explanations.
    style: str
    date: str = ""
    message_id: str | None = None


def find_forward(
    message: ParsedMessage, parse_attached: Callable[[bytes], ParsedMessage] | None = None
) -> Forwarded | None:
    """The forwarded original in ``message``, or None when it forwards nothing.

    ``parse_attached`` parses an attached ``message/rfc822`` (the parse
    stage, passed in so that this module stays free of it).
    """
    if parse_attached is not None:
        for attachment in message.attachments:
            if attachment.content_type in ("message/rfc822", "message/global") and attachment.content:
                inner = parse_attached(attachment.content)
                return Forwarded(
                    sender=inner.sender,
                    subject=inner.subject,
                    text=(inner.text or inner.new_text).strip(),
                    note=message.new_text.strip(),
                    style="attached",
                    date=inner.header("Date") or "",
                    message_id=inner.message_id,
                )
    return find_inline(message.text, forward_subject=bool(_FORWARD_SUBJECT.match(message.subject)))


def find_inline(text: str, *, forward_subject: bool = False) -> Forwarded | None:
    """An inline forward in a body text; ``forward_subject`` admits Outlook's generic shapes."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for index, line in enumerate(lines):
        bare, quoted = _unquote(line)
        content = bare.strip().strip("*").strip()
        style = _separator_style(content, forward_subject)
        if style is not None:
            start = index + 1
        elif forward_subject and _FIELD.match(content) and _meaning(content) == "from":
            # Outlook (desktop, "new" Outlook) writes the header block with no separator.
            style, start = "outlook", index
        else:
            continue
        body = [_unquote(rest)[0] if quoted else rest for rest in lines[start:]]
        found = _header_block(body)
        if found is None:
            continue
        fields, after = found
        sender = _address(fields.get("from", ""))
        if sender is None:
            continue
        original = "\n".join(body[after:]).strip("\n")
        return Forwarded(
            sender=sender,
            subject=" ".join(fields.get("subject", "").split()),
            text=_dedent(original).strip(),
            note="\n".join(lines[:index]).strip(),
            style=style,
            date=fields.get("date", ""),
        )
    return None


def _separator_style(content: str, forward_subject: bool) -> str | None:
    lowered = content.lower()
    if p.FORWARD_INTRO.match(content):
        return "apple"
    if _FORWARD_SEPARATOR.match(content):
        # Gmail writes ten dashes and a space, Thunderbird eight and "Message".
        return "gmail" if lowered.startswith("---------- ") else "thunderbird"
    if forward_subject and _GENERIC.match(content):
        return "outlook"
    return None


def _unquote(line: str) -> tuple[str, bool]:
    """One level of "> " quoting removed (Apple Mail quotes the whole forward)."""
    if line.startswith(">"):
        return line[2:] if line.startswith("> ") else line[1:], True
    return line, False


def _meaning(line: str) -> str | None:
    match = _FIELD.match(line)
    return _MEANING.get(match["label"].lower()) if match else None


def _header_block(lines: list[str]) -> tuple[dict[str, str], int] | None:
    """The header fields at the top of ``lines`` and the index where the body starts.

    Blank lines before the block are skipped. A line that is no field
    continues the field above it (Gmail wraps a long Subject) when another
    field follows; after the last field it is the body already ("new"
    Outlook leaves no blank line between fields and text).
    """
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    fields: dict[str, str] = {}
    last_field = -1
    pending: list[str] = []
    current: str | None = None
    index = first
    while index < len(lines) and index - first < MAX_HEADER_LINES and lines[index].strip():
        content = lines[index].strip().strip("*").strip()
        meaning = _meaning(content)
        if meaning is not None:
            if current is not None and pending:
                fields[current] = " ".join([fields[current], *pending])
            pending = []
            match = _FIELD.match(content)
            assert match is not None
            current = meaning
            fields.setdefault(meaning, match["value"].strip())
            last_field = index
        elif current is None:
            return None
        else:
            pending.append(content)
        index += 1
    if not fields.keys() >= _REQUIRED or last_field < 0:
        return None
    if len(fields) < 2:
        # A lone "From:" line is text, not a header block.
        return None
    return fields, last_field + 1


def _address(value: str) -> Address | None:
    found = _ADDRESS.search(value)
    if found is None:
        return None
    email = found.group(0).strip(".'").lower()
    name = value[: found.start()] + value[found.end() :]
    name = re.sub(r"\[mailto:\]|mailto:|[<>\[\]()\"]", " ", name)
    return Address(email, " ".join(name.replace("'", " ").split()).strip(" ,;"))


def _dedent(text: str) -> str:
    """Outlook indents a forwarded body by four spaces; take a common indent away."""
    lines = text.split("\n")
    indents = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines) if cut else text
