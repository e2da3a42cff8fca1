"""How long retention takes on a big SQLite helpdesk (not part of `make test`).

Seeds TICKETS closed tickets straight into a fresh database (each with a
request and an ack, its raw mail and, for every tenth, an attachment), then
times a dry run, the originals run, a second (empty) run and anonymising.

    .venv/bin/python bench/retention_bench.py --tickets 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from mailgate.config import Retention
from mailgate.records.retention import run
from mailgate.store.db import make_engine, session_factory, transaction, upgrade
from mailgate.store.models import Article, AttachmentBlob, Inbound, Ticket


def seed(sessions: object, count: int, when: datetime) -> None:
    body = ("Hello,\r\n\r\nthe printer on floor 3 jams on every page.\r\n" * 20).encode()
    for start in range(0, count, 1000):
        ids = range(start + 1, min(count, start + 1000) + 1)
        with transaction(sessions) as session:  # type: ignore[arg-type]
            session.execute(
                insert(Ticket),
                [
                    {
                        "id": i,
                        "ref": f"HD-{i}",
                        "subject": f"Printer {i}",
                        "status": "closed",
                        "requester": f"user{i}@example.org",
                        "created_at": when,
                        "updated_at": when,
                        "resolved_at": when,
                        "closed_at": when,
                    }
                    for i in ids
                ],
            )
            session.execute(
                insert(Inbound),
                [
                    {
                        "id": i,
                        "raw": b"From: user%d@example.org\r\n\r\n" % i + body,
                        "size": len(body),
                        "source": "smtp",
                        "state": "done",
                        "received_at": when,
                    }
                    for i in ids
                ],
            )
            session.execute(
                insert(AttachmentBlob),
                [{"sha256": f"{i:064x}", "size": 4096, "content": bytes(4096)} for i in ids if i % 10 == 0],
            )
            session.execute(
                insert(Article),
                [
                    {
                        "ticket_id": i,
                        "inbound_id": i,
                        "direction": "in",
                        "kind": "request",
                        "sender": f"user{i}@example.org",
                        "body_text": body.decode(),
                        "body_full": body.decode(),
                        "created_at": when,
                        "attachments": [{"filename": "scan.pdf", "size": 4096, "sha256": f"{i:064x}"}]
                        if i % 10 == 0
                        else [],
                    }
                    for i in ids
                ]
                + [
                    {
                        "ticket_id": i,
                        "direction": "out",
                        "kind": "ack",
                        "sender": "helpdesk@example.com",
                        "body_text": "We got it.",
                        "body_full": "We got it.",
                        "created_at": when,
                    }
                    for i in ids
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=20000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="retention-bench-"))
    engine = make_engine(f"sqlite:///{folder}/mailgate.db")
    upgrade(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    started = time.monotonic()
    seed(sessions, args.tickets, now - timedelta(days=1000))
    print(f"seeded {args.tickets} closed tickets in {time.monotonic() - started:.1f} s ({folder})")
    size = (folder / "mailgate.db").stat().st_size
    steps = (
        ("dry run (originals)", Retention(originals_days=90), True),
        ("originals", Retention(originals_days=90), False),
        ("originals again", Retention(originals_days=90), False),
        ("anonymise", Retention(tickets_days=730), False),
    )
    for name, policy, dry_run in steps:
        started = time.monotonic()
        plan = run(sessions, engine, policy, now, dry_run=dry_run)
        took = time.monotonic() - started
        tickets = len(plan.originals["tickets"]) + len(plan.anonymise["tickets"])
        print(f"{name:20} {took:7.1f} s  {tickets} tickets, {plan.files_removed} files removed")
    print(
        f"database {size / 1e6:.0f} MB before, {(folder / 'mailgate.db').stat().st_size / 1e6:.0f} MB after"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
