"""Subcommands of this part of ClickSteer (see controller/cli.py)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the ``clicksteer`` command."""
