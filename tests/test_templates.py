"""Templates: shipped in English and Dutch, sandboxed, unable to inject headers."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from mailgate.message import Address
from mailgate.outbox.compose import OutgoingMail, compose
from mailgate.templates import TemplateSet
from tests.conftest import make_mail
from tests.helpers import deliver, outbox_mails

CONTEXT = {
    "helpdesk": {"name": "IT", "address": "helpdesk@example.com"},
    "ticket": {
        "ref": "HD-9",
        "subject": "Printer",
        "priority": "high",
        "status": "new",
        "queue": "general",
        "category": None,
    },
    "requester": {"name": "Jan", "email": "jan@example.org"},
}


@pytest.mark.parametrize(
    ("language", "phrase"),
    [("en", "Thank you for contacting IT"), ("nl", "Bedankt voor uw bericht aan IT")],
)
def test_shipped_acknowledgement_in_each_language(language: str, phrase: str) -> None:
    """The acknowledgement exists in English and Dutch, text and HTML, with the reference."""
    rendered = TemplateSet().render("ack", CONTEXT, language=language)
    assert "[HD-9] Printer" == rendered.subject
    assert phrase in rendered.text
    assert rendered.html is not None and "HD-9" in rendered.html
    assert language == rendered.language


def test_unknown_language_falls_back_to_english() -> None:
    """A ticket in a language we do not ship gets the English text."""
    assert "en" == TemplateSet().render("ack", CONTEXT, language="fi").language


def test_template_code_in_a_subject_is_data() -> None:
    """A subject that contains {{ … }} is printed as written, never evaluated."""
    context = {**CONTEXT, "ticket": {**CONTEXT["ticket"], "subject": "{{ 7*7 }} {% raw %}"}}
    rendered = TemplateSet().render("ack", context, language="en")
    assert "[HD-9] {{ 7*7 }} {% raw %}" == rendered.subject


def test_html_part_escapes_markup_from_the_requester() -> None:
    """A name or subject with HTML is escaped in the HTML part."""
    context = {
        **CONTEXT,
        "requester": {"name": "<script>alert(1)</script>", "email": "x@example.org"},
    }
    rendered = TemplateSet().render("ack", context, language="en")
    assert rendered.html is not None
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html


def test_override_templates_run_in_the_sandbox(tmp_path: Path) -> None:
    """An admin template that reaches for Python internals is stopped by the sandbox."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "ack.txt").write_text(
        "{% block subject %}x{% endblock %}{% block body %}"
        "{{ ticket.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}{% endblock %}"
    )
    with pytest.raises(SecurityError):
        TemplateSet(tmp_path).render("ack", CONTEXT, language="en")


def test_per_queue_override_wins(tmp_path: Path) -> None:
    """<templates>/<queue>/<lang>/NAME.txt overrides the shipped one for that queue only."""
    (tmp_path / "network" / "en").mkdir(parents=True)
    (tmp_path / "network" / "en" / "ack.txt").write_text(
        "{% block subject %}NET {{ ticket.ref }}{% endblock %}{% block body %}hi{% endblock %}"
    )
    templates = TemplateSet(tmp_path)
    assert "NET HD-9" == templates.render("ack", CONTEXT, language="en", queue="network").subject
    assert "[HD-9] Printer" == templates.render("ack", CONTEXT, language="en", queue="general").subject


@pytest.mark.parametrize(
    "evil",
    [
        "Printer\r\nBcc: victim@example.net",
        "Printer\nContent-Type: text/html",
        "Printer\r\n\r\n<b>body</b>",
    ],
)
def test_no_header_injection_through_subject_or_name(evil: str) -> None:
    """CR/LF in a subject or display name cannot add a header or start the body."""
    mail = OutgoingMail(
        kind="ack",
        message_id="<x@example.com>",
        from_name=f"Helpdesk {evil}",
        from_address="helpdesk@example.com",
        to=(Address("jan@example.org", f"Jan {evil}"),),
        subject=f"[HD-1] {evil}",
        text="body",
    )
    parsed = message_from_bytes(compose(mail, loop_value="helpdesk@example.com"), policy=default_policy)
    assert parsed["Bcc"] is None
    assert 1 == len(parsed.get_all("Content-Type") or [])
    assert "\n" not in parsed["Subject"]
    assert "jan@example.org" == parsed["To"].addresses[0].addr_spec


def test_requester_name_with_crlf_through_the_whole_pipeline(runtime_factory: Any) -> None:
    """An encoded From name hiding CR/LF and a Bcc comes out as one harmless To header."""
    runtime = runtime_factory()
    sender = "=?utf-8?q?Jan=0D=0ABcc=3A_victim=40example=2Enet?= <jan@example.org>"
    deliver(
        runtime,
        make_mail(sender=sender, subject="=?utf-8?q?help=0D=0ABcc=3A_x=40y=2Ez?="),
        mail_from="jan@example.org",
    )
    (ack,) = outbox_mails(runtime)
    assert ack["Bcc"] is None
    assert "jan@example.org" == parseaddr(str(ack["To"]))[1]
    assert "\n" not in str(ack["Subject"])
