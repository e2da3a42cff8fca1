"""``#kb draft``: an agent's answer becomes a draft article file for an admin.

The draft is a complete article file (front matter, one language section)
that `mailgate kb check --folder DRAFTS` accepts, so reviewing it is editing
and moving one file into the knowledge-base folder and committing it. It is
written to a temporary name and renamed, so a half-written draft is never
seen; the name comes from the ticket, so a retried transaction rewrites the
same file instead of adding a second one.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from pathlib import Path

import yaml

from mailgate.kb.text import language_of, words

# Words too common in answers to be keywords.
_NOT_KEYWORDS = frozenset(
    [
        "the",
        "and",
        "you",
        "your",
        "for",
        "with",
        "this",
        "that",
        "then",
        "have",
        "from",
        "will",
        "can",
        "not",
        "are",
        "please",
        "when",
        "what",
        "dear",
        "hello",
        "thanks",
        "regards",
        "kind",
        "best",
        "de",
        "het",
        "een",
        "en",
        "je",
        "jij",
        "uw",
        "voor",
        "met",
        "dat",
        "dan",
        "die",
        "niet",
        "kun",
        "kan",
        "heb",
        "hebt",
        "naar",
        "als",
        "ook",
        "van",
        "wat",
        "bij",
        "op",
        "in",
        "is",
        "te",
    ]
)


def draft_text(
    article_id: str, title: str, language: str, body: str, keywords: list[str], source: str
) -> str:
    front = {
        "id": article_id,
        "title": {language: title},
        "keywords": {language: keywords},
    }
    header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False).strip()
    # The note on where it came from is a YAML comment: kept in the file, not in the article.
    return f"---\n# {source}\n{header}\n---\n<!-- lang: {language} -->\n{body.strip()}\n"


def keywords_of(text: str, limit: int = 6) -> list[str]:
    counts = Counter(w for w in words(text) if len(w) > 3 and w not in _NOT_KEYWORDS and not w.isdigit())
    return [w for w, _ in counts.most_common(limit)]


def write_draft(
    folder: Path, ticket_ref: str, subject: str, language: str, body: str, agent: str, now: datetime
) -> Path:
    """Write (or rewrite) the draft for this ticket; returns its path."""
    lang = language_of(language)
    article_id = f"draft-{ticket_ref.lower()}"
    source = f"draft from ticket {ticket_ref} by {agent}, {now:%Y-%m-%d %H:%M} UTC; review, rename and move"
    content = draft_text(
        article_id, subject or ticket_ref, lang, body, keywords_of(f"{subject} {body}"), source
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{article_id}.md"
    temporary = folder / f".{article_id}.md.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path
