"""New mail arrives while the fetcher idles; it is stored within seconds."""

from __future__ import annotations

import statistics
import time

import pytest
from structlog.testing import capture_logs

from mailgate.ingest.imap import ImapFetcher
from tests.imap.conftest import FAST, Mailbox, Store, make_message, running, wait_until
from tests.imap.dovecot import TlsFiles

pytestmark = pytest.mark.dovecot


def test_append_while_idling_is_stored_within_two_seconds(
    mailbox: Mailbox, store: Store, tls_files: TlsFiles
) -> None:
    """A message APPENDed while the fetcher IDLEs over STARTTLS is stored in under 2 s (median)."""
    account = mailbox.account(security="starttls", ca_file=str(tls_files.ca_cert), move_to="Done")
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    latencies: list[float] = []
    with running(fetcher):
        assert wait_until(lambda: fetcher.status().state == "idle")
        for number in range(10):
            appended = time.monotonic()
            mailbox.append(make_message(f"printer {number}"))
            assert wait_until(lambda n=number: n + 1 == store.count(), timeout=10, step=0.005)
            latencies.append(time.monotonic() - appended)
    median = statistics.median(latencies)
    worst = max(latencies)
    print(f"\nIMAP IDLE append->stored: median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms")
    assert 10 == store.count()
    assert median < 2.0
    assert 0 == mailbox.count("INBOX")
    assert 10 == mailbox.count("Done")


def test_idle_is_renewed_and_still_delivers(mailbox: Mailbox, store: Store) -> None:
    """With a short renew interval IDLE is re-issued several times and new mail still arrives."""
    account = mailbox.account()
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **{**FAST, "idle_renew": 0.3})
    with capture_logs() as logs, running(fetcher):
        assert wait_until(lambda: 3 <= sum(e["event"] == "imap.idle_renewed" for e in logs))
        mailbox.append(make_message("after renewals"))
        assert wait_until(lambda: 1 == store.count(), timeout=5)
    assert 1 == mailbox.count("INBOX", "SEEN")
    assert 1 == sum(e["event"] == "imap.connected" for e in logs)
