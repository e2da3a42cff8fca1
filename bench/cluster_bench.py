"""Throughput and p99 of 1, 2 and 3 mailgate instances on one PostgreSQL (issue 13).

    .venv/bin/python bench/cluster_bench.py [--mails 1500] [--connections 6]
        [--steady-rate 40] [--steady-seconds 15] [--instances 1,2,3] [--no-sqlite] [--keep]
    make bench-postgresql          (or: make bench DB=postgresql)

For each instance count: a fresh database on a private PostgreSQL
(tests/cluster/pg_server.py, fsync on; the system one on 5432 is not
touched), that many real ``mailgate run`` daemons sharing it, and
``--mails`` new requests over SMTP spread across them by ``--connections``
client connections as fast as they are accepted. Each request comes from
its own address and gets one acknowledgement, delivered to an SMTP sink in
this process. Then the same load on one instance with SQLite, the default.

Printed per run:

* end to end: acknowledgements per second, from the first mail sent to
  the last acknowledgement at the sink;
* acknowledgement latency p50 / p99: from a mail's 250 to its acknowledgement;
* CPU per mail: user + system seconds of every mailgate process (daemon and
  workers), and of the PostgreSQL server processes, divided by the mails.
  SQLite does its database work inside mailgate's processes, PostgreSQL in
  its own, so compare "mailgate + database".

All of it shares this machine's cores with the client and sink (and, on a
shared build machine, with other work): the figures say how the parts
compare here, not what a dedicated server would do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.instances import Cluster, RecordingSink
from tests.cluster.mailflow import Mta, Traffic
from tests.cluster.pg_server import PgServer
from tests.cluster.verify import bare


@dataclass
class Run:
    label: str
    instances: int
    mails: int
    acks: int
    seconds: float
    p50: float
    p99: float
    mailgate_cpu: float
    database_cpu: float
    # The steady phase: mails/s asked, mails/s accepted, ack p99 from the 250
    # and from each mail's due time (a slow cluster also slows the sender).
    steady_rate: float = 0.0
    steady_accepted: float = 0.0
    steady_p50: float = float("nan")
    steady_p99: float = float("nan")
    steady_due_p99: float = float("nan")
    steady_missing: int = 0

    @property
    def per_second(self) -> float:
        return self.acks / self.seconds if self.seconds else 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def cpu_of(select: set[int], *, by_group: bool) -> dict[int, float]:
    """CPU seconds per live process whose process group (or parent) is in ``select``."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        # proc(5): after the name, [1] is the parent, [2] the process group,
        # [11] and [12] user and system time in ticks.
        key = int(fields[2]) if by_group else int(fields[1])
        if key in select or int(entry.name) in select:
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def measure(
    label: str, cluster: Cluster, sink: RecordingSink, args: argparse.Namespace, pg: PgServer | None
) -> Run:
    groups = {instance.process.pid for instance in cluster.instances if instance.process is not None}
    database = {pg.pid() or -1} if pg is not None else set()
    # Warm-up: every instance has parsed, routed and answered one mail.
    warm = Mta(cluster, connections=len(cluster.instances)).start()
    # The tag goes into the requesters' addresses: letters and digits only.
    tag = "".join(ch for ch in label if ch.isalnum()).lower()
    warm_traffic = Traffic(sink, f"warm{tag}", reply_every=0)
    for _ in cluster.instances:
        warm.submit(warm_traffic.next())
    warm.close()
    _wait_acks(sink, [m.message_id for m in warm.sent], 120)

    mailgate_before = cpu_of(groups, by_group=True)
    database_before = cpu_of(database, by_group=False) if database else {}
    mta = Mta(cluster, connections=args.connections, give_up_after=args.patience).start()
    traffic = Traffic(sink, tag, reply_every=0)
    began = time.time()
    for _ in range(args.mails):
        mta.submit(traffic.next())
    mta.close()
    arrived = _wait_acks(sink, [m.message_id for m in mta.sent], args.patience)
    mailgate_cpu = spent(mailgate_before, cpu_of(groups, by_group=True))
    database_cpu = spent(database_before, cpu_of(database, by_group=False)) if database else 0.0
    latencies = [
        arrived[bare(m.message_id)] - m.accepted_at
        for m in mta.sent
        if m.accepted_at is not None and bare(m.message_id) in arrived
    ]
    last = max(arrived.values(), default=began)
    run = Run(
        label,
        len(cluster.instances),
        args.mails,
        len(arrived),
        last - began,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        mailgate_cpu,
        database_cpu,
    )
    if args.steady_seconds > 0:
        steady(run, cluster, sink, args, f"st{tag}")
    for problem in cluster.unexpected_exits():
        print(f"PROBLEM: {problem} during the run", flush=True)
    return run


def steady(run: Run, cluster: Cluster, sink: RecordingSink, args: argparse.Namespace, tag: str) -> None:
    """``--steady-rate`` mails/s for ``--steady-seconds``: the latency when nothing queues."""
    mta = Mta(cluster, connections=args.connections, give_up_after=args.patience).start()
    traffic = Traffic(sink, tag, reply_every=0)
    count = round(args.steady_rate * args.steady_seconds)
    due: dict[str, float] = {}
    began = time.time()
    for number in range(count):
        at = began + number / args.steady_rate
        time.sleep(max(0.0, at - time.time()))
        mail = traffic.next()
        due[bare(mail.message_id)] = at
        mta.submit(mail)
    mta.close()
    sent_for = time.time() - began
    arrived = _wait_acks(sink, [m.message_id for m in mta.sent], args.patience)
    from_250 = [
        arrived[bare(m.message_id)] - m.accepted_at
        for m in mta.sent
        if m.accepted_at is not None and bare(m.message_id) in arrived
    ]
    from_due = [arrived[key] - due[key] for key in arrived]
    run.steady_rate = args.steady_rate
    run.steady_accepted = sum(1 for m in mta.sent if m.accepted_at) / sent_for
    run.steady_p50 = percentile(from_250, 0.5)
    run.steady_p99 = percentile(from_250, 0.99)
    run.steady_due_p99 = percentile(from_due, 0.99)
    run.steady_missing = count - len(arrived)


