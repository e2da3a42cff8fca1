"""Who is running: heartbeats, the leases they void, and roles held once.

Several mailgate daemons may share one PostgreSQL (docs/scale-out.md). Each
process (a daemon and each of its workers) has a row in ``instances`` and
writes its ``heartbeat_at`` every ``BEAT_SECONDS``. A row that has not
beaten for ``STALE_SECONDS``, or that says it stopped, is dead:

- the inbound and outbox rows it leased (``lease_owner``) may be claimed by
  anyone at once, instead of waiting for ``lease_until`` (minutes, for a
  process that is alive but slow);
- the roles it held (an IMAP account, the timers) go to the next live
  daemon that asks.

A process acts on a lease or a role only while its own last successful beat
is younger than ``SAFE_SECONDS``: it stops *before* the others may start,
with ``STALE_SECONDS - SAFE_SECONDS`` left for clocks that disagree (the
times are each host's own; keep them in sync with NTP, as doctor checks).

Takeover after a ``kill -9``: the last beat is at most ``BEAT_SECONDS`` old,
the others see the row dead ``STALE_SECONDS`` after it and act at their next
beat or claim (within ``BEAT_SECONDS``): at most ten seconds in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, case, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from mailgate.store.models import Instance, Role

BEAT_SECONDS = 2.0
STALE_SECONDS = 6.0
SAFE_SECONDS = 4.0
# Dead rows are kept this long for `mailgate doctor`, then deleted.
KEEP_DEAD = timedelta(days=7)

TIMERS = "timers"


def imap_role(account: str) -> str:
    return f"imap:{account}"


def _live(stale: object) -> Select[Any]:
    """``instances.id`` of the processes that beat at or after ``stale``."""
    return select(Instance.id).where(Instance.stopped_at.is_(None), Instance.heartbeat_at >= stale)


def lease_free(
    lease_until: ColumnElement[datetime | None] | InstrumentedAttribute[datetime | None],
    lease_owner: ColumnElement[int | None] | InstrumentedAttribute[int | None],
) -> ColumnElement[bool]:
    """A row may be claimed: never leased, lease run out, or its owner dead.

    Expects the bind parameters ``b_now`` and ``b_stale`` (``b_now`` minus
    ``STALE_SECONDS``; see ``stale_before``).
    """
    return or_(
        lease_until.is_(None),
        lease_until < bindparam("b_now"),
        and_(lease_owner.is_not(None), lease_owner.not_in(_live(bindparam("b_stale")))),
    )


def stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=STALE_SECONDS)


def _upsert(conn: Connection) -> type[postgresql.Insert] | type[sqlite.Insert]:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert  # type: ignore[return-value]


def register(
    conn: Connection,
    *,
    name: str,
    kind: str,
    host: str,
    pid: int,
    parent_id: int | None,
    now: datetime,
) -> int:
    """A row for this process; returns its id (the owner of its leases)."""
    row = conn.execute(
        insert(Instance)
        .values(
            name=name,
            kind=kind,
            host=host,
            pid=pid,
            parent_id=parent_id,
            listeners=[],
            started_at=now,
            heartbeat_at=now,
        )
        .returning(Instance.id)
    ).scalar_one()
    conn.execute(delete(Instance).where(Instance.heartbeat_at < now - KEEP_DEAD))
    return int(row)


def beat(conn: Connection, instance_id: int, now: datetime, listeners: Sequence[str] | None = None) -> bool:
    """Write the heartbeat; False when the row says we stopped (then we must not act)."""
    values: dict[str, object] = {"heartbeat_at": now}
    if listeners is not None:
        values["listeners"] = list(listeners)
    result = conn.execute(
        update(Instance).where(Instance.id == instance_id, Instance.stopped_at.is_(None)).values(**values)
    )
    return bool(result.rowcount)


def claim_roles(conn: Connection, instance_id: int, names: Sequence[str], now: datetime) -> set[str]:
    """Take or keep each role whose holder is us, nobody or dead; return those held."""
    if not names:
        return set()
    upsert = _upsert(conn)
    conn.execute(
        upsert(Role)
        .values([{"name": n, "holder_id": None, "since": None} for n in names])
        .on_conflict_do_nothing()
    )
    live = _live(stale_before(now))
    held = set()
    for name in names:
        result = conn.execute(
            update(Role)
            .where(
                Role.name == name,
                or_(Role.holder_id == instance_id, Role.holder_id.is_(None), Role.holder_id.not_in(live)),
            )
            .values(
                holder_id=instance_id,
                since=case((Role.holder_id == instance_id, Role.since), else_=now),
            )
        )
        if result.rowcount:
            held.add(name)
    return held


def holder_of(conn: Connection, name: str) -> int | None:
    return conn.execute(select(Role.holder_id).where(Role.name == name)).scalar()


def stop(conn: Connection, instance_id: int, now: datetime, *, with_children: bool = True) -> None:
    """Mark a process (and its workers) stopped: its leases and roles are free at once."""
    ids = Instance.id == instance_id
    if with_children:
        ids = or_(ids, Instance.parent_id == instance_id)
    conn.execute(update(Instance).where(ids, Instance.stopped_at.is_(None)).values(stopped_at=now))
    conn.execute(update(Role).where(Role.holder_id == instance_id).values(holder_id=None))


def stop_pid(conn: Connection, parent_id: int, pid: int, now: datetime) -> None:
    """A daemon saw its worker ``pid`` die: free what the worker held now."""
    conn.execute(
        update(Instance)
        .where(Instance.parent_id == parent_id, Instance.pid == pid, Instance.stopped_at.is_(None))
        .values(stopped_at=now)
    )


@dataclass(frozen=True)
class InstanceRow:
    """One process as `mailgate doctor` and the metrics show it."""

    id: int
    name: str
    kind: str
    parent_id: int | None
    host: str
    pid: int
    listeners: tuple[str, ...]
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    state: str  # live | stale | stopped
    roles: tuple[str, ...]


def list_instances(
    conn: Connection, now: datetime, *, since: timedelta = timedelta(days=1)
) -> list[InstanceRow]:
    """Every process seen within ``since``, daemons first, with its state and roles."""
    roles: dict[int, list[str]] = {}
    for name, holder in conn.execute(select(Role.name, Role.holder_id).order_by(Role.name)):
        if holder is not None:
            roles.setdefault(holder, []).append(name)
    table = Instance.__table__
    rows = conn.execute(
        select(table)
        .where(or_(table.c.stopped_at.is_(None), table.c.stopped_at >= now - since))
        .where(table.c.heartbeat_at >= now - since)
        .order_by(table.c.id)
    ).all()
    found = []
    for row in rows:
        if row.stopped_at is not None:
            state = "stopped"
        elif row.heartbeat_at < stale_before(now):
            state = "stale"
        else:
            state = "live"
        found.append(
            InstanceRow(
                id=row.id,
                name=row.name,
                kind=row.kind,
                parent_id=row.parent_id,
                host=row.host,
                pid=row.pid,
                listeners=tuple(row.listeners or ()),
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                stopped_at=row.stopped_at,
                state=state,
                # A dead holder's roles are up for grabs; say so rather than list them.
                roles=tuple(roles.get(row.id, ())) if state == "live" else (),
            )
        )
    return found


def unheld_roles(conn: Connection, now: datetime) -> list[str]:
    """Roles whose holder is nobody or dead: work nobody does right now."""
    live = _live(stale_before(now))
    return list(
        conn.execute(
            select(Role.name)
            .where(or_(Role.holder_id.is_(None), Role.holder_id.not_in(live)))
            .order_by(Role.name)
        ).scalars()
    )
