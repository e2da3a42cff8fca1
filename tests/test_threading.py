"""Threading: every reply lands on its ticket; a copied tag is not a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailgate.threading.subject import find_tags, strip_prefixes, ticket_subject
from mailgate.threading.tokens import load_keys, make_token, reply_address, verify_token
from tests.conftest import make_mail
from tests.helpers import deliver, outbox_mails, ticket, ticket_count


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Printer",
        "RE: Printer",
        "Aw: Printer",
        "AW: Printer",
        "Antw: Printer",
        "Antwort: Printer",
        "SV: Printer",
        "VS: Printer",
        "Vs: Printer",
        "Ref: Printer",
        "Réf: Printer",
        "Rif: Printer",
        "R: Printer",
        "Fwd: Printer",
        "Fw: Printer",
        "FW: Printer",
        "Doorst: Printer",
        "WG: Printer",
        "TR: Printer",
        "回复: Printer",
        "答复：Printer",
        "転送: Printer",
        "Re[2]: Printer",
        "Re(3): Printer",
        "Re : Printer",
        "RE: AW: Antw: Printer",
        "Odp: Printer",
        "RV: Printer",
        "Enc: Printer",
    ],
)
def test_reply_and_forward_prefixes_are_stripped(subject: str) -> None:
    """Localised reply/forward prefixes, stacked or counted, never reach the ticket subject."""
    assert "Printer" == strip_prefixes(subject)


@pytest.mark.parametrize(
    "subject", ["Ready: go", "Rechnung: Mai", "Printer", "Reorder toner", "[EXTERNAL] Re: x"]
)
def test_words_that_only_look_like_prefixes_stay(subject: str) -> None:
    """A subject that merely starts like a prefix is left as written."""
    assert subject == strip_prefixes(subject)


def test_ticket_subject_drops_our_tags_and_prefixes() -> None:
    """A new ticket's subject loses prefixes and our own tags, and keeps the rest."""
    assert "Printer broken" == ticket_subject("RE: AW: [HD-12] Printer broken", "HD")
    assert [12, 7] == find_tags("Re: [HD-12] and [hd-7]", "HD")


def test_token_is_bound_to_ticket_and_recipient(tmp_path: Path) -> None:
    """A reply token verifies only for the recipient it was issued to, and survives case folding."""
    keys = load_keys(tmp_path / "reply.key")
    token = make_token(keys, 42, "Alice@Example.org")
    assert 42 == verify_token(keys, token, "alice@example.org")
    assert 42 == verify_token(keys, token.upper(), "alice@example.org")
    assert verify_token(keys, token, "mallory@example.net") is None
    assert verify_token(keys, token.replace("t42", "t43"), "alice@example.org") is None


def test_keys_rotate_without_breaking_addresses_already_out(tmp_path: Path) -> None:
    """A new first key signs; the old key still verifies until it is removed."""
    path = tmp_path / "reply.key"
    old = load_keys(path)
    token = make_token(old, 7, "alice@example.org")
    path.write_text("ab" * 32 + "\n" + path.read_text())
    rotated = load_keys(path)
    assert token != make_token(rotated, 7, "alice@example.org")
    assert 7 == verify_token(rotated, token, "alice@example.org")
    path.write_text("ab" * 32 + "\n")
    assert verify_token(load_keys(path), token, "alice@example.org") is None


def test_new_key_file_is_private(tmp_path: Path) -> None:
    """The generated reply key file is readable by its owner only."""
    load_keys(tmp_path / "fresh.key")
    assert 0o600 == (tmp_path / "fresh.key").stat().st_mode & 0o777


def _first_ticket(runtime: Any) -> tuple[int, Any]:
    result = deliver(runtime, make_mail(message_id="<req@example.org>"))
    assert "done" == result.state and result.ticket_id is not None
    (ack,) = outbox_mails(runtime)
    return result.ticket_id, ack


def test_reply_to_signed_address_with_edited_subject_stays_on_ticket(runtime_factory: Any) -> None:
    """A reply to the signed Reply-To, subject rewritten and no References, lands on the ticket."""
    runtime = runtime_factory()
    ticket_id, ack = _first_ticket(runtime)
    reply = make_mail(subject="something completely different", to=ack["Reply-To"])
    result = deliver(runtime, reply, rcpts=(ack["Reply-To"],))
    assert ticket_id == result.ticket_id
    assert "reply-token" == ticket(runtime, ticket_id).articles[-1].threaded_by
    assert 1 == ticket_count(runtime)


