"""Authentication-Results parsing (RFC 8601) and which headers are trusted."""

from __future__ import annotations

from mailgate.rules.auth import parse_authentication_results, trusted_results


def test_parses_methods_results_and_properties() -> None:
    """Each method=result clause keeps its properties."""
    parsed = parse_authentication_results(
        "mx.example.com; spf=pass smtp.mailfrom=a.example; dkim=pass header.d=a.example "
        "header.s=sel; dmarc=fail header.from=a.example"
    )
    assert parsed is not None
    assert ("mx.example.com", [("spf", "pass"), ("dkim", "pass"), ("dmarc", "fail")], "a.example") == (
        parsed.authserv_id,
        [(r.method, r.result) for r in parsed.results],
        parsed.results[1].properties["header.d"],
    )


def test_comments_quotes_and_versions_are_handled() -> None:
    """Nested comments, quoted semicolons and method versions do not confuse it."""
    parsed = parse_authentication_results(
        'mx.example.com 1 (our (inner) mx); dkim/1 = pass (good; sig) reason="ok; fine" '
        "header.d=a.example; spf=softfail (x=y; z)"
    )
    assert parsed is not None
    assert ([("dkim", "pass"), ("spf", "softfail")], "ok; fine") == (
        [(r.method, r.result) for r in parsed.results],
        parsed.results[0].reason,
    )


def test_no_result_header() -> None:
    """`authserv-id; none` means nothing was checked."""
    parsed = parse_authentication_results("mx.example.com; none")
    assert parsed is not None and () == parsed.results


def test_garbage_is_not_a_crash() -> None:
    """Nonsense gives an empty or missing result, never an exception."""
    values = ["", ";;;", "= = =", "mx; dkim", "mx; (unclosed", 'mx; "open']
    assert all(
        parse_authentication_results(v) is None
        or all(r.method for r in parse_authentication_results(v).results)  # type: ignore[union-attr]
        for v in values
    )


def test_only_trusted_authserv_ids_count() -> None:
    """Headers from other hosts are ignored."""
    results = trusted_results(
        ["evil.example; dmarc=pass", "MX.example.com; dmarc=fail"], frozenset({"mx.example.com"})
    )
    assert ["fail"] == [r.result for r in results["dmarc"]]


def test_topmost_trusted_header_wins() -> None:
    """A forged header below the real one, claiming our name, loses."""
    results = trusted_results(
        ["mx.example.com; dkim=fail", "mx.example.com; dkim=pass"], frozenset({"mx.example.com"})
    )
    assert ["fail"] == [r.result for r in results["dkim"]]
