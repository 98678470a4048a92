"""The ``clicksteer`` command: one entry point, subcommands registered by each part.

Each part of ClickSteer owns its subcommands in its own ``cli`` module with a
``register(subparsers)`` function; a subcommand sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys

from chains import cli as chains_cli
from clickos_agent import cli as agent_cli
from controller import commands as controller_cli
from controller import demo as demo_cli
from topologies import cli as topology_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clicksteer",
        description="Steer traffic through chains of ClickOS middleboxes.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for part in (chains_cli, topology_cli, agent_cli, controller_cli, demo_cli):
        part.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
