"""A reply that came before the mail it answers still ends on that mail's ticket.

Threading (``threading/resolve.py``) can only find Message-IDs it has seen.
When a reply is processed first (an import of a Maildir listed out of
order, two relays racing), it opens a ticket of its own. That ticket
remembers the Message-IDs the reply answers (``awaited_messages``); when one
of them arrives and is stored on a ticket, the reply's ticket is merged into
that one (``merge.py``) with the reason on both. The order of arrival then
decides nothing, and since the merged ticket's acknowledgements move with
it, the person who already had one is not acknowledged again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, insert, select

from mailgate.message import ParsedMessage
from mailgate.store.writes import OUTBOX, TicketView, insert_event, ticket_view
from mailgate.threading.resolve import ThreadDecision
from mailgate.tickets.merge import AWAITED, merge_tickets

# A References header can be long; the newest ids are the ones that matter.
_MAX_AWAITED = 20


def remember_awaited(conn: Connection, ticket_id: int, message: ParsedMessage) -> None:
    """A new ticket opened by a mail that answers unknown mail waits for that mail."""
    wanted = [*message.in_reply_to, *reversed(message.references)]
    ids = [m[:600] for m in dict.fromkeys(wanted) if m and m != message.message_id][:_MAX_AWAITED]
    # A ticket that just took in an earlier reply's ticket may wait for some already.
    known = set(
        conn.execute(
            select(AWAITED.c.message_id).where(
                AWAITED.c.ticket_id == ticket_id, AWAITED.c.message_id.in_(ids)
            )
        ).scalars()
    )
    rows = [{"message_id": m, "ticket_id": ticket_id} for m in ids if m not in known]
    if rows:
        conn.execute(insert(AWAITED), rows)


def join_awaiting(conn: Connection, thread: ThreadDecision, message: ParsedMessage) -> ThreadDecision:
    """A reply to mail we have not seen joins the ticket already waiting for that mail.

    Two replies to one missing request belong to one conversation: the second
    goes on the ticket the first opened instead of opening (and acknowledging)
    another. Only for mail that threading placed nowhere.
    """
    if thread.ticket_id is not None:
        return thread
    wanted = [m for m in dict.fromkeys([*message.in_reply_to, *reversed(message.references)]) if m]
    if not wanted:
        return thread
    found = conn.execute(
        select(AWAITED.c.message_id, AWAITED.c.ticket_id)
        .where(AWAITED.c.message_id.in_([m[:600] for m in wanted[:_MAX_AWAITED]]))
        .order_by(AWAITED.c.id)
    ).first()
    if found is None:
        return thread
    message_id, ticket_id = found
    why = f"ticket {ticket_id} waits for {message_id} too, which this mail answers and we have not seen yet"
    return replace(thread, ticket_id=ticket_id, threaded_by="awaited", reasons=(*thread.reasons[:-1], why))


# Asked for every stored mail: built once (see store/writes.py on why).
_WAITING = select(AWAITED.c.ticket_id).where(AWAITED.c.message_id == bindparam("b_message_id"))


def rehome_replies(
    conn: Connection, ticket: TicketView, message: ParsedMessage, now: datetime
) -> tuple[str, ...]:
    """Merge into ``ticket`` every ticket opened by a reply to ``message``; their refs."""
    if not message.message_id:
        return ()
    waiting = list(conn.execute(_WAITING, {"b_message_id": message.message_id}).scalars())
    if not waiting:
        return ()
    # It has arrived: nobody waits for it any more.
    conn.execute(delete(AWAITED).where(AWAITED.c.message_id == message.message_id))
    merged: list[str] = []
    for source_id in dict.fromkeys(waiting):
        source = ticket_view(conn, source_id)
        if source is None or source.id == ticket.id or source.merged_into_id is not None:
            continue
        reason = (
            f"{source.ref} was opened by a reply to {message.message_id}, "
            f"which arrived after it and is on {ticket.ref}"
        )
        merge_tickets(conn, source, ticket, now, by="threading", reason=reason, keep_earliest=True)
        merged.append(source.ref)
    if merged:
        insert_event(conn, ticket.id, "rehomed", now, tickets=merged, message_id=message.message_id)
    return tuple(merged)


def acknowledged_before(conn: Connection, ticket_id: int, address: str) -> bool:
    """Whether ``address`` already had an acknowledgement for this ticket (or one merged into it)."""
    found = conn.execute(
        select(OUTBOX.c.id)
        .where(OUTBOX.c.ticket_id == ticket_id, OUTBOX.c.kind == "ack", OUTBOX.c.rcpt == address.lower())
        .limit(1)
    ).first()
    return found is not None