def test_reply_by_in_reply_to_of_our_ack(runtime_factory: Any) -> None:
    """In-Reply-To naming our acknowledgement's Message-ID threads the reply."""
    runtime = runtime_factory()
    ticket_id, ack = _first_ticket(runtime)
    reply = make_mail(subject="new words", headers={"In-Reply-To": ack["Message-ID"]})
    assert ticket_id == deliver(runtime, reply).ticket_id
    assert "in-reply-to" == ticket(runtime, ticket_id).articles[-1].threaded_by


def test_reply_by_references_to_the_request(runtime_factory: Any) -> None:
    """References naming the original request thread the reply, even from a new participant."""
    runtime = runtime_factory()
    ticket_id, _ = _first_ticket(runtime)
    reply = make_mail(
        sender="Bob <bob@example.org>",
        subject="me too",
        headers={"References": "<zzz@x> <req@example.org>"},
    )
    assert ticket_id == deliver(runtime, reply, mail_from="bob@example.org").ticket_id
    assert "references" == ticket(runtime, ticket_id).articles[-1].threaded_by


def test_outlook_reply_with_only_the_tag_from_the_requester(runtime_factory: Any) -> None:
    """A bare 'AW: [HD-1] …' from the requester, without headers, threads by its tag."""
    runtime = runtime_factory()
    ticket_id, _ = _first_ticket(runtime)
    reply = make_mail(subject=f"AW: [HD-{ticket_id}] Printer on floor 3 is broken")
    assert ticket_id == deliver(runtime, reply).ticket_id
    shown = ticket(runtime, ticket_id)
    assert "subject-tag" == shown.articles[-1].threaded_by
    assert "Printer on floor 3 is broken" == shown.subject


def test_stranger_with_copied_tag_gets_a_new_ticket(runtime_factory: Any) -> None:
    """A tag is a hint, not a credential: a non-participant writing [HD-1] opens a new ticket."""
    runtime = runtime_factory()
    ticket_id, _ = _first_ticket(runtime)
    forged = make_mail(sender="Mallory <mallory@evil.example>", subject=f"Re: [HD-{ticket_id}] add me")
    result = deliver(runtime, forged, mail_from="mallory@evil.example")
    assert ticket_id != result.ticket_id
    assert 1 == len(ticket(runtime, ticket_id).articles) - 1
    assert "new ticket" in result.reason and "not a participant" in result.reason


def test_reply_address_used_by_someone_else_is_not_a_key(runtime_factory: Any) -> None:
    """Alice's signed reply address does not let Mallory post into Alice's ticket."""
    runtime = runtime_factory()
    ticket_id, ack = _first_ticket(runtime)
    forged = make_mail(sender="mallory@evil.example", subject="hi", to=ack["Reply-To"])
    result = deliver(runtime, forged, mail_from="mallory@evil.example", rcpts=(ack["Reply-To"],))
    assert ticket_id != result.ticket_id
    assert "not valid for sender" in result.reason


def test_forged_token_for_another_ticket(runtime_factory: Any) -> None:
    """A token with a made-up MAC, aimed at an existing ticket, opens a new ticket instead."""
    runtime = runtime_factory()
    ticket_id, _ = _first_ticket(runtime)
    address = f"helpdesk+t{ticket_id}-aaaaaaaaaaaaaaaa@example.com"
    result = deliver(
        runtime, make_mail(sender="alice@example.org", subject="x", to=address), rcpts=(address,)
    )
    assert ticket_id != result.ticket_id


def test_token_of_one_ticket_cannot_be_moved_to_another(runtime_factory: Any) -> None:
    """A valid token for ticket 1 with its number changed to ticket 2 does not verify."""
    runtime = runtime_factory()
    first, _ = _first_ticket(runtime)
    second = deliver(runtime, make_mail(sender="carol@example.org", subject="other")).ticket_id
    address = reply_address("helpdesk@example.com", runtime.keys, first, "alice@example.org")
    moved = address.replace(f"+t{first}-", f"+t{second}-")
    result = deliver(runtime, make_mail(subject="x", to=moved), rcpts=(moved,))
    assert result.ticket_id not in (second,)


def test_reply_does_not_get_an_acknowledgement(runtime_factory: Any) -> None:
    """Only a new ticket is acknowledged; replies are stored silently."""
    runtime = runtime_factory()
    _, ack = _first_ticket(runtime)
    deliver(runtime, make_mail(subject="more", headers={"In-Reply-To": ack["Message-ID"]}))
    assert 1 == len(outbox_mails(runtime))
