"""The knowledge base in the mail flow: suggestions, ``solved``, ``#kb`` commands.

Called from a few lines in tickets/handle.py and agents/desk.py. Everything
runs inside the processing transaction of the message that caused it, and
every decision leaves an event saying what was offered or used and why.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, select

from mailgate.agents.commands import Commands
from mailgate.config import Kb, KbScope
from mailgate.kb.library import Library
from mailgate.kb.model import Article, KnowledgeBase
from mailgate.kb.suggest import suggest
from mailgate.message import ParsedMessage
from mailgate.outbox.compose import OutgoingMail
from mailgate.rules.model import Decision
from mailgate.service.runtime import Runtime
from mailgate.store.models import Event
from mailgate.store.writes import TicketView, insert_event
from mailgate.tickets import lifecycle

log = structlog.get_logger(__name__)

# The words of a "that solved it" answer; a short line made of these and
# thanks or a name, nothing else (a longer mail is a new question).
_SOLVED = frozenset({"solved", "resolved", "opgelost", "fixed", "verholpen", "gelukt"})
_SOLVED_EXTRA = frozenset(
    {
        "it",
        "is",
        "was",
        "het",
        "yes",
        "ja",
        "thanks",
        "thank",
        "you",
        "bedankt",
        "dank",
        "je",
        "wel",
        "ok",
        "all",
        "alles",
        "now",
        "nu",
        "has",
        "been",
        "great",
        "super",
        "top",
        "prima",
        "perfect",
    }
)


def is_solved_reply(text: str) -> bool:
    """True for "solved", "Solved, thanks!", "Opgelost, bedankt Jan" and the like."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or len(lines) > 3:
        return False
    words = re.findall(r"[^\W\d_]+", " ".join(lines).lower())
    if not words or len(words) > 10 or not any(w in _SOLVED for w in words):
        return False
    unknown = [w for w in words if w not in _SOLVED and w not in _SOLVED_EXTRA]
    # One unknown word may be the signature ("Solved, thanks, Jan").
    return len(unknown) <= 1


def _scope(settings: Kb, queue: str | None, category: str | None) -> KbScope:
    """Queue settings win over category settings, both over the defaults."""
    for table, key in ((settings.queues, queue), (settings.categories, category)):
        if key and key in table:
            return table[key]
    return KbScope(suggest=settings.suggest)


@dataclass(frozen=True)
class RuleChoice:
    """What the rules said about suggestions (``kb_suggest``, ``kb_articles``), and which rule."""

    suggest: bool | None = None
    articles: tuple[str, ...] | None = None
    by: str = ""

    @classmethod
    def of(cls, decision: Decision | None) -> RuleChoice:
        if decision is None:
            return cls()
        return cls(decision.kb_suggest, decision.kb_articles, decision.kb_by)


def choose(
    settings: Kb,
    library: Library,
    *,
    queue: str | None,
    category: str | None,
    subject: str,
    text: str,
    language: str | None,
    rules: RuleChoice = RuleChoice(),
) -> tuple[list[Article], str]:
    """Pure: the articles to offer and why (or why none).

    A rule's ``kb_suggest``/``kb_articles`` win over the ``kb:`` settings of
    the queue or category, which win over the top-level ``kb.suggest``.
    """
    scope = _scope(settings, queue, category)
    if rules.suggest is not None:
        on, said = rules.suggest, f"{rules.by} turned suggestions {'on' if rules.suggest else 'off'}"
    elif rules.articles:
        # Articles a rule forces are meant to be seen, whatever the kb settings say.
        on, said = True, ""
    else:
        on = settings.suggest and scope.suggest
        where = f"queue {queue!r}" if queue in settings.queues else f"category {category!r}"
        said = "suggestions are off in the kb settings" + (
            f" for {where}" if settings.suggest and not scope.suggest else ""
        )
    wanted = rules.articles if rules.articles is not None else scope.articles
    forced_by = rules.by if rules.articles is not None else "the kb settings"
    if not on:
        return [], said
    knowledge = library.kb
    forced = [a for a in (knowledge.get(i) for i in wanted) if a is not None]
    missing = [i for i in wanted if knowledge.get(i) is None]
    room = settings.max_suggestions - len(forced)
    found = []
    if room > 0:
        matches = suggest(
            library.index,
            subject,
            text,
            language,
            min_score=settings.min_score,
            limit=settings.max_suggestions,
            queue=queue,
            category=category,
        )
        found = [m.article for m in matches if m.article not in forced][:room]
    chosen = (forced + found)[: settings.max_suggestions]
    if forced:
        why = f"{', '.join(a.id for a in forced)} forced by {forced_by}"
    elif chosen:
        why = f"search ({said})" if rules.suggest else "search"
    else:
        why = f"no article reached the minimum score {settings.min_score}"
    if missing:
        # A forced id the (reloaded) articles no longer have: said, not fatal.
        why += f"; {forced_by} names no loaded article {', '.join(repr(i) for i in missing)}"
    return chosen, why


def suggestions_for(
    runtime: Runtime, ticket: TicketView, message: ParsedMessage, decision: Decision | None = None
) -> tuple[list[Article], str]:
    """The articles to offer with the acknowledgement, and why (or why none)."""
    settings = runtime.config.kb
    if settings is None:
        return [], "no knowledge base configured"
    return choose(
        settings,
        runtime.kb,
        queue=ticket.queue,
        category=ticket.category,
        subject=message.subject or ticket.subject,
        text=message.new_text,
        language=ticket.language,
        rules=RuleChoice.of(decision),
    )


