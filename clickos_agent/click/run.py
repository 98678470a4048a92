"""Run a Click configuration as an emulated ClickOS instance.

``python -m clickos_agent.click.run CONFIG_FILE --device 0=eth0
--control-socket PATH [--ready-file PATH]`` builds the router, reports
readiness (the ready file, or ``ready`` on standard output) once it forwards,
and runs until SIGTERM/SIGINT or the configuration stops.  The agent may
instead fork a pre-imported process and call ``run_router``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping

from clickos_agent.click.runtime import Router, RouterError


def run_router(config_text: str, devices: Mapping[str, str] | None = None,
               control_socket: str | None = None, ready_fd: int | None = None,
               filename: str = "<config>") -> Router:
    """Build and run a router until it stops; write ``ready\\n`` to ``ready_fd`` once it forwards.

    SIGTERM and SIGINT stop the router cleanly (dump files are flushed).
    """
    router = Router.from_text(config_text, filename, devices, control_socket)
    _serve(router, None if ready_fd is None else lambda: os.write(ready_fd, b"ready\n"))
    return router


def _serve(router: Router, ready: Callable[[], object] | None) -> None:
    """Stop on SIGTERM/SIGINT (from the main thread), call ``ready``, run until stopped, clean up."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _sig, _frame: router.stop())
    if ready is not None:
        ready()
    try:
        router.run(until_done=False)
    finally:
        router.cleanup()


def parse_device(text: str) -> tuple[str, str]:
    """``NAME=IFACE`` (``0=eth0``) for --device options."""
    name, eq, ifname = text.partition("=")
    if not eq or not name or not ifname:
        raise argparse.ArgumentTypeError(f"expected NAME=INTERFACE, got '{text}'")
    return name, ifname


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clickos_agent.click.run",
                                     description="Run a Click configuration (emulated ClickOS).")
    parser.add_argument("config", metavar="CONFIG_FILE")
    parser.add_argument("--device", action="append", type=parse_device, default=[],
                        metavar="NAME=IFACE", help="map a ClickOS device (0, 1, ...) to an interface")
    parser.add_argument("--control-socket", metavar="PATH")
    parser.add_argument("--ready-file", metavar="PATH",
                        help="written once the router forwards (else 'ready' is printed)")
    args = parser.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
        router = Router.from_text(text, args.config, dict(args.device), args.control_socket)
    except RouterError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{args.config}: {e.strerror}", file=sys.stderr)
        return 1

    def ready() -> None:
        if args.ready_file:
            tmp = args.ready_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, args.ready_file)
        else:
            print("ready", flush=True)

    _serve(router, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
