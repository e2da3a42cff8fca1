"""A helpdesk with service levels: rules and agents from tests/fixtures/sla."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sla"


@pytest.fixture
def sla_desk(runtime_factory: Any, db_url: str) -> Any:
    """A runtime on SQLite and on PostgreSQL with the "desk" (24x7) and "office" levels."""
    return runtime_factory(
        database={"url": db_url},
        rules=str(FIXTURES / "rules.yaml"),
        agents=str(FIXTURES / "agents.yaml"),
    )
