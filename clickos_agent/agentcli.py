"""``clicksteer agent``: run the per-host ClickOS agent.

    clicksteer agent --host NAME --backend emu|xen --listen 127.0.0.1:PORT [--state-dir DIR]
                     [--token-file FILE] [--capacity N]
                     emu: [--bridge BR] [--fabric-dir DIR] [--pool N]     xen: [--kernel PATH] [--libvirt-uri URI]

It serves until SIGTERM/SIGINT and then exits leaving its instances running:
a restarted agent re-adopts them from its state directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from clickos_agent.agent import Agent, Backend
from clickos_agent.api import build_api
from clickos_agent.httpapi import ApiServer, read_token
from clickos_agent.store import StateStore

log = logging.getLogger("clickos_agent")

DEFAULT_LISTEN = "127.0.0.1:7461"
DEFAULT_KERNEL = "/root/clickos/minios/build/clickos_x86_64"


def add_agent_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agent", help="run the per-host ClickOS agent (REST API)")
    p.add_argument("--host", required=True, help="the compute host this agent serves")
    p.add_argument("--backend", choices=("emu", "xen"), required=True)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})")
    p.add_argument("--state-dir", help="where the instance table lives (default: RUN_DIR/agent-HOST)")
    p.add_argument("--token-file", help="file holding the bearer token for mutating calls")
    p.add_argument("--capacity", type=int, default=128, help="most instances at once (default 128)")
    p.add_argument("--bridge", help="emu: the host switch (default: the fabric's bridge for --host)")
    p.add_argument("--pool", type=int, default=0,
                   help="emu: one-interface namespaces kept ready on the bridge for faster boots (default 0)")
    p.add_argument("--fabric-dir", help="emu: the emulated fabric's run directory (default CLICKSTEER_RUN_DIR)")
    p.add_argument("--kernel", default=DEFAULT_KERNEL, help="xen: the ClickOS kernel image")
    p.add_argument("--libvirt-uri", default="xen:///system", help="xen: libvirt URI (test:///default to try)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=run_agent)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--listen: expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def make_backend(args: argparse.Namespace, state_dir: Path) -> tuple[Backend, Any]:
    """The backend, and the object to ``close()`` at exit (or None)."""
    if args.backend == "emu":
        from clickos_agent.backends.emu import EmuBackend
        from topologies.emulator import load_state
        from topologies.ovs import OVS

        if args.bridge:
            bridge, ovs = args.bridge, OVS()
        else:
            fabric = load_state(args.fabric_dir)
            bridge, ovs = fabric.compute_bridge(args.host), fabric.ovs()
        emu = EmuBackend(bridge, ovs, state_dir / "run", pool_size=args.pool)
        emu.open()
        return emu, emu
    from clickos_agent.backends.xen import XenBackend
    from clickos_agent.xen.libvirt_iface import LibvirtHypervisor
    from clickos_agent.xen.vale import ValeCtl
    from clickos_agent.xen.xenstore import XenStoreCli

    return XenBackend(LibvirtHypervisor(args.libvirt_uri), XenStoreCli(), ValeCtl(), args.kernel), None


def run_agent(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from topologies.emulator import default_run_dir

    state_dir = Path(args.state_dir) if args.state_dir else default_run_dir() / f"agent-{args.host}"
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    listen_host, listen_port = _listen(args.listen)
    backend, closer = make_backend(args, state_dir)
    agent = Agent(args.host, backend, StateStore(state_dir / "instances.json", durable=False),
                  capacity=args.capacity)
    report = agent.start()
    log.info("tag %s: adopted %s, released %s, swept %s", agent.tag, report["adopted"] or "none",
             report["released"] or "none", report["swept"] or "none")
    token = read_token(args.token_file)
    if token is None:
        log.warning("no --token-file: anyone who can reach %s may create and delete instances", args.listen)
    server = ApiServer(build_api(agent, token), listen_host, listen_port).start()
    # The line tests and scripts wait for: the address actually bound (PORT 0 picks one).
    print(f"agent {args.host} ({args.backend}) listening on http://{server.address}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    stop.wait()
    server.stop()
    if closer is not None:
        closer.close()
    log.info("stopped; %d instances left running for the next agent", len(agent.instances))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m clickos_agent.agentcli ...``: the agent alone, without the other parts' commands."""
    parser = argparse.ArgumentParser(prog="clickos-agent")
    add_agent_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["agent", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
