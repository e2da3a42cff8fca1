"""The reply corpora under tests/corpora: each case's input, upstream's expectation and our result.

Plain-text cases go through ``trim_reply``; whole messages and HTML bodies go
through ``parse``, the way mail reaches a ticket. HTML expectations are
compared without whitespace, as upstream's own tests compare them.
"""

from __future__ import annotations

import re
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path

from mailgate.content.reply import trim_reply
from mailgate.parse import parse

CORPORA = Path(__file__).resolve().parents[1] / "corpora"
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Case:
    """One corpus case: what upstream expects and what mailgate gives."""

    name: str
    expected: str
    got: str

    @property
    def exact(self) -> bool:
        return self.expected == self.got


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def _html_message(html: str) -> bytes:
    """A one-part text/html message carrying ``html``, as a webmail sends it."""
    return (
        b"From: Requester <requester@example.org>\r\nTo: helpdesk@example.com\r\nSubject: Re: test\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64encode(html.encode("utf-8")) + b"\r\n"
    )


def text_corpus(name: str) -> list[Case]:
    """``emails/X.txt`` trimmed against ``trimmed/X.txt``, both stripped."""
    root = CORPORA / name
    return [
        Case(
            email.stem,
            _read(root / "trimmed" / email.name).strip(),
            trim_reply(_read(email)).strip(),
        )
        for email in sorted((root / "emails").glob("*.txt"))
    ]


def talon_corpus() -> list[Case]:
    """mailgun/talon's plain replies, HTML replies and whole messages."""
    root = CORPORA / "talon"
    cases = []
    for source in sorted((root / "plain").glob("*.txt")):
        if source.name.endswith(".expected.txt"):
            continue
        expected = _read(source.with_suffix(".expected.txt")).strip()
        cases.append(Case(f"plain/{source.stem}", expected, trim_reply(_read(source)).strip()))
    for source in sorted((root / "html").glob("*.html")):
        expected = _read(source.with_suffix(".expected.txt")).strip()
        got = parse(_html_message(_read(source))).new_text
        cases.append(Case(f"html/{source.stem}", expected, _WHITESPACE.sub("", got)))
    for source in sorted((root / "eml").glob("*.eml")):
        expected = _read(source.with_suffix(".expected.txt")).strip()
        cases.append(Case(f"eml/{source.stem}", expected, parse(source.read_bytes()).new_text.strip()))
    return cases


def corpus(name: str) -> list[Case]:
    """Every case of the corpus called ``name``."""
    return talon_corpus() if name == "talon" else text_corpus(name)
