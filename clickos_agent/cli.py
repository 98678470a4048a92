"""Subcommands of this part of ClickSteer (see controller/cli.py)."""

from __future__ import annotations

import argparse

from clickos_agent.agentcli import add_agent_command
from clickos_agent.click.cli import add_click_commands
from clickos_agent.click.runcli import add_run_command


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the ``clicksteer`` command."""
    click = subparsers.add_parser("click", help="the Click language toolkit")
    click_subparsers = click.add_subparsers(dest="click_command", metavar="SUBCOMMAND",
                                            required=True)
    add_click_commands(click_subparsers)
    add_run_command(click_subparsers)
    add_agent_command(subparsers)
