"""Best-effort reading of free-text bounces (no RFC 3464 status part).

qmail, older Exim and Postfix, Exchange 2003, webmail providers and many
appliances explain a failed delivery in prose. The shapes they share:

* the failed address stands alone on a line, or starts one followed by a
  colon (qmail ``<user@host>:``, Postfix ``<user@host>: host … said``, Exim's
  indented address, Gmail's indented address);
* an SMTP transcript names it in ``RCPT TO:<user@host>``;
* Exim lists them in an ``X-Failed-Recipients`` header;
* the status is an RFC 3463 enhanced code (``5.1.1``, qmail ``#5.5.0``), or
  else an RFC 5321 reply code (``550``), or else only words ("permanent").

Everything after the "copy of your message" marker is the returned original
and is never read for recipients.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

# An addr-spec as bounces print it. "/" is left out of the local part on
# purpose: Amazon SES ARNs ("identity/user@host") and Exim pipe paths
# ("/home/u/.forward/user@host") would otherwise swallow the address. The
# look-behind stops a match from starting in the middle of a longer word.
ADDRESS = (
    r"(?<![A-Za-z0-9.!#$%&'*+=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_ADDRESS = re.compile(ADDRESS)
_ENHANCED = re.compile(r"(?<![\d.])#?([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPLY_CODE = re.compile(r"(?<![\d.#-])([45][0-5]\d)(?:[ -]|$)", re.MULTILINE)

# Where the returned original starts: qmail "--- Below this line is a copy
# of the message.", Exim "------ This is a copy of the message", Gmail
# "----- Original message -----", sendmail "----- Unsent message follows".
_ORIGINAL_MARKER = re.compile(
    r"^[ \t>]*-{2,}[ \t]*(below this line is a copy|this is a copy of|(the )?original message"
    r"|unsent message|returned message|(the )?headers? of (the |your )?original"
    r"|message headers? follow|copy of (the |your )?(original )?message"
    r"|original (message )?headers|undelivered message)",
    re.IGNORECASE | re.MULTILINE,
)

# Lines that name a failed recipient. Each is anchored to a line so that an
# address quoted inside a sentence ("sent by <you@…>") does not count.
_RECIPIENT_LINES = (
    # qmail/Postfix/Yahoo "<user@host>:", Exim/Gmail indented bare address,
    # Exchange "user@host<mailto:user@host>" or "user@host on 1/2/2010".
    re.compile(
        rf"^[ \t]*(?:\"[^\"\n]*\"[ \t]*)?<?({ADDRESS})>?[ \t]*(?:<mailto:[^>\n]*>)?"
        rf"[ \t]*(?:\([^)\n]*\))?[ \t]*(?::.*|on \S.*|\.)?[ \t]*$",
        re.MULTILINE,
    ),
    # "Recipient address: user@host", "Original recipient: <user@host>".
    re.compile(
        rf"^[ \t]*(?:failed |original |final |invalid |unknown )?(?:recipient|address|"
        rf"e-?mail address|to|user)(?:\(s\)|s|es)?[ \t]*:[ \t]*(?:[^<\n@]*<)?({ADDRESS})",
        re.IGNORECASE | re.MULTILINE,
    ),
    # SMTP transcripts (sendmail ">>> RCPT To:<user@host>").
    re.compile(rf"RCPT TO:[ \t]*<?({ADDRESS})", re.IGNORECASE),
)
_SENDER_IN_TRANSCRIPT = re.compile(rf"MAIL FROM:[ \t]*<?({ADDRESS})", re.IGNORECASE)
_DAEMON = re.compile(r"^(mailer-?daemon|mail-?daemon|postmaster|mdaemon)$", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"^[ \t]*Message-I[Dd][ \t]*:[ \t]*\n?[ \t]*(<[^>\s]+>)", re.MULTILINE)
# Message-IDs look like addresses; none of them is a failed recipient.
_ANY_MESSAGE_ID = re.compile(
    r"(?:Message-I[Dd]|In-Reply-To|References|X-Message-ID)[ \t]*:[ \t]*\n?[ \t]*<([^>\s]+)>",
    re.IGNORECASE,
)

_PERMANENT = re.compile(
    r"permanent (error|failure|fatal)|failed permanently|fatal error|i've given up"
    r"|user unknown|unknown user|no such user|does not exist|doesn't exist|unknown recipient"
    r"|recipient unknown|not recognized|no such (mailbox|address|recipient)",
    re.IGNORECASE,
)
_TEMPORARY = re.compile(
    r"temporar(y|ily)|delayed|will (continue|retry|keep trying|try again)|still trying"
    r"|has not (yet )?been delivered|not yet been delivered|deferred",
    re.IGNORECASE,
)
_FAILED = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|unable to deliver"
    r"|delivery (has )?failed|failed to deliver|not (be )?delivered|rejected|returned|failure",
    re.IGNORECASE,
)
_MAILBOX_FULL = re.compile(
    r"mailbox (is )?full|quota exceeded|over ?quota|exceeded (the )?(storage|quota)"
    r"|mailbox size limit|insufficient (disk )?space|mail ?box has exceeded",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FailedRecipient:
    """A failed address found in a free-text bounce."""

    address: str
    status: str
    diagnostic: str


def addresses_in(text: str) -> list[str]:
    """Every address in ``text``, lower-cased, in order."""
    return [match.lower() for match in _ADDRESS.findall(text)]


def clean_message_id(value: object) -> str | None:
    """A (possibly folded) Message-ID value as ``<id@host>``, or None.

    The angle-bracket form is the one ``ParsedMessage.message_id`` uses, so
    the two compare directly.
    """
    if value is None:
        return None
    text = "".join(str(value).split())
    match = re.search(r"<([^<>]+)>", text)
    found = match.group(1) if match else text.strip("<>")
    return f"<{found}>" if found else None


def inline_message_id(text: str) -> str | None:
    """The Message-ID of an original message quoted in a bounce's text."""
    marker = _ORIGINAL_MARKER.search(text)
    match = _MESSAGE_ID.search(text, marker.start() if marker else 0)
    if match is None and marker is not None:
        match = _MESSAGE_ID.search(text)
    return clean_message_id(match.group(1)) if match else None