def _wait_acks(sink: RecordingSink, message_ids: list[str], patience: float) -> dict[str, float]:
    """Arrival time of each request's first acknowledgement; gives up after
    ``patience`` seconds without a new one."""
    wanted = {bare(mid) for mid in message_ids}
    arrived: dict[str, float] = {}
    last_progress, seen = time.monotonic(), 0
    while len(arrived) < len(wanted):
        for mail in sink.mails()[seen:]:
            key = bare(mail.in_reply_to)
            if key in wanted and key not in arrived:
                arrived[key] = mail.arrived
                last_progress = time.monotonic()
            seen += 1
        if time.monotonic() - last_progress > patience:
            break
        time.sleep(0.05)
    return arrived


def run_cluster(count: int, url: str, pg: PgServer | None, args: argparse.Namespace, work: Path) -> Run:
    sink = RecordingSink().start()
    cluster = Cluster(
        work / f"n{count}-{'pg' if pg else 'sqlite'}", url, sink.port, count=count, log_level="warning"
    )
    try:
        cluster.migrate()
        cluster.start_all()
        label = f"{count} instance{'s' if count > 1 else ''}, {'PostgreSQL' if pg else 'SQLite'}"
        return measure(label, cluster, sink, args, pg)
    finally:
        cluster.stop_all()
        sink.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mails", type=int, default=1500, help="new requests per run (default 1500)")
    parser.add_argument("--connections", type=int, default=6, help="SMTP client connections (default 6)")
    parser.add_argument("--instances", default="1,2,3", help="instance counts to run (default 1,2,3)")
    parser.add_argument(
        "--steady-rate", type=float, default=40.0, help="steady phase: mails per second (default 40)"
    )
    parser.add_argument(
        "--steady-seconds",
        type=float,
        default=15.0,
        help="steady phase length in seconds (default 15; 0 skips it)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite comparison run")
    parser.add_argument("--patience", type=float, default=60.0, help="give up after this long without an ack")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (configs, logs)")
    args = parser.parse_args(argv)
    counts = [int(part) for part in args.instances.split(",") if part.strip()]
    if not 0 < args.mails <= 100_000 or not counts or min(counts) < 1:
        parser.error("--mails in 1..100000, --instances a list of counts >= 1")

    work = Path(tempfile.mkdtemp(prefix="mailgate-cluster-bench-"))
    load = os.getloadavg()[0]
    print(
        f"{os.cpu_count()} CPUs, shared by the instances, their workers, PostgreSQL, this client and the "
        f"sink (and whatever else runs here: load average {load:.1f} at the start); "
        f"{args.mails} requests per run over {args.connections} connections"
    )
    runs: list[Run] = []
    pg = PgServer().start()
    try:
        for count in counts:
            url = pg.create_database(f"bench_{count}")
            runs.append(run_cluster(count, url, pg, args, work))
            report(runs[-1])
    finally:
        pg.remove()
    if not args.no_sqlite:
        runs.append(run_cluster(1, f"sqlite:///{work}/sqlite.db", None, args, work))
        report(runs[-1])
    summary(runs)
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(run.acks == run.mails and not run.steady_missing for run in runs) else 1


def report(run: Run) -> None:
    total = run.mailgate_cpu + run.database_cpu
    print(
        f"\n== {run.label}\n"
        f"end to end:  {run.per_second:7.1f} acks/s "
        f"({run.acks} of {run.mails} acknowledged in {run.seconds:.1f} s)\n"
        f"ack latency: p50 {run.p50 * 1000:.0f} ms, p99 {run.p99 * 1000:.0f} ms (from the 250 to the ack)\n"
        f"CPU per mail: mailgate {1000 * run.mailgate_cpu / run.mails:.1f} ms"
        + (f" + PostgreSQL {1000 * run.database_cpu / run.mails:.1f} ms" if run.database_cpu else "")
        + f" = {1000 * total / run.mails:.1f} ms"
    )
    if run.steady_rate:
        print(
            f"steady {run.steady_rate:g}/s: accepted {run.steady_accepted:.1f}/s, ack latency "
            f"p50 {run.steady_p50 * 1000:.0f} ms, p99 {run.steady_p99 * 1000:.0f} ms "
            f"(p99 from the due time {run.steady_due_p99 * 1000:.0f} ms)"
        )
    if run.acks < run.mails or run.steady_missing:
        print(f"MISSING: {run.mails - run.acks + run.steady_missing} requests got no acknowledgement")
    sys.stdout.flush()


def summary(runs: list[Run]) -> None:
    print("\n== summary (2 cores shared by everything above: compare, do not extrapolate)")
    print("burst: as fast as accepted (latency is mostly the queue); steady: the asked rate")
    print(
        f"{'run':<26} {'burst acks/s':>12} {'burst p99 ms':>12} {'steady p99 ms':>13} "
        f"{'CPU ms/mail':>11} {'of it DB':>8}"
    )
    for run in runs:
        total = 1000 * (run.mailgate_cpu + run.database_cpu) / run.mails
        print(
            f"{run.label:<26} {run.per_second:12.1f} {run.p99 * 1000:12.0f} {run.steady_p99 * 1000:13.0f} "
            f"{total:11.1f} {1000 * run.database_cpu / run.mails:8.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
