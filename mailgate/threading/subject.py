"""Subject lines: reply/forward prefixes in many languages, and ticket tags.

Prefixes seen in the wild: Outlook localises them (AW/WG German, Antw/Doorst
Dutch, SV/VS Scandinavian, RV/ENC Spanish/Portuguese, R/I Italian, TR French
forward, Odp/PD Polish, YNT/ILT Turkish, 回复/答复/转发 Chinese, 返信/転送
Japanese), some clients count (``Re[2]:``, ``Re(2):``) and French typography
puts a space before the colon; full-width colons come from CJK clients.
"""

from __future__ import annotations

import functools
import re

_PREFIXES = (
    "re|aw|antw|antwort|sv|vs|ref|réf|rif|r|fwd|fw|fwdd|doorst|wg|tr|rv|enc|odp|pd|ynt|ilt"
    "|vá|továbbítás|vl|atb|vb|ats|přeposl|odp|rép|答复|答覆|回复|回覆|转发|轉寄|転送|返信|fs"
)
_SPACES = re.compile(r"\s{2,}")
_PREFIX = re.compile(rf"^\s*(?:(?:{_PREFIXES})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+", re.IGNORECASE)


def strip_prefixes(subject: str) -> str:
    """Remove leading reply/forward prefixes, however many and however mixed."""
    return _PREFIX.sub("", subject).strip()


@functools.lru_cache(maxsize=8)
def tag_pattern(prefix: str) -> re.Pattern[str]:
    """The ``[HD-12]`` tag of one prefix; built once (it is asked for every message)."""
    return re.compile(rf"\[\s*{re.escape(prefix)}\s*[-#]\s*(\d{{1,12}})\s*\]", re.IGNORECASE)


def find_tags(subject: str, prefix: str) -> list[int]:
    """Ticket numbers in ``[HD-12]``-style tags, in order of appearance."""
    return [int(number) for number in tag_pattern(prefix).findall(subject)]


def ticket_subject(subject: str, prefix: str) -> str:
    """The subject a new ticket keeps: prefixes and our tags removed."""
    without_tags = tag_pattern(prefix).sub(" ", subject)
    return _SPACES.sub(" ", strip_prefixes(without_tags)).strip() or "(no subject)"
