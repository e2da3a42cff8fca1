"""`mailgate rules test` says who the requester would be and why, for each real-world shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.agents.conftest import FIXTURES as AGENT_FIXTURES
from tests.conftest import REPO, run_cli, write_config

FIXTURES = REPO / "tests" / "fixtures" / "requester"
CRISP = REPO / "tests" / "corpora" / "forwards" / "crisp"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, agents=str(AGENT_FIXTURES / "agents.yaml"))


def rules_test(config: Path, mail: Path) -> str:
    result = run_cli(config, "rules", "test", str(mail))
    assert 0 == result.returncode, result.stderr.decode()
    return result.stdout.decode()


# Each shape: who the requester is, from which source, and the acknowledgement template (or None).
SHAPES = {
    "contact_form_noreply.eml": ("karin@customer.example", "reply_to", "ack"),
    "contact_form_wordpress.eml": ("karin@customer.example", "reply_to", "ack"),
    "monitoring_reply_to.eml": ("piet@example.org", "reply_to", "ack"),
    "list_dmarc_mailman.eml": ("jan@example.nl", "list", None),
    "list_google_groups.eml": ("jan@example.nl", "list", None),
    "on_behalf_sender.eml": ("director@example.org", "from", "ack"),
    "person_with_reply_to.eml": ("eve@example.org", "from", "ack"),
    "noreply_no_alternative.eml": ("noreply@shop.example.com", "from", None),
}


def test_rules_test_names_the_requester_of_every_shape(config: Path) -> None:
    """A folder of shapes, --json: each mail's requester, its source, and whether it is acknowledged."""
    result = run_cli(config, "rules", "test", "--json", str(FIXTURES))
    assert 0 == result.returncode, result.stderr.decode()
    found = {
        Path(item["file"]).name: (
            item["requester"]["address"],
            item["requester"]["source"],
            item["acknowledgement"]["template"],
        )
        for item in json.loads(result.stdout)
    }
    assert SHAPES == found
    shop = next(i for i in json.loads(result.stdout) if i["file"].endswith("noreply_no_alternative.eml"))
    assert "noreply@shop.example.com is a noreply or system address" == shop["requester"]["unmailable"]


def test_rules_test_follows_an_agents_forward_to_the_original(config: Path, tmp_path: Path) -> None:
    """A saved forward delivered to Alice's forward address: the requester is John, forwarded by alice."""
    address = run_cli(config, "agents", "forward-address", "alice").stdout.decode().split()[1]
    body = (CRISP / "outlook_live_en_body_variant_2.txt").read_text(encoding="utf-8")
    mail = tmp_path / "forward.eml"
    mail.write_text(
        f"Delivered-To: {address}\nFrom: Alice Admin <alice@example.com>\nTo: {address}\n"
        "Subject: FW: Integer consequat non purus\nDate: Tue, 01 Dec 2026 09:00:00 +0100\n\n" + body
    )
    output = rules_test(config, mail)
    assert "requester:       john.doe@acme.com (source: forward)" in output
    assert "forwarded (outlook) by agent alice" in output
    stranger = tmp_path / "stranger.eml"
    stranger.write_text(mail.read_text().replace("alice@example.com", "eve@example.org"))
    output = rules_test(config, stranger)
    assert "requester:       eve@example.org (source: from)" in output
    assert "eve@example.org is not an agent" in output


def test_the_documented_rules_test_output_is_what_it_prints(config: Path) -> None:
    """docs/rules.md shows `rules test` on the contact form; those lines are the real output."""
    doc = (REPO / "docs" / "rules.md").read_text()
    found = re.search(r"<!-- rules-test: (\S+) -->\n```text\n(.*?)```", doc, re.DOTALL)
    assert found is not None
    output = rules_test(config, REPO / found.group(1))
    for line in found.group(2).splitlines():
        assert line in output.splitlines()
