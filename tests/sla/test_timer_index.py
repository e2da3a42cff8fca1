"""The timer finds due work through an index, never by reading every ticket."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine

from mailgate.sla.escalate import _DUE
from mailgate.sla.timer import _NEXT
from mailgate.store.db import upgrade


def test_due_query_and_next_moment_use_the_sla_next_at_index(tmp_path: Path) -> None:
    """SQLite's plan for both timer queries searches ix_tickets_sla_next_at instead of scanning tickets."""
    engine = create_engine(f"sqlite:///{tmp_path}/plan.db")
    upgrade(engine)
    with engine.connect() as conn:
        for query in (_DUE, _NEXT):
            compiled = query.compile(engine)
            now = datetime.now(UTC).isoformat(" ")
            params = tuple(now if value is None else value for value in compiled.params.values())
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
            plan = " ".join(str(row[-1]) for row in rows)
            assert "ix_tickets_sla_next_at" in plan, plan
            assert "SCAN tickets" not in plan or "USING" in plan, plan
    engine.dispose()
