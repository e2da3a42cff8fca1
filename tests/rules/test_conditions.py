"""Each condition: what it matches, and how it explains itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailgate.message import ParsedMessage
from mailgate.rules import RuleContext, load_rules_text
from tests.rules.helpers import attachment, context, envelope, message


def verdict(
    condition: str,
    mail: ParsedMessage,
    ctx: RuleContext | None = None,
    rcpt: tuple[str, ...] = ("helpdesk@example.com",),
    when: str = "any",
    extra: str = "",
) -> tuple[bool, str]:
    """Whether a one-rule file with ``if: CONDITION`` matches, and the trace reason."""
    text = f"{extra}rules:\n  - name: r\n    when: {when}\n    if: {condition}\n    then: {{tags: [t]}}\n"
    ruleset = load_rules_text(text)
    decision = ruleset.decide(mail, envelope(rcpt), ctx or context())
    return decision.trace[0].matched, decision.trace[0].reason


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('{from: "*@example.org"}', True),
        ('{from: "ANN@EXAMPLE.ORG"}', True),
        ('{from: "bob@*"}', False),
        ("{from.domain: example.org}", True),
        ('{from.domain: "*.example.org"}', False),
        ('{from.domain: [example.org, "*.example.org"]}', True),
        ('{from.domain: {regex: "^exa"}}', True),
        ('{from.domain: "ex?mple.o[rR]g"}', True),
        ("{from.name: ann}", True),
        ("{from.name: {equals: ann, case_sensitive: true}}", False),
    ],
)
def test_sender_conditions(condition: str, expected: bool) -> None:
    """from, from.domain and from.name compare globs, regexes and names."""
    assert expected == verdict(condition, message(name="Ann Example"))[0]


def test_sender_explanation_names_the_glob_and_the_value() -> None:
    """A failed sender glob says which glob and which domain."""
    reason = verdict('{from.domain: "*.example.net"}', message(sender="bob@acme.com"))[1]
    assert 'from.domain glob "*.example.net" did not match "acme.com"' == reason


def test_missing_sender_falls_back_to_the_envelope() -> None:
    """Without a From header the envelope sender is used."""
    assert verdict('{from: "ann@example.org"}', message(sender=None))[0]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{subject: printer}", True),
        ("{subject: PRINTER}", True),
        ("{subject: {contains: PRINTER, case_sensitive: true}}", False),
        ("{subject: {equals: 'printer broken'}}", True),
        ("{subject: {equals: printer}}", False),
        ("{subject: {glob: 'Printer*'}}", True),
        ("{subject: {regex: '^printer\\s+b'}}", True),
        ("{subject: [scanner, broken]}", True),
        ("{body: 'does not'}", True),
        ("{body: {regex: 'prints?\\.$'}}", True),
    ],
)
def test_text_conditions(condition: str, expected: bool) -> None:
    """subject and body: contains, equals, glob and regex, case-insensitive by default."""
    assert expected == verdict(condition, message())[0]


def test_body_ignores_the_quoted_history() -> None:
    """body looks at what the sender wrote, not the quote below it."""
    mail = message(body="thanks")
    quoted = ParsedMessage(**{**mail.__dict__, "text": "thanks\n> URGENT", "new_text": "thanks"})
    assert not verdict("{body: urgent}", quoted)[0]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('{to: "helpdesk+*@*"}', True),
        ('{to: "helpdesk@*"}', False),
        ('{cc: "boss@example.com"}', True),
        ('{cc: "nobody@example.com"}', False),
        ("{recipient: helpdesk@example.com}", True),
        ("{plus: printer}", True),
        ("{plus: scanner}", False),
    ],
)
def test_recipient_conditions(condition: str, expected: bool) -> None:
    """to, cc, our recipient address and its plus tag."""
    mail = message(to=("helpdesk+printer@example.com",), cc=("boss@example.com",))
    assert expected == verdict(condition, mail, rcpt=("helpdesk+printer@example.com",))[0]


def test_recipient_only_counts_our_addresses() -> None:
    """A Cc to someone else is not a recipient of ours."""
    mail = message(cc=("network@example.com",))
    matched, reason = verdict("{recipient: network@example.com}", mail)
    assert (False, 'recipient glob "network@example.com" did not match "helpdesk@example.com"') == (
        matched,
        reason,
    )


def test_recipient_from_headers_when_address_is_ours() -> None:
    """An address of ours in Cc counts even if the envelope named another."""
    mail = message(cc=("network+vpn@example.com",))
    ctx = context(our_addresses=frozenset({"helpdesk@example.com", "network@example.com"}))
    assert (True, True) == (
        verdict("{recipient: network@example.com}", mail, ctx)[0],
        verdict("{plus: vpn}", mail, ctx)[0],
    )


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{header: {name: X-Priority, exists: true}}", True),
        ("{header: {name: x-priority, equals: '1 (highest)'}}", True),
        ("{header: {name: X-Priority, regex: '^1'}}", True),
        ("{header: {name: X-Priority, contains: high, case_sensitive: true}}", False),
        ("{header: {name: List-Id, exists: false}}", True),
        ("{header: {name: Received, contains: relay2}}", True),
    ],
)
def test_header_conditions(condition: str, expected: bool) -> None:
    """Any header: present, absent, or one of its values matching."""
    mail = message(
        headers=(("X-Priority", "1 (Highest)"), ("Received", "from relay1"), ("Received", "from relay2"))
    )
    assert expected == verdict(condition, mail)[0]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{attachment: true}", True),
        ("{attachment: false}", False),
        ("{attachment: {name: '*.PDF'}}", True),
        ("{attachment: {type: 'image/*'}}", False),
        ("{attachment: {name: '*.pdf', type: application/pdf}}", True),
        ("{attachment: {name: '*.pdf', type: text/plain}}", False),
    ],
)
def test_attachment_conditions(condition: str, expected: bool) -> None:
    """Attachments by presence, name glob and type; inline logos do not count."""
    mail = message(
        attachments=(
            attachment("Scan.pdf", "application/pdf"),
            attachment("logo.png", "image/png", inline=True),
        )
    )
    assert expected == verdict(condition, mail)[0]


def test_attachment_false_matches_mail_with_only_inline_images() -> None:
    """A signature logo alone is not an attachment."""
    mail = message(attachments=(attachment("logo.png", "image/png", inline=True),))
    assert verdict("{attachment: false}", mail)[0]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{size: {over: 1 KB}}", True),
        ("{size: {over: 2000}}", False),
        ("{size: {under: 2001}}", True),
        ("{size: {over: '1.5KB', under: 1MB}}", True),
    ],
)
def test_size_conditions(condition: str, expected: bool) -> None:
    """size compares the raw size with bytes or KB/MB bounds."""
    assert expected == verdict(condition, message(size=2000))[0]


def test_language_condition_uses_detection_or_the_callers_language() -> None:
    """language matches the detected language, unless the caller knows better."""
    dutch = message(body="Hallo, mijn laptop werkt niet meer. Kunnen jullie even kijken? Groeten")
    assert (True, False) == (
        verdict("{language: nl}", dutch)[0],
        verdict("{language: nl}", dutch, context(language="en"))[0],
    )


def test_language_condition_on_too_little_text() -> None:
    """A one-word mail has no language, and the trace says so."""
    matched, reason = verdict("{language: en}", message(subject="hi", body="ok"))
    assert (False, "language in en did not match unknown (too little text to tell)") == (matched, reason)


AUTH = (
    "mx.example.com; spf=pass smtp.mailfrom=example.org; "
    "dkim=fail header.d=example.org; dmarc=pass header.from=example.org"
)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{auth: {spf: pass}}", True),
        ("{auth: {dkim: pass}}", False),
        ("{auth: {dkim: [fail, none]}}", True),
        ("{auth: {spf: pass, dmarc: pass}}", True),
        ("{auth: {arc: none}}", True),
    ],
)
def test_auth_conditions(condition: str, expected: bool) -> None:
    """auth reads results from trusted Authentication-Results headers."""
    mail = message(headers=(("Authentication-Results", AUTH),))
    assert expected == verdict(condition, mail)[0]


def test_auth_ignores_untrusted_headers() -> None:
    """A header from a host we do not trust counts for nothing."""
    mail = message(headers=(("Authentication-Results", "evil.example; dmarc=pass"),))
    matched, reason = verdict("{auth: {dmarc: pass}}", mail)
    assert (False, "auth: dmarc=none (no trusted result) did not match pass") == (matched, reason)


HOURS = "business_hours:\n  office:\n    timezone: Europe/Amsterdam\n    days: {mon-fri: '08:30-17:00'}\n"


@pytest.mark.parametrize(
    ("moment", "within"),
    [
        (datetime(2026, 3, 2, 7, 45, tzinfo=UTC), True),  # 08:45 in Amsterdam (CET)
        (datetime(2026, 3, 2, 7, 15, tzinfo=UTC), False),  # 08:15
        (datetime(2026, 7, 6, 14, 45, tzinfo=UTC), True),  # 16:45 CEST
        (datetime(2026, 7, 6, 15, 15, tzinfo=UTC), False),  # 17:15 CEST
        (datetime(2026, 3, 7, 12, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_hours_conditions_follow_the_office_clock(moment: datetime, within: bool) -> None:
    """within_hours and outside_hours use the schedule's own time zone."""
    ctx = context(now=moment)
    inside = verdict("{within_hours: office}", message(), ctx, extra=HOURS)[0]
    outside = verdict("{outside_hours: office}", message(), ctx, extra=HOURS)[0]
    assert (within, not within) == (inside, outside)


