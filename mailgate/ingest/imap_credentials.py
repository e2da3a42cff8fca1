"""Where an IMAP account's secret comes from: a password, or an OAuth2 token.

Both are read again on every login, never cached and never logged, so a
rotated password file or a refreshed access token is picked up by the next
connection without a restart.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from mailgate.config import Config, ImapAccount, OAuth2, read_secret
from mailgate.ingest.imap_session import AuthenticationFailed


class TokenUnavailable(AuthenticationFailed):
    """The OAuth2 access token could not be read or produced.

    An authentication failure like a refused token: the admin has to act,
    so the fetcher reports auth_failed and retries slowly.
    """


def make_token_provider(oauth2: OAuth2, base_dir: Path) -> Callable[[], str]:
    """An access token from ``token_file`` or from ``token_command``'s stdout.

    It is read again on every login, so an external helper (a cron job, a
    systemd timer, the command itself) can refresh the short-lived token.
    """
    if oauth2.token_command:
        argv = shlex.split(oauth2.token_command)

        def from_command() -> str:
            try:
                done = subprocess.run(argv, cwd=base_dir, capture_output=True, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise TokenUnavailable(f"token command failed: {exc}") from None
            token = done.stdout.decode("utf-8", "replace").strip()
            if done.returncode != 0 or not token:
                # stderr only: stdout may hold a (partial) token.
                why = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
                raise TokenUnavailable(
                    f"token command exited {done.returncode}" + (f": {why[0]}" if why else "")
                )
            return token

        return from_command
    if oauth2.token_file:
        path = Path(oauth2.token_file)
        path = path if path.is_absolute() else base_dir / path

        def from_file() -> str:
            try:
                token = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise TokenUnavailable(f"cannot read {path}: {exc.strerror}") from None
            if not token:
                raise TokenUnavailable(f"{path} is empty")
            return token

        return from_file
    raise ValueError("oauth2 needs token_file or token_command")


def make_password_provider(config: Config, account: ImapAccount) -> Callable[[], str] | None:
    """The account's password, re-read on each login (so rotation needs no restart)."""
    if account.password is None and account.password_file is None:
        return None

    def password() -> str:
        try:
            secret = read_secret(config, account.password, account.password_file)
        except OSError as exc:
            raise AuthenticationFailed(f"cannot read the password file: {exc.strerror}") from None
        if not secret:
            raise AuthenticationFailed("the configured password is empty")
        return secret

    return password
