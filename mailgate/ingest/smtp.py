"""SMTP and LMTP listeners (aiosmtpd): 250 only once the message is durable.

The handler does no parsing and no database work: the answer waits only for
the group commit that makes the raw message durable (an fsync of the spool
journal on SQLite); everything else happens later, off the answer path.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from mailgate.errors import Outcome, storage_outcome
from mailgate.ingest.smtp_auth import Authenticator
from mailgate.message import Envelope
from mailgate.service import metrics
from mailgate.store.inbound import GroupCommitter, InboundItem

log = structlog.get_logger(__name__)


class IngestHandler:
    """aiosmtpd handler: recipient checks at RCPT, durable store at DATA."""

    def __init__(
        self,
        committer: GroupCommitter,
        is_our_address: Callable[[str], bool],
        *,
        lmtp: bool,
    ) -> None:
        self._committer = committer
        self._is_ours = is_our_address
        self._lmtp = lmtp

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self._is_ours(address):
            log.info("smtp.recipient_refused", recipient=address)
            return f"550 5.1.1 <{address}>: no such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content or b""
        source = "lmtp" if self._lmtp else "smtp"
        item = InboundItem(
            raw=raw,
            envelope=Envelope(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                source=source,
                received_at=datetime.now(UTC),
            ),
        )
        try:
            queue_id = await asyncio.wrap_future(self._committer.submit(item))
        except Exception as exc:  # any failure must become a 4xx, never 5xx
            outcome = storage_outcome(exc)
            log.error("smtp.store_failed", source=source, error=str(exc), reply=outcome.smtp)
            metrics.count("smtp", listener=source, result=outcome.name.lower())
            return self._per_recipient(envelope, outcome.smtp)
        log.info("smtp.accepted", source=source, queue_id=queue_id, size=len(raw))
        metrics.count("smtp", listener=source, result="accepted")
        return self._per_recipient(envelope, f"250 2.0.0 Ok: queued as {queue_id}")

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer "500 Error: ..." which tells the client to
        # give up; an internal failure must make it retry instead.
        log.error("smtp.internal_error", error=repr(error))
        return Outcome.STORE_FAILED.smtp

    def _per_recipient(self, envelope: SmtpEnvelope, status: str) -> str:
        # LMTP (RFC 2033 §4.2) answers DATA once per accepted recipient.
        if not self._lmtp:
            return status
        return "\r\n".join(status for _ in envelope.rcpt_tos) or status


def make_protocol_factory(
    handler: IngestHandler,
    *,
    lmtp: bool,
    hostname: str,
    max_message_bytes: int,
    tls_context: ssl.SSLContext | None = None,
    authenticator: Authenticator | None = None,
) -> Callable[[], Any]:
    """A factory for ``loop.create_server`` / ``create_unix_server``.

    With an ``authenticator`` every session must AUTH before MAIL, and AUTH
    is offered only once STARTTLS is done.
    """
    kind = LMTP if lmtp else SMTP

    def factory() -> SMTP:
        return kind(
            handler,
            hostname=hostname,
            data_size_limit=max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls_context,
            require_starttls=authenticator is not None,
            authenticator=authenticator,
            auth_required=authenticator is not None,
            auth_require_tls=True,
            # Without a users file there is nothing to authenticate against:
            # do not offer AUTH at all.
            auth_exclude_mechanism=None if authenticator is not None else ["LOGIN", "PLAIN"],
            ident="mailgate",
        )

    return factory
