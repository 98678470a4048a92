"""Subcommands of this part of ClickSteer (see controller/cli.py).

``clicksteer controller``: run the controller (os-ken application + REST API).
``clicksteer chains apply|list|show|delete``: a client of its REST API.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


from chains.errors import ConfigError
from chains.export import chainset_to_data
from chains.loader import load_chains
from clickos_agent.httpapi import ApiServer, read_token
from controller.client import ApiError, ControllerClient, check

DEFAULT_OPENFLOW = "127.0.0.1:6653"
DEFAULT_API = "127.0.0.1:8080"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the ``clicksteer`` command."""
    ctl = subparsers.add_parser("controller", help="run the controller (OpenFlow + REST API)")
    ctl.add_argument("--topology", required=True, metavar="TOPO", help="the fabric's topology file (YAML)")
    ctl.add_argument("--openflow", default=DEFAULT_OPENFLOW, metavar="HOST:PORT",
                     help=f"where switches connect (default: {DEFAULT_OPENFLOW})")
    ctl.add_argument("--api", default=DEFAULT_API, metavar="HOST:PORT",
                     help=f"where the REST API listens (default: {DEFAULT_API})")
    ctl.add_argument("--chains", metavar="FILE", help="chains to apply at start")
    ctl.add_argument("--token-file", default=os.environ.get("CLICKSTEER_TOKEN_FILE"),
                     help="bearer token that mutating API calls must carry (env CLICKSTEER_TOKEN_FILE)")
    ctl.add_argument("--agent-token-file", default=os.environ.get("CLICKSTEER_AGENT_TOKEN_FILE"),
                     help="bearer token for the agents (env CLICKSTEER_AGENT_TOKEN_FILE)")
    ctl.add_argument("--poll-interval", type=float, default=1.0, metavar="SECONDS",
                     help="OpenFlow statistics are polled this often; they drive automatic scaling (default 1)")
    ctl.add_argument("--drain-timeout", type=float, default=60.0, metavar="SECONDS",
                     help="an instance being scaled in is released after this long even if its flows go on "
                          "(default 60)")
    ctl.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    ctl.set_defaults(func=run_controller)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--api", default=os.environ.get("CLICKSTEER_API", DEFAULT_API), metavar="URL",
                        help=f"the controller's API (env CLICKSTEER_API; default {DEFAULT_API})")
    client.add_argument("--token-file", default=os.environ.get("CLICKSTEER_TOKEN_FILE"),
                        help="bearer token for changes (env CLICKSTEER_TOKEN_FILE)")
    chains = subparsers.add_parser("chains", help="apply, list, show or delete chains on a running controller")
    sub = chains.add_subparsers(dest="chains_command", metavar="ACTION", required=True)
    apply = sub.add_parser("apply", parents=[client], help="create or replace the chains of a file")
    apply.add_argument("file", metavar="FILE")
    apply.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                       help="wait this long for the chains to become active (default 30)")
    apply.set_defaults(func=_client(_apply))
    listing = sub.add_parser("list", parents=[client], help="every chain and its state")
    listing.set_defaults(func=_client(_list))
    show = sub.add_parser("show", parents=[client], help="one chain: instances, path, counters")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=_client(_show))
    events = sub.add_parser("events", parents=[client], help="one chain's scaling events")
    events.add_argument("name", metavar="NAME")
    events.set_defaults(func=_client(_events))
    delete = sub.add_parser("delete", parents=[client], help="remove a chain and release its instances")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=_client(_delete))


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)


