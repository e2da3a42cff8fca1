"""The guard's body rules: fixed sentences that automatons write into their mail.

Some vendors mark their automatic mail with no header at all, but always
write the same sentence into the body: Lotus Notes/Domino appends a fixed
note to every out-of-office reply, and challenge-response filters explain
themselves in words no person uses. Each rule here looks for one such
sentence and returns a reason, like the header rules in
:mod:`mailgate.guard.rules`.

Three things keep these rules from silencing people:

* only the body above any quoted history is read (``Clues.own_text``: no
  ">" lines, nothing below "-----Original Message-----" or a "From:"
  line), so a person replying to such a mail and quoting it is still a
  person;
* a forwarded mail ("Fwd:", "WG:", "Doorst:" …) is a person asking about it,
  so none of these rules looks at it;
* each sentence is a vendor's own wording, long and specific, never a
  phrase like "out of office" that people write too.

Only the first few kilobytes are read, and each rule first looks for one
plain keyword (``Clues.text_head``), so ordinary mail costs a few substring
searches.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mailgate.guard.rules import Clues

# Forward prefixes of the mail clients our requesters use (English, Dutch,
# German, French, Spanish, Italian, Scandinavian): a forwarded automatic
# reply is a person asking what it means.
_FORWARD = re.compile(r"^\s*(fwd?|wg|doorst|tr|rv|i|vs|vb|enc)\s*:", re.IGNORECASE)

# Lotus Notes/Domino appends this note to every out-of-office reply, whatever
# the owner wrote above it (HCL C API reference, OOOSetGeneralMessage: "Note:
# This is an automated response to your message "<subject>" sent on <date>.
# This is the only notification you will receive while this person is away.").
_DOMINO_KEYWORD = "notification"
_DOMINO_NOTE = re.compile(
    r"this\s+is\s+an\s+automated\s+response\s+to\s+your\s+message\b.{0,600}?"
    r"this\s+is\s+the\s+only\s+notification\s+you\s+will\s+receive\s+while\s+this\s+person\s+is\s+away",
    re.DOTALL,
)

# A Domino server marks every mail it sends: X-MIMETrack records its
# conversions, and its Message-IDs read "<OF<hex>.<hex>-ON<hex>.<hex>…@…>".
_DOMINO_MESSAGE_ID = re.compile(r"^<?OF[0-9A-F]{8}\.[0-9A-F]{8}-ON[0-9A-F]{8}\.[0-9A-F]{8}", re.IGNORECASE)

# Challenge-response filters, each in its own words: the wordings
# Mail::DeliveryStatus::BounceParser recognises in the real challenges of its
# corpus. (TMDA needs no body rule: it always sends X-Delivery-Agent, see
# rules.challenge_sender.) Each is (vendor, a keyword that must be there
# before the sentence is looked for, the sentence); the text is lower-cased.
_CHALLENGES = (
    ("Bluebottle", "bluebottle", re.compile(r"this\s+account\s+is\s+protected\s+by\s+bluebottle")),
    (
        "Boxbe",
        "boxbe",
        re.compile(
            r"please\s+add\s+yourself\s+to\s+my\s+boxbe\s+guest\s+list"
            r"|one-time\s+automated\s+message\s+to\s+confirm\s+that\s+you'?re\s+listed\s+on\s+my"
            r"\s+boxbe\s+guest\s+list"
        ),
    ),
)


def _own_words(clues: Clues, keyword: str) -> str | None:
    """The sender's own text, lower-cased, if ``keyword`` is in the body; None for a forward."""
    if keyword not in clues.text_head or _FORWARD.match(clues.message.subject):
        return None
    return clues.own_text


def _from_domino(clues: Clues) -> bool:
    """Whether a Lotus Notes/Domino server wrote this mail."""
    message_id = (clues.message.message_id or "").strip()
    return clues.message.header("X-MIMETrack") is not None or bool(_DOMINO_MESSAGE_ID.match(message_id))


def domino_out_of_office_note(clues: Clues) -> str | None:
    """Lotus Notes/Domino's fixed note under every out-of-office reply.

    The note counts only in mail a Domino server wrote: someone who pastes
    the note into a mail from another client to ask how to switch it off
    is asking a question.
    """
    text = _own_words(clues, _DOMINO_KEYWORD)
    if text and _DOMINO_NOTE.search(text) and _from_domino(clues):
        return "body carries Lotus Notes/Domino's out-of-office note ('This is an automated response …')"
    return None


def challenge_notice(clues: Clues) -> str | None:
    """A challenge-response filter asking us to confirm or whitelist ourselves."""
    for vendor, keyword, sentence in _CHALLENGES:
        text = _own_words(clues, keyword)
        if text and sentence.search(text):
            return f"body is a {vendor} challenge-response request"
    return None


BodyRule = Callable[[Clues], "str | None"]
