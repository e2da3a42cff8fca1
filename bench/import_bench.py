"""How well ``mailgate import`` threads a mailbox whose files list in no order.

Writes a Maildir of ``--requests`` requests and ``--replies`` replies (the
default 710 + 290 is issue 10's helpdesk mailbox), named by delivery time
and created in a shuffled order, imports it with a real ``mailgate import``
into a throwaway SQLite database, and prints how many replies ended on the
ticket of the request they answer, how many tickets were made, and the time
the import took.

    .venv/bin/python bench/import_bench.py [--requests 710] [--replies 290]
        [--as catch-up|history] [--recent] [--mailgate CMD] [--keep]

``--recent`` dates the mailbox yesterday, so catch-up acknowledges it
(otherwise it is older than ``limits.ack_max_age_days``). ``--mailgate``
runs another build (e.g. ``/opt/mailgate/venv/bin/mailgate``); ``--as`` is
left out when it is empty (builds from before the option).
"""

from __future__ import annotations

import argparse
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.mailboxes import HELPDESK, conversations, default_start, write_shuffled_maildir


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=710)
    parser.add_argument("--replies", type=int, default=290)
    parser.add_argument(
        "--as", dest="mode", default="catch-up", help="import mode; '' to leave the option out"
    )
    parser.add_argument("--mailgate", default=f"{sys.executable} -m mailgate")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--recent", action="store_true", help="date the mail yesterday (young enough to be acknowledged)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mailgate-import-bench-"))
    start = default_start()
    if args.recent:
        start = datetime.now(UTC) - timedelta(days=1, minutes=args.requests)
    mails = conversations(args.requests, args.replies, start=start)
    box = write_shuffled_maildir(work / "Maildir", mails)
    config = work / "mailgate.yaml"
    config.write_text(
        f"helpdesk: {{address: {HELPDESK}}}\n"
        f"database: {{url: 'sqlite:///{work}/mailgate.db'}}\n"
        f"outbound: {{maildir: '{work}/outbox'}}\n"
        f"secrets: {{reply_key_file: '{work}/reply.key'}}\n"
        "limits: {auto_replies_per_hour: 1000, auto_replies_per_day: 1000}\n"
        "logging: {format: json, level: warning}\n"
    )
    command = [*shlex.split(args.mailgate), "-c", str(config), "import", str(box), "--no-progress"]
    if args.mode:
        command += ["--as", args.mode]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    took = time.monotonic() - started
    if done.returncode != 0:
        print(done.stdout, done.stderr, file=sys.stderr)
        return 1
    with sqlite3.connect(work / "mailgate.db") as db:
        on_ticket = dict(
            db.execute("SELECT message_id, ticket_id FROM articles WHERE direction = 'in'").fetchall()
        )
        tickets = (
            db.execute("SELECT count(*) FROM tickets WHERE merged_into_id IS NULL").fetchone()[0]
            if _has_merge(db)
            else db.execute("SELECT count(*) FROM tickets").fetchone()[0]
        )
        made = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
        acks = db.execute("SELECT count(*) FROM outbox WHERE kind = 'ack'").fetchone()[0]
    replies = [m for m in mails if m.is_reply]
    right = sum(1 for m in replies if on_ticket.get(m.message_id) == on_ticket.get(m.root))
    print(done.stdout.strip())
    print(f"replies on the ticket of their request: {right}/{len(replies)}")
    print(f"tickets (not merged away): {tickets} (requests: {args.requests})")
    print(f"tickets made (with those merged away): {made}")
    print(f"acknowledgements queued: {acks}")
    print(f"import took {took:.1f} s for {len(mails)} messages")
    if not args.keep:
        import shutil

        shutil.rmtree(work)
    else:
        print(f"work folder: {work}")
    return 0


def _has_merge(db: sqlite3.Connection) -> bool:
    return any(row[1] == "merged_into_id" for row in db.execute("PRAGMA table_info(tickets)"))


if __name__ == "__main__":
    sys.exit(main())
