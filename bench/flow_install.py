"""Benchmark: install the flows of 1,000 chains into Open vSwitch through the controller.

The controller's path: the core's messages (compiled and diffed once, before
the clock starts) are translated to OpenFlow by the os-ken application,
sent to every switch of the emulated fabric in make-before-break phases, and
confirmed by barrier replies.  The baseline, in the same run on the same
(cleared) bridges: the same flows as ``ovs-ofctl --bundle add-flows`` files,
one process per bridge, all bridges at once.  Both rates are flows per
second; the ratio is controller / baseline.  Budget: ratio at least 0.8.

The fabric is fat-tree k=4 (20 switches) with room for 2,000 instances on
each compute host; each chain has two hops, its own destination port, and
(mostly) a client and a server in different pods.

The last line printed is one JSON object (see bench/README conventions).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from chains.loader import load_chains  # noqa: E402 - after the path set-up above
from controller import ofctl, osken_app, testbed  # noqa: E402
from controller.core.compiler import Desired, compile_fabric  # noqa: E402
from controller.core.diff import diff  # noqa: E402
from controller.core.ofmsg import FlowMod  # noqa: E402
from controller.core.placement import place  # noqa: E402
from topologies import emulator  # noqa: E402
from topologies.loader import load_topology  # noqa: E402

CHAINS = 1000
BUDGET = 0.8
ROUNDS = 3
TOPO = Path(__file__).resolve().parent.parent / "topologies" / "fat-tree-k4.yaml"


def chain_document(count: int, hosts: list[str]) -> str:
    out = ["chains:"]
    for i in range(count):
        src, dst = hosts[i % len(hosts)], hosts[(i + 5) % len(hosts)]   # mostly across pods
        out.append(f"""\
  - name: c{i:04d}
    classifier: {{src: {src}/32, dst: {dst}/32, protocol: tcp, dst_port: {1000 + i}}}
    hops:
      - {{name: fw, function: firewall, params: {{default: allow}}}}
      - {{name: mon, function: monitor}}""")
    return "\n".join(out) + "\n"


def clear(state: emulator.FabricState) -> None:
    ovs = state.ovs()
    for switch in state.switches:
        bridge = state.switch_bridge(switch)
        ovs.ofctl("del-flows", bridge)
        ovs.ofctl("del-groups", bridge)


def count_flows(state: emulator.FabricState) -> int:
    ovs = state.ovs()
    return sum(len(ovs.ofctl("dump-flows", "--no-stats", state.switch_bridge(s)).splitlines()) - 1
               for s in state.switches)


def baseline(state: emulator.FabricState, desired: Desired, work: Path) -> float:
    """Seconds for ``ovs-ofctl --bundle add-flows`` of every bridge's flows, bridges side by side."""
    by_bridge: dict[str, list[str]] = {}
    names = {sw["dpid"]: name for name, sw in state.switches.items()}
    for flow in desired.flows.values():
        by_bridge.setdefault(state.switch_bridge(names[flow.dpid]), []).append(ofctl.flow_line(flow))
    files = {}
    for bridge, lines in by_bridge.items():
        files[bridge] = work / f"{bridge}.flows"
        files[bridge].write_text("\n".join(lines) + "\n")
    ovs = state.ovs()
    start = time.perf_counter()
    procs = [subprocess.Popen(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", bridge, str(path)],
                              env=ovs.env, stderr=subprocess.PIPE, text=True) for bridge, path in files.items()]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"ovs-ofctl failed: {err}")
    return time.perf_counter() - start


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="cs-bench-flows-"))
    topology = load_topology(TOPO)
    topology = dataclasses.replace(topology, computes=tuple(dataclasses.replace(c, capacity=2 * CHAINS)
                                                            for c in topology.computes))
    chains = load_chains(chain_document(CHAINS, [str(h.ip.ip) for h in topology.hosts]), "<bench>").chains
    started = time.perf_counter()
    placement = place(topology, chains)
    desired = compile_fabric(topology, chains, placement, placement.by_id())
    messages = diff(Desired.empty(), desired)
    compile_s = time.perf_counter() - started
    flows = sum(1 for m in messages if isinstance(m, FlowMod))
    print(f"{CHAINS} chains: {flows} flows on {len(desired.dpids())} switches; "
          f"placed, compiled and diffed in {compile_s:.2f} s")

    port = testbed.free_port()
    app = osken_app.start(None, "127.0.0.1", port)
    state = emulator.up(topology, controller=f"tcp:127.0.0.1:{port}", run_dir=work / "fabric")
    try:
        dpids = {s.dpid for s in topology.switches}
        for _ in range(300):     # the switches connect within their 1 s reconnect backoff
            if app.connected() == dpids:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"switches did not connect: {app.connected()} of {dpids}")
        controller_s, baseline_s = [], []
        for _ in range(ROUNDS):
            clear(state)
            start = time.perf_counter()
            result = app.send(messages)
            controller_s.append(time.perf_counter() - start)
            if not result.ok:
                raise RuntimeError(f"the switches did not take the flows: {result}")
            installed = count_flows(state)
            clear(state)
            baseline_s.append(baseline(state, desired, work))
            if count_flows(state) != installed:
                raise RuntimeError(f"flow counts differ: controller {installed}, ovs-ofctl {count_flows(state)}")
    finally:
        emulator.down(work / "fabric")
    controller_rate = flows / min(controller_s)
    baseline_rate = flows / min(baseline_s)
    ratio = controller_rate / baseline_rate
    print(f"controller (os-ken, phases confirmed by barriers): {controller_rate:,.0f} flows/s "
          f"(best of {ROUNDS}: {min(controller_s) * 1000:.0f} ms)")
    print(f"ovs-ofctl --bundle add-flows (baseline):          {baseline_rate:,.0f} flows/s "
          f"(best of {ROUNDS}: {min(baseline_s) * 1000:.0f} ms)")
    print(f"ratio: {ratio:.2f}x (budget >= {BUDGET}x)")
    print(json.dumps({"bench": "flow_install", "value": round(controller_rate), "unit": "flows/s",
                      "budget": BUDGET, "ratio": round(ratio, 3), "ok": ratio >= BUDGET}), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # os-ken's listener thread cannot be stopped; end the process without waiting for it.
    os._exit(code)
