"""The guard: may mailgate answer this message automatically?

SPEC §2 promise 3: no automatic mail ever goes to a bounce, an auto-reply,
a mailing list, a noreply or mailer-daemon sender, or to mail we sent
ourselves. The guard runs after parse and before any acknowledgement or
status mail. It never drops anything: it only says what the message is and
why, and the later stages decide what to store.

Every rule in :mod:`mailgate.guard.rules` that fires adds its reason; the
verdict's kind is the most specific kind among them (a bounce that also
carries ``Precedence: bulk`` is a bounce).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from functools import cached_property

from mailgate.guard import notices, rules, sender, subjects
from mailgate.guard.dsn import DeliveryReport, DsnRecipient, parse_dsn
from mailgate.message import Address, Envelope, ParsedMessage

__all__ = [
    "KINDS",
    "DeliveryReport",
    "DsnRecipient",
    "GuardVerdict",
    "OwnIdentity",
    "check",
    "parse_dsn",
]


@dataclass(frozen=True)
class OwnIdentity:
    """How the guard recognises mailgate's own mail."""

    addresses: frozenset[str]  # our helpdesk/queue/comment addresses, lower-case
    message_id_domain: str  # domain of the Message-IDs we generate
    loop_header_value: str  # value of our loop header "X-Mailgate-Loop"

    @cached_property
    def bare_addresses(self) -> frozenset[str]:
        """Our addresses without +detail: asked for every message, made once."""
        return frozenset(rules.without_detail(address) for address in self.addresses)


@dataclass(frozen=True)
class GuardVerdict:
    """What the guard decided about one message, and every reason why."""

    kind: str  # one of KINDS
    may_auto_reply: bool  # False for everything but "human"
    reasons: tuple[str, ...]
    is_delivery_report: bool  # a DSN/bounce: never becomes a new ticket


# Most specific first: the first kind with a fired rule names the verdict.
# A bounce of our own mail must be recorded as a bounce, so "bounce" beats
# "loop"; a challenge usually also looks like an auto-reply, so it beats that.
KINDS = (
    "bounce",
    "feedback",
    "loop",
    "challenge",
    "auto_reply",
    "list",
    "bulk",
    "noreply",
    "human",
)

_HEADER_RULES: tuple[tuple[str, rules.HeaderRule], ...] = (
    ("bounce", rules.delivery_status_report),
    ("bounce", rules.failed_recipients_header),
    ("bounce", rules.daemon_sender),
    ("feedback", rules.feedback_report),
    ("feedback", rules.microsoft_complaint),
    ("loop", rules.own_loop_header),
    ("loop", rules.own_message_id),
    ("loop", rules.own_sender),
    ("challenge", rules.challenge_sender),
    ("auto_reply", rules.other_report),
    ("auto_reply", rules.auto_submitted),
    ("auto_reply", rules.auto_reply_header),
    ("auto_reply", rules.apple_vacation),
    ("auto_reply", rules.precedence_auto_reply),
    # A null envelope sender alone says "some automaton", not which one;
    # RFC 3834 §3.3 asks auto-responders to use it as well as bounces.
    ("auto_reply", rules.null_return_path),
    ("auto_reply", rules.empty_from),
    ("list", rules.list_headers),
    ("list", rules.precedence_list),
    ("bulk", rules.precedence_bulk),
    ("noreply", rules.noreply_sender),
)

_SUBJECT_RULES: tuple[tuple[str, subjects.SubjectRule], ...] = (
    ("bounce", subjects.bounce_subject),
    ("challenge", subjects.challenge_subject),
    ("auto_reply", subjects.domino_out_of_office),
    ("auto_reply", subjects.auto_reply_subject),
)

# Vendors that mark their automatic mail only in its words (see notices).
_BODY_RULES: tuple[tuple[str, notices.BodyRule], ...] = (
    ("challenge", notices.challenge_notice),
    ("auto_reply", notices.domino_out_of_office_note),
)


def check(
    message: ParsedMessage,
    envelope: Envelope,
    own: OwnIdentity,
    raw: bytes | None = None,
) -> GuardVerdict:
    """Classify ``message``; only "human" mail may get an automatic answer.

    ``raw`` is optional: when given and the headers already say "automaton"
    without saying "bounce", the body is read as a delivery report, so a
    plain-text bounce from an old MTA is still recognised as one.
    """
    if not message.headers and raw is not None:
        message = _with_raw_headers(message, raw)
    # Unknown is not null: without a recorded envelope sender, the address
    # rules read the headers' sender instead (see guard/sender.py).
    clues = rules.gather_clues(message, sender.stand_in(message, envelope), own)
    fired: list[tuple[str, str]] = []
    for kind, header_rule in _HEADER_RULES:
        reason = header_rule(clues)
        if reason:
            fired.append((kind, reason))
    corroborated = bool(fired)
    for kind, subject_rule in _SUBJECT_RULES:
        reason = subject_rule(clues, corroborated)
        if reason:
            fired.append((kind, reason))

    for kind, body_rule in _BODY_RULES:
        reason = body_rule(clues)
        if reason:
            fired.append((kind, reason))

    kinds = {kind for kind, _ in fired}
    if raw is not None and kinds and not kinds & {"bounce", "feedback"}:
        reason = _bounce_body(raw)
        if reason:
            fired.append(("bounce", reason))
            kinds.add("bounce")

    verdict_kind = next((kind for kind in KINDS if kind in kinds), "human")
    return GuardVerdict(
        kind=verdict_kind,
        may_auto_reply=verdict_kind == "human",
        reasons=tuple(reason for _, reason in fired),
        is_delivery_report=verdict_kind == "bounce",
    )


def _bounce_body(raw: bytes) -> str | None:
    """A reason when the body of automatic mail reads as a failed delivery."""
    report = parse_dsn(raw)
    if report is None:
        return None
    failed = [r for r in report.recipients if r.status.startswith(("4.", "5."))]
    if not failed:
        return None
    listed = ", ".join(f"{r.address} {r.status}" for r in failed[:3])
    return f"body reports failed delivery to {listed}"


def _with_raw_headers(message: ParsedMessage, raw: bytes) -> ParsedMessage:
    """``message`` with headers, subject and sender read straight from ``raw``.

    The parse stage falls back to a header-less ParsedMessage when it fails.
    An automatic mail that trips the parser must still not be answered, so
    the guard then reads the header block itself (headers only: cheap, and
    the part of the mail least likely to be what broke the parser).
    """
    try:
        block = BytesHeaderParser(policy=compat32).parsebytes(raw)
        headers = tuple((name, _decoded(str(value))) for name, value in block.items())
    # The guard must answer for any input, however broken.
    except Exception:
        return message
    sender_text = dict((name.lower(), value) for name, value in headers).get("from", "")
    sender_email = parseaddr(sender_text)[1].lower()
    return replace(
        message,
        headers=headers,
        subject=message.subject or next((v for k, v in headers if k.lower() == "subject"), ""),
        sender=message.sender or (Address(sender_email) if sender_email else None),
    )


def _decoded(value: str) -> str:
    """An RFC 2047 encoded header value as text; undecodable stays as is."""
    try:
        return str(make_header(decode_header(value)))
    # Unknown charsets and broken encoded words keep the raw value.
    except Exception:
        return value