def html_to_text(markup: str) -> str:
    """Good enough plain text of an HTML bounce: line breaks kept, tags gone."""
    markup = re.sub(r"(?is)<(script|style).*?</\1>", " ", markup)
    markup = re.sub(r"(?i)<\s*(br|/p|/div|/tr|/li|/h\d)\b[^>]*>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def status_from_reply_code(text: str) -> str:
    """An enhanced code from an RFC 5321 reply code in ``text``, or ""."""
    match = _REPLY_CODE.search(text)
    if not match:
        return ""
    code = match.group(1)
    # RFC 5321 §4.2.3: 552 is "exceeded storage allocation", a full mailbox.
    if code == "552":
        return "5.2.2"
    return f"{code[0]}.0.0"


def refine_mailbox_full(status: str, text: str) -> str:
    """Turn a vague X.0.0 into X.2.2 when the text says the mailbox is full."""
    if status.endswith(".0.0") and _MAILBOX_FULL.search(text):
        return f"{status[0]}.2.2"
    return status


def status_in(text: str) -> str:
    """The best status the words of ``text`` give, or ""."""
    match = _ENHANCED.search(text)
    status = ".".join(match.groups()) if match else status_from_reply_code(text)
    if not status:
        if _PERMANENT.search(text):
            status = "5.0.0"
        elif _TEMPORARY.search(text):
            status = "4.0.0"
    return refine_mailbox_full(status, text)


def _candidates(explanation: str, ignore: set[str]) -> list[tuple[int, str]]:
    """(position, address) of every failed-recipient candidate, in order."""
    senders = {m.lower() for m in _SENDER_IN_TRANSCRIPT.findall(explanation)}

    def wanted(address: str) -> bool:
        local = address.rpartition("@")[0]
        return address not in ignore and address not in senders and not _DAEMON.match(local)

    found: dict[str, int] = {}
    for pattern in _RECIPIENT_LINES:
        for match in pattern.finditer(explanation):
            address = match.group(1).lower()
            if wanted(address):
                found[address] = min(found.get(address, match.start()), match.start())
    if not found:
        # Last resort: any address in the explanation that is not the
        # sender's own, as Exchange and appliances put it mid-sentence.
        for match in _ADDRESS.finditer(explanation):
            address = match.group(0).lower()
            if wanted(address) and address not in found:
                found[address] = match.start()
    return sorted((position, address) for address, position in found.items())


def failed_recipients(explanation: str, failed_header: str, ignore: set[str]) -> Iterator[FailedRecipient]:
    """The failed recipients of a free-text bounce with their status."""
    marker = _ORIGINAL_MARKER.search(explanation)
    text = explanation[: marker.start()] if marker else explanation
    message_ids = {found.lower() for found in _ANY_MESSAGE_ID.findall(explanation)}
    candidates = _candidates(text, ignore | message_ids)
    known = {address for _, address in candidates}
    # Exim's X-Failed-Recipients is authoritative even when the text is odd.
    for address in addresses_in(failed_header):
        if address not in known:
            candidates.append((len(text), address))
            known.add(address)
    overall = status_in(text)
    if not overall and _FAILED.search(text):
        overall = "5.0.0"
    for index, (position, address) in enumerate(candidates):
        end = candidates[index + 1][0] if index + 1 < len(candidates) else len(text)
        if end <= position:
            end = len(text)
        segment = text[position:end]
        after = segment.lower().find(address)
        status = status_in(segment[after + len(address) :]) or overall
        if not status:
            continue
        diagnostic = " ".join(segment.split())[:300]
        yield FailedRecipient(address, refine_mailbox_full(status, segment), diagnostic)
