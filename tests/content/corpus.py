"""Where the real-world corpora live, and how to read zammad's expectations.

sisimai's bounces (BSD-2-Clause) and discourse's replies (MIT) are in this
repository under tests/corpora/, so a fresh clone tests with them. zammad's
mail is AGPL-3.0 and stays out: its tests run only when MAILGATE_CORPUS names
the folder holding zammad-mail/ (CI sets it to ../shared/corpus); they carry
the ``zammad_corpus`` marker, and tests/conftest.py reports them as not run,
with the reason, when the variable is unset.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPORA = ROOT / "tests" / "corpora"
TRIMMER = CORPORA / "email-reply-trimmer"
SISIMAI_SET = CORPORA / "sisimai-set-of-emails"
SISIMAI = SISIMAI_SET / "maildir"

CORPUS_VARIABLE = "MAILGATE_CORPUS"
ZAMMAD_MARKER = "zammad_corpus"
# Put on every test that reads ZAMMAD (registered in tests/conftest.py).
needs_zammad = pytest.mark.zammad_corpus


def external_corpus() -> Path | None:
    """The folder MAILGATE_CORPUS names (resolved), or None when it is unset or empty."""
    value = os.environ.get(CORPUS_VARIABLE, "").strip()
    return Path(value).expanduser().resolve() if value else None


# Without MAILGATE_CORPUS this names a folder that cannot exist, so a zammad
# test that lacks the marker finds no files and fails its count, never
# passes on nothing.
ZAMMAD = (external_corpus() or Path("/MAILGATE_CORPUS-is-not-set")) / "zammad-mail"
ZAMMAD_MESSAGES = 106


def zammad_problem() -> str | None:
    """Why MAILGATE_CORPUS is set but unusable, or None when it holds all of zammad-mail/."""
    corpus = external_corpus()
    if corpus is None:
        return None
    found = len(list(ZAMMAD.glob("*.box"))) if ZAMMAD.is_dir() else 0
    if found < ZAMMAD_MESSAGES:
        return (
            f"{CORPUS_VARIABLE}={os.environ[CORPUS_VARIABLE]} resolves to {corpus}, where "
            f"zammad-mail/ holds {found} of its {ZAMMAD_MESSAGES} .box messages; it must name "
            f"the folder that holds zammad-mail/ (e.g. ../shared/corpus), or be unset"
        )
    return None


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
