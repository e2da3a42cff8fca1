"""`mailgate agents forward-address`: where an agent forwards mail to open a ticket for its sender."""

from __future__ import annotations

import click

from mailgate.cli import State, fail, main, pass_state


@main.group()
def agents() -> None:
    """The agents of the agents file."""


@agents.command("forward-address")
@click.argument("names", nargs=-1)
@pass_state
def forward_address(state: State, names: tuple[str, ...]) -> None:
    """Print each agent's personal forward address (all agents without NAMES).

    A mail an agent forwards to this address opens a ticket in the name of
    the original sender, with the agent's own lines as an internal note.
    The address is signed for that agent alone: from anyone else it is an
    ordinary mail to the helpdesk.
    """
    from mailgate.service.runtime import make_directory
    from mailgate.threading.tokens import load_keys
    from mailgate.tickets.forwarder import forward_address as address_for

    config = state.config
    directory = make_directory(config)
    keys = load_keys(config.path(config.secrets.reply_key_file))
    chosen = [directory.agent_named(name) for name in names] if names else list(directory.agents)
    if names and None in chosen:
        unknown = [name for name, agent in zip(names, chosen, strict=True) if agent is None]
        fail(f"no such agent: {', '.join(unknown)}")
    if not chosen:
        fail("no agents configured (key `agents:` in the configuration)")
    for agent in chosen:
        assert agent is not None
        click.echo(f"{agent.key}\t{address_for(config.helpdesk.address, keys, agent.address)}")
