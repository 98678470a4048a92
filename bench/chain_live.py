"""Benchmark: from ``POST /v1/chains`` of a 3-hop chain to all its flows confirmed, on fat-tree k=4.

The controller runs as its own process (``clicksteer controller``) in front
of the emulated fat-tree k=4 (20 Open vSwitch bridges) with one real agent
(emu backend) per compute host.  Each sample posts a new 3-hop chain whose
instances are already running: the bench boots them at the agents first,
under the ids and on the hosts the controller's placement will choose (the
planner is deterministic; the bench replays it and checks the answer).  The
clock runs from sending the POST (``?wait=10``) to its answer, which comes
once the chain is ``active``: its instances confirmed running by their
agents and every flow confirmed by the switches' barrier replies.

Budget: p50 under 50 ms.  There is no baseline to compare with (ratio null).

The last line printed is one JSON object (see bench/README conventions).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from chains import catalog  # noqa: E402 - after the path set-up above
from chains.loader import load_chains  # noqa: E402
from controller import testbed  # noqa: E402
from controller.agents import HttpAgentClient  # noqa: E402
from controller.client import ControllerClient  # noqa: E402
from controller.core.placement import Placement, place  # noqa: E402
from topologies import emulator  # noqa: E402
from topologies.loader import load_topology  # noqa: E402

SAMPLES = 30
WARMUP = 3
BUDGET_MS = 50.0
TOPO = Path(__file__).resolve().parent.parent / "topologies" / "fat-tree-k4.yaml"


def chain_yaml(i: int, src: str, dst: str) -> str:
    return f"""\
chains:
  - name: live{i:03d}
    classifier: {{src: {src}/32, dst: {dst}/32, protocol: tcp, dst_port: {5000 + i}}}
    hops:
      - {{name: fw, function: firewall, params: {{default: allow}}}}
      - {{name: mon, function: monitor}}
      - {{name: pass, function: passthrough}}
"""


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="cs-bench-live-"))
    topology = testbed.with_free_agent_ports(load_topology(TOPO))
    topo_file = testbed.write(topology, work / "topo.yaml")
    openflow, api = testbed.free_port(), testbed.free_port()
    children = [testbed.start_controller(topo_file, openflow, api, work)]
    client = ControllerClient(f"127.0.0.1:{api}")
    agents = {c.name: HttpAgentClient(c.agent) for c in topology.computes}
    hosts = topology.hosts
    samples_ms: list[float] = []
    posted = []
    try:
        state = emulator.up(topology, controller=f"tcp:127.0.0.1:{openflow}", run_dir=work / "fabric")
        children += testbed.start_agents(topology, state.run_dir, work)
        testbed.wait_switches(client, len(topology.switches))
        placement = Placement()
        for i in range(WARMUP + SAMPLES):
            # Clients and servers in different pods, so paths cross the core.
            text = chain_yaml(i, str(hosts[i % len(hosts)].ip.ip), str(hosts[(i + 5) % len(hosts)].ip.ip))
            chain = load_chains(text, "<bench>").chains[0]
            placement = place(topology, [*posted, chain], existing=placement.by_id())
            for k, hop in enumerate(chain.hops):
                for spec in placement[chain.name, k]:
                    config = catalog.render(hop.function, hop.params, instance_mac=spec.mac,
                                            uplink_mac=topology.compute_by_name[spec.compute].uplink_mac)
                    answer = agents[spec.compute].create(
                        {"id": spec.id, "chain": spec.chain, "hop": k, "function": hop.function, "config": config,
                         "interfaces": 1, "macs": [spec.mac]}, wait=True)
                    if answer["state"] != "running":
                        raise RuntimeError(f"instance {spec.id} did not boot: {answer}")
            posted.append(chain)
            start = time.perf_counter()
            view = client.ok("POST", "/v1/chains?wait=10", text, "application/yaml")["chains"][0]
            elapsed_ms = (time.perf_counter() - start) * 1000
            if view["state"] != "active":
                raise RuntimeError(f"chain {chain.name} is {view['state']}: {view['reason']}")
            chosen = {(i["id"], i["compute"]) for h in view["hops"] for i in h["instances"]}
            expected = {(s.id, s.compute) for k in range(3) for s in placement[chain.name, k]}
            if chosen != expected:
                raise RuntimeError(f"the controller placed {chosen}, the bench pre-booted {expected}")
            if i >= WARMUP:
                samples_ms.append(elapsed_ms)
    finally:
        for chain in posted:
            client.call("DELETE", f"/v1/chains/{chain.name}")
        testbed.release_instances(c.agent for c in topology.computes)  # agents keep instances across restarts: leave none behind
        for child in reversed(children):
            child.stop()
        if (work / "fabric" / emulator.STATE_FILE).exists():
            emulator.down(work / "fabric")
    p50 = statistics.median(samples_ms)
    p90 = statistics.quantiles(samples_ms, n=10)[-1]
    print(f"POST of a 3-hop chain to all flows confirmed, fat-tree k=4, {SAMPLES} samples: "
          f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, min {min(samples_ms):.1f} ms, max {max(samples_ms):.1f} ms")
    print(json.dumps({"bench": "chain_live", "value": round(p50, 2), "unit": "ms", "budget": BUDGET_MS,
                      "ratio": None, "ok": p50 < BUDGET_MS}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
