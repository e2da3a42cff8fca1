"""``mailgate run``: listeners and intake here, processing in a worker.

This process runs the SMTP/LMTP listeners on an asyncio loop, the group
committer and the IMAP fetchers on threads. Processing (parse, thread,
rules, templates) and delivery run in a child process (``mailgate worker``,
see worker.py) on the other core, woken by a byte on a socket after each
commit — pushed, not polled; a slow poll remains only as a safety net for
rows written by other processes such as ``mailgate ingest``. With
``processing.workers: 0`` they run as threads here instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import structlog

from mailgate.config import Config, read_secret
from mailgate.ingest.imap import ImapFetcher
from mailgate.ingest.pipe_import import PipeFolder
from mailgate.ingest.smtp import IngestHandler, make_protocol_factory
from mailgate.ingest.smtp_auth import Authenticator, load_users
from mailgate.outbox.deliver import OutboxWorker, RetryPolicy, release_outbox_leases
from mailgate.outbox.transport import MaildirTransport, SmtpTransport, Transport
from mailgate.records.retention import RetentionTimer
from mailgate.service import metrics, systemd
from mailgate.service.metrics import MetricsServer
from mailgate.service.presence import Presence, default_name
from mailgate.service.reload import FileWatcher, watched_paths
from mailgate.service.runtime import Runtime
from mailgate.service.status import status_path, write_status
from mailgate.service.worker import DELIVERY_FD_ENV, INSTANCE_ENV, WAKE_FD_ENV
from mailgate.sla.timer import SlaTimer
from mailgate.store.inbound import GroupCommitter, InboundStore
from mailgate.store.instances import TIMERS, imap_role
from mailgate.store.spool import Spool, SpoolInUse
from mailgate.tickets.pipeline import Processor

log = structlog.get_logger(__name__)


def make_transport(config: Config) -> Transport:
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
    maildir = config.outbox_maildir
    assert maildir is not None
    return MaildirTransport(maildir)


def make_outbox_worker(runtime: Runtime) -> OutboxWorker:
    outbound = runtime.config.outbound
    policy = RetryPolicy(
        first_seconds=outbound.retry_first_seconds,
        max_seconds=outbound.retry_max_seconds,
        give_up_after_seconds=outbound.give_up_after_seconds,
    )
    # Leases and delivery marks: a power cut may at worst send a mail again.
    return OutboxWorker(
        runtime.lease_sessions, make_transport(runtime.config), policy, presence=runtime.presence
    )


class WorkerProcess:
    """One ``mailgate worker`` child, restarted with backoff if it dies."""

    def __init__(self, config_path: str, role: str, delivery: socket.socket, presence: Presence) -> None:
        self._config_path = config_path
        self.role = role
        self._presence = presence
        # Its end of the processing → delivery wake-up socket (see worker.py).
        self._delivery = delivery
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    async def start(self) -> None:
        """Spawn the worker and wait until it says it is ready.

        Spawned from the event loop's own thread: Linux sends the parent-death
        signal when the *thread* that forked exits, so a pool thread would do.
        """
        ours, theirs = socket.socketpair()
        # Only the daemon speaks to systemd; the worker must never notify.
        inherited = {
            key: value
            for key, value in os.environ.items()
            if key not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        env = {
            **inherited,
            WAKE_FD_ENV: str(theirs.fileno()),
            DELIVERY_FD_ENV: str(self._delivery.fileno()),
            "MAILGATE_PARENT_PID": str(os.getpid()),
        }
        if self._presence.id is not None:
            # Its heartbeat row names ours; our roles it asks about by it.
            env[INSTANCE_ENV] = str(self._presence.id)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "-c", self._config_path, "worker", "--role", self.role],
            pass_fds=(theirs.fileno(), self._delivery.fileno()),
            env=env,
        )
        theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.wait_for(loop.sock_recv(ours, 1), timeout=60)
        except (OSError, TimeoutError):
            ready = b""
        with self._lock:
            self._socket = ours
        if ready != b"R":
            log.error("worker.not_ready", pid=self._process.pid, role=self.role)

    def wake(self) -> None:
        with self._lock:
            sock = self._socket
        if sock is None:
            return
        # A full buffer means the worker has wake-ups pending already; a
        # closed socket means it died, and the supervisor restarts it.
        with contextlib.suppress(OSError):
            sock.send(b"w")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self._process is not None
            self._process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> None:
        if self._process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("worker.kill_after_timeout", pid=self._process.pid, role=self.role)
            self._process.kill()
            self._process.wait()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid


class Daemon:
    def __init__(self, runtime: Runtime, config_path: str) -> None:
        self.runtime = runtime
        self.stop_threads = threading.Event()
        # Processing workers send on one end, the delivery worker receives on
        # the other; the daemon keeps both to hand them to restarted workers.
        delivery_wake, delivery_listen = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        delivery_wake.setblocking(False)
        self._delivery_sockets = (delivery_wake, delivery_listen)
        config = runtime.config
        # This daemon's heartbeat and the roles it may hold: one IMAP fetcher
        # per account and one timer across instances (docs/scale-out.md).
        self.presence = Presence(
            runtime.lease_sessions,
            name=config.instance.name or default_name(),
            kind="daemon",
            roles=[TIMERS, *(imap_role(account.name) for account in config.imap)],
            listeners=self.listening,
        )
        runtime.presence = self.presence
        count = config.processing.workers
        self.workers = [
            WorkerProcess(config_path, "processing", delivery_wake, self.presence) for _ in range(count)
        ]
        if count:
            self.workers.append(WorkerProcess(config_path, "delivery", delivery_listen, self.presence))
        self.store = InboundStore(runtime.sessions, on_accept=self._wake_processing)
        # SQLite gets a spool journal: its one writer at a time must not delay a 250.
        self.spool = Spool.for_url(runtime.engine.url)
        self.committer = GroupCommitter(self.store, spool=self.spool)
        self.pipe = PipeFolder(config.path(config.pipe_folder), self.store, config.helpdesk.address)
        self._threads: list[threading.Thread] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._local: Processor | None = None
        self._local_outbox: OutboxWorker | None = None
        self.fetchers: list[ImapFetcher] = []
        self._presence_stop = threading.Event()
        self._presence_thread: threading.Thread | None = None
        self._metrics: MetricsServer | None = None

    def _wake_processing(self) -> None:
        for worker in self.workers:
            if worker.role == "processing":
                worker.wake()
        if self._local is not None:
            self._local.wake.set()

    def _wake_delivery(self) -> None:
        if self._local_outbox is not None:
            self._local_outbox.wake.set()
        # The processing workers' datagram socket to the delivery worker.
        with contextlib.suppress(OSError):
            self._delivery_sockets[0].send(b"q")

    def _start_thread(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self.stop_threads,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _release_leases(self, *, inbound: bool = True, outbox: bool = True) -> None:
        # On SQLite the workers of this daemon are the only processors, so
        # leases left by a dead one can be taken at once.
        if self.runtime.engine.dialect.name == "sqlite":
            if inbound:
                Processor(self.runtime).release_leases()
            if outbox:
                release_outbox_leases(self.runtime.sessions)

    async def serve(self, stop: asyncio.Event) -> None:
        config = self.runtime.config
        self._release_leases()
        # Registered before the workers start: they name this row as their parent.
        self.presence.start()
        # Stopped last, after the workers and threads: until then their leases must hold.
        self._presence_thread = threading.Thread(
            target=self.presence.run, args=(self._presence_stop,), name="presence", daemon=True
        )
        self._presence_thread.start()
        self.committer.start()
        if self.workers:
            await asyncio.gather(*(worker.start() for worker in self.workers))
        else:
            self._local_outbox = make_outbox_worker(self.runtime)
            self._local = Processor(self.runtime, batch=config.processing.batch, outbox=self._local_outbox)
            self._start_thread("processor", self._local.run)
            self._start_thread("outbox", self._local_outbox.run)
        self._open_pipe_folder()
        self._start_imap()
        # Service-level escalations and the digest (docs/sla.md): the daemon's own clock, no cron;
        # on the one instance that holds the timers.
        sla = SlaTimer(self.runtime, on_queued=self._wake_delivery)
        self._start_thread("sla-timer", lambda stop: self.presence.run_holding(TIMERS, sla.run, stop))
        # The worker watches the files for the rules it applies; this process
        # watches them for what it uses itself (our addresses, from agents).
        self._start_thread("reload-watch", FileWatcher(watched_paths(config), self.runtime.reload).run)
        # Retention runs once a day here (records/retention.py); off unless configured.
        retention = RetentionTimer(self.runtime)
        self._start_thread("retention", lambda stop: self.presence.run_holding(TIMERS, retention.run, stop))
        await self._start_listeners()
        # Beat now, so the instances table names our listeners at once (doctor).
        await asyncio.to_thread(self.presence.start)
        if config.listen.metrics is not None and metrics.enabled():
            where = config.listen.metrics
            self._metrics = MetricsServer(where.host, where.port, self.runtime.engine, self.worker_states)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload()))
        tasks = [
            asyncio.ensure_future(self._watchdog()),
            asyncio.ensure_future(self._supervise()),
            asyncio.ensure_future(self._publish_status()),
        ]
        systemd.notify("READY=1\nSTATUS=accepting mail")
        log.info(
            "daemon.ready",
            helpdesk=config.helpdesk.address,
            listeners=self.listening(),
            workers=len(self.workers),
        )
        await stop.wait()
        systemd.notify("STOPPING=1")
        log.info("daemon.stopping")
        for task in tasks:
            task.cancel()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        await asyncio.to_thread(self.committer.stop)
        self.stop_threads.set()
        self.presence.release_work()
        self.pipe.nudge()
        if self._local is not None and self._local_outbox is not None:
            self._local.wake.set()
            self._local_outbox.wake.set()
        await asyncio.gather(*(asyncio.to_thread(worker.stop) for worker in self.workers))
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 30)
        self._presence_stop.set()
        if self._presence_thread is not None:
            await asyncio.to_thread(self._presence_thread.join, 10)
        self.pipe.close()
        if self._metrics is not None:
            self._metrics.stop()
        log.info("daemon.stopped")

    def _open_pipe_folder(self) -> None:
        try:
            self.pipe.open()
        except OSError as exc:
            # `mailgate ingest` then finds no daemon and stores and processes inline.
            log.error("pipe.unavailable", folder=str(self.pipe.folder), error=str(exc))
            return
        self._start_thread("pipe-import", self.pipe.run)

    def worker_states(self) -> list[dict[str, Any]]:
        return [{"role": w.role, "alive": w.alive(), "restarts": w.restarts} for w in self.workers]

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
            users = config.listen.smtp.users_file
            factory = make_protocol_factory(
                handler,
                lmtp=False,
                hostname=hostname,
                max_message_bytes=limit,
                tls_context=self._tls(),
                authenticator=Authenticator(load_users(config.path(users))) if users else None,
            )
            self._servers.append(
                await loop.create_server(
                    factory,
                    config.listen.smtp.host,
                    config.listen.smtp.port,
                    reuse_address=True,
                    reuse_port=config.listen.smtp.reuse_port or None,
                )
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
                    await loop.create_server(
                        factory,
                        lmtp.host,
                        lmtp.port or 24,
                        family=socket.AF_INET,
                        reuse_address=True,
                        reuse_port=lmtp.reuse_port or None,
                    )
                )

    def _tls(self) -> ssl.SSLContext | None:
        smtp = self.runtime.config.listen.smtp
        if smtp is None or smtp.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(
            self.runtime.config.path(smtp.tls_cert),
            self.runtime.config.path(smtp.tls_key or smtp.tls_cert),
        )
        return context

    def _start_imap(self) -> None:
        config = self.runtime.config
        if not config.imap:
            return
        from mailgate.ingest.imap_credentials import make_password_provider, make_token_provider

        for account in config.imap:
            token = make_token_provider(account.oauth2, config.base_dir) if account.oauth2 else None
            fetcher = ImapFetcher(
                account,
                None if token else make_password_provider(config, account),
                self.store,
                oauth2_token_provider=token,
                address=account.address,
                base_dir=config.base_dir,
                idle_renew=account.idle_renew_seconds,
                finish_grace=account.finish_grace_seconds,
                auth_retry=account.auth_retry_seconds,
            )
            self.fetchers.append(fetcher)
            self._start_thread(f"imap-{account.name}", self._fetch_when_held(account.name, fetcher))

    def _fetch_when_held(self, account: str, fetcher: ImapFetcher) -> Callable[[threading.Event], None]:
        """One instance fetches an account at a time; the others stand by."""

        def run(stop: threading.Event) -> None:
            self.presence.run_holding(imap_role(account), fetcher.run, stop, standby=fetcher.standby)

        return run

    async def _reload(self) -> None:
        systemd.reloading()
        problems = await asyncio.to_thread(self.runtime.reload)
        for worker in self.workers:
            worker.signal(signal.SIGHUP)
        status = "rules reload refused: " + problems[0] if problems else "accepting mail"
        systemd.notify(f"READY=1\nSTATUS={status}")

    async def _supervise(self) -> None:
        """Restart a worker that died, with backoff; the work waits in the database."""
        delays = {id(worker): 1.0 for worker in self.workers}
        while True:
            await asyncio.sleep(0.5)
            for worker in self.workers:
                if worker.alive():
                    continue
                log.error(
                    "worker.died",
                    role=worker.role,
                    returncode=worker.returncode,
                    restart_in=delays[id(worker)],
                )
                await asyncio.sleep(delays[id(worker)])
                delays[id(worker)] = min(60.0, delays[id(worker)] * 2)
                worker.restarts += 1
                if worker.pid is not None:
                    metrics.process_died(worker.pid)
                    # Its leases are free now, for its successor or another instance.
                    await asyncio.to_thread(self.presence.worker_died, worker.pid)
                # Only the dead worker's leases: the others are still working.
                # Leases do not say which processing worker holds them, so
                # with several they run out on their own instead.
                processing = [w for w in self.workers if w.role == "processing"]
                self._release_leases(inbound=processing == [worker], outbox=worker.role == "delivery")
                await worker.start()
                self._wake_processing()

    async def _publish_status(self, interval: float = 5.0) -> None:
        """Keep status.json fresh for `mailgate doctor`; log IMAP state changes."""
        path = status_path(self.runtime.config)
        last_states: dict[str, str] = {}
        while True:
            accounts = [fetcher.status() for fetcher in self.fetchers]
            for account in accounts:
                if last_states.get(account.name) != account.state:
                    last_states[account.name] = account.state
                    log.info(
                        "imap.state",
                        account=account.name,
                        state=account.state,
                        last_uid=account.last_uid,
                        backlog=account.backlog,
                        last_error=account.last_error,
                    )
            state = {
                "instance": {"name": self.presence.name, "id": self.presence.id},
                "roles": sorted(self.presence.held()),
                "listeners": self.listening(),
                "workers": self.worker_states(),
                "imap": accounts,
            }
            try:
                await asyncio.to_thread(write_status, path, state)
            except OSError as exc:
                log.warning("status.write_failed", path=str(path), error=str(exc))
            await asyncio.sleep(interval)

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        while True:
            # Ping only while every part is alive: a wedged process is
            # restarted by systemd instead of silently holding mail.
            if (
                self.committer.alive()
                and all(t.is_alive() for t in self._threads)
                and all(w.alive() for w in self.workers)
            ):
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def run(runtime: Runtime, config_path: str) -> int:
    daemon = Daemon(runtime, config_path)

    async def main() -> None:
        await daemon.serve(asyncio.Event())

    try:
        # First of all: a second daemon on this database must touch nothing.
        if daemon.spool is not None:
            daemon.spool.claim()
    except (SpoolInUse, OSError) as exc:
        log.error("daemon.not_started", error=f"spool journal: {exc}")
        return 1
    asyncio.run(main())
    return 0