def _check_free(host: str, port: int, what: str) -> None:
    """os-ken's listener dies in a background thread when its port is taken: find out first."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None


# ---- the controller ---------------------------------------------------------------------

def run_controller(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from controller.agents import HttpAgentClient
    from controller.api import build_api
    from controller.service import ChainService
    from topologies.loader import load_topology

    try:
        of_host, of_port = _host_port(args.openflow, "--openflow")
        api_host, api_port = _host_port(args.api, "--api")
        _check_free(of_host, of_port, "OpenFlow")
        topology = load_topology(args.topology)
        token = read_token(args.token_file)
        agent_token = read_token(args.agent_token_file)
        if args.poll_interval <= 0 or args.drain_timeout < 0:
            raise ValueError("--poll-interval must be positive and --drain-timeout not negative")
        service = ChainService(topology, agents=lambda address: HttpAgentClient(address, agent_token),
                               drain_timeout=args.drain_timeout)
        if args.chains:
            with open(args.chains, encoding="utf-8") as handle:
                service.create(load_chains(handle.read(), args.chains), args.chains)
        server = ApiServer(build_api(service, token), api_host, api_port)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"clicksteer controller: error: {exc}", file=sys.stderr)
        return 1

    from controller import osken_app   # the one module that imports os-ken
    app = osken_app.start(service, of_host, of_port)
    service.attach(app)
    from controller.poller import StatsPoller
    StatsPoller(service, app, args.poll_interval).start()
    server.start()
    print(f"clicksteer controller: topology {topology.name} ({len(topology.switches)} switches), "
          f"OpenFlow on {of_host}:{of_port}, API on http://{server.address}", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop()
    logging.shutdown()
    sys.stdout.flush()
    # os-ken's listener and switch threads cannot be stopped; they die with the process.
    os._exit(0)


# ---- the client ---------------------------------------------------------------------------

def _client(action: Callable[[ControllerClient, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return action(ControllerClient(args.api, read_token(args.token_file)), args)
        except ApiError as exc:
            print(f"clicksteer chains {args.chains_command}: error: {exc}", file=sys.stderr)
            for problem in (exc.body or {}).get("problems", []) if isinstance(exc.body, dict) else []:
                print(f"  {problem['path']}: {problem['message']}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"clicksteer chains {args.chains_command}: error: {exc}", file=sys.stderr)
            return 1
    return run


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned columns; the last one is not padded."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(widths[i]) if i < len(headers) - 1 else value
                       for i, value in enumerate(row)).rstrip() for row in cells]
    return "\n".join(lines)


def _apply(client: ControllerClient, args: argparse.Namespace) -> int:
    """Create or replace each chain of the file (idempotent), after checking the file here."""
    with open(args.file, encoding="utf-8") as handle:
        text = handle.read()
    try:
        chainset = load_chains(text, args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    document = chainset_to_data(chainset)
    functions = document.get("functions") or {}
    rows = []
    for chain, raw in zip(chainset.chains, document["chains"]):
        body = {"chains": [raw], **({"functions": functions} if functions else {})}
        path = f"/v1/chains/{chain.name}?wait={args.wait:g}"
        status, view = client.call("PUT", path, body)
        check("PUT", path, status, view)
        rows.append((chain.name, "created" if status == 201 else "replaced", view["state"], view["reason"]))
    print(table(("NAME", "ACTION", "STATE", "REASON"), rows))
    return 0 if all(row[2] == "active" for row in rows) else 1


def _list(client: ControllerClient, args: argparse.Namespace) -> int:
    chains = client.ok("GET", "/v1/chains")["chains"]
    print(table(("NAME", "STATE", "PRIORITY", "INSTANCES", "HOPS", "REASON"),
                [(c["name"], c["state"], c["priority"], c["instances"], ",".join(c["hops"]), c["reason"])
                 for c in chains]))
    return 0


def _show(client: ControllerClient, args: argparse.Namespace) -> int:
    chain = client.ok("GET", f"/v1/chains/{args.name}")
    print(f"chain {chain['name']}: {chain['state']}" + (f" ({chain['reason']})" if chain["reason"] else ""))
    print(f"path: {' -> '.join(chain['path']) or '-'}")
    rows = []
    for hop in chain["hops"]:
        for inst in hop["instances"]:
            counters = inst.get("counters", {})
            rates = inst.get("rates") or {}
            # What scaling counts: handed in where hand-over flows count it, else sent back.
            rate = rates.get("in_pps") if rates.get("in_pps") is not None else rates.get("out_pps")
            pps = "-" if rate is None else f"{rate:.0f}"
            state = inst["state"] + (" (draining)" if inst.get("draining") else "")
            rows.append((hop["name"], hop["function"], inst["id"], inst["compute"], state,
                         *(counters.get(e, {}).get("packets", "-") for e in ("count_in", "count_out", "count_drop")),
                         pps))
    print(table(("HOP", "FUNCTION", "INSTANCE", "COMPUTE", "STATE", "IN", "OUT", "DROP", "PPS"), rows))
    return 0


def events_table(events: Sequence[dict[str, Any]]) -> str:
    """A chain's scaling events (``GET /v1/chains/{name}/events``), one row each, oldest first."""
    rows = [(time.strftime("%H:%M:%S", time.localtime(e["time"])) + f".{int(e['time'] * 1000) % 1000:03d}",
             e["hop"], e["action"], f"{e['instances']}->{e['target']}" if "target" in e else "",
             e["instance"], e["reason"]) for e in events]
    return table(("TIME", "HOP", "ACTION", "INSTANCES", "INSTANCE", "REASON"), rows)


def _events(client: ControllerClient, args: argparse.Namespace) -> int:
    print(events_table(client.ok("GET", f"/v1/chains/{args.name}/events")["events"]))
    return 0


def _delete(client: ControllerClient, args: argparse.Namespace) -> int:
    client.ok("DELETE", f"/v1/chains/{args.name}")
    print(f"chain {args.name} deleted")
    return 0
