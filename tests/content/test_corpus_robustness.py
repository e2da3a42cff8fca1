"""Every sisimai bounce and every CPython email test message parses without trouble."""

from __future__ import annotations

import time
from pathlib import Path

import test as cpython_tests

from mailgate.message import ParsedMessage
from mailgate.parse import parse
from tests.content.corpus import SISIMAI

STDLIB_DATA = Path(cpython_tests.__file__).parent / "test_email" / "data"
# Per-message time bound: the slowest of these parses in ~25 ms.
MAX_SECONDS_PER_MESSAGE = 2.0


def check_all(paths: list[Path]) -> int:
    """Parse each path; assert a sane result and bounded time; return how many were parsed."""
    for path in paths:
        raw = path.read_bytes()
        start = time.perf_counter()
        parsed = parse(raw)
        seconds = time.perf_counter() - start
        assert isinstance(parsed, ParsedMessage), path
        assert len(raw) == parsed.size, path
        assert not any(d.startswith("parse failed") for d in parsed.defects), (path, parsed.defects)
        assert seconds < MAX_SECONDS_PER_MESSAGE, path
        assert len(parsed.new_text) <= len(parsed.text), path
    return len(paths)


def test_sisimai_corpus_parses() -> None:
    """All sisimai bounces, auto-replies and fragments (LF, CRLF, CR) parse cleanly."""
    paths = sorted(path for path in SISIMAI.rglob("*") if path.is_file())
    parsed = check_all(paths)
    print(f"sisimai: {parsed} messages parsed, 0 crashed")
    assert parsed >= 800


def test_cpython_email_test_data_parses() -> None:
    """All files in CPython's test_email/data parse cleanly (binary ones included)."""
    paths = sorted(path for path in STDLIB_DATA.iterdir() if path.is_file())
    parsed = check_all(paths)
    print(f"cpython test_email/data: {parsed} files parsed, 0 crashed")
    assert parsed >= 50


def test_bounce_sender_and_subject_are_read() -> None:
    """A Postfix bounce has its MAILER-DAEMON sender and subject decoded."""
    bounces = sorted(SISIMAI.glob("bsd/lhost-postfix-0*"))
    parsed = parse(bounces[0].read_bytes())
    assert parsed.sender is not None
    assert parsed.subject
