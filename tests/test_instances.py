"""Instances on one database (issue 13): heartbeats, leases that die with their owner, roles held once.

On real SQLite and PostgreSQL. An instance "dies" here by its heartbeat
being older than STALE_SECONDS (written back in time, as a clock would be
injected) or by a real ``kill -9`` of a daemon; the several-daemon soak
with kills under load is tests/cluster/.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from mailgate.service.presence import Presence
from mailgate.store import instances
from mailgate.store.db import make_engine, session_factory, transaction, upgrade
from mailgate.store.instances import TIMERS, imap_role, lease_free, stale_before
from mailgate.store.models import Inbound, Instance, Role
from tests.conftest import fresh_pg_url, make_mail, wait_until, write_config

ROLES = (TIMERS, imap_role("support"))


@pytest.fixture
def sessions(db_url: str) -> Any:
    engine = make_engine(db_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def presence(sessions: Any, name: str, roles: tuple[str, ...] = ROLES) -> Presence:
    found = Presence(sessions, name=name, kind="daemon", roles=roles)
    found.start()
    return found


def silence(sessions: Any, instance_id: int | None, seconds: float) -> None:
    """As if ``instance_id`` had not beaten for ``seconds`` (it was killed then)."""
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    with transaction(sessions) as session:
        session.execute(update(Instance).where(Instance.id == instance_id).values(heartbeat_at=then))


def claimable(sessions: Any) -> list[int]:
    now = datetime.now(UTC)
    query = select(Inbound.id).where(
        Inbound.state == "pending", lease_free(Inbound.lease_until, Inbound.lease_owner)
    )
    with sessions() as session:
        return list(session.execute(query, {"b_now": now, "b_stale": stale_before(now)}).scalars())


def leased_row(sessions: Any, owner: int | None, *, for_seconds: float = 300) -> int:
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        row = Inbound(
            raw=b"x",
            size=1,
            source="smtp",
            rcpt_tos=[],
            lease_until=now + timedelta(seconds=for_seconds),
            lease_owner=owner,
        )
        session.add(row)
        session.flush()
        return row.id


def test_a_live_owners_lease_holds_and_a_dead_ones_is_free_at_once(sessions: Any) -> None:
    alive, dead = presence(sessions, "a"), presence(sessions, "b")
    mine, theirs = leased_row(sessions, alive.id), leased_row(sessions, dead.id)
    anonymous = leased_row(sessions, None, for_seconds=-1)  # `mailgate ingest` inline, lease run out
    assert claimable(sessions) == [anonymous]
    # b stops beating: its lease of five minutes is void after STALE_SECONDS, not five minutes.
    silence(sessions, dead.id, instances.STALE_SECONDS - 1)
    assert theirs not in claimable(sessions)
    silence(sessions, dead.id, instances.STALE_SECONDS + 1)
    assert sorted(claimable(sessions)) == sorted([theirs, anonymous])
    # A clean stop frees at once.
    alive.run(_set_event())
    assert sorted(claimable(sessions)) == sorted([mine, theirs, anonymous])


def test_each_role_has_one_holder_and_passes_on_when_it_dies_or_stops(sessions: Any) -> None:
    first = presence(sessions, "a")
    second = presence(sessions, "b")
    assert first.held() == frozenset(ROLES)
    assert second.held() == frozenset()
    # The holder stops beating: the next beat of another instance takes over.
    silence(sessions, first.id, instances.STALE_SECONDS + 1)
    second.start()
    assert second.held() == frozenset(ROLES)
    # The old holder comes back (it was cut off, not dead): it does not take them back.
    first.start()
    assert first.held() == frozenset()
    assert not first.holds(TIMERS)
    with sessions() as session:
        assert set(session.execute(select(Role.holder_id)).scalars()) == {second.id}
    # A clean stop hands the roles on at the others' next beat.
    second.run(_set_event())
    first.start()
    assert first.held() == frozenset(ROLES)


def test_a_process_that_cannot_reach_its_database_is_never_sure_it_is_alive(tmp_path: Path) -> None:
    # A PostgreSQL on a port where nothing listens: every beat fails.
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/none")
    cut_off = Presence(session_factory(engine), name="x", kind="daemon", roles=ROLES)
    cut_off.start()
    assert not cut_off.fresh()
    assert not cut_off.holds(TIMERS)
    assert cut_off.held() == frozenset()


def test_a_worker_asks_the_database_whether_its_daemon_holds_a_role(sessions: Any) -> None:
    daemon = presence(sessions, "a")
    worker = Presence(sessions, name="a", kind="processing", parent_id=daemon.id)
    worker.start()
    assert worker.holds(TIMERS)
    other = Presence(sessions, name="b", kind="processing", parent_id=daemon.id + 1000)
    other.start()
    assert not other.holds(TIMERS)


def _set_event() -> Any:
    import threading

    event = threading.Event()
    event.set()
    return event


@pytest.fixture
def pg_url() -> Any:
    """PostgreSQL only: where several instances share a database (SQLite has one daemon)."""
    with fresh_pg_url() as url:
        yield url


def test_doctor_lists_the_running_daemon_with_its_roles_and_a_killed_one_as_stale(
    tmp_path: Path, daemon_factory: Any, pg_url: str
) -> None:
    config = write_config(
        tmp_path,
        database={"url": pg_url},
        instance={"name": "alpha"},
        status_file=str(tmp_path / "var" / "status.json"),
        pipe_folder=str(tmp_path / "var" / "incoming"),
    )
    daemon = daemon_factory(config)
    daemon.send(make_mail(subject="printer"))
    found = _doctor_json(daemon)
    mine = [row for row in found["instances"] if row["name"] == "alpha"]
    kinds = sorted(row["kind"] for row in mine if row["state"] == "live")
    assert kinds == ["daemon", "delivery", "processing"]
    (head,) = [row for row in mine if row["kind"] == "daemon"]
    assert head["roles"] == [TIMERS]
    assert head["listeners"] == [f"127.0.0.1:{daemon.smtp_port}"]
    text = daemon.cli("doctor").stdout.decode()
    assert "instance alpha: live" in text and "holds timers" in text
    # kill -9: no clean stop is recorded; after STALE_SECONDS it is stale, and said so.
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=10)

    def stale() -> Any:
        rows = [r for r in _doctor_json(daemon)["instances"] if r["id"] == head["id"]]
        return rows and rows[0]["state"] == "stale"

    assert wait_until(stale, timeout=instances.STALE_SECONDS + 10, interval=1.0)
    text = daemon.cli("doctor").stdout.decode()
    assert "instance alpha: no heartbeat for" in text
    assert "role timers: held by no live instance" not in text  # nobody is live to hold it
    # A restart registers anew and takes the timers again.
    daemon.start()
    found = _doctor_json(daemon)
    live = [r for r in found["instances"] if r["kind"] == "daemon" and r["state"] == "live"]
    assert [r["roles"] for r in live] == [[TIMERS]] and live[0]["id"] != head["id"]


def _doctor_json(daemon: Any) -> dict[str, Any]:
    result = daemon.cli("doctor", "--json")
    return dict(json.loads(result.stdout))
