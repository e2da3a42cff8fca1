"""The requester policy, shape by shape, without sockets: who a new ticket is for and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.content.forward import find_inline
from mailgate.parse import parse
from mailgate.rules import RulesError
from mailgate.rules.loader import load_rules_text
from mailgate.tickets.forwarder import ForwarderCheck
from mailgate.tickets.requester import Policy, RequesterChoice, choose, unmailable_reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "requester"
OURS = {"helpdesk@example.com", "network@example.com"}


def ours(address: str) -> bool:
    local, _, domain = address.partition("@")
    return f"{local.split('+')[0]}@{domain}" in OURS


def chosen(name: str, policy: Policy | None = None) -> RequesterChoice:
    message = parse((FIXTURES / name).read_bytes())
    return choose(message, policy or Policy(), forward=None, forwarder=None, is_ours=ours)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("contact_form_noreply.eml", ("karin@customer.example", "reply_to")),
        ("contact_form_wordpress.eml", ("karin@customer.example", "reply_to")),
        ("monitoring_reply_to.eml", ("piet@example.org", "reply_to")),
        ("list_dmarc_mailman.eml", ("jan@example.nl", "list")),
        ("list_google_groups.eml", ("jan@example.nl", "list")),
        ("on_behalf_sender.eml", ("director@example.org", "from")),
        ("person_with_reply_to.eml", ("eve@example.org", "from")),
        ("noreply_no_alternative.eml", ("noreply@shop.example.com", "from")),
    ],
)
def test_default_order_picks_the_person(name: str, expected: tuple[str, str]) -> None:
    """Defaults: the list's poster, Reply-To only behind a noreply or role From, else From."""
    choice = chosen(name)
    assert expected == (choice.email, choice.source)


def test_the_choice_explains_itself() -> None:
    """The form mail's reasons name the order and why Reply-To won."""
    choice = chosen("contact_form_noreply.eml")
    assert "order: forward, list, reply_to, from (the defaults)" == choice.reasons[0]
    assert "noreply@www.example.org is a noreply or system address" in choice.reasons[-1]
    assert choice.unmailable is None


def test_a_noreply_sender_with_nobody_else_is_flagged() -> None:
    """No usable alternative: the choice says this requester cannot be mailed."""
    choice = chosen("noreply_no_alternative.eml")
    assert "noreply@shop.example.com is a noreply or system address" == choice.unmailable


def test_reply_to_of_a_person_needs_a_rule() -> None:
    """A person's From with someone else in Reply-To stays From unless a rule says reply_to."""
    ruled = Policy(("reply_to", "from"), 'rule "shop" (line 3)', explicit=True)
    assert "victim@example.net" == chosen("person_with_reply_to.eml", ruled).email
    assert "eve@example.org" == chosen("person_with_reply_to.eml").email


def test_sender_only_when_asked() -> None:
    """On-behalf mail answers From; `requester: sender` answers the secretary."""
    asked = Policy(("sender",), "defaults.requester", explicit=True)
    assert ("secretary@example.org", "sender") == (
        chosen("on_behalf_sender.eml", asked).email,
        chosen("on_behalf_sender.eml", asked).source,
    )
    assert any("on behalf of" in reason for reason in chosen("on_behalf_sender.eml").reasons)


def test_from_only_ignores_reply_to() -> None:
    """`requester: from` turns the Reply-To rule off: the form mail is then unmailable."""
    choice = chosen("contact_form_noreply.eml", Policy(("from",), "defaults.requester", explicit=True))
    assert ("noreply@www.example.org", "from") == (choice.email, choice.source)
    assert choice.unmailable is not None


def test_our_own_address_in_reply_to_is_never_the_requester() -> None:
    """A Reply-To naming the helpdesk itself would mail ourselves: skipped, and From is flagged."""
    raw = (
        (FIXTURES / "noreply_no_alternative.eml")
        .read_bytes()
        .replace(b"To: helpdesk", b"Reply-To: helpdesk+t1-aaaaaaaaaaaaaaaa@example.com\nTo: helpdesk", 1)
    )
    choice = choose(parse(raw), Policy(), forward=None, forwarder=None, is_ours=ours)
    assert "from" == choice.source
    assert "helpdesk+t1-aaaaaaaaaaaaaaaa@example.com is one of our own addresses" == unmailable_reason(
        "helpdesk+t1-aaaaaaaaaaaaaaaa@example.com", ours
    )


