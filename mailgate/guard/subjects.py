"""The guard's subject rules, and the phrases they look for.

Subject rules are deliberately conservative, because a requester can write
"Out of office not working" to an IT helpdesk: a subject phrase only fires on
its own when it *starts* the subject and is followed by a colon, a bracket,
a dash or the end of the subject (the shape automatons use: "Automatic
reply: …", "Undeliverable: …", "Out of Office"). Anywhere else in the
subject a phrase only counts when a header rule already fired
(``corroborated``); then it adds its reason and a more precise kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mailgate.guard.rules import Clues

_CHALLENGE_SUBJECT = re.compile(
    r"(please confirm (that )?you are (a )?human|verify (that )?you are (a )?human"
    r"|confirm your (e-?mail|message)|sender verification|verification required"
    r"|anti-?spam verification|challenge[- ]response|is (now )?on my guest list"
    r"|request to join .* guest list|\[spamarrest\])",
    re.IGNORECASE,
)

# Lotus Notes/Domino's out-of-office agent and router service set no
# Auto-Submitted or Precedence header. Their default subject is "AUTO:
# <name> is out of the office (returning <date>)" (HCL C API reference,
# OOOSetGeneralSubject); Mail::DeliveryStatus::BounceParser matches the same
# two parts. Both must be there: "Auto: …" alone is how a Dutch requester
# writes about their car ("auto"), and "is out of the office" alone is how
# anyone writes about a colleague.
_DOMINO_SUBJECT = re.compile(r"^\s*AUTO\s?:\s*\S.{0,200}?\bis\s+out\s+of\s+the\s+office\b", re.IGNORECASE)

# Subject phrases of bounces and auto-replies, in the languages our
# requesters' servers speak. Matched case-insensitively.
BOUNCE_PHRASES = (
    "undeliverable",
    "undelivered mail",
    "undeliverable mail",
    "delivery status notification",
    "delivery status",
    "undeliverable message",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "mail delivery failed",
    "mail delivery failure",
    "mail delivery system",
    "mail delivery subsystem",
    "returned mail",
    "failure notice",
    "failure delivery",
    "delivery notification",
    "non-delivery",
    "nondeliverable",
    "non remis",
    "unzustellbar",
    "nicht zustellbar",
    "onbestelbaar",
    "niet bezorgd",
    "onbestelbare",
    "no se puede entregar",
    "não entregue",
    "non recapitabile",
    "warning: could not send message",
    "delayed mail",
    "delivery delayed",
    "mail system error",
    "message delivery failure",
    "message could not be delivered",
    "message not delivered",
    "could not deliver",
    "couldn't be delivered",
    # flufl.bounce (Mailman's bounce detectors) test data: a Symantec mail
    # gateway's "Delivery failure notification" and Exchange's "Mail
    # Delivery Warning" of a full mailbox.
    "delivery failure notification",
    "mail delivery warning",
)
AUTO_REPLY_PHRASES = (
    "automatic reply",
    "automatic response",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autoresponse",
    "autorespons",
    "out of office",
    "out of the office",
    "away from my desk",
    "vacation reply",
    "afwezig",
    "afwezigheid",
    "automatisch antwoord",
    "automatisch bericht",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "reponse automatique",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "risposta automatica",
    "fuori sede",
    "resposta automática",
    "frånvaro",
    "automatiskt svar",
    "fraværende",
    "automatisk svar",
    "automaattinen vastaus",
    "odpowiedź automatyczna",
    # wp.pl writes the words the other way round, in brackets:
    # "[Automatyczna odpowiedź] …" (Mail::DeliveryStatus::BounceParser corpus).
    "automatyczna odpowiedź",
    "автоматический ответ",
    "自動応答",
    "自动回复",
    "read:",
    "gelesen:",
    "gelezen:",
    "lu :",
    "lu:",
)


def _starts_with_phrase(subject: str, phrases: tuple[str, ...]) -> str | None:
    """The phrase that starts ``subject`` followed by a delimiter, or None.

    A phrase in brackets at the very start ("[Automatyczna odpowiedź] …")
    counts too: that is a tag an automaton put there, not a sentence.
    """
    lowered = subject.strip().lower()
    bracketed = lowered.startswith("[")
    if bracketed:
        lowered = lowered[1:].lstrip()
    for phrase in phrases:
        if lowered.startswith(phrase):
            rest = lowered[len(phrase) :].lstrip()
            if bracketed:
                if rest.startswith("]"):
                    return phrase
            elif phrase.endswith(":") or rest == "" or rest[0] in ":([-/|\u2013\u2014":
                return phrase
    return None


def _contains_phrase(subject: str, phrases: tuple[str, ...]) -> str | None:
    """The first phrase found anywhere in ``subject``, or None."""
    lowered = subject.lower()
    return next((phrase for phrase in phrases if phrase in lowered), None)


def challenge_subject(clues: Clues, corroborated: bool) -> str | None:
    """A "please confirm you are human" subject, only with another signal."""
    match = _CHALLENGE_SUBJECT.search(clues.message.subject)
    if match and corroborated:
        return f"subject asks for sender verification ({match.group(0)!r})"
    return None


def domino_out_of_office(clues: Clues, corroborated: bool) -> str | None:
    """Lotus Notes/Domino: "AUTO: Jane Doe is out of the office (returning …)"."""
    if _DOMINO_SUBJECT.match(clues.message.subject):
        return "subject 'AUTO: … is out of the office' (Lotus Notes/Domino out-of-office)"
    return None


def bounce_subject(clues: Clues, corroborated: bool) -> str | None:
    """An "Undeliverable:" style subject."""
    subject = clues.message.subject
    phrase = _starts_with_phrase(subject, BOUNCE_PHRASES)
    if phrase is None and corroborated:
        phrase = _contains_phrase(subject, BOUNCE_PHRASES)
    return f"bounce subject ({phrase!r})" if phrase else None


def auto_reply_subject(clues: Clues, corroborated: bool) -> str | None:
    """An "Automatic reply:" / "Out of office" style subject."""
    subject = clues.message.subject
    phrase = _starts_with_phrase(subject, AUTO_REPLY_PHRASES)
    if phrase is None and corroborated:
        phrase = _contains_phrase(subject, AUTO_REPLY_PHRASES)
    return f"auto-reply subject ({phrase!r})" if phrase else None


SubjectRule = Callable[[Clues, bool], str | None]
