"""Soak test (issue 13): three mailgate instances on one PostgreSQL, killed at random.

    .venv/bin/python bench/soak.py [--mails 20000] [--instances 3] [--kill-every 20]
        [--imap-interval 0.5] [--connections 6] [--seed 13] [--keep]

Starts a private PostgreSQL (tests/cluster/pg_server.py; the system one on
5432 is not touched), a throwaway Dovecot, an SMTP sink and ``--instances``
real ``mailgate run`` daemons sharing the database, reply key, rules, agents
and templates. Then, all at once:

* ``--mails`` mails over SMTP, spread across the instances by a client that
  retries like an MTA (next instance after a refused connection or a 4xx),
  one new requester address per request, one mail in ten a reply to an
  earlier acknowledgement, one in 25 a second copy of the newest request
  (sent to the next instance, as an MTA that timed out would), one in fifty
  URGENT (its 2 s service level is breached, so escalations happen);
* a new request APPENDed to the IMAP account (every instance is configured
  with it) every ``--imap-interval`` seconds;
* every ``--kill-every`` seconds ``kill -9`` of a random instance (every third
  time the one holding the IMAP account, per ``mailgate doctor --json`` when
  it says), restarted at once;
* PostgreSQL restarted once, half-way.

At the end it waits until nothing is pending, counts what became of every
mail in the database and at the sink, prints mails, kills, restarts, lost,
doubled, resends, IMAP hand-over times, takeover times of the dead
instances' claims and escalations sent twice, and exits 1 on any loss,
doubling, missing or doubled acknowledgement, doubled escalation or more
resends than kills. Needs root (PostgreSQL and Dovecot run as their users).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.chaos import Chaos
from tests.cluster.instances import Cluster, ImapSettings, RecordingSink
from tests.cluster.mailflow import ImapFeeder, Mta, Sent, Traffic
from tests.cluster.pg_server import PgServer
from tests.cluster.verify import check, settle
from tests.imap.dovecot import Dovecot, make_tls_files


def seconds(values: list[float | None]) -> str:
    shown = ["never" if value is None else f"{value:.1f}" for value in values]
    return ", ".join(shown) if shown else "none"


def acked(traffic: Traffic) -> int:
    """Requests of this stream acknowledged so far (IMAP ones are not: they come on their own)."""
    return sum(1 for key in traffic.acks.refresh() if key.startswith("<s-"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mails", type=int, default=20000, help="mails over SMTP (default 20000)")
    parser.add_argument("--instances", type=int, default=3, help="mailgate instances (default 3)")
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds between kills (default 20)")
    parser.add_argument("--imap-interval", type=float, default=0.5, help="seconds between IMAP mails")
    parser.add_argument("--connections", type=int, default=6, help="SMTP client connections (default 6)")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=420.0,
        help="after the last mail, wait at most this long for everything to be answered (default 420)",
    )
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=400,
        help="hold new mail while this many accepted requests wait for their ack (default 400): "
        "the stream then runs at the speed the cluster answers, so the kills fall while it works",
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    args = parser.parse_args(argv)
    if not 0 < args.mails <= 100_000:
        parser.error("--mails must be in 1..100000")

    work = Path(tempfile.mkdtemp(prefix="mailgate-soak-"))
    pg = PgServer()
    dovecot = Dovecot(make_tls_files(work / "tls"))
    sink = RecordingSink().start()
    cluster: Cluster | None = None
    began = time.monotonic()
    try:
        pg.start()
        user, password = dovecot.take_user()
        dovecot.client(user, password).logout()
        url = pg.create_database("mailgate")
        cluster = Cluster(
            work,
            url,
            sink.port,
            count=args.instances,
            imap=[ImapSettings("support", dovecot.imap_port, user, password)],
        )
        cluster.migrate()
        cluster.start_all()
        print(
            f"{args.instances} instances up in {time.monotonic() - began:.1f} s; private PostgreSQL on "
            f"127.0.0.1:{pg.port}, Dovecot on {dovecot.imap_port}, sink on {sink.port}; work folder {work}",
            flush=True,
        )
        return soak(args, cluster, pg, dovecot, sink, url, user, password)
    finally:
        if cluster is not None:
            codes = cluster.stop_all()
            print(f"instances stopped: exit codes {codes}")
        sink.stop()
        dovecot.remove()
        pg.remove()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def soak(
    args: argparse.Namespace,
    cluster: Cluster,
    pg: PgServer,
    dovecot: Dovecot,
    sink: RecordingSink,
    url: str,
    user: str,
    password: str,
) -> int:
    mta = Mta(cluster, connections=args.connections, give_up_after=600).start()
    feeder = ImapFeeder(lambda: dovecot.client(user, password), "s", args.imap_interval, 10**9)
    chaos = Chaos(cluster, url, pg=pg, feeder=feeder, imap_account="support", rng=random.Random(args.seed))
    stop = threading.Event()

    def one_kill(number: int) -> None:
        # Every third kill is of the IMAP account's holder (when it is up).
        if number % 3 != 0 or chaos.imap_handover() is None:
            chaos.kill_and_restart()
        print(f"  {chaos.log[-1]}; {mta.accepted} mails accepted so far", flush=True)

    def kills() -> None:
        # Every --kill-every seconds by the clock; each restart in its own
        # thread, so a slow start does not delay the next kill.
        number, started = 0, []
        while not stop.wait(args.kill_every):
            number += 1
            thread = threading.Thread(target=one_kill, args=(number,), daemon=True)
            thread.start()
            started.append(thread)
        for thread in started:
            thread.join(120)

    def database_restart() -> None:
        while mta.accepted < args.mails // 2:
            if stop.wait(0.2):
                return
        chaos.restart_postgresql("fast")
        print(f"  {chaos.log[-1]}", flush=True)

    threads = [
        threading.Thread(target=kills, daemon=True),
        threading.Thread(target=database_restart, daemon=True),
    ]
    stream_began = time.monotonic()
    feeder.start()
    for thread in threads:
        thread.start()
    traffic = Traffic(sink, "s", reply_every=10, urgent_every=50, again_every=25)
    requests_accepted = [0]

    def count_request(mail: Sent) -> None:
        requests_accepted[0] += mail.kind == "request"

    mta.on_accepted = count_request
    held = 0.0
    for number in range(args.mails):
        # Flow control, as an MTA's queue has: the backlog stays bounded.
        while number % 20 == 0 and requests_accepted[0] - acked(traffic) > args.max_backlog:
            time.sleep(0.2)
            held += 0.2
        mta.submit(traffic.next())
        if number and number % 2000 == 0:
            print(
                f"  {number} mails submitted, {mta.accepted} accepted, {len(sink.mails())} at the sink",
                flush=True,
            )
    mta.close()
    stream_seconds = time.monotonic() - stream_began
    stop.set()
    for thread in threads:
        thread.join()
    feeder.stop()
    sent = [*mta.sent, *feeder.sent]
    print(
        f"stream done in {stream_seconds:.0f} s (held back {held:.0f} s by the backlog limit); "
        "waiting for the answers",
        flush=True,
    )
    settled = settle(url, sent, sink, timeout=args.settle_timeout)
    takeovers = chaos.takeovers(timeout=5)
    findings = check(url, sent, sink)
    exits = cluster.unexpected_exits()

    handover_kills = list(chaos.handovers)
    print(
        "\n== soak: 3 instances, one PostgreSQL"
        if args.instances == 3
        else f"\n== soak: {args.instances} instances"
    )
    print(
        f"mails:        {findings.mails} ({findings.requests} requests, {findings.replies} replies and "
        f"{findings.again} second copies of a request by SMTP, {findings.imap} by IMAP)"
    )
    print(
        f"stream:       {stream_seconds:.0f} s ({mta.accepted / stream_seconds:.1f} SMTP mails/s accepted); "
        f"answered {settled:.0f} s after the last one"
    )
    print(f"kills:        {chaos.kills} (kill -9 of a whole instance)")
    print(f"restarts:     {chaos.restarts} (listening again after {seconds(list(chaos.restart_seconds))} s)")
    print(f"PostgreSQL:   restarted {len(chaos.pg_outages)}x, away {seconds(list(chaos.pg_outages))} s")
    print(f"lost:         {len(findings.lost)}")
    print(f"doubled:      {len(findings.doubled)} (mails stored as two articles)")
    print(f"unaccepted:   {len(findings.unaccepted)} (never answered 250)")
    print(f"misthreaded:  {len(findings.misthreaded)}")
    print(
        f"stalls:       {findings.slow_rows} mails processed over 30 s after arrival "
        f"(longest {findings.longest_wait:.0f} s)"
    )
    print(
        f"tickets:      {findings.tickets} (refs duplicated: {len(findings.duplicate_refs)}, "
        f"a ref lower than an older ticket's: {findings.refs_out_of_order})"
    )
    print(
        f"acks:         missing {len(findings.acks_missing)}, two different to one requester "
        f"{len(findings.acks_doubled)}, same-Message-ID resends {findings.ack_resends} "
        f"(allowed: {chaos.kills}, one per kill)"
    )
    print(
        f"escalations:  {findings.escalation_mails} mails, {findings.escalation_resends} resent, "
        f"sent twice {len(findings.escalations_doubled)}; marks {findings.sla_marks}"
    )
    print(
        "IMAP hand-over (s from kill -9 of the holder to a new IMAP mail stored): "
        + seconds([h.seconds for h in handover_kills])
        + f" [holder found by: {', '.join(sorted({h.how for h in handover_kills})) or '-'}]"
    )
    print(
        "claims takeover (s from kill -9 until every row leased then was finished): "
        + seconds([t.seconds for t in takeovers])
    )
    print(f"SMTP refusals the client retried: {dict(findings.refused_answers.most_common(8))}")
    print(f"instances that exited on their own: {exits or 'none'}")
    problems = findings.problems(allowed_resends=chaos.kills) + exits
    for problem in problems:
        print(f"PROBLEM: {problem}")
    for example in findings.ack_resend_examples[:10]:
        print(f"resend: {example}")
    print("\nwhat happened, in order:")
    for line in chaos.log:
        print(f"  {line}")
    slow = [t.describe() for t in takeovers if t.seconds is None or t.seconds > 10]
    if slow:
        print(f"takeovers over 10 s: {slow}")
    failed = bool(findings.lost or findings.doubled or problems)
    print(f"\nsoak {'FAILED' if failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
