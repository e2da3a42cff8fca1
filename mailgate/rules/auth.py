"""Authentication-Results (RFC 8601): what our own border MTA verified.

Anyone can write an Authentication-Results header, so only headers whose
authserv-id is one of ours (``trusted_authserv_ids``) count. RFC 8601 §5 asks
the border MTA to delete foreign headers that claim its authserv-id; when one
slips through anyway it sits *below* the genuine header, so for each method we
believe the topmost trusted header that reports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# RFC 8601 §2.7 result words; anything else is kept but cannot be "pass".
RESULTS = frozenset(
    {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy", "hardfail"}
)
METHODS = frozenset({"spf", "dkim", "dmarc", "arc", "iprev", "auth", "bimi"})


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` clause with its properties (``header.d`` ...)."""

    method: str
    result: str
    reason: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthResults:
    """One parsed header: who wrote it and what it says."""

    authserv_id: str
    results: tuple[MethodResult, ...]


# Tokens: quoted strings, the specials RFC 8601 uses as separators, and words.
# Comments are removed beforehand because they nest, which a regex cannot do.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[;=]|[^\s;="]+')


def _strip_comments(text: str) -> str:
    """Remove (nested) RFC 5322 comments, keeping quoted strings intact."""
    out: list[str] = []
    depth = 0
    in_quotes = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\" and (in_quotes or depth):
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if in_quotes:
            in_quotes = char != '"'
            out.append(char)
        elif char == "(":
            depth += 1
            out.append(" ")
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            in_quotes = char == '"'
            out.append(char)
    return "".join(out)


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _clauses(tokens: list[str]) -> Iterator[list[str]]:
    clause: list[str] = []
    for token in tokens:
        if token == ";":
            yield clause
            clause = []
        else:
            clause.append(token)
    yield clause


def _join_dotted(tokens: list[str]) -> list[str]:
    """Glue ``header . d`` (CFWS is allowed around the dot) into ``header.d``."""
    joined: list[str] = []
    for token in tokens:
        if joined and (token.startswith(".") or joined[-1].endswith(".")) and token != "=":
            joined[-1] += token
        else:
            joined.append(token)
    return joined


def _parse_resinfo(tokens: list[str]) -> MethodResult | None:
    tokens = _join_dotted(tokens)
    # methodspec: method [ "/" version ] "=" result, where CFWS may surround
    # the slash, so the version arrives glued ("dkim/1") or apart ("/", "1").
    method, _, _ = tokens[0].partition("/")
    position = 1
    if position < len(tokens) and tokens[position].startswith("/"):
        position += 2 if tokens[position] == "/" else 1
    if position + 1 >= len(tokens) or tokens[position] != "=":
        return None
    result = _unquote(tokens[position + 1]).lower()
    position += 2
    reason: str | None = None
    properties: dict[str, str] = {}
    while position < len(tokens):
        if position + 2 < len(tokens) and tokens[position + 1] == "=":
            name, value = tokens[position].lower(), _unquote(tokens[position + 2])
            if name == "reason":
                reason = value
            elif "." in name:
                properties.setdefault(name, value)
            position += 3
        else:
            # Not a property: skip the stray word (RFC 8601 tolerates extensions).
            position += 1
    return MethodResult(method.lower(), result, reason, properties)


def parse_authentication_results(value: str) -> AuthResults | None:
    """Parse one header value; None when it has no authserv-id at all."""
    tokens = _TOKEN.findall(_strip_comments(value))
    clauses = list(_clauses(tokens))
    head = clauses[0]
    if not head or head[0] == "=":
        return None
    # head = authserv-id [ authres-version ]; the version is ignored.
    authserv_id = _unquote(head[0]).lower()
    results: list[MethodResult] = []
    for clause in clauses[1:]:
        if not clause or [token.lower() for token in clause] == ["none"]:
            continue
        parsed = _parse_resinfo(clause)
        if parsed is not None:
            results.append(parsed)
    return AuthResults(authserv_id, tuple(results))


def trusted_results(
    header_values: Iterable[str], trusted_authserv_ids: frozenset[str]
) -> dict[str, tuple[MethodResult, ...]]:
    """Per method, the results from the topmost trusted header reporting it."""
    trusted = {authserv_id.lower() for authserv_id in trusted_authserv_ids}
    by_method: dict[str, tuple[MethodResult, ...]] = {}
    for value in header_values:
        parsed = parse_authentication_results(value)
        if parsed is None or parsed.authserv_id not in trusted:
            continue
        in_this_header: dict[str, list[MethodResult]] = {}
        for result in parsed.results:
            in_this_header.setdefault(result.method, []).append(result)
        for method, results in in_this_header.items():
            by_method.setdefault(method, tuple(results))
    return by_method
