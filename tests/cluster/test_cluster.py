"""Three mailgate instances on one (private) PostgreSQL: kill -9 under load (issue 13).

The short version of ``make soak``: 500 mails over SMTP spread across three
real ``mailgate run`` instances, IMAP mail arriving in a Dovecot account all
three are configured with, two kill -9 with restarts (one of them the IMAP
account's holder), and a PostgreSQL restart. Then every accepted mail must be
exactly one article, each requester must have one acknowledgement (a resend
of the same Message-ID is allowed once per kill), refs unique, and the dead
instances' claims and the IMAP account taken over within 10 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.chaos import Chaos, run_when
from tests.cluster.instances import Cluster, ImapSettings, RecordingSink
from tests.cluster.mailflow import ImapFeeder, Mta, Traffic
from tests.cluster.pg_server import PgServer
from tests.cluster.verify import check, settle
from tests.imap.dovecot import Dovecot, make_tls_files

MAILS = 500
IMAP_MAILS = 20
TAKEOVER_SECONDS = 10.0


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = PgServer().start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    server = Dovecot(make_tls_files(tmp_path_factory.mktemp("tls")))
    yield server
    server.remove()


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    relay = RecordingSink().start()
    yield relay
    relay.stop()


def test_three_instances_survive_kills_and_a_database_restart(
    pg: PgServer, dovecot: Dovecot, sink: RecordingSink, tmp_path: Path
) -> None:
    began = time.monotonic()
    user, password = dovecot.take_user()
    dovecot.client(user, password).logout()  # the first login makes the Maildir
    url = pg.create_database("mailgate")
    cluster = Cluster(
        tmp_path, url, sink.port, imap=[ImapSettings("support", dovecot.imap_port, user, password)]
    )
    cluster.migrate()
    cluster.start_all()
    started = time.monotonic() - began

    mta = Mta(cluster, connections=4, give_up_after=120).start()
    feeder = ImapFeeder(lambda: dovecot.client(user, password), "t", interval=0.4, count=IMAP_MAILS)
    chaos = Chaos(cluster, url, pg=pg, feeder=feeder, imap_account="support")
    stop = threading.Event()

    def kills() -> None:
        run_when(lambda: mta.accepted >= 80, lambda: chaos.kill_and_restart(cluster.instances[1]), stop)
        run_when(lambda: mta.accepted >= 200, lambda: chaos.imap_handover(), stop)

    def database() -> None:
        # On its own clock: while an instance is down or just back, mail still flows.
        run_when(lambda: mta.accepted >= 300, lambda: chaos.restart_postgresql("fast"), stop)

    plans = [threading.Thread(target=kills, daemon=True), threading.Thread(target=database, daemon=True)]
    try:
        feeder.start()
        for thread in plans:
            thread.start()
        traffic = Traffic(sink, "t", reply_every=10, urgent_every=50, again_every=25)
        for _ in range(MAILS):
            mta.submit(traffic.next())
        mta.close(timeout=180)
        for thread in plans:
            thread.join(timeout=120)
        feeder.stop()
        sent = [*mta.sent, *feeder.sent]
        settled = settle(url, sent, sink, timeout=45)
        takeovers = chaos.takeovers()
        findings = check(url, sent, sink)
        exits = cluster.unexpected_exits()
    finally:
        stop.set()
        codes = cluster.stop_all()

    figures = [
        f"started 3 instances in {started:.1f} s; whole run {time.monotonic() - began:.1f} s; "
        f"settled {settled:.1f} s after the last mail",
        findings.summary(),
        f"kills {chaos.kills}, restarts {chaos.restarts} "
        f"({', '.join(f'{s:.1f}' for s in chaos.restart_seconds)} s); "
        f"PostgreSQL away {', '.join(f'{s:.1f}' for s in chaos.pg_outages)} s",
        "takeover of claims: " + "; ".join(t.describe() for t in takeovers),
        "IMAP hand-over: "
        + "; ".join(f"{h.killed} ({h.how}) -> {h.new_holder}: {h.seconds}" for h in chaos.handovers),
        f"refusals seen by the MTA: {dict(findings.refused_answers.most_common(6))}",
        *chaos.log,
        *(f"PROBLEM: {problem}" for problem in findings.problems(allowed_resends=chaos.kills)),
    ]
    print("\n".join(figures))
    report = "\n".join(figures)
    assert [] == exits, report
    assert {name: 0 for name in codes} == codes, report
    assert [] == findings.problems(allowed_resends=chaos.kills), report
    assert MAILS + IMAP_MAILS + 1 == findings.mails, report
    assert (2, 2) == (chaos.kills, chaos.restarts), report
    slow = [t.describe() for t in takeovers if t.seconds is None or t.seconds > TAKEOVER_SECONDS]
    assert [] == slow, report
    handovers = [h.seconds for h in chaos.handovers]
    assert handovers and all(s is not None and s <= TAKEOVER_SECONDS for s in handovers), report
