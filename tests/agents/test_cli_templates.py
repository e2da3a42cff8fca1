"""`tickets set`, `templates preview`, and templates that cannot be injected into."""

from __future__ import annotations

from typing import Any

import pytest

from mailgate.agents.admin import SAMPLE
from tests.agents.conftest import FIXTURES
from tests.conftest import make_mail, run_cli, write_config
from tests.helpers import deliver, outbox_mails, ticket

NEW_TEMPLATES = (
    "agent_notify",
    "relay",
    "internal_note",
    "status_pending",
    "resolved",
    "closed",
    "reopened",
    "csat_thanks",
    "command_rejected",
)


def test_tickets_set_has_the_same_effects_and_mails_as_commands(tmp_path: Any) -> None:
    """The CLI resolves a ticket: status, timestamp, event, and the resolution mail to the requester."""
    config = write_config(tmp_path, agents=str(FIXTURES / "agents.yaml"))
    from mailgate.config import load
    from mailgate.service.runtime import build

    runtime = build(load(config))
    deliver(runtime, make_mail(sender="Jan <jan@example.org>"), "jan@example.org")
    result = run_cli(
        config, "tickets", "set", "HD-1", "--status", "resolved", "--priority", "high", "--assign", "bob"
    )
    assert 0 == result.returncode, result.stderr.decode()
    found = ticket(runtime, 1)
    assert ("resolved", "high", "bob@example.com") == (found.status, found.priority, found.assignee)
    assert found.resolved_at is not None
    assert str(outbox_mails(runtime)[-1]["Subject"]).startswith("[HD-1] Resolved:")
    refused = run_cli(config, "tickets", "set", "1", "--assign", "carol")
    assert 1 == refused.returncode
    assert b"--assign carol: no agent called 'carol'" in refused.stderr
    runtime.engine.dispose()


def test_templates_preview_renders_sample_data(tmp_path: Any) -> None:
    """`templates preview NAME --language nl` prints the Dutch subject and body with sample data."""
    result = run_cli(write_config(tmp_path), "templates", "preview", "resolved", "--language", "nl")
    assert 0 == result.returncode, result.stderr.decode()
    assert result.stdout.decode().startswith("Subject: [HD-1042] Opgelost: The printer on floor 3 jams\n")


@pytest.mark.parametrize("language", ["en", "nl"])
def test_every_new_template_exists_in_both_languages(desk: Any, language: str) -> None:
    """Each mail of the agent flow is shipped in English and Dutch and renders with the sample data."""
    for name in NEW_TEMPLATES:
        assert language == desk.templates.render(name, SAMPLE, language=language).language


def test_subject_and_names_cannot_inject_headers_code_or_markup(desk: Any) -> None:
    """A subject and name with {{ … }}, CR/LF and HTML come out as inert text in one header line."""
    evil = "{{ helpdesk.__class__ }} <b>x</b>\r\nBcc: victim@example.net"
    raw = make_mail(
        subject="Help {{ 7*7 }} <script>x</script>", sender='"Evil {{ 7*7 }} <i>" <evil@example.org>'
    )
    deliver(desk, raw, "evil@example.org")
    for message in outbox_mails(desk):
        assert message["Bcc"] is None
        texts = [p.get_payload(decode=True).decode() for p in message.walk() if not p.is_multipart()]
        assert "49" not in str(message["Subject"]) and all("49" not in t for t in texts)
    context = {
        **SAMPLE,
        "ticket": {**SAMPLE["ticket"], "subject": evil},
        "requester": {"name": evil, "email": "x@example.org"},
    }
    for name in NEW_TEMPLATES:
        rendered = desk.templates.render(name, context, language="en")
        assert "\n" not in rendered.subject and "\r" not in rendered.subject
        assert "<class" not in rendered.subject + rendered.text
    html = desk.templates.render("ack", context, language="en").html or ""
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
