"""The guard against real mail nobody on this project wrote (SPEC §6).

sisimai's set-of-emails holds hundreds of real bounces, auto-replies and
abuse reports: none of them may ever be answered. zammad's mail holds
ordinary mail from many clients: it must keep being answered.
"""

# STYLE.md wants the expected value on the left, which SIM300 calls a Yoda condition.

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from mailgate.guard.dsn import parse_dsn
from tests.content.corpus import SISIMAI_SET, TRIMMER, ZAMMAD, needs_zammad
from tests.guard.helpers import check_raw

SISIMAI = SISIMAI_SET
MAILDIR = SISIMAI / "maildir"

# People forwarding a bounce they received ("Fwd: Returned mail: …", sent
# with Apple Mail, no automatic header, a real Return-Path) are asking for
# help, which is what a helpdesk is for; sisimai digs the bounce out of the
# quoted text, the guard rightly answers the person.
FORWARDED_BY_A_PERSON = {"bsd/lhost-sendmail-14.eml"}

# zammad mail that is rightly not answered, and why.
ZAMMAD_NOT_HUMAN = {
    "mail018.box": "bounce",  # DSN
    "mail019.box": "auto_reply",  # spam sent with MAIL FROM:<>
    "mail026.box": "noreply",  # invoice robot noreply@bounce.gate.de
    "mail033-undelivered-mail-returned-to-sender.box": "bounce",
    "mail035.box": "auto_reply",  # spam sent with MAIL FROM:<>
    "mail043.box": "list",  # newsletter, List-Unsubscribe + Precedence: bulk
    "mail052.box": "bounce",
    "mail053.box": "bounce",
    "mail055.box": "bounce",
    "mail063.box": "bounce",
    "mail078.box": "bounce",  # delay DSN
    "mail089.box": "auto_reply",  # ticket system, Auto-Submitted: auto-generated
    "mail090.box": "auto_reply",  # same
    "mail092.box": "bounce",
    "mail094.box": "noreply",  # SAP order robot noreply@example.com
    "mail098.box": "noreply",  # test mail from noreply@example.org
    "mail099.box": "noreply",  # same
}


def _machine_mail() -> list[Path]:
    """Every sisimai message that is a bounce, auto-reply or feedback report."""
    files = [
        path for folder in ("bsd", "dos", "mac", "tmp") for path in sorted((MAILDIR / folder).glob("*.eml"))
    ]
    assert 790 <= len(files), f"sisimai's maildir is missing from {MAILDIR}"
    return files


def test_no_sisimai_message_may_be_answered() -> None:
    """All 792 bounces, auto-replies and reports are classified machine-made (0 misses)."""
    kinds: collections.Counter[str] = collections.Counter()
    misses = []
    for path in _machine_mail():
        name = f"{path.parent.name}/{path.name}"
        verdict = check_raw(path.read_bytes())
        kinds[verdict.kind] += 1
        if verdict.may_auto_reply and name not in FORWARDED_BY_A_PERSON:
            misses.append(name)
    print(f"sisimai: {sum(kinds.values())} messages, kinds {dict(kinds.most_common())}")
    assert [] == misses
    assert 750 <= kinds["bounce"]
    assert 18 <= kinds["feedback"]


def test_sisimai_forwarded_bounce_is_a_person_asking() -> None:
    """A bounce forwarded by a person with Apple Mail is a question, not a bounce."""
    (name,) = FORWARDED_BY_A_PERSON
    assert "human" == check_raw((MAILDIR / name).read_bytes()).kind


@pytest.mark.parametrize("name", ["is-not-bounce-01.eml", "is-not-bounce-02.eml"])
def test_sisimai_non_bounces_are_human(name: str) -> None:
    """The plain mail and the mail with an attached .eml are ordinary human mail."""
    assert "human" == check_raw((MAILDIR / "not" / name).read_bytes()).kind


