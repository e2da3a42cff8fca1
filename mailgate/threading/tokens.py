"""Signed reply addresses: ``helpdesk+t<ticket>-<mac>@example.com``.

The MAC binds the ticket to the one recipient the address was sent to, so a
reply address works as a credential only for that sender (SPEC §2 promise
5). Keys live in a file, one hex key per line: the first signs, all verify,
so a key can be rotated in without breaking the addresses already out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

# Lower-case base32 survives MTAs that fold the local part's case.
_TOKEN = re.compile(r"^t(?P<ticket>\d{1,12})-(?P<mac>[a-z2-7]{16})$")
_MAC_BYTES = 10


@dataclass(frozen=True)
class ReplyKeys:
    keys: tuple[bytes, ...]

    @property
    def signing(self) -> bytes:
        return self.keys[0]


def load_keys(path: Path, *, create: bool = True) -> ReplyKeys:
    """Read the key file, creating it (mode 0600) with a fresh key if absent.

    A bare file name found in ``$CREDENTIALS_DIRECTORY`` (systemd's
    ``LoadCredential=reply-key:…``) wins, so the service and the MTA's pipe
    can share one configuration.
    """
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / path.name).is_file():
        path = Path(credentials) / path.name
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"{path}: reply key file missing")
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    keys = tuple(
        bytes.fromhex(line.strip())
        for line in path.read_text(encoding="ascii").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not keys:
        raise ValueError(f"{path}: no key in the reply key file")
    return ReplyKeys(keys)


def _mac(key: bytes, ticket_id: int, recipient: str) -> str:
    digest = hmac.new(key, f"reply:{ticket_id}:{recipient.strip().lower()}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:_MAC_BYTES]).decode("ascii").lower()


def make_token(keys: ReplyKeys, ticket_id: int, recipient: str) -> str:
    return f"t{ticket_id}-{_mac(keys.signing, ticket_id, recipient)}"


def reply_address(helpdesk_address: str, keys: ReplyKeys, ticket_id: int, recipient: str) -> str:
    local, _, domain = helpdesk_address.rpartition("@")
    return f"{local}+{make_token(keys, ticket_id, recipient)}@{domain}"


def token_ticket(token: str) -> int | None:
    """The ticket a token names, without checking it (for explanations)."""
    match = _TOKEN.match(token.lower())
    return int(match["ticket"]) if match else None


def verify_token(keys: ReplyKeys, token: str, sender: str) -> int | None:
    """The ticket id if ``token`` was issued to ``sender``, else None."""
    match = _TOKEN.match(token.lower())
    if match is None:
        return None
    ticket_id = int(match["ticket"])
    for key in keys.keys:
        if hmac.compare_digest(_mac(key, ticket_id, sender), match["mac"]):
            return ticket_id
    return None


def plus_tokens(helpdesk_address: str, addresses: list[str]) -> list[str]:
    """The ``+detail`` parts of those addresses that are ours."""
    local, _, domain = helpdesk_address.lower().rpartition("@")
    found = []
    for address in addresses:
        a_local, _, a_domain = address.lower().strip("<>").rpartition("@")
        if a_domain == domain and a_local.startswith(local + "+"):
            found.append(a_local[len(local) + 1 :])
    return found
