"""``mailgate run``: listeners, processing and delivery in one process.

The asyncio loop on the main thread runs the SMTP/LMTP listeners and
signal handling; the group committer, the processor, the outbox worker and
each IMAP account run on threads of their own, woken by events rather than
polling (a slow poll stays only as a safety net for rows written by other
processes, such as ``mailgate ingest``).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from mailgate import systemd
from mailgate.config import Config, read_secret
from mailgate.ingest.smtp import IngestHandler, make_protocol_factory
from mailgate.outbox.deliver import OutboxWorker, RetryPolicy
from mailgate.outbox.transport import MaildirTransport, SmtpTransport, Transport
from mailgate.pipeline import Processor
from mailgate.runtime import Runtime
from mailgate.store.inbound import GroupCommitter, InboundStore

log = structlog.get_logger(__name__)


def make_transport(config: Config) -> Transport:
    maildir = config.outbox_maildir
    smtp = config.outbound.smtp
    if smtp is not None:
        return SmtpTransport(
            smtp.host,
            smtp.port,
            security=smtp.security,
            verify_certificate=smtp.verify_certificate,
            username=smtp.username,
            password=read_secret(config, smtp.password, smtp.password_file),
            timeout=smtp.timeout,
            local_hostname=config.helpdesk.domain,
        )
    assert maildir is not None
    return MaildirTransport(maildir)


def retry_policy(config: Config) -> RetryPolicy:
    outbound = config.outbound
    return RetryPolicy(
        first_seconds=outbound.retry_first_seconds,
        max_seconds=outbound.retry_max_seconds,
        give_up_after_seconds=outbound.give_up_after_seconds,
    )


class Daemon:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop_threads = threading.Event()
        self.outbox = OutboxWorker(runtime.sessions, make_transport(runtime.config), retry_policy(runtime.config))
        self.processor = Processor(runtime, on_outbox=self.outbox.wake.set)
        self.store = InboundStore(runtime.sessions, on_accept=self.processor.wake.set)
        self.committer = GroupCommitter(self.store)
        self._threads: list[threading.Thread] = []
        self._servers: list[asyncio.base_events.Server] = []
        self.fetchers: list[object] = []

    def _start_thread(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self.stop_threads,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    async def serve(self, stop: asyncio.Event) -> None:
        config = self.runtime.config
        if self.runtime.engine.dialect.name == "sqlite":
            self.processor.release_leases()
        self.committer.start()
        self._start_thread("processor", self.processor.run)
        self._start_thread("outbox", self.outbox.run)
        self._start_imap()
        await self._start_listeners()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload()))
        watchdog = asyncio.ensure_future(self._watchdog())
        systemd.notify("READY=1\nSTATUS=accepting mail")
        log.info("daemon.ready", helpdesk=config.helpdesk.address, listeners=self.listening())
        # Work left by a previous run (or by `mailgate ingest`) starts at once.
        self.processor.wake.set()
        self.outbox.wake.set()
        await stop.wait()
        systemd.notify("STOPPING=1")
        log.info("daemon.stopping")
        watchdog.cancel()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        await asyncio.to_thread(self.committer.stop)
        self.stop_threads.set()
        self.processor.wake.set()
        self.outbox.wake.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 30)
        log.info("daemon.stopped")

    def listening(self) -> list[str]:
        found = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                found.append(f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name))
        return found

    async def _start_listeners(self) -> None:
        config = self.runtime.config
        loop = asyncio.get_running_loop()
        hostname = config.helpdesk.domain
        limit = config.listen.max_message_bytes
        if config.listen.smtp is not None:
            handler = IngestHandler(self.committer, self.runtime.is_our_address, lmtp=False)
            factory = make_protocol_factory(handler, lmtp=False, hostname=hostname, max_message_bytes=limit, tls_context=self._tls())
            self._servers.append(
                await loop.create_server(factory, config.listen.smtp.host, config.listen.smtp.port, reuse_address=True)
            )
        lmtp = config.listen.lmtp
        if lmtp is not None:
            handler = IngestHandler(self.committer, self.runtime.is_our_address, lmtp=True)
            factory = make_protocol_factory(handler, lmtp=True, hostname=hostname, max_message_bytes=limit)
            if lmtp.path:
                path = config.path(lmtp.path)
                path.unlink(missing_ok=True)
                self._servers.append(await loop.create_unix_server(factory, str(path)))
            else:
                self._servers.append(
                    await loop.create_server(factory, lmtp.host, lmtp.port or 24, family=socket.AF_INET, reuse_address=True)
                )

    def _tls(self) -> ssl.SSLContext | None:
        smtp = self.runtime.config.listen.smtp
        if smtp is None or smtp.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.runtime.config.path(smtp.tls_cert), self.runtime.config.path(smtp.tls_key or smtp.tls_cert))
        return context

    def _start_imap(self) -> None:
        config = self.runtime.config
        if not config.imap:
            return
        from mailgate.ingest.imap import ImapFetcher, make_token_provider

        for account in config.imap:
            def password(account=account) -> str:  # type: ignore[no-untyped-def]  # bound per account
                return read_secret(config, account.password, account.password_file) or ""

            token = make_token_provider(account.oauth2, config.base_dir) if account.oauth2 else None
            fetcher = ImapFetcher(
                account,
                None if token else password,
                self.store,
                oauth2_token_provider=token,
            )
            self.fetchers.append(fetcher)
            self._start_thread(f"imap-{account.name}", fetcher.run)

    async def _reload(self) -> None:
        systemd.reloading()
        problems = await asyncio.to_thread(self.runtime.reload)
        status = "rules reload refused: " + problems[0] if problems else "accepting mail"
        systemd.notify(f"READY=1\nSTATUS={status}")

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            # Ping only while the worker threads are alive: a wedged process
            # gets restarted by systemd instead of silently holding mail.
            if all(thread.is_alive() for thread in self._threads):
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def run(runtime: Runtime) -> int:
    daemon = Daemon(runtime)

    async def main() -> None:
        await daemon.serve(asyncio.Event())

    asyncio.run(main())
    return 0


