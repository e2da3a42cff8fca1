"""Is this mail one we already have? A Message-ID is a name, not a fingerprint.

The same mail can reach us twice: an MTA retries after a lost 250, a person
writes to the helpdesk and to a list or alias that also delivers here, a
server resends. Those copies must fold into the first one. But some senders
give *different* mails one Message-ID (form mailers, scanners, test
corpora: issue 10 found 22 of 72 distinct mails of a public set swallowed
as "duplicates"). So a mail is a duplicate only when its Message-ID *and*
its content match; a known Message-ID with other content is a new mail,
processed as any other, with the collision recorded on its ticket.

What "the content matches" means (``content_fingerprint``): what the author's
client wrote, not what the road added.

- ``From`` (the address) and ``Date`` (the instant, in UTC): set once by the
  author's client, kept by every relay.
- The body as decoded text with every run of whitespace made one space:
  transfer encodings (8bit turned into quoted-printable or base64 by an MTA
  that lacks 8BITMIME), CRLF/LF, trailing blanks and re-wrapped lines all
  vanish in the decoding; a different sentence does not.
- Each attachment by the SHA-256 of its decoded bytes, in sorted order.

Left out on purpose: ``Received``, ``Return-Path``, ``Delivered-To``,
DKIM/ARC signatures, ``Authentication-Results`` and the ``X-`` headers of
filters (all trace, added per route), and ``Subject``, which gateways tag
(``[EXTERNAL]``, ``[SPAM]``) per route. A gateway that adds a banner to the
body makes its copy a different mail: processed twice rather than lost,
the safer way to be wrong.

Mail without a Message-ID keeps its key of old, the hash of its bytes: a
cron job's identical alerts have no author-made identity to tell a resent
copy from the next alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, select

from mailgate.message import ParsedMessage
from mailgate.store.writes import ARTICLES, insert_event

# Keys stored before issue 10 were "mid:<Message-ID>", without content.
_LEGACY = "mid:"
# Entries of the `known` table by Message-ID (dedupe keys are "fp:" or "sha256:").
_BY_ID = "id:"

_STORED = select(ARTICLES.c.dedupe_key, ARTICLES.c.message_id, ARTICLES.c.id, ARTICLES.c.ticket_id)
# Every article of a mail with a Message-ID stores it, so one lookup by
# Message-ID finds both a copy (same key) and a collision (other key); only
# mail without one is looked up by its key. One IN list on one index: a
# query with both lists ORed cost half as much again, once per write slice.
_BY_MESSAGE_ID = _STORED.where(ARTICLES.c.message_id.in_(bindparam("b_ids", expanding=True)))
_BY_KEY = _STORED.where(ARTICLES.c.dedupe_key.in_(bindparam("b_keys", expanding=True)))


def content_fingerprint(message: ParsedMessage) -> str:
    """What the author wrote, unchanged by the road (see the module docstring)."""
    digest = hashlib.sha256()
    sender = message.sender.email if message.sender else ""
    date = message.date.astimezone(UTC).isoformat() if message.date is not None else ""
    # str.split() without arguments splits on runs of any whitespace: 14 µs
    # per corpus mail for the whole fingerprint, against 24 with a regex.
    for part in (sender, date, " ".join(message.text.split())):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    for attachment in sorted(a.sha256 for a in message.attachments):
        digest.update(attachment.encode())
    return digest.hexdigest()


def dedupe_key(message: ParsedMessage, raw: bytes) -> str:
    """One key per mail: its Message-ID with its content, or its bytes when it has no ID."""
    if not message.message_id:
        return f"sha256:{hashlib.sha256(raw).hexdigest()}"
    both = hashlib.sha256(message.message_id.encode("utf-8", "surrogatepass"))
    both.update(b"\0" + content_fingerprint(message).encode())
    return f"fp:{both.hexdigest()}"


Known = dict[str, tuple[int, int]]


def known_messages(conn: Connection, mails: Sequence[tuple[str, str | None]]) -> Known:
    """What the batch's (dedupe key, Message-ID) pairs already are: one query, two if some lack an ID.

    Dedupe key -> (article id, ticket id) of that very mail, and "id:<Message-ID>"
    -> the first article with that Message-ID (for a collision).
    """
    ids = [message_id for _, message_id in mails if message_id]
    bare = [key for key, message_id in mails if not message_id]
    rows = [*conn.execute(_BY_MESSAGE_ID, {"b_ids": ids})] if ids else []
    if bare:
        rows += conn.execute(_BY_KEY, {"b_keys": bare})
    known: Known = {}
    for key, message_id, article_id, ticket_id in rows:
        if key is not None:
            known.setdefault(key, (article_id, ticket_id))
        if message_id is not None:
            previous = known.get(_BY_ID + message_id)
            if previous is None or article_id < previous[0]:
                known[_BY_ID + message_id] = (article_id, ticket_id)
            if key == _LEGACY + message_id:
                # Stored without its content: nothing to compare, so it
                # folds as it did then.
                for wanted_key, wanted_id in mails:
                    if wanted_id == message_id:
                        known.setdefault(wanted_key, (article_id, ticket_id))
    return known


@dataclass(frozen=True)
class Sighting:
    """Have we seen this mail? ``duplicate``: fold it; ``collision``: its ID, not its content."""

    duplicate_of: tuple[int, int] | None = None
    collides_with: tuple[int, int] | None = None

    @property
    def reason(self) -> str:
        if self.duplicate_of is not None:
            article_id, ticket_id = self.duplicate_of
            return f"same message as article {article_id} of ticket {ticket_id}"
        if self.collides_with is not None:
            article_id, ticket_id = self.collides_with
            return (
                f"Message-ID already on article {article_id} of ticket {ticket_id}, "
                "but From, Date, body or attachments differ: a different mail"
            )
        return "new message"


def sighting(known: Known, key: str, message_id: str | None) -> Sighting:
    found = known.get(key)
    if found is not None:
        return Sighting(duplicate_of=found)
    if message_id:
        return Sighting(collides_with=known.get(_BY_ID + message_id))
    return Sighting()


def remember(known: Known, key: str, message_id: str | None, article_id: int, ticket_id: int) -> None:
    """A mail just stored: later copies in the same batch fold into it."""
    known[key] = (article_id, ticket_id)
    if message_id:
        known.setdefault(_BY_ID + message_id, (article_id, ticket_id))


def record_collision(
    conn: Connection,
    seen: Sighting,
    ticket_id: int,
    article_id: int,
    message_id: str | None,
    now: datetime,
) -> None:
    """On the new mail's ticket: its Message-ID was already taken by another mail."""
    if seen.collides_with is None:
        return
    earlier_article, earlier_ticket = seen.collides_with
    insert_event(
        conn,
        ticket_id,
        "message_id_collision",
        now,
        article_id=article_id,
        message_id=message_id,
        earlier_article_id=earlier_article,
        earlier_ticket_id=earlier_ticket,
        reason=seen.reason,
    )
