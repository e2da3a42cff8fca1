"""IMAP ingest: one fetcher per account, each in its own thread.

The order of events is what keeps promises 1 and 2 (SPEC §2):

1. find candidate UIDs (RFC 9051 UID SEARCH) and drop those already stored,
   keyed ``"<UIDVALIDITY>:<UID>"``;
2. fetch the rest with ``BODY.PEEK[]`` in batches (no \\Seen side effect);
3. commit the batch to the inbound store (one transaction, durable);
4. only then flag \\Seen or MOVE on the server.

A crash or a dropped connection between 3 and 4 leaves the message on the
server but already stored: the next pass (the first one after a restart)
finds its key stored and just finishes step 4, so nothing stored stays
unread or unmoved. A second instance on the same mailbox stores nothing
twice because the store refuses a key it already has. In flag mode every
stored message is flagged at once (a second \\Seen is harmless). In move
mode only the instance whose commit stored a message moves it at once; a
message stored by someone else waits until ``finish_grace`` seconds after
it was stored, because two clients moving one message at the same moment
can leave two copies in the target folder (Dovecot's MOVE is a copy plus an
expunge, and both copies may land first).

A recreated folder gets a new UIDVALIDITY (RFC 9051 §2.3.1.1), so its
messages get new keys and are stored again; the pipeline later recognises
them by Message-ID, so nothing is lost and no second ticket is made.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from mailgate.config import ImapAccount
from mailgate.faults import crash_point
from mailgate.ingest.files import envelope_sender
from mailgate.ingest.imap_credentials import (
    TokenUnavailable,
    make_password_provider,
    make_token_provider,
)
from mailgate.ingest.imap_session import AuthenticationFailed, MailboxSession
from mailgate.message import Envelope
from mailgate.store.inbound import InboundItem, InboundStore

log = structlog.get_logger(__name__)

__all__ = [
    "AccountStatus",
    "ImapFetcher",
    "TokenUnavailable",
    "make_password_provider",
    "make_token_provider",
]

# RFC 2177 §3: servers may drop an IDLE after 30 minutes (Dovecot and most
# others at 29-30); renewing at 25 leaves room for slow clocks and NATs.
DEFAULT_IDLE_RENEW = 25 * 60.0


@dataclass(frozen=True)
class AccountStatus:
    """What one account is doing, for logs and ``mailgate doctor``."""

    name: str
    state: str  # starting|connecting|idle|polling|fetching|backoff|auth_failed|standby|stopped
    last_uid: int | None = None
    uidvalidity: int | None = None
    backlog: int = 0
    stored: int = 0
    last_error: str | None = None
    last_success_at: datetime | None = None


class ImapFetcher:
    """Fetches one account's folder into the inbound store until stopped."""

    def __init__(
        self,
        account: ImapAccount,
        password_provider: Callable[[], str] | None,
        store: InboundStore,
        *,
        oauth2_token_provider: Callable[[], str] | None = None,
        address: str | None = None,
        base_dir: Path | None = None,
        idle_renew: float = DEFAULT_IDLE_RENEW,
        idle_tick: float = 1.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        auth_retry: float = 300.0,
        finish_grace: float = 30.0,
        after_store: Callable[[Sequence[int | None]], None] | None = None,
    ) -> None:
        self._account = account
        self._password = password_provider
        self._token = oauth2_token_provider
        self._store = store
        self._recipient = address or account.username
        self._base_dir = base_dir
        self._idle_renew = idle_renew
        self._idle_tick = idle_tick
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._auth_retry = auth_retry
        self._finish_grace = finish_grace
        # Called right after each commit, before the server is touched: the
        # crash tests kill the process here.
        self._after_store = after_store
        self._source = f"imap:{account.name}"
        self._log = log.bind(account=account.name)
        self._lock = threading.Lock()
        self._status = AccountStatus(name=account.name, state="starting")
        # Per UIDVALIDITY: the highest UID we stored or finished, and the
        # UIDs we quarantined (for servers that refuse our keyword).
        self._checkpoint: int | None = None
        self._quarantined: set[int] = set()
        # UIDs stored by someone else (or by us before a crash) but still
        # in the folder, with when we first saw them so.
        self._unfinished: dict[int, float] = {}
        self._failures = 0

    # -- public -----------------------------------------------------------

    def status(self) -> AccountStatus:
        with self._lock:
            return self._status

    def standby(self) -> None:
        """Another instance holds this account (docs/scale-out.md): we wait."""
        if self.status().state != "standby":
            self._set(state="standby")

    def run(self, stop: threading.Event) -> None:
        """Fetch until ``stop`` is set; reconnects forever and never raises."""
        while not stop.is_set():
            self._set(state="connecting")
            try:
                self._session(stop)
            except AuthenticationFailed as exc:
                # Named clearly: the admin has to fix a password or token.
                # Retried slowly so a locked-out account is not hammered
                # (servers count failures, some lock the account).
                delay = self._jitter(self._auth_retry)
                self._log.error(
                    "imap.auth_failed",
                    username=self._account.username,
                    host=self._account.host,
                    reason=str(exc),
                    retry_in=round(delay, 1),
                )
                self._set(state="auth_failed", last_error=f"authentication failed: {exc}")
                stop.wait(delay)
            except Exception as exc:
                # Any other failure (network, TLS, server, database) means:
                # drop the connection, nothing flagged, reconnect later.
                self._failures += 1
                delay = self._jitter(
                    min(self._backoff_max, self._backoff_initial * 2 ** (self._failures - 1))
                )
                self._log.warning(
                    "imap.disconnected",
                    error=f"{type(exc).__name__}: {exc}",
                    attempt=self._failures,
                    retry_in=round(delay, 2),
                )
                self._set(state="backoff", last_error=f"{type(exc).__name__}: {exc}")
                stop.wait(delay)
        self._set(state="stopped")
        self._log.info("imap.stopped")

    # -- one connection -----------------------------------------------------

    def _session(self, stop: threading.Event) -> None:
        session = MailboxSession.open(
            self._account,
            password=self._password,
            oauth2_token=self._token,
            base_dir=self._base_dir,
        )
        # Connected and logged in: the next failure starts the backoff anew.
        self._failures = 0
        polite = False
        try:
            folder = session.folder
            previous = self.status().uidvalidity
            if previous is not None and previous != folder.uidvalidity:
                self._log.warning(
                    "imap.uidvalidity_changed",
                    folder=self._account.folder,
                    old=previous,
                    new=folder.uidvalidity,
                )
            if previous != folder.uidvalidity:
                # UIDs of the old UIDVALIDITY mean nothing now (RFC 9051
                # §2.3.1.1). Messages present now are not skipped: in move
                # mode all are candidates, in flag mode all unread ones.
                self._checkpoint = None
                self._quarantined = set()
                self._unfinished = {}
            if self._checkpoint is None:
                # Where an earlier run got to in this folder: in flag mode,
                # mail a human read while we were stopped is still fetched.
                self._checkpoint = self._store.last_uid(self._source, folder.uidvalidity)
            use_idle = self._account.idle and folder.can_idle
            self._log.info(
                "imap.connected",
                host=self._account.host,
                folder=self._account.folder,
                uidvalidity=folder.uidvalidity,
                messages=folder.exists,
                push="idle" if use_idle else "poll",
                after_store=self._after_store_action(session),
            )
            self._set(uidvalidity=folder.uidvalidity, last_error=None)
            if self._account.move_to and not folder.can_move:
                self._expunge_leftovers(session)
            # After the first pass, anything newer than what exists now is
            # fetched even when a human reads it before we do (flag mode).
            horizon = folder.uidnext - 1 if self._checkpoint is None and folder.uidnext else None
            while not stop.is_set():
                # Passes repeat until one finds nothing to do: mail that
                # arrived while we were busy may have been announced (EXISTS)
                # in the answer to one of our own commands, and IDLE would
                # not announce it a second time (RFC 2177 §3).
                while (self._sync(session, stop) or session.take_news()) and not stop.is_set():
                    pass
                if horizon is not None:
                    self._checkpoint = max(self._checkpoint or 0, horizon)
                    horizon = None
                if stop.is_set():
                    break
                if use_idle:
                    self._set(state="idle")
                    news = session.wait_idle(stop, renew_after=self._next_pass_in(), tick=self._idle_tick)
                    if not news and not stop.is_set():
                        # Nothing new: IDLE is re-issued after a pass (RFC 2177 §3).
                        self._log.debug("imap.idle_renewed")
                else:
                    self._set(state="polling")
                    if stop.wait(min(self._account.poll_interval, self._next_pass_in())):
                        break
                    session.noop()
            polite = True
        finally:
            session.close(polite=polite)

    def _sync(self, session: MailboxSession, stop: threading.Event) -> bool:
        """Store and finish every waiting message, one batch at a time.

        Returns True when the pass stored or finished anything.
        """
        uidvalidity = session.folder.uidvalidity
        uids = [u for u in session.candidates(after_uid=self._checkpoint) if u not in self._quarantined]
        waiting = set(uids)
        self._unfinished = {u: t for u, t in self._unfinished.items() if u in waiting}
        if not uids:
            self._set(backlog=0, last_success_at=_now())
            return False
        self._set(state="fetching", backlog=len(uids))
        started = time.monotonic()
        done = 0
        acted = False
        batch_size = self._account.batch_size
        for start in range(0, len(uids), batch_size):
            if stop.is_set():
                return acted
            batch = uids[start : start + batch_size]
            stored, touched = self._store_batch(session, uidvalidity, batch)
            acted = acted or touched
            done += len(batch)
            self._checkpoint = max(self._checkpoint or 0, batch[-1])
            self._set(
                backlog=len(uids) - done,
                last_uid=self._checkpoint,
                last_success_at=_now(),
                stored=self.status().stored + stored,
            )
            if len(uids) > batch_size:
                # A first start on a big mailbox takes a while: show progress.
                elapsed = time.monotonic() - started
                self._log.info(
                    "imap.progress",
                    done=done,
                    total=len(uids),
                    per_second=round(done / elapsed, 1) if elapsed > 0 else None,
                )
        return acted

    def _store_batch(self, session: MailboxSession, uidvalidity: int, batch: list[int]) -> tuple[int, bool]:
        """Store the batch durably, then flag/move it.

        Returns the rows added and whether anything was stored or finished.
        """
        keys = {uid: f"{uidvalidity}:{uid}" for uid in batch}
        stored_at = self._store.stored_times(self._source, keys.values())
        missing = [uid for uid in batch if keys[uid] not in stored_at]
        # Stored before (by us before a crash, or by another instance) but
        # still here unflagged or unmoved: finish them (issue 10).
        finish = self._due({uid: stored_at[keys[uid]] for uid in batch if keys[uid] in stored_at})
        too_large: list[int] = []
        added = 0
        if missing:
            limit = self._account.max_message_bytes
            sizes = session.sizes(missing) if limit is not None else {}
            too_large = [uid for uid in missing if limit is not None and sizes.get(uid, 0) > limit]
            wanted = [uid for uid in missing if uid not in too_large]
            items: list[tuple[int, InboundItem]] = []
            for uid, raw in session.bodies(wanted).items():
                items.append((uid, self._item(raw, keys[uid])))
            for uid, header in session.headers(too_large).items():
                reason = (
                    f"message of {sizes[uid]} bytes is over the limit of {limit} bytes "
                    f"of IMAP account {self._account.name}; left on the server in "
                    f"{self._account.folder} (UIDVALIDITY {uidvalidity}, UID {uid})"
                )
                self._log.warning("imap.too_large", uid=uid, size=sizes[uid], limit=limit)
                items.append((uid, self._item(header, keys[uid], reason)))
            if items:
                # The commit: only after this returns may the server change.
                ids = self._store.accept([item for _, item in items])
                added = sum(1 for row in ids if row is not None)
                if self._after_store is not None:
                    self._after_store(ids)
                crash_point("imap-stored")
                ours = [uid for (uid, _), row in zip(items, ids, strict=True) if row is not None]
                theirs = [uid for (uid, _), row in zip(items, ids, strict=True) if row is None]
                finish += [uid for uid in ours if uid not in too_large]
                # Another instance committed these first; it finishes them.
                finish += self._due({uid: _now() for uid in theirs})
            # A UID that vanished between SEARCH and FETCH was expunged by
            # someone else (a second instance moved it): nothing to do.
        session.finish(sorted(finish))
        if too_large:
            session.mark_quarantined(too_large)
            self._quarantined.update(too_large)
        if added:
            self._log.info("imap.stored", count=added, quarantined=len(too_large))
        return added, bool(missing or finish)

    def _due(self, stored_at: dict[int, datetime]) -> list[int]:
        """Which stored but unfinished UIDs to flag or move now.

        Flagging \\Seen twice is harmless, so in flag mode all of them, at
        once. Moving is not: two clients moving one message at the same
        moment can leave two copies, so in move mode a message waits until
        ``finish_grace`` after it was stored (the database's clock survives
        restarts) or after we first saw it unfinished, whichever comes first.
        The owner has moved it long before then, unless it died: a daemon
        that crashes and restarts faster than the grace still catches up.
        """
        if self._account.move_to is None:
            return sorted(stored_at)
        now = time.monotonic()
        wall_now = _now()
        due = []
        for uid, stored in sorted(stored_at.items()):
            # The store time as a monotonic instant; never in the future
            # (another host's clock may be ahead of ours).
            age = max(0.0, (wall_now - stored).total_seconds())
            first_seen = min(self._unfinished.get(uid, now), now - age)
            self._unfinished[uid] = first_seen
            if now - first_seen >= self._finish_grace:
                due.append(uid)
                del self._unfinished[uid]
        return due

    def _next_pass_in(self) -> float:
        """Seconds until the next pass must run, whatever the server says."""
        if not self._unfinished:
            return self._idle_renew
        oldest = min(self._unfinished.values())
        due_in = oldest + self._finish_grace - time.monotonic()
        return max(0.05, min(self._idle_renew, due_in))

    def _item(self, raw: bytes, key: str, quarantine_reason: str | None = None) -> InboundItem:
        envelope = Envelope(
            # The delivery agent's Return-Path if it wrote one. Mail a client
            # uploaded or moved here has none: its sender is unknown, not
            # null, so it still gets its acknowledgement (issue 10).
            mail_from=envelope_sender(raw),
            rcpt_tos=(self._recipient,),
            source=self._source,
            received_at=_now(),
        )
        return InboundItem(raw, envelope, source_key=key, quarantine_reason=quarantine_reason)

    def _expunge_leftovers(self, session: MailboxSession) -> None:
        """Finish a COPY+\\Deleted+EXPUNGE that a crash interrupted.

        Only messages we have stored are expunged: a \\Deleted flag set by
        someone else is theirs to expunge.
        """
        deleted = session.deleted_uids()
        if not deleted:
            return
        uidvalidity = session.folder.uidvalidity
        known = self._store.known_keys(self._source, (f"{uidvalidity}:{u}" for u in deleted))
        ours = [u for u in deleted if f"{uidvalidity}:{u}" in known]
        if ours and session.folder.has_uidplus:
            session.expunge(ours)

    def _after_store_action(self, session: MailboxSession) -> str:
        if self._account.move_to is None:
            return "flag-seen"
        if session.folder.can_move:
            return f"move:{self._account.move_to}"
        return f"copy-expunge:{self._account.move_to}"

    def _set(self, **changes: object) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)  # type: ignore[arg-type]  # fields checked by dataclass

    @staticmethod
    def _jitter(delay: float) -> float:
        # Full spread between half and all of the delay, so that many
        # fetchers cut off by one server restart do not return in lockstep.
        return delay * random.uniform(0.5, 1.0)


def _now() -> datetime:
    return datetime.now(UTC)
