"""What marking each outbox row sent right after its 250 costs, per mail.

Two ways of issue 10, item 3, on a real SQLite file (WAL): a line appended
to the sent journal, or a small UPDATE committed per mail on the lease
engine (synchronous=NORMAL). Each is timed alone and while another thread
holds the write lock in 10 ms slices with 2 ms gaps, as processing does
under a burst. The delivery worker waits for every mark before its next
mail, so the wait is what costs throughput.

    .venv/bin/python bench/sent_marks_bench.py --mails 2000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from mailgate.outbox.sent_marks import CommitEach, SentJournal
from mailgate.store.db import make_engine, session_factory, transaction, upgrade
from mailgate.store.writes import OUTBOX


def _timed(mark: Callable[[int, datetime], None], ids: range) -> list[float]:
    took = []
    for row_id in ids:
        start = time.perf_counter()
        mark(row_id, datetime.now(UTC))
        took.append(time.perf_counter() - start)
    return took


def _contend(sessions: object, stop: threading.Event) -> None:
    while not stop.is_set():
        with transaction(sessions) as session:  # type: ignore[arg-type]
            session.execute(text("UPDATE outbox SET attempts = attempts WHERE id = 1"))
            time.sleep(0.010)
        time.sleep(0.002)


def _report(name: str, took: list[float]) -> None:
    ordered = sorted(took)
    mean, p50 = statistics.fmean(took), ordered[len(ordered) // 2]
    p99 = ordered[int(len(ordered) * 0.99)]
    print(f"{name:<34} mean {mean * 1e6:8.1f} µs   p50 {p50 * 1e6:8.1f} µs   p99 {p99 * 1e6:8.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench.db"
        url = f"sqlite:///{database}"
        durable = make_engine(url)
        upgrade(durable)
        sessions = session_factory(make_engine(url, durable=False))
        now = datetime.now(UTC)
        rows = [
            {
                "kind": "ack",
                "message_id": f"<{n}@bench>",
                "mail_from": "h@x",
                "rcpt": f"r{n}@x",
                "raw": b"x" * 2000,
                "state": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "automatic": True,
            }
            for n in range(4 * args.mails + 1)
        ]
        with transaction(session_factory(durable)) as session:
            session.connection().execute(OUTBOX.insert(), rows)
        journal = SentJournal.for_database(database)
        commit = CommitEach(sessions)
        n = args.mails
        _report("journal line, alone", _timed(journal.sent, range(1, n + 1)))
        _report("commit per mail, alone", _timed(commit.sent, range(n + 1, 2 * n + 1)))
        stop = threading.Event()
        busy = threading.Thread(target=_contend, args=(session_factory(durable), stop), daemon=True)
        busy.start()
        _report("journal line, write lock busy", _timed(journal.sent, range(2 * n + 1, 3 * n + 1)))
        _report("commit per mail, write lock busy", _timed(commit.sent, range(3 * n + 1, 4 * n + 1)))
        stop.set()
        busy.join()
        journal.close()


if __name__ == "__main__":
    main()
