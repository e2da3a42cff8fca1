"""The pipe's quick reading of the configuration agrees with the full one.

`mailgate ingest` reads ``pipe_folder`` and the size limit without pydantic
(ingest/pipe.py); whatever it answers must be what config.load() says, or it
must step aside (None) and let PyYAML read the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config import load
from mailgate.ingest.pipe import _quick_pipe_folder, read_settings

ROOT = Path(__file__).resolve().parent.parent

SHAPES = {
    "default": "helpdesk: {address: helpdesk@example.com}\n",
    "plain": "helpdesk:\n  address: helpdesk@example.com\npipe_folder: /var/lib/mailgate/incoming\n",
    "relative": "pipe_folder: spool/in  # next to the file\nhelpdesk: {address: helpdesk@example.com}\n",
    "quoted": 'pipe_folder: "/srv/mail gate/in"\nhelpdesk: {address: helpdesk@example.com}\n',
    "flow document": "{helpdesk: {address: helpdesk@example.com}, pipe_folder: /tmp/flow}\n",
    "quoted key": '"pipe_folder": /tmp/quoted-key\nhelpdesk: {address: helpdesk@example.com}\n',
    "size limit": "helpdesk: {address: helpdesk@example.com}\nlisten: {max_message_bytes: 4096}\n",
    "two documents": "---\nhelpdesk: {address: helpdesk@example.com}\npipe_folder: /tmp/x\n",
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_quick_reading_agrees_with_the_full_configuration(tmp_path: Path, name: str) -> None:
    """Same folder and limit as config.load(), whichever reader answered."""
    path = tmp_path / "mailgate.yaml"
    path.write_text(SHAPES[name])
    config = load(path)
    settings = read_settings(path)
    assert settings is not None
    assert config.path(config.pipe_folder) == settings.folder
    assert config.listen.max_message_bytes == settings.max_message_bytes


@pytest.mark.parametrize("name", ["quoted", "flow document", "quoted key", "size limit", "two documents"])
def test_shapes_it_cannot_read_plainly_go_to_pyyaml(name: str) -> None:
    assert _quick_pipe_folder(SHAPES[name]) is None


@pytest.mark.parametrize("path", ["config/mailgate.yaml", "config/mailgate.example.yaml"])
def test_the_shipped_configurations_agree(path: str) -> None:
    config = load(ROOT / path)
    settings = read_settings(ROOT / path)
    assert settings is not None and config.path(config.pipe_folder) == settings.folder
