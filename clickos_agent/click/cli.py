"""``clicksteer click check FILE...``: validate Click configurations, compiler style."""

from __future__ import annotations

import argparse
import sys

from chains.errors import Problem
from clickos_agent.click.check import check


def _format(kind: str, problem: Problem) -> str:
    return f"{problem.file}:{problem.line}:{problem.col}: {kind}: {problem.message}"


def run_check(args: argparse.Namespace) -> int:
    """Print every error and warning of each file; exit status 1 if any file has errors."""
    failed = False
    for path in args.files:
        try:
            if path == "-":
                text, name = sys.stdin.read(), "<stdin>"
            else:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    text, name = f.read(), path
        except OSError as e:
            print(f"{path}: error: {e.strerror}", file=sys.stderr)
            failed = True
            continue
        result = check(text, name)
        problems = [("error", p) for p in result.errors] + [("warning", p) for p in result.warnings]
        problems.sort(key=lambda kp: (kp[1].line, kp[1].col))
        for kind, problem in problems:
            print(_format(kind, problem), file=sys.stderr)
        failed = failed or not result.ok
    return 1 if failed else 0


def add_click_commands(click_subparsers: argparse._SubParsersAction) -> None:
    """Add the language subcommands (``check``) to the ``clicksteer click`` group."""
    parser = click_subparsers.add_parser(
        "check", help="check Click configurations as Click 2.1 would",
        description="Parse, flatten and validate Click configurations; print problems "
                    "as FILE:LINE:COL: error|warning: message; exit 1 on errors.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="a configuration file, or - for stdin")
    parser.set_defaults(func=run_check)
