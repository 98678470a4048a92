"""``clicksteer click run FILE [-h elem.handler ...]``: run a configuration like ``click``.

The router runs until its sources are done (FromDump with ``STOP true``, or
every source exhausted), then the named read handlers are printed as
``click -h`` prints them: the bare value for one handler, ``name:`` headers
and a blank line between values for several.
"""

from __future__ import annotations

import argparse
import fnmatch
import signal
import sys

from clickos_agent.click.element import HandlerError
from clickos_agent.click.run import parse_device
from clickos_agent.click.runtime import Router, RouterError


def _expand(router: Router, name: str) -> list[str]:
    """Handler names for ``name``; an element part with wildcards matches many elements."""
    element, dot, handler = name.partition(".")
    if dot and any(c in element for c in "*?["):
        return [f"{e}.{handler}" for e in router.elements if fnmatch.fnmatchcase(e, element)]
    return [name]


def print_handlers(router: Router, names: list[str]) -> bool:
    """Print read handlers' values on stdout; False if any could not be read."""
    expanded = [(n, full) for n in names for full in _expand(router, n)]
    print_names = len(names) > 1 or any(full != n for n, full in expanded)
    ok = True
    for _, full in expanded:
        try:
            value = router.read_handler(full)
        except HandlerError as e:
            print(f"click run: {e}", file=sys.stderr)
            ok = False
            continue
        if print_names:
            sys.stdout.write(f"{full}:\n")
        if value and not value.endswith("\n"):
            value += "\n"
        sys.stdout.write(value)
        if print_names:
            sys.stdout.write("\n")
    sys.stdout.flush()
    return ok


def run_command(args: argparse.Namespace) -> int:
    try:
        with open(args.file, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        print(f"{args.file}: {e.strerror}", file=sys.stderr)
        return 1
    devices = dict(args.device)
    try:
        router = Router.from_text(text, args.file, devices, args.control_socket)
    except RouterError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGINT, lambda _sig, _frame: router.stop())
    try:
        router.run(until_done=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        ok = print_handlers(router, args.handlers)
        router.cleanup()
    return 0 if ok else 1


def add_run_command(click_subparsers: argparse._SubParsersAction) -> None:
    """Add ``run`` to the ``clicksteer click`` group (``-h`` names a handler, as in click)."""
    parser = click_subparsers.add_parser(
        "run", add_help=False, help="run a Click configuration with the ClickSteer runtime",
        description="Run a Click configuration until its sources are done, then print the "
                    "named read handlers, as `click -h` does.")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("-h", "--handler", dest="handlers", action="append", default=[],
                        metavar="ELEM.HANDLER", help="print this read handler at exit")
    parser.add_argument("--device", action="append", default=[], type=parse_device,
                        metavar="NAME=IFACE",
                        help="map a device name in FromDevice/ToDevice to an interface")
    parser.add_argument("--control-socket", metavar="PATH",
                        help="serve handlers over Click's ControlSocket protocol here")
    parser.add_argument("--help", action="help", help="show this help message and exit")
    parser.set_defaults(func=run_command)
