"""The running daemon's state, for ``mailgate doctor`` in another process.

The daemon rewrites a small JSON file every few seconds (write, fsync,
rename: a reader never sees half a file); ``doctor`` reads it and says how
old it is, so a stale file is itself a finding.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailgate.config import Config


def status_path(config: Config) -> Path:
    return config.path(config.status_file)


def write_status(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    document = {"written_at": datetime.now(UTC).isoformat(), "pid": os.getpid(), **state}
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle, default=_plain, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)
