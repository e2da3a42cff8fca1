"""Who sent it when no envelope says: the headers, read as a person would.

An envelope sender is only known when something recorded it (SMTP
``MAIL FROM``, a delivery agent's ``Return-Path``); see
:class:`mailgate.message.Envelope`. Mail uploaded into an IMAP folder or
imported from a file often carries none. A person reading such a mail does
not conclude "a bounce": they look at who it says it is from. The guard
does the same: its address rules get the Sender address (RFC 5322 §3.6.2:
the mailbox responsible for sending it), else the From address, in place of
the missing envelope sender. A recorded null sender is never replaced.
"""

from __future__ import annotations

from dataclasses import replace

from mailgate.message import Envelope, ParsedMessage, header_sender

__all__ = ["stand_in"]


def stand_in(message: ParsedMessage, envelope: Envelope) -> Envelope:
    """``envelope``, with the headers' sender in place of an unknown envelope sender."""
    if envelope.sender_known:
        return envelope
    found = header_sender(message)
    return envelope if found is None else replace(envelope, mail_from=found)
