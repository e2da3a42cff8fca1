"""Which articles to offer for a request, and why (or why none).

No suggestion is better than a wrong one: a match must reach a minimum
score (measured on bench/kb_requests.yaml, see docs/kb.md) before the
requester sees it.
"""

from __future__ import annotations

from mailgate.kb.search import Match, SearchIndex

DEFAULT_MIN_SCORE = 12.0
# A second or third suggestion must score at least this share of the first:
# a weak runner-up next to a clear answer is noise.
RUNNER_UP_SHARE = 0.5
MAX_SUGGESTIONS = 3


def suggest(
    index: SearchIndex,
    subject: str,
    text: str,
    language: str | None,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    limit: int = MAX_SUGGESTIONS,
    queue: str | None = None,
    category: str | None = None,
) -> list[Match]:
    """Up to ``limit`` articles that clear ``min_score`` for this request.

    Articles that name queues or categories are offered only within them,
    when the ticket's queue or category is one that some article names
    (a queue no article mentions restricts nothing).
    """
    found = index.search(f"{subject}\n{text}", language, limit=limit * 4, subject=subject)
    known_queues, known_categories = index.queues, index.categories
    chosen: list[Match] = []
    for match in found:
        article = match.article
        if match.score < min_score or (chosen and match.score < RUNNER_UP_SHARE * chosen[0].score):
            break
        if queue in known_queues and article.queues and queue not in article.queues:
            continue
        if category in known_categories and article.categories and category not in article.categories:
            continue
        chosen.append(match)
        if len(chosen) == limit:
            break
    return chosen
