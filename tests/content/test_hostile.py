"""Hostile input: nesting, huge headers, huge HTML; all bounded in time, none raising."""

from __future__ import annotations

import time

from mailgate.parse import parse


def nested_multiparts(depth: int) -> bytes:
    """A message with ``depth`` multiparts each inside the previous one."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        for level in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--" % level for level in reversed(range(depth)))
    return b"From: a@example.com\r\n" + opening + b"Content-Type: text/plain\r\n\r\nhello" + closing


def timed_parse(raw: bytes) -> tuple[float, object]:
    """Seconds taken by parse(raw), and its result."""
    start = time.perf_counter()
    parsed = parse(raw)
    return time.perf_counter() - start, parsed


def test_moderate_nesting_finds_the_text() -> None:
    """Twenty levels of multipart still yield the innermost text."""
    assert "hello" == parse(nested_multiparts(20)).text


def test_deep_nesting_stops_at_the_limit_with_a_defect() -> None:
    """Beyond 50 levels the walk stops and says so."""
    parsed = parse(nested_multiparts(120))
    assert any("deeper than 50" in defect for defect in parsed.defects)


def test_thousand_levels_of_nesting_are_bounded() -> None:
    """1,000 nested multiparts neither recurse to death nor take long."""
    seconds, parsed = timed_parse(nested_multiparts(1000))
    assert seconds < 2.0
    assert any("MIME" in defect for defect in getattr(parsed, "defects", ()))


def test_ten_thousand_headers_and_a_megabyte_subject() -> None:
    """10,000 headers and a 1 MB encoded subject parse in bounded time, truncated with a defect."""
    raw = (
        b"From: a@example.com\r\n"
        + b"".join(b"X-Filler-%d: value\r\n" % index for index in range(9_990))
        + b"Subject: "
        + b"=?utf-8?q?abc?= " * 65_000
        + b"\r\n\r\nbody\r\n"
    )
    seconds, parsed = timed_parse(raw)
    assert seconds < 2.0
    subject = getattr(parsed, "subject", "")
    assert subject.startswith("abcabc")
    assert len(subject) <= 32 * 1024
    assert any("truncated" in defect for defect in getattr(parsed, "defects", ()))


def test_deeply_nested_html_is_bounded() -> None:
    """400 KB of unclosed <div>s do not make the sanitiser quadratic."""
    raw = b"From: a@example.com\r\nContent-Type: text/html\r\n\r\n" + b"<div>x" * 70_000
    seconds, parsed = timed_parse(raw)
    assert seconds < 5.0
    assert any("nested too deeply" in defect for defect in getattr(parsed, "defects", ()))


def test_many_recipients_are_capped() -> None:
    """A To header with 200,000 addresses keeps the first 1,000 quickly."""
    raw = b"From: a@example.com\r\nTo: " + b"x@example.com, " * 200_000 + b"\r\n\r\nx"
    seconds, parsed = timed_parse(raw)
    assert seconds < 3.0
    assert 1000 >= len(getattr(parsed, "to", ()))