def test_forward_counts_only_from_an_authenticated_agent() -> None:
    """The same forward names the original for an authenticated agent, and nobody otherwise."""
    text = (FIXTURES.parent.parent / "corpora" / "forwards" / "crisp" / "gmail_nl_body.txt").read_text()
    forward = find_inline(text)
    message = parse(b"From: Alice <alice@example.com>\nSubject: Fwd: x\n\n" + text.encode())
    agent = ForwarderCheck("alice", True, "sent to the forward address issued to alice@example.com")
    stranger = ForwarderCheck(None, False, "eve@example.org is not an agent")
    followed = choose(message, Policy(), forward=forward, forwarder=agent, is_ours=ours)
    refused = choose(message, Policy(), forward=forward, forwarder=stranger, is_ours=ours)
    assert ("john.doe@acme.com", "forward") == (followed.email, followed.source)
    assert "alice" == followed.forwarded_by
    assert ("alice@example.com", "from", None) == (refused.email, refused.source, refused.forwarded_by)
    assert any("no one can open a ticket in someone else's name" in r for r in refused.reasons)


def test_rules_file_sets_the_order() -> None:
    """`requester:` in a rule and in defaults; the decision says who chose the order."""
    rules = load_rules_text(
        "defaults:\n  requester: [list, from]\n  acknowledge_forwards: false\n"
        "rules:\n  - name: shop\n    if: {from: '*@shop.example.com'}\n    then: {requester: reply_to}\n"
    )
    from mailgate.rules import RuleContext
    from mailgate.rules.cli import envelope_for_file

    shop = parse((FIXTURES / "noreply_no_alternative.eml").read_bytes())
    form = parse((FIXTURES / "contact_form_noreply.eml").read_bytes())
    on_shop = rules.decide(shop, envelope_for_file(shop), RuleContext())
    on_form = rules.decide(form, envelope_for_file(form), RuleContext())
    assert (("reply_to",), 'rule "shop" (line 5)', True) == (
        on_shop.requester_order,
        on_shop.requester_by,
        on_shop.requester_explicit,
    )
    assert (("list", "from"), "defaults.requester", False) == (
        on_form.requester_order,
        on_form.requester_by,
        on_form.acknowledge_forwards,
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "rules:\n  - name: a\n    then: {requester: replyto}\n",
            'unknown source "replyto" (did you mean "reply_to"?)',
        ),
        ("rules:\n  - name: a\n    then: {requester: 3}\n", "requester must be one of forward, list"),
        ("defaults:\n  acknowledge_forwards: maybe\n", "defaults.acknowledge_forwards must be true or false"),
    ],
)
def test_bad_requester_settings_are_refused_with_a_line(text: str, problem: str) -> None:
    """`rules check` habits: a wrong source or flag is refused with file:line:column and a hint."""
    with pytest.raises(RulesError) as error:
        load_rules_text(text, "rules.yaml")
    assert problem in str(error.value)
    assert str(error.value).startswith(("rules.yaml:3:", "rules.yaml:2:"))


def test_from_first_still_falls_through_when_nobody_reads_it() -> None:
    """`requester: [from, reply_to]`: a person's From wins, a noreply From gives way to Reply-To."""
    policy = Policy(("from", "reply_to"), "defaults.requester", explicit=True)
    assert ("eve@example.org", "from") == (
        chosen("person_with_reply_to.eml", policy).email,
        chosen("person_with_reply_to.eml", policy).source,
    )
    form = chosen("contact_form_noreply.eml", policy)
    assert ("karin@customer.example", "reply_to") == (form.email, form.source)
    why = "noreply@www.example.org is a noreply or system address"
    assert f"From noreply@www.example.org not used: {why}" in form.reasons
