"""No lost and no doubled mail across restarts, crashes, UIDVALIDITY changes and rivals."""

from __future__ import annotations

import imaplib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from structlog.testing import capture_logs

from mailgate.ingest.imap import ImapFetcher
from mailgate.store.db import make_engine, session_factory
from mailgate.store.inbound import InboundStore
from mailgate.store.models import Inbound
from tests.imap.conftest import FAST, Mailbox, Store, make_message, running, wait_until
from tests.imap.dovecot import Dovecot

pytestmark = pytest.mark.dovecot

REPO = Path(__file__).resolve().parents[2]


def test_server_restart_mid_run_loses_nothing(dovecot: Dovecot, mailbox: Mailbox, store: Store) -> None:
    """After Dovecot restarts under an idling fetcher, it reconnects and stores everything."""
    account = mailbox.account(move_to="Done")
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    with capture_logs() as logs, running(fetcher):
        mailbox.append(*(make_message(f"before {n}") for n in range(3)))
        assert wait_until(lambda: 3 == store.count())
        assert wait_until(lambda: fetcher.status().state == "idle")
        dovecot.stop()
        # Mail delivered while the IMAP server is down (by the MTA's LDA).
        dovecot.drop_into_maildir(mailbox.user, [make_message(f"during {n}") for n in range(2)])
        dovecot.start()
        mailbox.append(*(make_message(f"after {n}") for n in range(2)))
        assert wait_until(lambda: 7 == store.count(), timeout=15), (fetcher.status(), logs)
        assert wait_until(lambda: 0 == mailbox.count("INBOX"))
    keys = [row.source_key for row in store.rows()]
    assert 7 == len(set(keys))
    assert 7 == mailbox.count("Done")
    assert any(entry["event"] == "imap.disconnected" for entry in logs)


def test_recreated_folder_with_new_uidvalidity_loses_nothing(mailbox: Mailbox, store: Store) -> None:
    """A folder deleted and recreated (new UIDVALIDITY) is fetched again under new keys only."""
    client = mailbox.client()
    client.create_folder("Helpdesk")
    client.logout()
    account = mailbox.account(folder="Helpdesk")  # flag \Seen, leave in place
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    first = [make_message(f"first {n}") for n in range(3)]
    with capture_logs() as logs, running(fetcher):
        mailbox.append(*first, folder="Helpdesk")
        assert wait_until(lambda: 3 == store.count())
        assert wait_until(lambda: 3 == mailbox.count("Helpdesk", "SEEN"))
        old_uidvalidity = fetcher.status().uidvalidity
        client = mailbox.client()
        try:
            client.delete_folder("Helpdesk")
            client.create_folder("Helpdesk")
            # The same three messages come back (a restore from backup) plus two new.
            for raw in [*first, make_message("new 0"), make_message("new 1")]:
                _append_while_dovecot_settles(client, "Helpdesk", raw)
        finally:
            client.logout()
        assert wait_until(lambda: 8 == store.count(), timeout=15)
        assert wait_until(lambda: 5 == mailbox.count("Helpdesk", "SEEN"))
    keys = Counter(row.source_key for row in store.rows())
    new_uidvalidity = fetcher.status().uidvalidity
    assert old_uidvalidity != new_uidvalidity
    assert 1 == max(keys.values())
    assert 5 == sum(1 for key in keys if key is not None and key.startswith(f"{new_uidvalidity}:"))
    # Every message of the first generation is still there; the pipeline
    # merges the repeats by Message-ID.
    assert {raw for raw in first} <= {row.raw for row in store.rows()}
    assert any(entry["event"] == "imap.uidvalidity_changed" for entry in logs)


def _append_while_dovecot_settles(client: Any, folder: str, raw: bytes) -> None:
    """APPEND right after DELETE+CREATE, as an admin's tool would: again if Dovecot
    is still dropping the old folder's index, which our fetcher held open (seen
    under load as "Mailbox was deleted under us"; the append is then not done)."""
    for attempt in range(20):
        try:
            client.append(folder, raw)
            return
        except imaplib.IMAP4.error as exc:
            if "deleted under us" not in str(exc) or attempt == 19:
                raise
            time.sleep(0.1)


