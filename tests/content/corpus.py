"""Where the shared real-world corpora live, and how to read zammad's expectations."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPUS = (ROOT.parent / "shared" / "corpus").resolve()
ZAMMAD = CORPUS / "zammad-mail"
TRIMMER = CORPUS / "email-reply-trimmer"
SISIMAI = CORPUS / "sisimai-set-of-emails" / "maildir"


# libyaml's loader when PyYAML has it: the .yml files hold 20 MB of base64.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ZammadLoader(_BaseLoader):  # type: ignore[misc,valid-type]  # chosen at import time
    """SafeLoader that understands the two Ruby tags in zammad's .yml files."""


def _hash(loader: yaml.SafeLoader, node: yaml.Node) -> dict[Any, Any]:
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


def _binary(loader: yaml.SafeLoader, node: yaml.Node) -> bytes:
    assert isinstance(node, yaml.ScalarNode)
    return base64.b64decode(str(loader.construct_scalar(node)))


_ZammadLoader.add_constructor("!ruby/hash:ActiveSupport::HashWithIndifferentAccess", _hash)
_ZammadLoader.add_constructor("!binary", _binary)


def load_zammad_expectation(path: Path) -> dict[str, Any]:
    """One mailNNN.yml as a dict."""
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_ZammadLoader)  # a SafeLoader subclass
    assert isinstance(loaded, dict)
    return loaded
