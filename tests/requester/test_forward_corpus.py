"""Forwarded mail from real clients: the original's sender, subject and text, and the forwarder's lines."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from mailgate.content.forward import find_forward, find_inline
from mailgate.parse import parse

CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "forwards"
CRISP = sorted((CORPUS / "crisp").glob("*.txt"))
# Upstream's expectations (crisp-oss/email-forward-parser test/index.js).
JOHN = ("john.doe@acme.com", "John Doe")
SUBJECT = "Integer consequat non purus"
MESSAGE = "Praesent suscipit egestas hendrerit.\n\nAliquam eget dui dui."


def test_the_corpus_covers_four_clients_in_four_languages() -> None:
    """Gmail, Outlook, Apple Mail and Thunderbird, each in English, Dutch, German and French."""
    names = {path.stem for path in CRISP}
    for client in ("gmail", "new_outlook_2019", "apple_mail", "thunderbird"):
        for language in ("en", "nl", "de", "fr"):
            assert f"{client}_{language}_body" in names


@pytest.mark.parametrize("path", CRISP, ids=lambda path: path.stem)
def test_each_client_forward_names_the_original(path: Path) -> None:
    """The original's sender, subject and text come out of every client's forward."""
    forwarded = find_inline(path.read_text(encoding="utf-8-sig"), forward_subject=True)
    assert forwarded is not None
    assert forwarded.sender is not None
    assert JOHN == (forwarded.sender.email, forwarded.sender.name)
    assert SUBJECT == forwarded.subject
    assert forwarded.text.startswith("Aenean quis diam urna.")
    assert forwarded.text.endswith("massa sagittis eget.")
    assert (MESSAGE if "variant_2" in path.stem else "") == forwarded.note


@pytest.mark.parametrize("name", ["forwarded_apple", "forwarded_gmail", "forwarded_message"])
def test_discourse_forwards_match_upstream_embedded_part(name: str) -> None:
    """email_reply_trimmer's forwards: the original is what upstream calls the embedded part."""
    folder = CORPUS / "discourse"
    forwarded = find_inline((folder / f"{name}.txt").read_text())
    embedded = (folder / f"{name}.embedded.txt").read_text()
    fields = dict(
        line.split(": ", 1) for line in embedded.split("\n\n", 1)[0].replace("\nspans", " spans").splitlines()
    )
    assert forwarded is not None and forwarded.sender is not None
    assert fields["From"].rpartition("<")[2].rstrip(">") == forwarded.sender.email
    assert fields["Subject"] == forwarded.subject
    assert embedded.strip().endswith(forwarded.text)


def test_a_reply_with_outlook_original_message_is_no_forward() -> None:
    """Outlook's "-----Original Message-----" above a reply names nobody when the subject is no forward."""
    text = (
        "Thanks, that works.\n\n-----Original Message-----\nFrom: Helpdesk <helpdesk@example.com>\n"
        "Sent: Monday, 30 November 2026 10:00\nTo: Jan <jan@example.nl>\nSubject: Your ticket\n\nHello\n"
    )
    assert find_inline(text) is None
    assert find_inline(text, forward_subject=True) is not None


def test_a_body_that_merely_mentions_from_is_no_forward() -> None:
    """A contact form's "From: Karin <…>" line without a separator or forward subject is text."""
    text = "From: Karin Visser <karin@customer.example>\nSubject: Printer\n\nMessage Body:\nIt jams.\n"
    assert find_inline(text) is None


def test_an_attached_message_is_the_original() -> None:
    """A message/rfc822 attachment gives the original whole; the outer text is the forwarder's note."""
    inner = EmailMessage()
    inner["From"] = "Karin Visser <karin@customer.example>"
    inner["Subject"] = "Scanner on floor 2"
    inner["Message-ID"] = "<inner-1@customer.example>"
    inner.set_content("The scanner on floor 2 sends empty pages.\n")
    outer = EmailMessage()
    outer["From"] = "Alice Admin <alice@example.com>"
    outer["To"] = "helpdesk@example.com"
    outer["Subject"] = "Fwd: Scanner on floor 2"
    outer.set_content("Karin phoned about this too.\n")
    outer.add_attachment(inner)
    forwarded = find_forward(parse(outer.as_bytes()), parse)
    assert forwarded is not None and forwarded.sender is not None
    assert ("attached", "karin@customer.example") == (forwarded.style, forwarded.sender.email)
    assert ("Scanner on floor 2", "<inner-1@customer.example>") == (forwarded.subject, forwarded.message_id)
    assert "The scanner on floor 2 sends empty pages." == forwarded.text
    assert "Karin phoned about this too." == forwarded.note
