"""Machine mail without RFC 3834 headers, from real public examples (issue 10, item 5).

Each fixture here is a real mail from another project's public test corpus
(see tests/fixtures/guard/PROVENANCE.md): a Lotus Notes/Domino out-of-office
reply, Bluebottle and Boxbe challenge-response requests, an iCloud vacation
reply, a wp.pl Polish auto-reply, and two gateway bounces. The human_*
fixtures are the negative control: people who write "out of office",
"automatic", "confirm", "verify" or even "Auto:" in their own mail, or who
reply to or forward such machine mail, must still be answered.
"""

# STYLE.md wants the expected value on the left, which SIM300 calls a Yoda condition.

from __future__ import annotations

import pytest

from tests.guard.helpers import check_raw, fixture

# (fixture, expected kind, a fragment of the reason that must fire)
REAL_MACHINE_MAIL = [
    ("domino_out_of_office", "auto_reply", "subject 'AUTO: … is out of the office' (Lotus Notes/Domino"),
    ("domino_out_of_office", "auto_reply", "Lotus Notes/Domino's out-of-office note"),
    ("bluebottle_challenge", "challenge", "X-Bluebottle-Request header: challenge-response service"),
    ("bluebottle_challenge", "challenge", "body is a Bluebottle challenge-response request"),
    ("boxbe_guest_list_challenge", "bounce", "body is a Boxbe challenge-response request"),
    ("boxbe_guest_list_confirmation", "bounce", "body is a Boxbe challenge-response request"),
    ("icloud_vacation", "auto_reply", "X-Apple-Action: VACATION (iCloud vacation reply)"),
    ("wp_pl_automatyczna_odpowiedz", "auto_reply", "auto-reply subject ('automatyczna odpowiedź')"),
    ("symantec_delivery_failure_notification", "bounce", "('delivery failure notification')"),
    ("exchange_mail_delivery_warning", "bounce", "('mail delivery warning')"),
]

PEOPLE = [
    "human_out_of_office_yesterday",
    "human_dutch_auto_subject",
    "human_dutch_afwezigheid_vraag",
    "human_reply_to_domino",
    "human_forwarded_domino",
    "human_pasted_domino_note",
    "human_outlook_reply_to_challenge",
]


@pytest.mark.parametrize(("name", "kind", "reason"), REAL_MACHINE_MAIL)
def test_real_machine_mail_is_recognised_by_its_rule(name: str, kind: str, reason: str) -> None:
    """Each real vendor mail gets its kind, no automatic answer, and the new rule's reason."""
    verdict = check_raw(fixture(name))
    assert (kind, False) == (verdict.kind, verdict.may_auto_reply)
    assert any(reason in fired for fired in verdict.reasons), verdict.reasons


@pytest.mark.parametrize("name", PEOPLE)
def test_people_who_write_about_machine_mail_are_answered(name: str) -> None:
    """Sentences about out-of-office, confirming or verifying, a Dutch 'Auto:' (car), a reply
    to or a forward of a Domino reply, a pasted Domino note, an Outlook reply quoting a
    challenge: all ordinary mail, no reason fires."""
    verdict = check_raw(fixture(name))
    assert ("human", True, ()) == (verdict.kind, verdict.may_auto_reply, verdict.reasons)


def _with_subject(raw: bytes, subject: bytes) -> bytes:
    """``raw`` with its Subject line replaced by ``subject``."""
    head, _, body = raw.partition(b"\n\n")
    lines = [b"Subject: " + subject if line.startswith(b"Subject:") else line for line in head.split(b"\n")]
    return b"\n".join(lines) + b"\n\n" + body


def test_domino_note_alone_catches_a_reply_with_its_subject_changed() -> None:
    """A Domino reply whose subject was customised (here list-tagged, as Open MPI's archive
    shows them) is still an auto-reply: the fixed body note is enough."""
    raw = _with_subject(
        fixture("domino_out_of_office"),
        b"[OMPI users] AUTO: Matt Steele is out of the office (returning 10/01/2012)",
    )
    verdict = check_raw(raw)
    assert "auto_reply" == verdict.kind
    assert (
        "body carries Lotus Notes/Domino's out-of-office note ('This is an automated response …')",
    ) == verdict.reasons


def test_domino_subject_alone_catches_a_reply_without_the_note() -> None:
    """The AUTO: … is out of the office subject fires on its own (Open MPI's Chinese IBM example)."""
    raw = fixture("human_question").replace(
        b"Subject: Printer jammed",
        b"Subject: AUTO: Wen Hao Wang is out of the office (returning 2013/10/14)",
    )
    assert raw != fixture("human_question")
    verdict = check_raw(raw)
    assert ("auto_reply", ("subject 'AUTO: … is out of the office' (Lotus Notes/Domino out-of-office)",)) == (
        verdict.kind,
        verdict.reasons,
    )


@pytest.mark.parametrize(
    "subject",
    [
        b"Auto: lease car parking pass broken",
        b"AUTO: is the office printer out of toner?",
        b"My colleague is out of the office, who approves my leave?",
        b"Re: AUTO: John Smith is out of the office (returning 05/01/2025)",
        b"[Auto-reply settings] do not save",
    ],
)
def test_domino_subject_needs_both_auto_and_the_out_of_office_sentence(subject: bytes) -> None:
    """'Auto:' alone, 'out of the office' alone, a reply to an AUTO: mail, and a bracket that
    different phrase after it are all a person's subject."""
    raw = fixture("human_question").replace(b"Subject: Printer jammed", b"Subject: " + subject)
    assert raw != fixture("human_question")
    assert "human" == check_raw(raw).kind
