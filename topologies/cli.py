"""Subcommands of this part of ClickSteer (see controller/cli.py): ``clicksteer fabric ...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from chains.errors import ConfigError
from topologies import emulator
from topologies.loader import load_topology
from topologies.netns import NetError
from topologies.ovs import OVSError

DEFAULT_CONTROLLER = "tcp:127.0.0.1:6653"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this part's subcommands to the ``clicksteer`` command."""
    fabric = subparsers.add_parser("fabric", help="bring an emulated fabric (Open vSwitch + namespaces) up or down")
    sub = fabric.add_subparsers(dest="fabric_command", metavar="ACTION", required=True)
    run_dir = argparse.ArgumentParser(add_help=False)
    run_dir.add_argument("--run-dir", help="where the fabric's state lives "
                         "(default: $CLICKSTEER_RUN_DIR or /run/clicksteer)")

    up = sub.add_parser("up", parents=[run_dir], help="build the fabric of a topology file")
    up.add_argument("topology", metavar="TOPO", help="topology file (YAML)")
    up.add_argument("--controller", default=DEFAULT_CONTROLLER,
                    help=f"OpenFlow controller every switch connects to (default: {DEFAULT_CONTROLLER})")
    up.add_argument("--no-controller", action="store_true",
                    help="connect the switches to no controller (they forward only what flows are installed)")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", parents=[run_dir], help="remove the fabric that is up, and only it")
    down.set_defaults(func=_down)

    status = sub.add_parser("status", parents=[run_dir], help="show the fabric that is up")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=_status)

    link = sub.add_parser("link", parents=[run_dir], help="cut or restore the link between two switches")
    link.add_argument("topology", metavar="TOPO", help="the topology file the fabric was built from")
    link.add_argument("a", metavar="A")
    link.add_argument("b", metavar="B")
    link.add_argument("state", choices=("down", "up"))
    link.set_defaults(func=_link)


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"clicksteer fabric {args.fabric_command}: error: {message}", file=sys.stderr)
    return 1


def _guarded(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors users cause into one clean message (no traceback)."""
    def run(args: argparse.Namespace) -> int:
        try:
            return action(args)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        except (emulator.FabricError, OVSError, NetError) as exc:
            return _fail(args, str(exc))
    return run


@_guarded
def _up(args: argparse.Namespace) -> int:
    topo = load_topology(args.topology)
    controller = None if args.no_controller else args.controller
    state = emulator.up(topo, controller=controller, run_dir=args.run_dir)
    print(f"fabric {topo.name} is up: run {state.run_id}, {len(topo.switches)} switches, {len(topo.hosts)} hosts, "
          f"{len(topo.computes)} compute hosts, {len(topo.links)} links; controller {controller or 'none'}")
    return 0


@_guarded
def _down(args: argparse.Namespace) -> int:
    state = emulator.down(args.run_dir)
    print(f"fabric {state.topology} (run {state.run_id}) is down")
    return 0


@_guarded
def _status(args: argparse.Namespace) -> int:
    report = emulator.status(args.run_dir)
    missing = [name for kind in ("bridges", "namespaces", "veths")
               for name, present in report[kind].items() if not present]
    if args.json:
        print(json.dumps(report, indent=1))
        return 1 if missing else 0
    ovs = report["ovs"]
    print(f"fabric {report['topology']} (run {report['run_id']}) is {report['status']}; "
          f"controller {report['controller'] or 'none'}; state in {report['run_dir']}")
    pids = ", ".join(f"{daemon} {pid}" for daemon, pid in ovs["pids"].items())
    print(f"open vswitch in {ovs['root']}: {'running' if ovs['alive'] else 'NOT running'} ({pids or 'no process'})")
    for kind in ("bridges", "namespaces", "veths"):
        present = sum(report[kind].values())
        print(f"{kind}: {present}/{len(report[kind])} present")
    for link in report["links"]:
        if not link["up"]:
            print(f"link {link['a']} - {link['b']}: cut")
    if missing:
        print(f"missing: {', '.join(missing)}")
    return 1 if missing else 0


@_guarded
def _link(args: argparse.Namespace) -> int:
    topo = load_topology(args.topology)
    state = emulator.load_state(args.run_dir)
    if state.topology != topo.name:
        return _fail(args, f"the fabric that is up was built from topology {state.topology!r}, not {topo.name!r}")
    emulator.set_link(args.a, args.b, args.state == "up", args.run_dir)
    print(f"link {args.a} - {args.b} is {args.state}")
    return 0
