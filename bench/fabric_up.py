"""How long the emulator takes to bring fat trees up and down (k=4 and k=8).

Baseline, measured in the same run: the k=4 fabric built the naive way, one
``ovs-vsctl``/``ip``/``ethtool`` call per bridge, port, link and setting (as
a straightforward script or Mininet does), then removed the same way.
The figure (``value``) is the emulator's k=4 ``up`` time; budget: up in
under 5 s and down in under 3 s.  ``ratio`` = emulator up / naive up (lower
is better).  Needs root and Open vSwitch; every object created is recorded
and removed, even when the bench fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from topologies import emulator, generators, netns  # noqa: E402
from topologies.model import Topology  # noqa: E402
from topologies.ovs import OVS  # noqa: E402

UP_BUDGET = 5.0
DOWN_BUDGET = 3.0


def timed_fabric(topo: Topology, run_dir: Path) -> tuple[float, float]:
    start = time.monotonic()
    emulator.up(topo, run_dir=run_dir)
    up = time.monotonic() - start
    start = time.monotonic()
    emulator.down(run_dir)
    return up, time.monotonic() - start


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def naive_up(ovs: OVS, state: emulator.FabricState) -> None:
    """The same objects as ``emulator.up``, one command each (names from the same plan)."""
    ovs.start()
    for link in state.links:
        a, b = link["veths"]
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "up")
        sh("ip", "link", "set", b, "up")
    for h in state.hosts.values():
        ns = h["namespace"]
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", h["veth"], "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", h["veth"], "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "address", h["mac"])
        sh("ip", "-n", ns, "addr", "add", h["ip"], "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
    for c in state.computes.values():
        sh("ip", "link", "add", c["veth"], "type", "veth", "peer", "name", c["uplink"])
        sh("ip", "link", "set", c["veth"], "up")
        sh("ip", "link", "set", c["uplink"], "up")
    ports = state.switch_ports()
    for name, s in state.switches.items():
        br = s["bridge"]
        ovs.vsctl("add-br", br)
        ovs.vsctl("set", "Bridge", br, "datapath_type=netdev")
        ovs.vsctl("set", "Bridge", br, "protocols=OpenFlow13")
        ovs.vsctl("set", "Bridge", br, "fail_mode=secure")
        ovs.vsctl("set", "Bridge", br, f"other_config:datapath-id={s['dpid']:016x}")
        for port, number in ports[name]:
            ovs.vsctl("add-port", br, port)
            ovs.vsctl("set", "Interface", port, f"ofport_request={number}")
    for c in state.computes.values():
        ovs.vsctl("add-br", c["bridge"])
        ovs.vsctl("set", "Bridge", c["bridge"], "datapath_type=netdev")
        ovs.vsctl("add-port", c["bridge"], c["uplink"])


def naive_down(ovs: OVS, state: emulator.FabricState) -> None:
    for br in state.bridges:
        ovs.vsctl("--if-exists", "del-br", br)
    for veth in state.veths:
        netns.del_link(veth)
    for ns in state.namespaces:
        netns.del_netns(ns)


def main() -> int:
    results: dict[str, float] = {}
    ovs = OVS()
    shared = ovs.alive()
    with tempfile.TemporaryDirectory(prefix="clicksteer-bench-") as tmp:
        for k in (4, 8):
            up, down = timed_fabric(generators.fat_tree(k), Path(tmp) / f"k{k}")
            results[f"k{k}_up"], results[f"k{k}_down"] = up, down
            print(f"fat-tree k={k}: up {up:.2f} s, down {down:.2f} s")

        # The baseline's objects are recorded like a fabric's, so a failure still cleans them up.
        state = emulator.plan(generators.fat_tree(4), emulator.new_run_id(), None, str(ovs.root), tmp)
        emulator.save_state(state)
        try:
            start = time.monotonic()
            naive_up(ovs, state)
            results["naive_up"] = time.monotonic() - start
            start = time.monotonic()
            naive_down(ovs, state)
            results["naive_down"] = time.monotonic() - start
        finally:
            emulator.down(tmp)
    print(f"naive one-call-per-object baseline, fat-tree k=4: up {results['naive_up']:.2f} s, "
          f"down {results['naive_down']:.2f} s")
    if shared:
        print("note: the shared private Open vSwitch was already running (in use elsewhere), "
              "so down removed bridges one by one instead of stopping it")
    ratio = results["k4_up"] / results["naive_up"] if results["naive_up"] > 0 else None
    ok = results["k4_up"] < UP_BUDGET and results["k4_down"] < DOWN_BUDGET
    print(f"k=4 budget: up < {UP_BUDGET} s, down < {DOWN_BUDGET} s: {'met' if ok else 'NOT met'}; "
          f"ratio = emulator up / naive up")
    print(json.dumps({"bench": "fabric_up", "value": round(results["k4_up"], 3), "unit": "s",
                      "budget": UP_BUDGET, "ratio": round(ratio, 4) if ratio is not None else None, "ok": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
