"""Vendor auto-replies and challenges through the real daemon: no acknowledgement goes out.

The daemon runs as a subprocess, mail arrives over SMTP and acknowledgements
leave over SMTP to an aiosmtpd relay, as in production. Each machine mail is
sent with its real envelope sender (not MAIL FROM:<>), so only the new
rules can keep it from being answered.
"""

# STYLE.md wants the expected value on the left, which SIM300 calls a Yoda condition.

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Any

from mailgate.ingest.files import envelope_sender
from tests.conftest import make_mail
from tests.guard.helpers import fixture
from tests.helpers import as_an_mta_sends_it, settled_inbound_states


def _dated_now(raw: bytes) -> bytes:
    """``raw`` with today's Date, so that no age limit on old mail can be why it goes unanswered."""
    return re.sub(rb"(?im)^Date:[^\n]*(\n[ \t][^\n]*)*", b"Date: " + formatdate().encode(), raw, count=1)


def test_domino_out_of_office_and_a_challenge_get_no_acknowledgement(daemon_factory: Any, sink: Any) -> None:
    """Over SMTP: a Lotus Domino 'AUTO: … is out of the office' reply and a Bluebottle
    challenge become articles but get no acknowledgement; a person's mail sent between
    them gets exactly one."""
    daemon = daemon_factory(outbound={"smtp": {"host": "127.0.0.1", "port": sink.port}})
    domino = as_an_mta_sends_it(_dated_now(fixture("domino_out_of_office")))
    challenge = as_an_mta_sends_it(_dated_now(fixture("bluebottle_challenge")))
    person = make_mail(
        subject="I was out of office yesterday, now my printer does not print",
        sender="Ann Example <ann@customer.example>",
        message_id="<person-between-machines@customer.example>",
        body="Hi,\n\nplease confirm my printer access, I cannot verify it myself.\n\nAnn\n",
    )
    assert envelope_sender(domino) and envelope_sender(challenge)  # real senders, not <>
    daemon.send(domino, mail_from=envelope_sender(domino))
    daemon.send(person, mail_from="ann@customer.example")
    daemon.send(challenge, mail_from=envelope_sender(challenge))

    assert {"done": 3} == settled_inbound_states(daemon, 3, timeout=60)
    sink.wait(1, timeout=30)
    # Give a wrongly queued acknowledgement to a machine time to reach the relay too.
    time.sleep(2)
    assert [["ann@customer.example"]] == [received.rcpt_tos for received in sink.messages]
    assert "<person-between-machines@customer.example>" == sink.messages[0].message["In-Reply-To"]
    stored = sorted(line["guard"] for line in daemon.events("process.stored"))
    assert ["auto_reply", "challenge", "human"] == stored
    suppressed = " | ".join(line["reason"] for line in daemon.events("process.ack_suppressed"))
    assert "Lotus Notes/Domino" in suppressed
    assert "Bluebottle" in suppressed
    assert 0 == daemon.stop()
