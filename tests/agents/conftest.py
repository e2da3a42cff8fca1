"""Fixtures for the agent tests: a runtime with the two-agent directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agents"


@pytest.fixture
def desk(runtime_factory: Any) -> Any:
    """A runtime (SQLite, Maildir outbox) with alice and bob working queue general."""
    return runtime_factory(agents=str(FIXTURES / "agents.yaml"))
