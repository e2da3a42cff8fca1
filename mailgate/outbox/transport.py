"""Where outgoing mail goes: an SMTP relay, or a Maildir (the quick start).

Each transport reports per recipient: sent, a temporary failure (retry) or a
permanent one (record on the ticket, do not retry).
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    permanent: bool
    detail: str


class Transport(Protocol):
    def send(self, outbox_id: int, mail_from: str, rcpt: str, raw: bytes) -> DeliveryResult: ...
    def close(self) -> None: ...


class MaildirTransport:
    """Writes each mail to ``<dir>/new``; idempotent per outbox row.

    The file name is derived from the outbox id, so a retry after a crash
    between writing and marking the row sent finds the file and does not
    write a second copy.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)

    def send(self, outbox_id: int, mail_from: str, rcpt: str, raw: bytes) -> DeliveryResult:
        name = f"mailgate-{outbox_id:010d}.eml"
        final = self.path / "new" / name
        if final.exists() or (self.path / "cur" / name).exists():
            return DeliveryResult(True, False, f"already in {final}")
        temporary = self.path / "tmp" / name
        header = f"Return-Path: <{mail_from}>\nDelivered-To: {rcpt}\n".encode()
        with open(temporary, "wb") as handle:
            handle.write(header + raw.replace(b"\r\n", b"\n"))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, final)
        directory = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return DeliveryResult(True, False, f"written to {final}")

    def close(self) -> None:
        return None


class SmtpTransport:
    """One reused connection to the relay; reconnects after any failure."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "none",
        verify_certificate: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        self._host, self._port, self._security = host, port, security
        self._verify = verify_certificate
        self._username, self._password = username, password
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._client: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self._verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        client: smtplib.SMTP
        if self._security == "tls":
            client = smtplib.SMTP_SSL(
                self._host,
                self._port,
                timeout=self._timeout,
                context=self._context(),
                local_hostname=self._local_hostname,
            )
        else:
            client = smtplib.SMTP(
                self._host, self._port, timeout=self._timeout, local_hostname=self._local_hostname
            )
            if self._security == "starttls":
                client.starttls(context=self._context())
        if self._username and self._password:
            client.login(self._username, self._password)
        return client

    def send(self, outbox_id: int, mail_from: str, rcpt: str, raw: bytes) -> DeliveryResult:
        for attempt in (1, 2):
            if self._client is None:
                try:
                    self._client = self._connect()
                except smtplib.SMTPResponseException as exc:
                    self._reset()
                    return DeliveryResult(
                        False,
                        False,
                        f"relay refused the session: {exc.smtp_code} {_text(exc.smtp_error)}",
                    )
                except (OSError, smtplib.SMTPException) as exc:
                    self._reset()
                    return DeliveryResult(False, False, f"cannot reach {self._host}:{self._port}: {exc}")
            try:
                refused = self._client.sendmail(mail_from, [rcpt], raw)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients.get(rcpt, (451, b"refused"))
                return DeliveryResult(False, 500 <= code < 600, f"{code} {_text(text)}")
            except smtplib.SMTPResponseException as exc:
                self._reset()
                return DeliveryResult(
                    False, 500 <= exc.smtp_code < 600, f"{exc.smtp_code} {_text(exc.smtp_error)}"
                )
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                # A reused connection may have timed out at the relay: try once afresh.
                self._reset()
                if attempt == 2:
                    return DeliveryResult(False, False, f"connection lost: {exc}")
                continue
            except (TimeoutError, OSError, smtplib.SMTPException) as exc:
                self._reset()
                return DeliveryResult(False, False, f"cannot reach {self._host}:{self._port}: {exc}")
            if refused:
                code, text = refused[rcpt]
                return DeliveryResult(False, 500 <= code < 600, f"{code} {_text(text)}")
            return DeliveryResult(True, False, "250 accepted by relay")
        return DeliveryResult(False, False, "unreachable")

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._client.quit()
        self._reset()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