def test_hours_explanation_shows_local_time() -> None:
    """The trace shows the arrival in the office's time zone."""
    reason = verdict(
        "{within_hours: office}", message(), context(now=datetime(2026, 3, 2, 20, 0, tzinfo=UTC)), extra=HOURS
    )[1]
    assert (
        "within_hours office did not match: Mon 2026-03-02 21:00 Europe/Amsterdam is outside office"
    ) == reason


@pytest.mark.parametrize(
    ("condition", "ctx", "expected"),
    [
        ("{reply: true}", context(is_reply=True), True),
        ("{reply: false}", context(is_reply=True), False),
        ("{ticket_status: [open, pending]}", context(is_reply=True, ticket_status="pending"), True),
        ("{ticket_status: closed}", context(is_reply=True, ticket_status="open"), False),
        ("{ticket_status: open}", context(), False),
    ],
)
def test_reply_conditions(condition: str, ctx: RuleContext, expected: bool) -> None:
    """reply and ticket_status look at the context the caller gives."""
    assert expected == verdict(condition, message(), ctx)[0]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{all: [{subject: printer}, {from.domain: example.org}]}", True),
        ("{all: [{subject: printer}, {from.domain: example.net}]}", False),
        ("{any: [{subject: scanner}, {from.domain: example.org}]}", True),
        ("{any: [{subject: scanner}, {from.domain: example.net}, {body: nope}]}", False),
        ("{not: {subject: printer}}", False),
        ("{not: {any: [{subject: scanner}]}}", True),
        ("{subject: printer, from.domain: example.net}", False),
    ],
)
def test_combinators(condition: str, expected: bool) -> None:
    """all, any, not, and several keys in one mapping meaning all."""
    assert expected == verdict(condition, message())[0]


def test_all_explains_the_condition_that_failed() -> None:
    """When all fails, the trace names the first failing condition."""
    reason = verdict("{subject: printer, from.domain: example.net}", message())[1]
    assert 'from.domain glob "example.net" did not match "example.org"' == reason


def test_any_explains_the_condition_that_matched() -> None:
    """When any matches, the trace names the matching condition."""
    reason = verdict("{any: [{subject: scanner}, {body: print}]}", message())[1]
    assert 'body contains "print" matched "It does not print."' == reason
