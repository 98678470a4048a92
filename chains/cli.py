"""Subcommands of the chain language: ``clicksteer check`` and ``clicksteer schema``."""

from __future__ import annotations

import argparse
import json
import sys

from chains.errors import ConfigError
from chains.loader import load_chain_file
from chains.schema import json_schema


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the ``clicksteer`` command."""
    check = subparsers.add_parser(
        "check", help="validate chain files",
        description="Validate chain files; print a summary per valid file, or every error as FILE:LINE:COL.")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=run_check)
    schema = subparsers.add_parser("schema", help="print the JSON Schema of chain files")
    schema.set_defaults(func=run_schema)


def run_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            chainset = load_chain_file(path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            status = 1
            continue
        hops = sum(len(chain.hops) for chain in chainset.chains)
        print(f"{path}: ok, {_count(len(chainset.chains), 'chain')}, {_count(hops, 'hop')}, "
              f"{_count(len(chainset.functions), 'custom function')}")
    return status


def run_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
