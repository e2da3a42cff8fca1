"""Fuzzing parse() with hypothesis: random bytes and mutated real messages."""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailgate.message import ParsedMessage
from mailgate.parse import parse
from tests.content.corpus import SISIMAI, ZAMMAD, needs_zammad

MAX_SECONDS = 2.0
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "content"
# Seeds in this repository; zammad's (outside it, see corpus.py) get a test of their own.
SEEDS = [path.read_bytes()[:20_000] for path in sorted(SISIMAI.glob("bsd/rfc3834-*"))]
SEEDS += [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]
ZAMMAD_SEEDS = [path.read_bytes()[:20_000] for path in sorted(ZAMMAD.glob("mail0[0-4]*.box"))]

# Fragments that steer a mutation towards MIME and header edge cases.
TOKENS = [
    b"\r\n",
    b"\r",
    b"\n\n",
    b"\x00",
    b"=?",
    b"?=",
    b"=?utf-8?b?",
    b"=?x-bad?q?",
    b"--",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Transfer-Encoding: base64\r\n",
    b"charset=",
    b"filename*0*=",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"<",
    b">",
    b'"',
    b"\xff\xfe",
    b"From: ",
    b"begin 644 x\n",
    b"\r\n ",
    b"Content-Type: application/ms-tnef\r\n",
]


def bounded_parse(raw: bytes) -> ParsedMessage:
    """parse(raw), asserting it returns a ParsedMessage within MAX_SECONDS."""
    start = time.perf_counter()
    parsed = parse(raw)
    assert time.perf_counter() - start < MAX_SECONDS
    assert isinstance(parsed, ParsedMessage)
    assert len(raw) == parsed.size
    return parsed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(raw: bytes) -> None:
    """Arbitrary bytes parse to a ParsedMessage in bounded time."""
    bounded_parse(raw)


@st.composite
def mutated_messages(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real message with a few slices replaced by random bytes or MIME tokens."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        position = draw(st.integers(min_value=0, max_value=len(raw)))
        length = draw(st.integers(min_value=0, max_value=40))
        replacement = draw(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=24)))
        raw[position : position + length] = replacement
    return bytes(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_messages(SEEDS))
def test_mutated_real_messages_never_raise(raw: bytes) -> None:
    """Real messages with random damage parse to a ParsedMessage in bounded time."""
    parsed = bounded_parse(raw)
    assert isinstance(parsed.text, str)
    assert all(isinstance(defect, str) for defect in parsed.defects)


def test_fuzz_seeds_are_found() -> None:
    """The in-repository seeds are all there: 6 sisimai auto-replies and the content fixtures."""
    assert 6 + len(list(FIXTURES.glob("*.eml"))) == len(SEEDS)


@needs_zammad
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_messages(ZAMMAD_SEEDS))
def test_mutated_zammad_messages_never_raise(raw: bytes) -> None:
    """zammad's real messages mail001-049 with random damage parse to a ParsedMessage in bounded time."""
    assert 49 == len(ZAMMAD_SEEDS)
    parsed = bounded_parse(raw)
    assert isinstance(parsed.text, str)
    assert all(isinstance(defect, str) for defect in parsed.defects)