def test_sisimai_postmaster_notice_in_not_folder_is_not_answered() -> None:
    """rb-issue-368 is not a *parsable* bounce for sisimai, but postmaster mail with <> is no human.

    It comes from postmaster@ with Return-Path <> and Auto-Submitted:
    auto-replied and says "mailbox full": answering it would be a loop.
    """
    verdict = check_raw((MAILDIR / "not" / "rb-issue-368-bug.eml").read_bytes())
    assert (False, "bounce") == (verdict.may_auto_reply, verdict.kind)


def test_sisimai_broken_fragments_never_crash() -> None:
    """The 37 mbox fragments in err/ get a verdict and a DSN answer without raising."""
    kinds = collections.Counter(
        check_raw(path.read_bytes()).kind for path in sorted((MAILDIR / "err").glob("*.eml"))
    )
    for path in sorted((MAILDIR / "err").glob("*.eml")):
        parse_dsn(path.read_bytes())
    assert 37 == sum(kinds.values())


def _expected_rows() -> dict[str, list[tuple[str, str]]]:
    """expected.tsv as {file: [(delivery_status, reason), …]} for real bounces."""
    rows: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for line in (SISIMAI / "expected.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith(("#", "file\t")):
            continue
        fields = [*line.split("\t"), "", "", "", "", "", ""]
        rows[fields[0]].append((fields[2], fields[4]))
    return {
        name: found
        for name, found in rows.items()
        if not all(reason in ("vacation", "feedback") for _, reason in found)
    }


def test_dsn_extraction_over_sisimai_bounces() -> None:
    """parse_dsn finds recipients in most bounces and agrees with sisimai on 5xx vs 4xx."""
    expected = _expected_rows()
    reports = recipients = same_class = exact = with_original = 0
    for name, rows in expected.items():
        report = parse_dsn((SISIMAI / name).read_bytes())
        if report is None:
            continue
        reports += 1
        recipients += len(report.recipients)
        with_original += report.original_message_id is not None
        for (status, _), found in zip(rows, report.recipients, strict=False):
            exact += status == found.status
            same_class += bool(status) and status[0] == found.status[:1]
    print(
        f"DSN: {len(expected)} bounce files, {reports} with a report, {recipients} recipients, "
        f"status class agrees {same_class}, exact status {exact}, "
        f"original Message-ID {with_original}"
    )
    assert 520 <= reports
    assert 550 <= recipients
    assert 520 <= same_class
    assert 415 <= exact
    assert 455 <= with_original


@needs_zammad
def test_zammad_ordinary_mail_stays_human() -> None:
    """Of 106 real zammad mails, exactly the 17 machine-made ones are not answered."""
    not_human = {}
    for path in sorted(ZAMMAD.glob("*.box")):
        verdict = check_raw(path.read_bytes())
        if verdict.kind != "human":
            not_human[path.name] = verdict.kind
    print(f"zammad: {106 - len(not_human)} human, not human: {not_human}")
    assert ZAMMAD_NOT_HUMAN == not_human


REPLY_TRIMMER = TRIMMER / "emails"


def _as_a_mail(body: bytes, subject: bytes, name: str) -> bytes:
    """A reply body from email-reply-trimmer as an ordinary person's mail to the helpdesk."""
    head = (
        b"Return-Path: <ann@customer.example>\nFrom: Ann Example <ann@customer.example>\n"
        b"To: helpdesk@example.com\nSubject: "
        + subject
        + b"\nMessage-ID: <"
        + name.encode()
        + b"@customer.example>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
    )
    return head + body.replace(b"\r\n", b"\n")


def test_reply_trimmer_bodies_are_people() -> None:
    """64 real reply bodies in 13 languages (quotes, signatures, forwarded mail, Dutch among
    them), as a new mail and as a reply: not one is silenced by a body or subject rule."""
    paths = sorted(REPLY_TRIMMER.glob("*.txt"))
    assert 64 == len(paths), "tests/corpora/email-reply-trimmer is missing"
    silenced = [
        (path.name, subject)
        for path in paths
        for subject in (b"Question about my account", b"Re: your question")
        if not check_raw(_as_a_mail(path.read_bytes(), subject, path.stem)).may_auto_reply
    ]
    assert [] == silenced
