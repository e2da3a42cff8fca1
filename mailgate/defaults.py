"""Where the configuration file is and the defaults a pipe delivery needs.

Importable without pydantic or SQLAlchemy: ``mailgate ingest`` runs once per
message from an MTA's pipe transport, and with the daemon running it reads
only these (see ingest/pipe.py). config.py takes the same values from here,
so the fast path and the full configuration cannot disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CONFIG = Path("config/mailgate.yaml")
MAX_MESSAGE_BYTES = 40 * 1024 * 1024
# Messages piped in while the daemon runs wait here, fsync'd, until it imports them.
PIPE_FOLDER = "var/incoming"


def config_path(option: str | None) -> Path:
    """-c, else $MAILGATE_CONFIG, else ./config/mailgate.yaml (SPEC §4)."""
    return Path(option or os.environ.get("MAILGATE_CONFIG") or DEFAULT_CONFIG)


def resolve(base_dir: Path, value: str) -> Path:
    """A path from the configuration file, relative to the file's folder."""
    candidate = Path(value)
    if candidate.is_absolute():
        return candidate
    return Path(os.path.normpath(base_dir / candidate))
