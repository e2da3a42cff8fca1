"""The 64 real replies of discourse/email_reply_trimmer: how many we trim exactly right."""

from __future__ import annotations

from mailgate.content.reply import trim_reply
from tests.content.corpus import TRIMMER

# Exact matches reached when this test was written; it may only go up.
MIN_EXACT_MATCHES = 64


def test_reply_trimmer_exact_match_rate() -> None:
    """Trimming each corpus reply gives upstream's expected text for at least the recorded count."""
    emails = sorted((TRIMMER / "emails").glob("*.txt"))
    misses = []
    for email in emails:
        expected = (TRIMMER / "trimmed" / email.name).read_text(encoding="utf-8").strip()
        got = trim_reply(email.read_text(encoding="utf-8"))
        if expected != got.strip():
            misses.append(email.name)
    exact = len(emails) - len(misses)
    print(f"reply trim exact match: {exact}/{len(emails)}; misses: {', '.join(misses)}")
    assert 64 == len(emails)
    assert exact >= MIN_EXACT_MATCHES
