"""An aiosmtpd relay for outbound tests, with an error-injection queue.

``sink.faults.append(("rcpt", "451 4.3.0 try later"))`` makes the next RCPT
answer that; ``("data", ...)`` the next DATA. Like Mailman's test MTA.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.raw)


@dataclass
class SinkHandler:
    messages: list[Received] = field(default_factory=list)
    faults: deque[tuple[str, str]] = field(default_factory=deque)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def _fault(self, stage: str) -> str | None:
        if self.faults and self.faults[0][0] == stage:
            return self.faults.popleft()[1]
        return None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self._fault("rcpt")
        if fault:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._fault("data")
        if fault:
            return fault
        with self.arrived:
            self.messages.append(
                Received(
                    envelope.mail_from or "",
                    list(envelope.rcpt_tos),
                    envelope.original_content or b"",
                )
            )
            self.arrived.notify_all()
        return "250 2.0.0 queued"


class Sink:
    def __init__(self, port: int) -> None:
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)
        self.port = port

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def faults(self) -> deque[tuple[str, str]]:
        return self.handler.faults

    def wait(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.handler.arrived:
            self.handler.arrived.wait_for(lambda: len(self.handler.messages) >= count, timeout)
        assert len(self.handler.messages) >= count, f"{len(self.handler.messages)} of {count} mails arrived"
        return self.handler.messages

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
