"""`mailgate ingest` and `import` without an envelope sender: unknown, not null (issue 10).

Without ``--sender`` and without Return-Path nothing recorded who sent the
mail. It used to be read from From with a one-line pattern; a long encoded
name folds the address onto the next line, the pattern found nothing, and
the request was taken for a bounce (16 of 1,000 in an imported helpdesk
mailbox). Now the sender is unknown and the headers decide, parsed whole.
"""

from __future__ import annotations

import base64
import mailbox
import time
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from tests.conftest import make_mail, tickets_json, wait_until

# A long display name, as Outlook writes it: RFC 2047 encoded, and folded so
# that the address stands alone on the continuation line.
NAME = "Jan-Willem van den Broek-Hoogstraten (Afdeling Facilitaire Zaken, gebouw Noord)"


def _folded_request(address: str, subject: str) -> bytes:
    encoded = "=?UTF-8?B?" + base64.b64encode(NAME.encode()).decode() + "?="
    message_id = f"<{subject.replace(' ', '-')}@example.nl>"
    raw = make_mail(subject=subject, sender="PLACEHOLDER", message_id=message_id)
    return raw.replace(b"From: PLACEHOLDER", f"From: {encoded}\r\n <{address}>".encode())


def _ack_recipients(daemon: Any) -> list[str]:
    return sorted(
        address.lower()
        for raw in daemon.acks()
        for _, address in getaddresses([str(message_from_bytes(raw)["To"])])
    )


def test_ingest_without_sender_acknowledges_a_folded_from(daemon: Any) -> None:
    """Piped without --sender, a folded From is answered; `--sender ""` (a bounce's <>) is not."""
    raw = _folded_request("jan-willem@gemeente.example.nl", "printer broken")
    # What the issue describes: the From line itself holds no address.
    (from_line,) = [line for line in raw.split(b"\r\n") if line.startswith(b"From:")]
    assert b"@" not in from_line
    folded = daemon.cli("ingest", input_bytes=raw)
    assert 0 == folded.returncode, folded.stderr.decode()
    # Postfix passes ${sender} empty for MAIL FROM:<>: that null was recorded.
    null = daemon.cli("ingest", "--sender", "", input_bytes=make_mail(sender="Dora <dora@example.org>"))
    assert 0 == null.returncode, null.stderr.decode()
    plain = daemon.cli("ingest", input_bytes=make_mail(sender="Piet <piet@example.org>"))
    assert 0 == plain.returncode, plain.stderr.decode()
    wait_until(lambda: len(daemon.acks()) >= 2, timeout=30)
    time.sleep(2.5)  # the delivery worker polls every 2 s: a third one would be out by now
    assert ["jan-willem@gemeente.example.nl", "piet@example.org"] == _ack_recipients(daemon)
    assert 3 == len(tickets_json(daemon.config_path))


def test_import_acknowledges_folded_from_requests(daemon: Any, tmp_path: Path) -> None:
    """Every request of an imported Maildir is answered, folded From or not; a recorded <> is not."""
    box = mailbox.Maildir(tmp_path / "Maildir")
    people = [f"medewerker{n}@gemeente.example.nl" for n in range(4)]
    for n, address in enumerate(people):
        box.add(_folded_request(address, f"request {n}"))
    box.add(b"Return-Path: <>\r\n" + make_mail(sender="Dora <dora@example.org>", subject="vacation"))
    box.add(make_mail(sender="Piet <piet@example.org>", subject="plain request"))
    box.close()
    result = daemon.cli("import", "--no-progress", str(tmp_path / "Maildir"))
    assert 0 == result.returncode, result.stderr.decode()
    wait_until(lambda: len(daemon.acks()) >= 5, timeout=30)
    time.sleep(2.5)
    assert sorted([*people, "piet@example.org"]) == _ack_recipients(daemon)
    assert 6 == len(tickets_json(daemon.config_path))
