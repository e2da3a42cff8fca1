"""`mailgate rules check` and `rules test`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mailgate.cli import State, fail, main, pass_state
from mailgate.log import get_logger

log = get_logger(__name__)


@main.group()
def rules() -> None:
    """Validate the rules file and try it on saved mails."""


@rules.command("check")
@pass_state
def rules_check(state: State) -> None:
    """Validate the rules and agents files; print every problem as file:line:column: reason.

    With an agents file, rules that name a queue it does not define are errors too.
    """
    from mailgate.rules import RulesError
    from mailgate.rules.cli import run_check
    from mailgate.service.runtime import make_directory, make_templates

    config = state.config
    known_queues: set[str] | None = None
    status = 0
    if config.agents is not None:
        try:
            directory = make_directory(config)
        except RulesError as exc:
            for problem in exc.problems:
                click.echo(str(problem))
            status = 1
        else:
            known_queues = {queue.name for queue in directory.queues} or None
            click.echo(f"{config.path(config.agents)}: OK, {len(directory.queues)} queues")
    if config.rules is None:
        click.echo("no rules file configured (key `rules:`); the default is one queue, priority normal")
        sys.exit(status)
    templates = make_templates(config).names()
    articles = _article_ids(config)
    rules_path = config.path(config.rules)
    sys.exit(run_check(rules_path, known_queues, templates, sys.stdout, articles) or status)


def _article_ids(config: Any) -> set[str] | None:
    """The knowledge base's ids, to check the rules' kb_articles; None when there is none to check against."""
    if config.kb is None:
        return None
    from mailgate.kb.loader import check_folder

    knowledge, problems = check_folder(config.path(config.kb.folder))
    if problems:
        click.echo(f"kb: {len(problems)} problems, kb_articles not checked (see `mailgate kb check`)")
        return None
    return set(knowledge.articles)


@rules.command("test")
@click.argument("mails", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def rules_test(state: State, mails: tuple[Path, ...], as_json: bool) -> None:
    """Show what the rules would do with saved mails (.eml files or folders of them).

    For one mail: every rule in order, whether it matched and which condition
    decided, the resulting fields, and which acknowledgement would go out or
    why none. For a folder: one line per mail.
    """
    from mailgate.rules import RuleContext
    from mailgate.rules.cli import run_test
    from mailgate.threading.subject import find_tags

    config = state.config

    def context(message: Any, envelope: Any) -> RuleContext:
        # Without a database at hand, a mail that answers something is a reply.
        is_reply = bool(
            message.in_reply_to
            or message.references
            or find_tags(message.subject, config.helpdesk.ref_prefix)
        )
        return RuleContext(
            is_reply=is_reply,
            our_addresses=config.our_addresses,
            now=envelope.received_at,
            trusted_authserv_ids=frozenset(config.trusted_authserv_ids),
        )

    from mailgate import guard
    from mailgate.service.runtime import make_directory, own_identity

    # The daemon's own view of our addresses, queues' included.
    try:
        own = own_identity(config, make_directory(config))
    except Exception as exc:  # a broken agents file: `rules check` says where
        fail(f"agents: {exc}; see `mailgate rules check`")

    def guard_check(message: Any, envelope: Any, raw: bytes) -> tuple[str, bool, tuple[str, ...]]:
        verdict = guard.check(message, envelope, own, raw)
        return verdict.kind, verdict.may_auto_reply, verdict.reasons

    rules_path = config.path(config.rules) if config.rules else None
    language = config.helpdesk.language
    requester_check = _requester_check(config, own)
    kb_check = _kb_check(config)
    sys.exit(
        run_test(
            rules_path,
            list(mails),
            as_json,
            context,
            sys.stdout,
            guard_check,
            language=language,
            requester_check=requester_check,
            kb_check=kb_check,
        )
    )


def _kb_check(config: Any) -> Any:
    """The articles the acknowledgement would offer, chosen as the daemon chooses them."""
    if config.kb is None:
        return None
    from mailgate.kb.library import Library
    from mailgate.kb.loader import check_folder
    from mailgate.kb.mailflow import RuleChoice, choose
    from mailgate.kb.search import SearchIndex

    knowledge, problems = check_folder(config.path(config.kb.folder))
    if problems:
        click.echo(f"warning: kb: {len(problems)} problems, see `mailgate kb check`", err=True)
    library = Library(knowledge, SearchIndex(knowledge))

    def check(message: Any, decision: Any) -> dict[str, object]:
        articles, why = choose(
            config.kb,
            library,
            queue=decision.queue,
            category=decision.category,
            subject=message.subject or "",
            text=message.new_text,
            language=decision.language,
            rules=RuleChoice.of(decision),
        )
        listed = [{"id": a.id, "title": a.title(decision.language)} for a in articles]
        return {"articles": listed, "reason": why}

    return check


def _requester_check(config: Any, own: Any) -> Any:
    """Who a new ticket would be for (tickets/requester.py), as the daemon would choose."""
    import secrets

    from mailgate.guard.rules import without_detail
    from mailgate.service.runtime import make_directory
    from mailgate.threading.tokens import ReplyKeys, load_keys
    from mailgate.tickets.requester_road import explain

    directory = make_directory(config)
    try:
        keys = load_keys(config.path(config.secrets.reply_key_file), create=False)
    except (OSError, ValueError):
        # No key file yet: no forward address can verify, as in the daemon's first run.
        keys = ReplyKeys((secrets.token_bytes(32),))

    def is_ours(address: str) -> bool:
        return address.lower() in own.addresses or without_detail(address) in own.addresses

    def check(message: Any, envelope: Any, decision: Any) -> dict[str, object]:
        choice, _ = explain(
            message,
            envelope,
            decision,
            directory=directory,
            keys=keys,
            helpdesk_address=config.helpdesk.address,
            trusted_ids=frozenset(config.trusted_authserv_ids),
            is_ours=is_ours,
        )
        return choice.as_dict()

    return check
