"""Parse throughput for a typical ~1.5 KB plain-text reply."""

from __future__ import annotations

import time

from mailgate.parse import parse

# Conservative floor: CI machines are noisy; the design target is 2,000/s.
MIN_MESSAGES_PER_SECOND = 500

TYPICAL_REPLY = (
    b"Return-Path: <Jan.deVries@example.nl>\r\n"
    b"Received: from mail.example.nl (mail.example.nl [192.0.2.10])\r\n"
    b"\tby mx.example.com (Postfix) with ESMTPS id 4Tv1x2y3z4\r\n"
    b"\tfor <helpdesk@example.com>; Tue, 12 Mar 2024 10:15:02 +0100 (CET)\r\n"
    b"From: Jan de Vries <Jan.deVries@example.nl>\r\n"
    b"To: helpdesk@example.com\r\n"
    b'Cc: "Pieters, Anke" <anke@example.nl>\r\n'
    b"Subject: =?utf-8?q?Re:_[HD-1041]_Printer_op_de_2e_verdieping?=\r\n"
    b"Date: Tue, 12 Mar 2024 10:15:00 +0100\r\n"
    b"Message-ID: <abc123@example.nl>\r\n"
    b"In-Reply-To: <x1@example.com>\r\n"
    b"References: <x0@example.com> <x1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"X-Mailer: Microsoft Outlook 16.0\r\n"
    b"\r\n"
    b"Hallo,\r\n\r\n"
    b"De printer op de tweede verdieping geeft al sinds vanochtend een papierstoring.\r\n"
    b"Ik heb het apparaat al uit- en aangezet, maar dat hielp niet. Kunnen jullie\r\n"
    b"even kijken? Het gaat om de HP LaserJet bij de koffieautomaat. Het display\r\n"
    b"toont foutcode 13.B2.D3 en de lade blijft vastzitten.\r\n\r\n"
    b"Met vriendelijke groet,\r\nJan de Vries\r\nAfdeling Financi=C3=ABn\r\n\r\n"
    b"Op 11 mrt. 2024 om 09:00 schreef Helpdesk <helpdesk@example.com>:\r\n"
    b"> Uw melding is ontvangen onder nummer HD-1041.\r\n"
    b"> We nemen zo snel mogelijk contact met u op.\r\n"
    b"> Groet, de helpdesk\r\n"
)


def test_parse_throughput_floor() -> None:
    """Parsing a typical reply runs at least MIN_MESSAGES_PER_SECOND on one core.

    Timed by this thread's CPU time, not the wall clock: "on one core" is the
    claim, and under `make test` (two pytest workers) or on a shared machine a
    daemon in another process takes turns on that core: by the wall clock the
    floor failed at 478/s there, on a machine where parse alone does about 4,000/s.
    """
    assert "Jan de Vries" in parse(TYPICAL_REPLY).new_text
    count = 1000
    best = 0.0
    for _ in range(3):
        start = time.thread_time()
        for _ in range(count):
            parse(TYPICAL_REPLY)
        best = max(best, count / (time.thread_time() - start))
    print(f"parse: {best:,.0f} msgs/s for a {len(TYPICAL_REPLY)}-byte reply")
    assert best >= MIN_MESSAGES_PER_SECOND
