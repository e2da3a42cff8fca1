"""End-to-end load test: SMTP in, tickets made, acknowledgements out.

Starts a real ``mailgate run`` on a throwaway configuration (SQLite in a
temporary folder, SMTP on a free loopback port, outbound mail to an
aiosmtpd sink inside this process), then:

1. a burst: ``--messages`` mails (new requests, plus a share of replies to
   earlier requests) as fast as ``--connections`` SMTP connections can send
   them, or at ``--rate`` mails per second;
2. a steady run at ``--steady-rate`` (100) mails per second for
   ``--steady-seconds`` (20).

It prints accepted msgs/s (SMTP 250 answers per second of the send phase),
end-to-end msgs/s (new requests in, acknowledgements out: first send to last
acknowledgement) and acknowledgement latency percentiles, measured from the
end of a request's DATA (its 250) to its acknowledgement reaching the sink.
Replies get no acknowledgement, so only new requests count end to end.

    .venv/bin/python bench/smtp_bench.py [--messages 2000] [--connections 4]
        [--rate R] [--reply-share 0.2] [--steady-rate 100] [--steady-seconds 20]
        [--profile] [--keep] [--log-level info] [--daemon-command CMD]

``--profile`` samples the daemon with ``py-spy record`` (``pip install
py-spy``) during the burst and prints the hottest functions; the raw
collapsed stacks stay in the work folder (open them at speedscope.app or
with flamegraph.pl). All traffic stays on 127.0.0.1; the run is bounded
in messages and time.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import itertools
import os
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

HELPDESK = "helpdesk@bench.example"
TARGET_END_TO_END = 300.0
TARGET_P99_SECONDS = 1.0

BODY = (
    "Hello helpdesk,\r\n\r\n"
    "Since this morning the printer on the third floor (room 3.14) refuses every job\r\n"
    "I send from my laptop. The queue shows the job for a few seconds and then it\r\n"
    "disappears without an error. Colleagues on the same floor have the same problem;\r\n"
    "printing from the second floor works. I already restarted the laptop and removed\r\n"
    "and re-added the printer.\r\n\r\n"
    "Could you have a look? I need to print the contracts for a meeting at 14:00.\r\n\r\n"
    "Kind regards,\r\n"
    "A. Requester\r\n"
    "Finance department, extension 4417\r\n"
)


# -- the sink: where the daemon's outbound mail arrives ----------------------


class AckSink:
    """aiosmtpd handler recording when each acknowledgement arrives.

    Acknowledgements are keyed by their ``In-Reply-To`` (the request's
    Message-ID); their own Message-ID is kept so replies can thread on it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: dict[str, float] = {}
        self.ack_message_ids: dict[str, str] = {}
        self.other = 0
        self.changed = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        headers = _header_block(envelope.original_content or b"")
        in_reply_to = headers.get("in-reply-to", "").strip()
        with self.lock:
            if in_reply_to and in_reply_to not in self.arrived:
                self.arrived[in_reply_to] = now
                self.ack_message_ids[in_reply_to] = headers.get("message-id", "").strip()
            else:
                self.other += 1
        self.changed.set()
        return "250 2.0.0 Ok"


def _header_block(raw: bytes) -> dict[str, str]:
    """The top-level headers, unfolded, lower-cased names (first one wins)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("latin-1")
    found: dict[str, str] = {}
    name = ""
    for line in head.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and name:
            found[name] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        found.setdefault(name, value.strip())
    return found


# -- the daemon under test -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    folder: Path,
    smtp_port: int,
    sink_port: int,
    log_level: str = "warning",
    processing: str = "",
    database_url: str = "sqlite:///mailgate.db",
) -> Path:
    config = folder / "mailgate.yaml"
    config.write_text(
        f"""\
helpdesk:
  address: {HELPDESK}
  name: Bench Helpdesk
database:
  url: {database_url}
listen:
  smtp: {{host: 127.0.0.1, port: {smtp_port}}}
outbound:
  smtp: {{host: 127.0.0.1, port: {sink_port}, timeout: 10}}
  retry_first_seconds: 1
