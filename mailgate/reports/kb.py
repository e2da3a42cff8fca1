"""The knowledge base in `mailgate report` (issue 14).

* self-service: tickets resolved in the period by a requester's ``solved``
  after suggested articles (the ``self_service`` event)
* top articles: ``#kb ID`` uses by agents in public replies in the period
* first-contact resolution with and without an article: among resolved
  tickets that an agent answered, those where the agent used an article vs.
  not, with the same definition of first contact as the main report
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from mailgate.store.models import Event


def kb_report(
    conn: Connection,
    ids: list[int],
    resolved: list[dict[str, Any]],
    replies: Counter[int],
    reopened: set[int],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    self_service: set[int] = set()
    with_article: set[int] = set()
    uses: Counter[str] = Counter()
    for first in range(0, len(ids), 500):
        chunk = ids[first : first + 500]
        query = select(Event.ticket_id, Event.kind, Event.detail, Event.created_at).where(
            Event.ticket_id.in_(chunk), Event.kind.in_(("self_service", "kb_used"))
        )
        for ticket_id, kind, detail, created_at in conn.execute(query):
            if ticket_id is None:
                continue
            if kind == "self_service":
                self_service.add(ticket_id)
            elif isinstance(detail, dict) and not detail.get("internal"):
                with_article.add(ticket_id)
                if start <= created_at < end:
                    uses[str(detail.get("article"))] += 1
    answered = [t for t in resolved if replies[t["id"]] >= 1]

    def fcr(rows: list[dict[str, Any]]) -> dict[str, Any]:
        first = [t for t in rows if replies[t["id"]] == 1 and t["id"] not in reopened]
        return {
            "resolved": len(rows),
            "first_contact": len(first),
            "rate": round(len(first) / len(rows), 3) if rows else None,
        }

    return {
        "self_service_resolved": sum(1 for t in resolved if t["id"] in self_service),
        "top_articles": [{"article": name, "uses": count} for name, count in uses.most_common(10)],
        "fcr_with_article": fcr([t for t in answered if t["id"] in with_article]),
        "fcr_without_article": fcr([t for t in answered if t["id"] not in with_article]),
    }
