"""SMTP AUTH for a listener that is reachable from outside the host.

With ``listen.smtp.users_file`` set, every SMTP session must authenticate
(AUTH PLAIN or LOGIN) before MAIL, and AUTH is offered only after STARTTLS,
so a password never crosses the network in clear. The file holds one
``name:hash`` line per sender, made by ``mailgate smtp-password NAME``;
hashes are scrypt with a random salt. Mail from the host's own MTA comes
over LMTP or a loopback listener without a users file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.smtp import AuthResult, LoginPassword

log = structlog.get_logger(__name__)

# scrypt parameters (RFC 7914): 16 MiB of memory and some 50 ms per check,
# so a stolen users file is slow to attack.
_N, _R, _P = 2**14, 8, 1
_SCHEME = "scrypt"


class UsersFileError(ValueError):
    """A users file that cannot be used; the message names file and line."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(
        [
            _SCHEME,
            str(_N),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(stored: str, password: bytes) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(
            password, salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


def load_users(path: Path) -> dict[str, str]:
    """name -> hash; raises UsersFileError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsersFileError(f"{path}: cannot read: {exc.strerror}") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name or not stored.startswith(_SCHEME + "$") or stored.count("$") != 5:
            raise UsersFileError(
                f"{path}:{number}: expected NAME:HASH as printed by `mailgate smtp-password NAME`"
            )
        if name in users:
            raise UsersFileError(f"{path}:{number}: {name} appears twice")
        users[name] = stored
    if not users:
        raise UsersFileError(f"{path}: no users; add one with `mailgate smtp-password NAME >> {path}`")
    return users


# After this many refused logins from one address within the window, that
# address is refused without checking: guessing stays slow, and scrypt,
# which runs on the event loop, cannot be used to stall the listener.
FAILURES_ALLOWED = 5
FAILURE_WINDOW_SECONDS = 300.0


class Authenticator:
    """aiosmtpd's authenticator hook: PLAIN and LOGIN against the users file."""

    def __init__(self, users: Mapping[str, str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._users = dict(users)
        # scrypt is slow on purpose and runs on the event loop: a sender that
        # authenticates again with the same password is checked once.
        self._verified: set[tuple[str, bytes]] = set()
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _throttled(self, peer: str, now: float) -> bool:
        recent = self._failures.get(peer)
        while recent and recent[0] < now - FAILURE_WINDOW_SECONDS:
            recent.popleft()
        if recent is not None and not recent:
            del self._failures[peer]
            return False
        return recent is not None and len(recent) >= FAILURES_ALLOWED

    def _failed(self, peer: str, now: float) -> None:
        if len(self._failures) > 10_000:  # many addresses: forget the quiet ones
            since = now - FAILURE_WINDOW_SECONDS
            for quiet in [p for p, times in self._failures.items() if times[-1] < since]:
                del self._failures[quiet]
        self._failures.setdefault(peer, deque()).append(now)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = auth_data.login.decode("utf-8", "replace")
        peer, now = _peer(session), self._clock()
        if self._throttled(peer, now):
            log.warning("smtp.auth_throttled", user=name, mechanism=mechanism, peer=peer)
            return AuthResult(success=False, handled=False)
        remembered = (name, hashlib.sha256(auth_data.password).digest())
        stored = self._users.get(name)
        if stored is not None and (
            remembered in self._verified or verify_password(stored, auth_data.password)
        ):
            self._verified.add(remembered)
            log.info("smtp.auth_accepted", user=name, mechanism=mechanism, peer=peer)
            return AuthResult(success=True, auth_data=name)
        self._failed(peer, now)
        log.warning("smtp.auth_refused", user=name, mechanism=mechanism, peer=peer)
        return AuthResult(success=False, handled=False)


def _peer(session: Any) -> str:
    peer = getattr(session, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