secrets:
  reply_key_file: reply.key
limits:
  auto_replies_per_hour: 1000000
  auto_replies_per_day: 1000000
logging:
  format: json
  level: {log_level}
{processing}""",
        encoding="utf-8",
    )
    return config


def _admin_url(server: str) -> str:
    return server.replace("postgresql+psycopg://", "postgresql://", 1).rstrip("/") + "/postgres"


def create_database(server: str) -> str:
    """A new, empty database on the server; its SQLAlchemy URL."""
    import psycopg

    name = f"mailgate_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_url(server), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server.rstrip('/')}/{name}"


def drop_database(server: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_admin_url(server), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_daemon(config: Path, log_path: Path, daemon_command: str | None) -> subprocess.Popen[bytes]:
    mailgate = Path(sys.executable).with_name("mailgate")
    if daemon_command:
        command = shlex.split(daemon_command)
        # The daemon runs in the work folder: make a relative program path absolute.
        if "/" in command[0]:
            command[0] = os.path.abspath(command[0])
    else:
        command = [str(mailgate)] if mailgate.exists() else [sys.executable, "-m", "mailgate"]
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [*command, "-c", str(config), "run"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
        )


def wait_until_listening(daemon: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"mailgate run exited with {daemon.returncode}:\n{log_path.read_text()}")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.ehlo("bench.example")
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"mailgate run did not listen on 127.0.0.1:{port} within 60 s")


def stop_daemon(daemon: subprocess.Popen[bytes]) -> int:
    daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        return -9


# -- the load ----------------------------------------------------------------------


@dataclass
class Mail:
    index: int
    sender: str
    message_id: str
    raw: bytes
    is_request: bool


@dataclass
class Phase:
    """What one send phase did: per-request accept times, counts, errors."""

    name: str
    accepted_at: dict[str, float] = field(default_factory=dict)
    # For paced runs: when each request was due to be sent (see report()).
    due_at: dict[str, float] = field(default_factory=dict)
    rate: float | None = None
    requests: list[str] = field(default_factory=list)
    sent: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    send_ended: float = 0.0
    # CPU seconds (user + system) the daemon used from the first send to the last ack.
    daemon_cpu: float = 0.0
    daemon_processes: int = 1
    # CPU seconds per daemon process (by its command line) and of this bench.
    process_cpu: dict[str, float] = field(default_factory=dict)
    bench_cpu: float = 0.0


class Traffic:
    """Makes the mails: new requests, and replies to earlier requests or acks."""

    def __init__(self, sink: AckSink, run_tag: str, reply_share: float) -> None:
        self.sink = sink
        self.run_tag = run_tag
        self.reply_share = reply_share
        self.lock = threading.Lock()
        # Requests accepted by the daemon, (sender, message id, subject): only
        # those are answered, as a person answers only mail already sent. (A
        # reply overtaking its request on another connection opens a ticket
        # of its own, acknowledged, into which the request is merged without
        # an acknowledgement of its own: right, but not a request's ack.)
        self.requests: list[tuple[str, str, str]] = []
        self.made: dict[str, tuple[str, str, str]] = {}
        self.counter = itertools.count()

    def next(self) -> Mail:
        with self.lock:
            index = next(self.counter)
            reply_to = None
            # Every k-th mail is a reply, once there is something to reply to.
            if self.requests and self.reply_share > 0 and index % round(1 / self.reply_share) == 0:
                reply_to = self.requests[(index * 7919) % len(self.requests)]
        message_id = f"<{self.run_tag}.{index}@client.bench.example>"
        if reply_to is None:
            sender = f"user{index}.{self.run_tag}@customer{index % 97}.example"
            subject = f"Printer on floor 3 refuses jobs ({self.run_tag} #{index})"
            raw = _message(sender, message_id, subject, None)
            with self.lock:
                self.made[message_id] = (sender, message_id, subject)
            return Mail(index, sender, message_id, raw, is_request=True)
        sender, request_id, subject = reply_to
        with self.sink.lock:
            ack_id = self.sink.ack_message_ids.get(request_id)
        # Reply to our acknowledgement when it came back, like a person would.
        parent = ack_id or request_id
        raw = _message(sender, message_id, "RE: " + subject, parent, references=f"{request_id} {parent}")
        return Mail(index, sender, message_id, raw, is_request=False)

    def accepted(self, message_id: str) -> None:
        with self.lock:
            made = self.made.pop(message_id, None)
            if made is not None:
                self.requests.append(made)


def _message(
    sender: str, message_id: str, subject: str, in_reply_to: str | None, references: str = ""
) -> bytes:
    lines = [
        f"From: A. Requester <{sender}>",
        f"To: Helpdesk <{HELPDESK}>",
        f"Subject: {subject}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "User-Agent: smtp_bench",
    ]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {references}"]
    body = (
        BODY if in_reply_to is None else "Thanks, it works again.\r\n\r\n> " + BODY.replace("\r\n", "\r\n> ")
    )
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


def send_phase(
    phase: Phase, traffic: Traffic, port: int, count: int, connections: int, rate: float | None
) -> None:
    """Send ``count`` mails over ``connections`` connections, optionally paced."""
    tickets = iter(range(count))
    tickets_lock = threading.Lock()
    results_lock = threading.Lock()
    phase.started = time.monotonic()
    phase.rate = rate

    def schedule() -> Iterator[int]:
        while True:
            with tickets_lock:
                slot = next(tickets, None)
            if slot is None:
                return
            if rate:
                delay = phase.started + slot / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield slot

    def worker() -> None:
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.bench.example", timeout=60)
        try:
            for slot in schedule():
                mail = traffic.next()
                try:
                    client.sendmail(mail.sender, [HELPDESK], mail.raw)
                except smtplib.SMTPResponseException as exc:
                    with results_lock:
                        phase.refused[f"{exc.smtp_code}"] += 1
                    continue
                except smtplib.SMTPRecipientsRefused as exc:
                    with results_lock:
                        phase.refused[str(exc.recipients)] += 1
                    continue
                except (OSError, smtplib.SMTPServerDisconnected) as exc:
                    # The daemon went away (or reset us): this connection ends here.
                    with results_lock:
                        phase.refused[f"connection lost: {exc}"] += 1
                    return
                done = time.monotonic()
                with results_lock:
                    phase.sent += 1
                    if mail.is_request:
                        traffic.accepted(mail.message_id)
                        phase.accepted_at[mail.message_id] = done
                        if rate:
                            phase.due_at[mail.message_id] = phase.started + slot / rate
                        phase.requests.append(mail.message_id)
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()

    threads = [threading.Thread(target=worker, name=f"conn-{n}") for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.send_ended = time.monotonic()


def wait_for_acks(sink: AckSink, phase: Phase, patience: float) -> None:
    """Wait until every request has its ack, or no ack came for ``patience`` s."""
    wanted = set(phase.requests)
    last_progress, last_count = time.monotonic(), -1
    while True:
        with sink.lock:
            count = sum(1 for mid in wanted if mid in sink.arrived)
        if count == len(wanted):
            return
        if count != last_count:
            last_progress, last_count = time.monotonic(), count
        elif time.monotonic() - last_progress > patience:
            return
        sink.changed.wait(0.5)
        sink.changed.clear()


# -- figures --------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _process_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    # "mailgate … run" / "mailgate … worker": the subcommand, last, tells them apart.
    words = [arg.decode(errors="replace") for arg in argv if arg]
    return f"mailgate {words[-1]}" if words else str(pid)


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds of a process and each of its descendants (Linux /proc).

    ``mailgate run`` starts a worker process; its time counts too. A child
    that ended during the phase is missed, which a stable daemon does not
    do. Returns seconds per process, keyed by its command line.
    """
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    family, grew = {pid}, True
    while grew:
        kin = {child for child, parent in parents.items() if parent in family} - family
        family |= kin
        grew = bool(kin)
    seconds: dict[str, float] = {}
    for member in sorted(family):
        fields = _proc_stat(member)
        if fields is not None:
            # Fields 14 and 15 of proc(5) (utime, stime), counted after the name.
            ticks = int(fields[11]) + int(fields[12])
            name = _process_name(member)
            seconds[name] = seconds.get(name, 0.0) + ticks / os.sysconf("SC_CLK_TCK")
    return seconds


