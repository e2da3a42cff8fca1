"""`mailgate kb check|list|show|search`: the knowledge base for admins."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mailgate.cli import State, fail, main, pass_state


def _folder(state: State, folder: str | None) -> Path:
    if folder:
        return Path(folder)
    config = state.config
    if config.kb is None:
        fail("no knowledge base configured: add `kb: {folder: kb}` to the configuration", code=2)
    return config.path(config.kb.folder)


@main.group()
def kb() -> None:
    """Check, list, show and search the knowledge-base articles."""


@kb.command("check")
@click.option("--folder", help="Check this folder instead of the configured one.")
@pass_state
def kb_check(state: State, folder: str | None) -> None:
    """Validate every article file; print each problem as file:line: reason (exit 1 on any)."""
    from mailgate.kb.loader import check_folder

    knowledge, problems = check_folder(_folder(state, folder))
    found = [str(problem) for problem in problems]
    if folder is None and not problems:
        # The ids named elsewhere must exist: the kb settings' and the rules' forced articles.
        found += _forced_elsewhere(state, set(knowledge.articles))
    for line in found:
        click.echo(line)
    if found:
        raise SystemExit(1)
    click.echo(f"{len(knowledge)} articles, no problems")


def _forced_elsewhere(state: State, ids: set[str]) -> list[str]:
    """``kb.queues/categories.*.articles`` and the rules' ``kb_articles`` naming no article."""
    config = state.config
    assert config.kb is not None
    found = []
    for where, table in (("queues", config.kb.queues), ("categories", config.kb.categories)):
        for name, scope in table.items():
            for article in scope.articles:
                if article not in ids:
                    found.append(f"{state.config_path}: kb.{where}.{name}.articles: no article {article!r}")
    if config.rules is not None:
        from mailgate.rules import RulesError
        from mailgate.rules.loader import load_rules

        try:
            load_rules(config.path(config.rules), known_articles=ids)
        except RulesError as exc:
            found += [str(p) for p in exc.problems if p.reason.startswith("kb_articles: unknown article")]
    return found


def _load(state: State, folder: str | None) -> object:
    from mailgate.kb.loader import check_folder

    knowledge, problems = check_folder(_folder(state, folder))
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    return knowledge


@kb.command("list")
@click.option("--folder", help="Use this folder instead of the configured one.")
@click.option("--lang", default="en", show_default=True, help="Language of the titles.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def kb_list(state: State, folder: str | None, lang: str, as_json: bool) -> None:
    """Every article: id, title, queues and categories."""
    from mailgate.kb.model import KnowledgeBase

    knowledge = _load(state, folder)
    assert isinstance(knowledge, KnowledgeBase)
    rows = [
        {
            "id": a.id,
            "title": a.title(lang),
            "languages": sorted(a.bodies),
            "queues": list(a.queues),
            "categories": list(a.categories),
            "file": str(a.path),
        }
        for a in sorted(knowledge.articles.values(), key=lambda a: a.id)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['id']:<28} {row['title']}  [{','.join(row['languages'])}]")


@kb.command("show")
@click.argument("article_id")
@click.option("--folder", help="Use this folder instead of the configured one.")
@click.option("--lang", default="en", show_default=True)
@click.option("--html", "as_html", is_flag=True, help="Print the safe HTML instead of the text.")
@pass_state
def kb_show(state: State, article_id: str, folder: str | None, lang: str, as_html: bool) -> None:
    """One article in one language, as a requester would get it."""
    from mailgate.kb.model import KnowledgeBase

    knowledge = _load(state, folder)
    assert isinstance(knowledge, KnowledgeBase)
    article = knowledge.get(article_id)
    if article is None:
        fail(f"no article {article_id!r}; see `mailgate kb list`", code=1)
    shown = article.language_for(lang)
    click.echo(f"{article.id}: {article.title(shown)}\n")
    click.echo(article.html[shown] if as_html else article.bodies[shown], nl=False)


@kb.command("search")
@click.argument("words", nargs=-1, required=True)
@click.option("--folder", help="Use this folder instead of the configured one.")
@click.option("--lang", default="en", show_default=True, help="Language of the words.")
@click.option("--limit", default=5, show_default=True)
@pass_state
def kb_search(state: State, words: tuple[str, ...], folder: str | None, lang: str, limit: int) -> None:
    """The best matching articles with their scores (the minimum score is not applied)."""
    from mailgate.kb.model import KnowledgeBase
    from mailgate.kb.search import SearchIndex

    knowledge = _load(state, folder)
    assert isinstance(knowledge, KnowledgeBase)
    matches = SearchIndex(knowledge).search(" ".join(words), lang, limit=limit)
    if not matches:
        click.echo("no matching article")
    for match in matches:
        click.echo(f"{match.score:7.2f}  {match.article.id:<28} {match.article.title(lang)}")


@kb.command("address")
@click.argument("agent")
@pass_state
def kb_address(state: State, agent: str) -> None:
    """An agent's own search address (agent key or address), to hand to them.

    Mail to the plain kb address (``kb.address``, default helpdesk+kb@…) is
    answered only with a refusal naming this address, sent to the agent.
    """
    from mailgate.kb.command_address import base_address, signed_address
    from mailgate.service.runtime import make_directory
    from mailgate.threading.tokens import load_keys

    config = state.config
    if base_address(config) is None:
        fail("no knowledge base configured: add `kb: {folder: kb}` to the configuration", code=2)
    if config.agents is None:
        fail("no agents file configured (key `agents:`)", code=2)
    found = make_directory(config).agent_named(agent)
    if found is None:
        fail(f"no agent {agent!r}; see the agents file", code=1)
    try:
        keys = load_keys(config.path(config.secrets.reply_key_file), create=False)
    except (OSError, ValueError) as exc:
        fail(f"cannot read the reply key: {exc}; start the daemon once to create it", code=1)
    click.echo(signed_address(config, keys, found.address))
