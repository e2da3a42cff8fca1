"""Placeholder: reply trimming."""

from __future__ import annotations


def trim_reply(text: str) -> str:
    """The part of ``text`` the sender wrote."""
    return text.strip()
