"""VERP return paths: round trip, tamper resistance, case folding, key rotation."""

# STYLE.md wants the expected value on the left, which SIM300 calls a Yoda condition.

from __future__ import annotations

import re

import pytest

from mailgate.guard.verp import parse_verp, verp_address

KEY = b"current-secret-key-0123456789abcdef"
OLD_KEY = b"previous-secret-key-0123456789abcd"
HELPDESK = "Helpdesk@Example.com"


def test_address_shape() -> None:
    """The address is helpdesk+bounce-<id>-<mac>@domain, lower-case [a-z0-9-] only."""
    address = verp_address(HELPDESK, 1042, KEY)
    assert re.fullmatch(r"helpdesk\+bounce-1042-[a-z0-9]{16}@example\.com", address)


def test_round_trip() -> None:
    """parse_verp gives back the outbox id verp_address was made with."""
    assert 1042 == parse_verp(verp_address(HELPDESK, 1042, KEY), HELPDESK, [KEY])


def test_case_changed_by_an_mta_still_verifies() -> None:
    """An MTA that upper-cases the local part does not break verification."""
    address = verp_address(HELPDESK, 7, KEY).upper()
    assert 7 == parse_verp(f"<{address}>", HELPDESK, [KEY])


def test_rotated_key_is_still_accepted() -> None:
    """A bounce for mail signed with the previous key verifies after rotation."""
    address = verp_address(HELPDESK, 99, OLD_KEY)
    assert 99 == parse_verp(address, HELPDESK, [KEY, OLD_KEY])


@pytest.mark.parametrize(
    "forged",
    [
        "helpdesk+bounce-43-{mac}@example.com",  # another id with a copied MAC
        "helpdesk+bounce-042-{mac}@example.com",  # a non-canonical id
        "helpdesk+bounce-42-{mac}@evil.example",  # another domain
        "support+bounce-42-{mac}@example.com",  # another local part
        "helpdesk+bounce-42-aaaaaaaaaaaaaaaa@example.com",  # a guessed MAC
        "helpdesk+bounce-42@example.com",  # no MAC
        "helpdesk@example.com",  # no detail at all
        "not an address",
    ],
)
def test_forged_or_foreign_addresses_are_rejected(forged: str) -> None:
    """Nothing but the exact signed address yields an outbox id."""
    mac = verp_address(HELPDESK, 42, KEY).split("@")[0].rsplit("-", 1)[1]
    assert None is parse_verp(forged.format(mac=mac), HELPDESK, [KEY])


def test_unknown_key_is_rejected() -> None:
    """An address signed with a key we do not hold is not ours."""
    assert None is parse_verp(verp_address(HELPDESK, 5, b"someone-else"), HELPDESK, [KEY])


@pytest.mark.parametrize(("outbox_id", "key"), [(0, KEY), (-1, KEY), (5, b"")])
def test_bad_input_is_refused(outbox_id: int, key: bytes) -> None:
    """Non-positive ids and an empty key are programming errors."""
    with pytest.raises(ValueError):
        verp_address(HELPDESK, outbox_id, key)