KILLED_FETCHER = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    from mailgate.config import ImapAccount
    from mailgate.ingest.imap import ImapFetcher
    from mailgate.store.db import make_engine, session_factory
    from mailgate.store.inbound import InboundStore

    settings = json.loads(sys.argv[1])
    store = InboundStore(session_factory(make_engine(settings["db"])))
    account = ImapAccount(**settings["account"])

    def die_after_commit(ids):
        # The batch is committed; the server has not been told yet.
        os.kill(os.getpid(), signal.SIGKILL)

    fetcher = ImapFetcher(account, lambda: account.password, store, after_store=die_after_commit)
    fetcher.run(threading.Event())
    """
)


def test_kill_between_store_and_move_then_restart_stores_once(mailbox: Mailbox, store: Store) -> None:
    """A fetcher SIGKILLed right after its commit leaves mail that a restart only moves."""
    mailbox.append(*(make_message(f"crash {n}") for n in range(5)))
    account = mailbox.account(move_to="Done")
    settings = {"db": store.url, "account": account.model_dump(exclude_none=True)}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_FETCHER, json.dumps(settings)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert -9 == child.returncode, child.stderr.decode()
    assert 5 == store.count()
    assert 5 == mailbox.count("INBOX")
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    with running(fetcher):
        assert wait_until(lambda: 5 == mailbox.count("Done"))
    assert 5 == store.count()
    assert 0 == mailbox.count("INBOX")


def test_mail_stored_long_before_a_crash_is_moved_on_the_first_pass(mailbox: Mailbox, store: Store) -> None:
    """Stored by a run that died an hour ago: moved at connect, not after a grace of its own.

    The grace protects a live rival that is about to move what it stored; it
    counts from when the message was stored, so a daemon that restarts more
    often than the grace still moves what its dead predecessors stored.
    """
    mailbox.append(*(make_message(f"old crash {n}") for n in range(5)))
    account = mailbox.account(move_to="Done")
    settings = {"db": store.url, "account": account.model_dump(exclude_none=True)}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_FETCHER, json.dumps(settings)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert -9 == child.returncode, child.stderr.decode()
    assert 5 == mailbox.count("INBOX")
    # The crash was an hour ago: the rows say when they were stored.
    with store.engine.begin() as connection:
        connection.execute(update(Inbound).values(received_at=datetime.now(UTC) - timedelta(hours=1)))
    fetcher = ImapFetcher(account, lambda: mailbox.password, store.inbound, **{**FAST, "finish_grace": 600.0})
    with running(fetcher):
        assert wait_until(lambda: 5 == mailbox.count("Done"), timeout=15), fetcher.status()
    assert 5 == store.count()
    assert 0 == mailbox.count("INBOX")


def test_two_fetchers_on_one_mailbox_store_each_message_once(
    dovecot: Dovecot, mailbox: Mailbox, store: Store
) -> None:
    """Two mailgate instances reading one mailbox store every message exactly once."""
    dovecot.drop_into_maildir(mailbox.user, [make_message(f"early {n}") for n in range(60)])
    account = mailbox.account(move_to="Done", batch_size=10)
    first = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    # The second instance has its own engine, as a second process would.
    other_engine = make_engine(store.url)
    other_store = InboundStore(session_factory(other_engine))
    second = ImapFetcher(account, lambda: mailbox.password, other_store, **FAST)
    with running(first, second):
        for n in range(20):
            mailbox.append(make_message(f"late {n}"))
        assert wait_until(lambda: 80 == mailbox.count("Done"), timeout=20), (
            mailbox.count("INBOX"),
            mailbox.count("Done"),
            store.count(),
        )
    other_engine.dispose()
    keys = Counter(row.source_key for row in store.rows())
    assert 80 == len(keys)
    assert 1 == max(keys.values())
    assert 0 == mailbox.count("INBOX")


def test_flag_mode_restart_fetches_mail_a_human_read_meanwhile(mailbox: Mailbox, store: Store) -> None:
    """Where the last run got to comes from the database: a restart does not rely on \\Seen alone."""
    account = mailbox.account()  # flag \\Seen, leave in place
    with running(ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)):
        mailbox.append(*(make_message(f"before {n}") for n in range(2)))
        assert wait_until(lambda: 2 == store.count())
    # While mailgate is stopped, new mail arrives and a person reads all of it at once.
    client = mailbox.client()
    try:
        for n in range(2):
            client.append("INBOX", make_message(f"read meanwhile {n}"), flags=(b"\\Seen",))
    finally:
        client.logout()
    restarted = ImapFetcher(account, lambda: mailbox.password, store.inbound, **FAST)
    with running(restarted):
        assert wait_until(lambda: 4 == store.count(), timeout=15), restarted.status()
    assert 4 == len({row.source_key for row in store.rows()})
