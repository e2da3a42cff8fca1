"""One logged-in IMAP connection with one folder selected.

This module speaks IMAP (through imapclient) and nothing else: it connects
with TLS or STARTTLS, logs in with a password or XOAUTH2, selects the folder
and offers the handful of UID commands the fetcher needs. It never touches
the database; :mod:`mailgate.ingest.imap` decides what to do and when.

Every command uses UIDs, never message sequence numbers: sequence numbers
shift whenever another client expunges a message (RFC 9051 §2.3.1.2), which
is how other helpdesks end up fetching one message twice or skipping one.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientError, LoginError

from mailgate.config import ImapAccount

DELETED = b"\\Deleted"
SEEN = b"\\Seen"
# Set on a message we quarantined (too large) so that later searches leave
# it alone: it stays on the server, unread, for a human, and is not fetched
# again on every poll.
QUARANTINED_KEYWORD = b"$MailgateQuarantined"

# How much of an oversized message's header we keep for the admin.
HEADER_LIMIT = 64 * 1024


class AuthenticationFailed(Exception):
    """The server refused our credentials (or we could not produce them)."""


class ConnectionLost(Exception):
    """The server said BYE or closed the connection."""


@dataclass(frozen=True)
class SelectedFolder:
    """What SELECT and CAPABILITY told us about the folder and the server."""

    uidvalidity: int
    uidnext: int | None
    exists: int
    can_idle: bool
    can_move: bool
    has_uidplus: bool
    keywords_allowed: bool


def default_port(account: ImapAccount) -> int:
    return account.port or (993 if account.security == "tls" else 143)


def tls_context(account: ImapAccount, base_dir: Path | None) -> ssl.SSLContext:
    """Certificate and host name checks on unless the account turns them off."""
    ca_file: str | None = None
    if account.ca_file:
        path = Path(account.ca_file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        ca_file = str(path)
    context = ssl.create_default_context(cafile=ca_file)
    if not account.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MailboxSession:
    """A logged-in connection with ``account.folder`` selected."""

    def __init__(self, client: IMAPClient, account: ImapAccount, folder: SelectedFolder) -> None:
        self._client = client
        self._account = account
        self.folder = folder

    @classmethod
    def open(
        cls,
        account: ImapAccount,
        *,
        password: Callable[[], str] | None,
        oauth2_token: Callable[[], str] | None,
        base_dir: Path | None = None,
    ) -> MailboxSession:
        """Connect, secure, log in and select; raise AuthenticationFailed on refusal."""
        context = tls_context(account, base_dir)
        client = IMAPClient(
            account.host,
            port=default_port(account),
            ssl=account.security == "tls",
            ssl_context=context,
            # The read timeout bounds every command; IDLE waits set their own.
            timeout=SocketTimeout(connect=account.timeout, read=account.timeout),
        )
        try:
            if account.security == "starttls":
                # imapclient raises CapabilityError when STARTTLS is not
                # offered: we never fall back to sending the password in
                # clear text (RFC 9051 §6.2.1, RFC 8314).
                client.starttls(context)
            _login(client, account, password, oauth2_token)
            # The capability list can change after login (RFC 9051 §6.2.2),
            # so it is read again here rather than from the greeting.
            capabilities = set(client.capabilities())
            response = client.select_folder(account.folder)
            folder = SelectedFolder(
                uidvalidity=int(response[b"UIDVALIDITY"]),
                uidnext=int(response[b"UIDNEXT"]) if b"UIDNEXT" in response else None,
                exists=int(response.get(b"EXISTS", 0)),
                can_idle=b"IDLE" in capabilities,
                can_move=b"MOVE" in capabilities,
                has_uidplus=b"UIDPLUS" in capabilities,
                # "\*" in PERMANENTFLAGS means new keywords may be created
                # (RFC 9051 §7.1).
                keywords_allowed=b"\\*" in tuple(response.get(b"PERMANENTFLAGS", ())),
            )
            session = cls(client, account, folder)
            if account.move_to:
                session._ensure_folder(account.move_to)
            return session
        except BaseException:
            _close_quietly(client)
            raise

    def close(self, *, polite: bool = True) -> None:
        """LOGOUT, or (after an error) just drop the socket without waiting."""
        if polite:
            _close_quietly(self._client)
        else:
            _drop(self._client)

    # -- what is waiting ------------------------------------------------------

    def candidates(self, *, after_uid: int | None) -> list[int]:
        """UIDs of messages that may still need storing, oldest first.

        In move mode every message left in the folder is a candidate. In
        flag mode the unread ones are, plus (once we know where we got to)
        anything newer than ``after_uid`` even if a human read it first.
        """
        criteria: list[Any] = ["NOT", "DELETED", "NOT", "KEYWORD", QUARANTINED_KEYWORD]
        if self._account.move_to is None:
            if after_uid is None:
                criteria.append("UNSEEN")
            else:
                criteria += ["OR", "UNSEEN", "UID", f"{after_uid + 1}:*"]
        return sorted(int(uid) for uid in self._client.search(criteria))

    def deleted_uids(self) -> list[int]:
        """UIDs flagged \\Deleted but not yet expunged (a crash mid-COPY-fallback)."""
        return sorted(int(uid) for uid in self._client.search(["DELETED"]))

    # -- fetching -------------------------------------------------------------

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE per UID, so a huge body is never downloaded by mistake."""
        found = self._fetch(uids, [b"RFC822.SIZE"])
        return {uid: int(data[b"RFC822.SIZE"]) for uid, data in found.items() if b"RFC822.SIZE" in data}

    def bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw messages; BODY.PEEK[] leaves \\Seen alone (RFC 9051 §6.4.5)."""
        found = self._fetch(uids, [b"BODY.PEEK[]"])
        return {uid: bytes(data[b"BODY[]"]) for uid, data in found.items() if b"BODY[]" in data}

    def headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        """At most HEADER_LIMIT bytes of each message's header, for quarantine."""
        found = self._fetch(uids, [f"BODY.PEEK[HEADER]<0.{HEADER_LIMIT}>".encode()])
        result: dict[int, bytes] = {}
        for uid, data in found.items():
            for key, value in data.items():
                # The answer's key carries the origin: b"BODY[HEADER]<0>".
                if isinstance(key, bytes) and key.startswith(b"BODY[HEADER]"):
                    result[uid] = bytes(value)
        return result

    def _fetch(self, uids: Sequence[int], items: list[bytes]) -> dict[int, dict[bytes, Any]]:
        if not uids:
            return {}
        try:
            response = self._client.fetch(list(uids), items)
        except IMAPClientError:
            # Another client (a second mailgate, a human) expunged some of
            # these UIDs and we have not been told yet: servers may answer
            # NO [EXPUNGEISSUED] for the whole command (RFC 5530; Dovecot
            # does). A NOOP delivers the pending EXPUNGEs; then the UID
            # FETCH simply skips the missing ones.
            self._client.noop()
            response = self._client.fetch(list(uids), items)
        wanted = set(uids)
        # Unsolicited FETCH responses (flag changes by other clients) may be
        # mixed in; keep only what we asked for.
        return {int(uid): data for uid, data in response.items() if int(uid) in wanted}

    # -- after the message is durably stored ----------------------------------

    def finish(self, uids: Sequence[int]) -> None:
        """Move the stored messages to ``move_to``, or flag them \\Seen."""
        if not uids:
            return
        try:
            self._finish(list(uids))
        except IMAPClientError:
            # Another client expunged some of them ([EXPUNGEISSUED], RFC
            # 5530): a second mailgate finished them first. Once NOOP has
            # delivered the EXPUNGEs, UID commands skip the missing UIDs.
            self._client.noop()
            self._finish(list(uids))

    def _finish(self, uids: list[int]) -> None:
        target = self._account.move_to
        if target is None:
            self._client.add_flags(uids, [SEEN], silent=True)
        elif self.folder.can_move:
            # RFC 6851 MOVE is atomic: the message is in exactly one folder
            # at every moment, even if we crash mid-command.
            self._client.move(uids, target)
        else:
            # A crash after COPY leaves a second copy in the target folder
            # (never a lost message); the next pass copies it again.
            self._client.copy(uids, target)
            self._client.add_flags(uids, [DELETED], silent=True)
            self.expunge(uids)

    def expunge(self, uids: Sequence[int]) -> None:
        if self.folder.has_uidplus:
            # UID EXPUNGE (RFC 4315) removes only our messages.
            self._client.uid_expunge(list(uids))
        else:
            # Plain EXPUNGE also removes anything a human flagged \Deleted
            # in this folder: that is what they asked for anyway, and
            # without UIDPLUS there is no narrower command.
            self._client.expunge()

    def mark_quarantined(self, uids: Sequence[int]) -> None:
        if uids and self.folder.keywords_allowed:
            self._client.add_flags(list(uids), [QUARANTINED_KEYWORD], silent=True)

    # -- waiting for new mail -------------------------------------------------

    def wait_idle(self, stop: threading.Event, *, renew_after: float, tick: float) -> bool:
        """IDLE (RFC 2177) until new mail, ``renew_after`` seconds, or stop.

        Returns True when the server announced new mail. Servers drop an
        IDLE after 30 minutes of silence (RFC 2177 §3), so callers renew
        well before that; ``tick`` bounds how long a stop request waits.
        """
        self._client.idle()
        started = time.monotonic()
        quick_empty = 0
        news = False
        try:
            while not stop.is_set():
                remaining = renew_after - (time.monotonic() - started)
                if remaining <= 0:
                    break
                wait = min(remaining, tick)
                if self._input_waiting():
                    # Already read off the socket, so idle_check's poll() would
                    # not see it: leave IDLE, and the pass that follows finds it.
                    news = True
                    break
                asked = time.monotonic()
                responses = self._client.idle_check(timeout=wait)
                for response in responses:
                    if len(response) > 0 and response[0] == b"BYE":
                        raise ConnectionLost(_text(response))
                    if len(response) > 1 and response[1] in (b"EXISTS", b"RECENT"):
                        news = True
                    # An untagged NO or BAD is a warning (RFC 9051 §7.1.2);
                    # Dovecot sends one when the selected folder was deleted
                    # and recreated under us, then waits for our next
                    # command to disconnect. Leave IDLE so that it comes.
                    if len(response) > 0 and response[0] in (b"NO", b"BAD"):
                        news = True
                if news:
                    break
                # imapclient's idle_check returns an empty list both on a
                # timeout and when the peer closed the socket (it swallows
                # the EOF). A closed socket is readable at once, so several
                # empty answers well before the timeout mean the server is
                # gone without a BYE (killed, network cut).
                if not responses and time.monotonic() - asked < wait / 2:
                    quick_empty += 1
                    if quick_empty >= 3:
                        raise ConnectionLost("connection closed during IDLE")
                else:
                    quick_empty = 0
        except ConnectionLost:
            raise
        except BaseException:
            # Leave IDLE cleanly if we can, but report the first failure.
            with contextlib.suppress(Exception):
                self._client.idle_done()
            raise
        self._client.idle_done()
        return news

    def take_news(self) -> bool:
        """Did EXISTS/RECENT arrive with the answer to one of our own commands?

        A message that lands while our SEARCH runs is announced in the SEARCH
        answer, not found by it; IDLE will not announce it again (RFC 2177
        §3). imaplib keeps such untagged answers aside; clearing them here and
        passing once more closes that window.
        """
        pending = self._client._imap.untagged_responses  # imaplib's store of untagged answers
        found = bool(pending.pop("EXISTS", None)) | bool(pending.pop("RECENT", None))
        return found

    def _input_waiting(self) -> bool:
        """Whether the server's words already wait in our buffers.

        imapclient's idle_check() polls the socket, but a line the server sent
        together with the one we read last (``+ idling`` and ``* 5 EXISTS`` in
        one packet, when mail lands as IDLE starts) sits in imaplib's buffered
        reader, or decrypted in the TLS layer, and the socket never becomes
        readable for it: the announcement waited for the next IDLE renewal.
        """
        imap = self._client._imap  # imapclient keeps imaplib's connection here
        sock = imap.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        timeout = sock.gettimeout()
        try:
            sock.setblocking(False)
            # peek() returns what is buffered; when nothing is, its one raw
            # read on the non-blocking socket returns nothing or raises.
            return bool(imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            return False
        finally:
            sock.settimeout(timeout)

    def noop(self) -> None:
        """Keep the connection alive between polls and notice a dead one."""
        self._client.noop()

    def _ensure_folder(self, name: str) -> None:
        if self._client.folder_exists(name):
            return
        try:
            self._client.create_folder(name)
        except IMAPClientError:
            # A second mailgate on the same mailbox may have just created
            # it ([ALREADYEXISTS], RFC 5530); anything else shows on MOVE.
            if not self._client.folder_exists(name):
                raise


def _login(
    client: IMAPClient,
    account: ImapAccount,
    password: Callable[[], str] | None,
    oauth2_token: Callable[[], str] | None,
) -> None:
    try:
        if oauth2_token is not None:
            # Re-read on each login so that an external helper can refresh
            # the short-lived access token between connections.
            client.oauth2_login(account.username, oauth2_token())
        elif password is not None:
            client.login(account.username, password())
        else:
            raise AuthenticationFailed("no password or OAuth2 token configured")
    except LoginError as exc:
        raise AuthenticationFailed(_server_reason(exc)) from None


def _server_reason(exc: Exception) -> str:
    """The server's words, never our request (which held the secret)."""
    text = str(exc)
    return text.split(": ", 1)[-1] if ": " in text else text


def _text(response: tuple[Any, ...]) -> str:
    return " ".join(
        part.decode("utf-8", "replace") if isinstance(part, bytes) else str(part) for part in response
    )


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        # The connection may already be gone; just release the socket.
        _drop(client)


def _drop(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()