def run_phase(
    phase: Phase,
    traffic: Traffic,
    daemon_pid: int,
    port: int,
    count: int,
    connections: int,
    rate: float | None,
    sink: AckSink,
    patience: float,
) -> None:
    cpu_before, bench_before = cpu_seconds(daemon_pid), time.process_time()
    send_phase(phase, traffic, port, count, connections, rate)
    wait_for_acks(sink, phase, patience)
    cpu_after = cpu_seconds(daemon_pid)
    phase.bench_cpu = time.process_time() - bench_before
    phase.process_cpu = {name: spent - cpu_before.get(name, 0.0) for name, spent in cpu_after.items()}
    phase.daemon_processes = len(cpu_after)
    phase.daemon_cpu = sum(phase.process_cpu.values())


def check_alive(daemon: subprocess.Popen[bytes], log_path: Path) -> None:
    if daemon.poll() is not None:
        tail = log_path.read_text(errors="replace")[-2000:]
        sys.exit(f"mailgate run exited during the run with code {daemon.returncode}:\n{tail}")


def report(phase: Phase, sink: AckSink) -> dict[str, float]:
    with sink.lock:
        arrivals = {mid: sink.arrived[mid] for mid in phase.requests if mid in sink.arrived}
    latencies = [arrivals[mid] - phase.accepted_at[mid] for mid in arrivals]
    send_seconds = max(phase.send_ended - phase.started, 1e-9)
    figures = {
        "sent": phase.sent,
        "requests": len(phase.requests),
        "acks": len(arrivals),
        "accepted_per_s": phase.sent / send_seconds,
    }
    print(f"\n== {phase.name}")
    print(
        f"sent {phase.sent} mails ({len(phase.requests)} new requests, "
        f"{phase.sent - len(phase.requests)} replies) in {send_seconds:.2f} s"
        + (f"; refused: {dict(phase.refused)}" if phase.refused else "")
    )
    print(f"accepted:    {figures['accepted_per_s']:8.1f} msgs/s (SMTP 250s over the send phase)")
    if not latencies:
        print("no acknowledgement arrived")
        return figures
    end_to_end_seconds = max(arrivals.values()) - phase.started
    figures["end_to_end_per_s"] = len(arrivals) / end_to_end_seconds
    for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        figures[name] = percentile(latencies, share)
    figures["max"] = max(latencies)
    print(
        f"end to end:  {figures['end_to_end_per_s']:8.1f} msgs/s "
        f"({len(arrivals)} acks, first send to last ack {end_to_end_seconds:.2f} s)"
    )
    print(
        f"ack latency: p50 {figures['p50'] * 1000:.0f} ms, p95 {figures['p95'] * 1000:.0f} ms, "
        f"p99 {figures['p99'] * 1000:.0f} ms, max {figures['max'] * 1000:.0f} ms"
    )
    if phase.rate and phase.due_at:
        # Coordinated omission: a slow daemon also slows the sender, so the
        # latency from the due time is what a steady mail source would see.
        from_due = [arrivals[mid] - phase.due_at[mid] for mid in arrivals if mid in phase.due_at]
        figures["due_p99"] = percentile(from_due, 0.99)
        print(
            f"from due:    p50 {percentile(from_due, 0.5) * 1000:.0f} ms, "
            f"p99 {figures['due_p99'] * 1000:.0f} ms (from each mail's scheduled send time)"
        )
    if phase.daemon_cpu:
        print(
            f"daemon CPU:  {phase.daemon_cpu:.1f} s, "
            f"{1000 * phase.daemon_cpu / max(phase.sent, 1):.1f} ms per mail "
            f"({phase.daemon_processes} process{'es' if phase.daemon_processes > 1 else ''})"
        )
        # Each process is one Python interpreter: the busiest one bounds the throughput.
        busy = end_to_end_seconds
        shares = ", ".join(
            f"{name} {spent:.1f} s ({100 * spent / busy:.0f}% of a core)"
            for name, spent in sorted(phase.process_cpu.items())
        )
        print(f"per process: {shares}; this bench {phase.bench_cpu:.1f} s")
    if len(arrivals) < len(phase.requests):
        print(f"MISSING: {len(phase.requests) - len(arrivals)} requests got no acknowledgement")
    return figures


