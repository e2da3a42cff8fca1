"""Logins, TLS, limited servers and oversized mail against real Dovecots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from structlog.testing import capture_logs

from mailgate.config import OAuth2
from mailgate.ingest.imap import ImapFetcher, make_token_provider
from tests.imap.conftest import (
    FAST,
    Mailbox,
    Store,
    TokenIssuer,
    make_message,
    new_mailbox,
    running,
    wait_until,
)
from tests.imap.dovecot import Dovecot, TlsFiles

pytestmark = pytest.mark.dovecot


def test_wrong_password_is_auth_failed_and_other_account_still_works(dovecot: Dovecot, store: Store) -> None:
    """A rejected password gives auth_failed and a clear log line; a second account goes on."""
    good, bad = new_mailbox(dovecot), new_mailbox(dovecot)
    wrong = "not-the-password"
    with capture_logs() as logs:
        good_fetcher = ImapFetcher(good.account(), lambda: good.password, store.inbound, **FAST)
        bad_fetcher = ImapFetcher(bad.account(password=wrong), lambda: wrong, store.inbound, **FAST)
        with running(good_fetcher, bad_fetcher):
            assert wait_until(lambda: "auth_failed" == bad_fetcher.status().state)
            good.append(make_message("still working"))
            assert wait_until(lambda: 1 == store.count())
            assert wait_until(lambda: 2 <= sum(e["event"] == "imap.auth_failed" for e in logs))
    failures = [entry for entry in logs if entry["event"] == "imap.auth_failed"]
    assert {f"acct-{bad.user}"} == {entry["account"] for entry in failures}
    assert "error" == failures[0]["log_level"]
    assert "AUTHENTICATIONFAILED" in failures[0]["reason"]
    assert "authentication failed" in (bad_fetcher.status().last_error or "")
    assert not any(wrong in repr(entry) or good.password in repr(entry) for entry in logs)
    assert "stopped" == bad_fetcher.status().state


def test_server_without_move_and_idle_gets_copy_expunge_and_polling(
    dovecot_basic: Dovecot, store: Store
) -> None:
    """Without MOVE, UIDPLUS and IDLE the fetcher polls and uses COPY, \\Deleted and EXPUNGE."""
    mailbox = new_mailbox(dovecot_basic)
    account = mailbox.account(move_to="Done", poll_interval=0.2)
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    with capture_logs() as logs, running(fetcher):
        assert wait_until(lambda: "polling" == fetcher.status().state)
        mailbox.append(*(make_message(f"old server {n}") for n in range(4)))
        assert wait_until(lambda: 4 == mailbox.count("Done"))
    connected = next(entry for entry in logs if entry["event"] == "imap.connected")
    assert "poll" == connected["push"]
    assert "copy-expunge:Done" == connected["after_store"]
    assert 4 == store.count()
    assert 0 == mailbox.count("INBOX")


def test_too_large_message_is_quarantined_once_and_left_on_the_server(mailbox: Mailbox, store: Store) -> None:
    """A message over max_message_bytes is stored as headers with a reason, once, and not moved."""
    account = mailbox.account(move_to="Done", max_message_bytes=20_000, idle=False, poll_interval=0.1)
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    huge = make_message("huge attachment", body_size=200_000)
    with capture_logs() as logs, running(fetcher):
        mailbox.append(make_message("small 1"), huge, make_message("small 2"))
        assert wait_until(lambda: 3 == store.count())
        assert wait_until(lambda: 2 == mailbox.count("Done"))
        # Several more polls happen; none may fetch or store it again.
        passes = _count_passes(fetcher, wanted=5)
    quarantined = [row for row in store.rows() if row.state == "quarantined"]
    assert 1 == len(quarantined)
    assert "over the limit of 20000 bytes" in (quarantined[0].reason or "")
    assert b"Subject: huge attachment" in quarantined[0].raw
    assert len(quarantined[0].raw) < 2_000
    assert 3 == store.count()
    assert 1 == sum(entry["event"] == "imap.too_large" for entry in logs)
    assert 1 == mailbox.count("INBOX", "UNSEEN")
    assert 5 <= passes


def _count_passes(fetcher: ImapFetcher, *, wanted: int, timeout: float = 5.0) -> int:
    """How many finished passes over the folder we saw, waiting for ``wanted``."""
    seen = {fetcher.status().last_success_at}
    deadline = time.monotonic() + timeout
    while len(seen) <= wanted and time.monotonic() < deadline:
        seen.add(fetcher.status().last_success_at)
        time.sleep(0.01)
    return len(seen) - 1


def test_tls_with_the_test_ca_works_and_an_unknown_ca_is_refused(
    mailbox: Mailbox, store: Store, tls_files: TlsFiles
) -> None:
    """Implicit TLS verifies the server certificate: our CA passes, the system CAs refuse it."""
    trusted = mailbox.account(security="tls", port=mailbox.server.imaps_port, ca_file=str(tls_files.ca_cert))
    untrusted = trusted.model_copy(update={"name": "untrusted", "ca_file": None})
    with capture_logs() as logs:
        good = ImapFetcher(trusted, lambda: mailbox.password, store.inbound, **FAST)
        refused = ImapFetcher(untrusted, lambda: mailbox.password, store.inbound, **FAST)
        with running(good, refused):
            mailbox.append(make_message("over tls"))
            assert wait_until(lambda: 1 == store.count())
            assert wait_until(lambda: "backoff" == refused.status().state)
    assert "CERTIFICATE_VERIFY_FAILED" in (refused.status().last_error or "")
    assert "idle" != refused.status().state
    assert 1 == store.count()
    assert any(e["event"] == "imap.disconnected" and e["account"] == "untrusted" for e in logs)


def test_xoauth2_login_is_checked_by_the_server(
    dovecot_oauth2: Dovecot, token_issuer: TokenIssuer, store: Store, tmp_path: Path
) -> None:
    """XOAUTH2 with a token Dovecot introspects works; a revoked token is auth_failed."""
    user, _ = dovecot_oauth2.take_user()
    token_issuer.tokens["good-token-123"] = user
    token_file = tmp_path / "token"
    token_file.write_text("good-token-123\n")
    mailbox = Mailbox(dovecot_oauth2, user, "")
    account = mailbox.account(password=None, oauth2={"token_file": str(token_file)})
    tokens = make_token_provider(OAuth2(token_file=str(token_file)), tmp_path)
    fetcher = ImapFetcher(account, None, store.inbound, oauth2_token_provider=tokens, **FAST)
    with capture_logs() as logs, running(fetcher):
        assert wait_until(lambda: "idle" == fetcher.status().state)
        client = _oauth2_client(dovecot_oauth2, user, "good-token-123")
        client.append("INBOX", make_message("sent with oauth"))
        client.logout()
        assert wait_until(lambda: 1 == store.count())
        # The helper rotates the token; the old one is revoked at the issuer.
        del token_issuer.tokens["good-token-123"]
        token_file.write_text("expired-token-456\n")
        dovecot_oauth2.restart()
        assert wait_until(lambda: "auth_failed" == fetcher.status().state, timeout=15)
    assert "good-token-123" in token_issuer.checked
    assert "expired-token-456" in token_issuer.checked
    assert not any("token-" in repr(entry) for entry in logs)


def _oauth2_client(server: Dovecot, user: str, token: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10)
    client.oauth2_login(user, token)
    return client


def test_token_command_output_is_the_token_and_failures_name_no_secret(tmp_path: Path) -> None:
    """A token command's stdout is the token; a failing command raises without echoing it."""
    good = make_token_provider(OAuth2(token_command="printf 'abc123\\n'"), tmp_path)
    bad = make_token_provider(OAuth2(token_command="sh -c 'echo leaked; echo nope >&2; exit 3'"), tmp_path)
    assert "abc123" == good()
    with pytest.raises(Exception, match="exited 3: nope") as failure:
        bad()
    assert "leaked" not in str(failure.value)
