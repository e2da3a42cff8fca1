"""VERP return paths that only mailgate can mint.

Every automatic mail leaves with its own envelope sender
``helpdesk+bounce-<outbox id>-<mac>@example.com`` (VERP, "variable envelope
return path"), so a bounce tells us which outbox row failed even when the
remote server sends free text we cannot read. The MAC binds the outbox id to
the helpdesk address with a secret key: anyone can send a fake bounce to a
guessed id, but without the key it cannot mark a requester's address as bad.

Addresses are lower-case ``[a-z0-9-]`` only and verified case-insensitively,
because some MTAs change the case of local parts (RFC 5321 §2.4 lets the
receiving host treat them as case-sensitive, so nobody should, but some do).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence

__all__ = ["parse_verp", "verp_address"]

_TAG = "bounce"
# 80 bits of HMAC-SHA256: forging one needs ~2**80 guesses at the MTA.
_MAC_BYTES = 10
_VERP_DETAIL = re.compile(rf"^{_TAG}-([1-9][0-9]*)-([a-z2-7]+)$")


def _split(address: str) -> tuple[str, str]:
    """``Local@Domain`` -> ("local", "domain"), lower-cased, brackets removed."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    return local.lower(), domain.lower()


def _mac(helpdesk_address: str, outbox_id: int, key: bytes) -> str:
    """The lower-case base32 MAC of (helpdesk address, outbox id)."""
    local, domain = _split(helpdesk_address)
    signed = f"verp\0{local}@{domain}\0{outbox_id}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def verp_address(helpdesk_address: str, outbox_id: int, key: bytes) -> str:
    """The envelope sender for outbox row ``outbox_id``."""
    if outbox_id < 1:
        raise ValueError("outbox ids are positive")
    if not key:
        raise ValueError("an empty VERP key would let anyone forge bounces")
    local, domain = _split(helpdesk_address)
    return f"{local}+{_TAG}-{outbox_id}-{_mac(helpdesk_address, outbox_id, key)}@{domain}"


def parse_verp(recipient: str, helpdesk_address: str, keys: Sequence[bytes]) -> int | None:
    """The outbox id a bounce recipient carries, or None if it is not ours.

    ``keys`` lists the current key first and older ones after it, so a
    bounce that arrives days after a key rotation still verifies.
    """
    try:
        local, domain = _split(recipient)
        helpdesk_local, helpdesk_domain = _split(helpdesk_address)
    except ValueError:
        return None
    base, plus, detail = local.partition("+")
    if domain != helpdesk_domain or base != helpdesk_local or not plus:
        return None
    match = _VERP_DETAIL.match(detail)
    if match is None:
        return None
    outbox_id = int(match.group(1))
    for key in keys:
        if key and hmac.compare_digest(match.group(2), _mac(helpdesk_address, outbox_id, key)):
            return outbox_id
    return None