def _article_context(article: Article, language: str) -> dict[str, str]:
    shown = article.language_for(language)
    return {
        "id": article.id,
        "title": article.title(shown),
        "text": article.bodies[shown].strip(),
        "html": article.html[shown],
    }


def with_suggestions(
    conn: Connection,
    runtime: Runtime,
    ticket: TicketView,
    message: ParsedMessage,
    mail: OutgoingMail,
    now: datetime,
    decision: Decision | None = None,
) -> OutgoingMail:
    """The acknowledgement with up to three matching articles added (text and HTML)."""
    articles, why = suggestions_for(runtime, ticket, message, decision)
    if not articles:
        if runtime.config.kb is not None:
            insert_event(conn, ticket.id, "kb_no_suggestion", now, reason=why)
        return mail
    language = mail.language or ticket.language
    context = {
        "ticket": {"ref": ticket.ref, "subject": ticket.subject},
        "articles": [_article_context(a, language) for a in articles],
    }
    rendered = runtime.templates.render(
        "kb_suggestions", context, language=language, queue=runtime.directory.template_folder(ticket.queue)
    )
    insert_event(conn, ticket.id, "kb_suggested", now, articles=[a.id for a in articles], reason=why)
    mail_html = mail.html
    if mail_html is not None and rendered.html is not None:
        # Into the body of the acknowledgement's HTML, before its end.
        cut = mail_html.lower().rfind("</body>")
        mail_html = (
            (mail_html[:cut] + rendered.html + mail_html[cut:]) if cut >= 0 else mail_html + rendered.html
        )
    return replace(mail, text=mail.text.rstrip("\n") + "\n\n" + rendered.text, html=mail_html)


def resolve_self_service(
    conn: Connection, runtime: Runtime, ticket: TicketView, message: ParsedMessage, sender: str, now: datetime
) -> bool:
    """A requester's ``solved`` after suggestions resolves the ticket: no agent, no CSAT mail."""
    if sender != ticket.requester or ticket.status not in ("new", "open", "pending"):
        return False
    if not is_solved_reply(message.new_text):
        return False
    offered = conn.execute(
        select(Event.detail)
        .where(Event.ticket_id == ticket.id, Event.kind == "kb_suggested")
        .order_by(Event.id.desc())
    ).first()
    if offered is None:
        return False
    detail: Any = offered[0]
    articles = detail.get("articles", []) if isinstance(detail, dict) else []
    insert_event(conn, ticket.id, "self_service", now, articles=articles, by="requester")
    lifecycle.set_status(conn, runtime, ticket, "resolved", now, by="requester (self-service)", mail=False)
    log.info("kb.self_service", ticket=ticket.ref, articles=articles)
    return True


@dataclass(frozen=True)
class KbPlan:
    """What an agent's ``#kb`` lines ask for, checked against the loaded articles."""

    articles: tuple[Article, ...] = ()
    searches: tuple[str, ...] = ()
    draft: bool = False
    errors: tuple[str, ...] = ()


def plan(commands: Commands, knowledge: KnowledgeBase, configured: bool) -> KbPlan:
    """Pure: ``#kb ID [ID…]``, ``#kb search WORDS``, ``#kb draft``."""
    articles: list[Article] = []
    searches: list[str] = []
    errors: list[str] = []
    draft = False
    for command in commands.commands:
        if command.name != "kb":
            continue
        if not configured:
            errors.append(
                f"{command.line}: this helpdesk has no knowledge base (no `kb:` in its configuration)"
            )
            continue
        verb, _, rest = command.value.partition(" ")
        if verb.lower() == "search":
            if not rest.strip():
                errors.append(f"{command.line}: #kb search needs words, e.g. #kb search vpn 809")
            searches.append(rest.strip())
        elif verb.lower() == "draft":
            if not commands.text.strip():
                errors.append(f"{command.line}: #kb draft needs your answer below it to make the draft from")
            draft = True
        else:
            for article_id in command.value.split():
                article = knowledge.get(article_id)
                if article is None:
                    errors.append(f"{command.line}: no article {article_id!r}; try #kb search WORDS")
                elif article not in articles:
                    articles.append(article)
    return KbPlan(tuple(articles), tuple(searches), draft, tuple(errors))


def reply_with_articles(reply: str, articles: tuple[Article, ...], language: str) -> tuple[str, str | None]:
    """The agent's text with the articles below it, as text and as safe HTML."""
    if not articles:
        return reply, None
    text_parts = [reply.rstrip("\n")] if reply.strip() else []
    html_parts = [
        f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in reply.strip().split("\n\n") if p
    ]
    for article in articles:
        shown = article.language_for(language)
        title = article.title(shown)
        text_parts.append(f"{title}\n{'=' * min(len(title), 72)}\n\n{article.bodies[shown].strip()}")
        html_parts.append(f"<h2>{html.escape(title)}</h2>\n{article.html[shown]}")
    body = "\n".join(html_parts)
    head = f'<!DOCTYPE html>\n<html lang="{language}"><body style="font-family: sans-serif">'
    page = f"{head}\n{body}\n</body></html>\n"
    return "\n\n".join(text_parts) + "\n", page


def search_matches(runtime: Runtime, query: str, language: str) -> list[dict[str, Any]]:
    """Best matches for an agent's ``#kb search`` (no minimum score: the agent judges)."""
    return [
        {"id": m.article.id, "title": m.article.title(language), "score": round(m.score, 1)}
        for m in runtime.kb.index.search(query, language, limit=5)
    ]