# -- profiling ------------------------------------------------------------------------


def start_profiler(pid: int, output: Path, idle: bool = False) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("--profile: py-spy is not installed (pip install py-spy); profiling skipped")
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--threads",
            "--subprocesses",
            "--nonblocking",
            # Waiting threads too: where a thread waits for a lock or a disk.
            *(["--idle"] if idle else []),
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_profiler(profiler: subprocess.Popen[bytes], output: Path, top: int = 25) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        profiler.kill()
    if not output.exists():
        print(
            "--profile: py-spy wrote nothing: "
            + (profiler.stderr.read() if profiler.stderr else b"").decode()
        )
        return
    summarize_profile(output, top)


def _context_label(frame: str) -> str:
    """'process 12:"/venv/bin/python -m mailgate -c x.yaml worker"' -> 'worker 12'."""
    if frame.startswith("process "):
        pid, _, command = frame[len("process ") :].partition(":")
        return f"{command.strip(chr(34)).split()[-1] if command.strip() else 'process'} {pid}"
    return frame.split(": ", 1)[-1]


def summarize_profile(collapsed: Path, top: int) -> None:
    """Print per-thread shares, then the hottest frames by own and total time."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        # With --subprocesses and --threads, stacks start with "process PID:"cmdline""
        # frames (the daemon, then a worker) and a "thread (TID): name" frame.
        context = 0
        while context < len(frames) and frames[context].startswith(("process ", "thread (")):
            context += 1
        threads[" / ".join(_context_label(frame) for frame in frames[:context]) or "?"] += count
        code = frames[context:]
        if code:
            own[code[-1]] += count
        for frame in set(code):
            total[frame] += count
    if not samples:
        print("--profile: no samples")
        return
    print(f"\n== profile: {samples} samples, collapsed stacks in {collapsed}")
    print("busy share per process / thread:")
    for name, count in threads.most_common(8):
        print(f"  {100 * count / samples:5.1f}%  {name}")
    print(f"top {top} by own time:")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / samples:5.1f}%  {frame}")
    print(f"top {top} by total time (mailgate frames):")
    ours = [(frame, count) for frame, count in total.most_common() if "mailgate/" in frame]
    for frame, count in ours[:top]:
        print(f"  {100 * count / samples:5.1f}%  {frame}")


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000, help="mails in the burst (default 2000)")
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections (default 4)")
    parser.add_argument("--rate", type=float, default=None, help="pace the burst at this many mails/s")
    parser.add_argument("--reply-share", type=float, default=0.2, help="share of replies (default 0.2)")
    parser.add_argument("--steady-rate", type=float, default=100.0, help="steady run rate (default 100/s)")
    parser.add_argument("--steady-seconds", type=float, default=20.0, help="steady run length; 0 skips it")
    parser.add_argument(
        "--patience",
        type=float,
        default=30.0,
        help="give up waiting for acks after this many seconds without one",
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the daemon with py-spy during the burst"
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="the daemon's logging.level (default warning: logging must not dominate)",
    )
    parser.add_argument(
        "--daemon-command",
        help="how to start mailgate, e.g. '/opt/mailgate/venv/bin/mailgate' to measure an "
        "installed build (default: this environment's mailgate); '-c CONFIG run' is appended",
    )
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="with --profile: sample waiting threads too (time spent on locks, fsync, sockets)",
    )
    parser.add_argument(
        "--postgresql",
        metavar="SERVER",
        help="use a throwaway database on this PostgreSQL server instead of SQLite, "
        "e.g. postgresql+psycopg://postgres@127.0.0.1:5432",
    )
    parser.add_argument("--workers", type=int, help="processing.workers (default: mailgate's)")
    parser.add_argument("--batch", type=int, help="processing.batch (default: mailgate's)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (database, log, profile)")
    args = parser.parse_args(argv)
    if not 0 <= args.reply_share < 1:
        parser.error("--reply-share must be in [0, 1)")
    if args.messages > 100_000 or args.steady_seconds * args.steady_rate > 100_000:
        parser.error("bounded to 100,000 mails per phase")

    folder = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    sink = AckSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    smtp_port = free_port()
    settings = (("workers", args.workers), ("batch", args.batch))
    processing = "".join(f"  {key}: {value}\n" for key, value in settings if value is not None)
    database_url = create_database(args.postgresql) if args.postgresql else "sqlite:///mailgate.db"
    config = write_config(
        folder,
        smtp_port,
        controller.port,
        args.log_level,
        f"processing:\n{processing}" if processing else "",
        database_url,
    )
    log_path = folder / "daemon.log"
    try:
        daemon = start_daemon(config, log_path, args.daemon_command)
    except OSError as exc:
        controller.stop()
        sys.exit(f"cannot start mailgate: {exc}")
    failed = False
    try:
        wait_until_listening(daemon, smtp_port, log_path)
        print(
            f"mailgate run (pid {daemon.pid}) on 127.0.0.1:{smtp_port}, "
            f"sink on 127.0.0.1:{controller.port}, "
            f"work folder {folder}; {os.cpu_count()} CPUs"
        )

        profile_path = folder / "profile.collapsed.txt"
        profiler = start_profiler(daemon.pid, profile_path, args.profile_idle) if args.profile else None
        burst = Phase(
            f"burst: {args.messages} mails over {args.connections} connections"
            + (f" at {args.rate:g}/s" if args.rate else " as fast as accepted")
        )
        run_phase(
            burst,
            Traffic(sink, "b", args.reply_share),
            daemon.pid,
            smtp_port,
            args.messages,
            args.connections,
            args.rate,
            sink,
            args.patience,
        )
        if profiler is not None:
            stop_profiler(profiler, profile_path)
        check_alive(daemon, log_path)
        figures = report(burst, sink)
        failed |= figures.get("acks") != figures["requests"]
        verdict = "met" if figures.get("end_to_end_per_s", 0) >= TARGET_END_TO_END else "MISSED"
        print(f"target >= {TARGET_END_TO_END:.0f} msgs/s end to end: {verdict}")

        if args.steady_seconds > 0:
            count = round(args.steady_rate * args.steady_seconds)
            steady = Phase(
                f"steady: {args.steady_rate:g} mails/s for {args.steady_seconds:g} s "
                f"over {args.connections} connections"
            )
            run_phase(
                steady,
                Traffic(sink, "s", args.reply_share),
                daemon.pid,
                smtp_port,
                count,
                args.connections,
                args.steady_rate,
                sink,
                args.patience,
            )
            check_alive(daemon, log_path)
            figures = report(steady, sink)
            failed |= figures.get("acks") != figures["requests"]
            # Only a run that really ran at the asked rate can meet the target.
            kept_up = figures["accepted_per_s"] >= 0.95 * args.steady_rate
            p99 = figures.get("p99", 99.0)
            verdict = "met" if kept_up and p99 < TARGET_P99_SECONDS else "MISSED"
            if not kept_up:
                verdict += f" (the daemon accepted only {figures['accepted_per_s']:.0f} msgs/s)"
            print(f"target p99 < {TARGET_P99_SECONDS:g} s at {args.steady_rate:g} msgs/s: {verdict}")
        if sink.other:
            print(f"\nthe sink also got {sink.other} mails that were not first acknowledgements")
    finally:
        already = daemon.poll()
        code = stop_daemon(daemon)
        controller.stop()
        how = "had already exited" if already is not None else "stopped by SIGTERM"
        print(f"\nmailgate run {how}, exit code {code}")
        problems = [line for line in log_path.read_text(errors="replace").splitlines() if '"error"' in line]
        if problems:
            print(f"{len(problems)} error lines in the daemon log, first: {problems[0][:300]}")
        if args.postgresql and not args.keep:
            drop_database(args.postgresql, database_url)
        if args.keep or args.profile:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if failed or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
