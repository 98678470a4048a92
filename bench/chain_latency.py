"""Benchmark: the latency a 3-hop chain adds, per hop, on the emulated leaf-spine fabric.

The stage is the demo's (controller/demo.py): controller, agents and fabric as
in ``clicksteer demo``.  One chain steers ICMP from client1 to server1 through
the demo's web chain's three functions (firewall, monitor, rate-limiter);
server2 sits on the same leaf as server1, so pings to it take the same
switches without any chain: the direct path.  Pings alternate between the two
in rounds (same run, same load), and the added latency per hop is

    (median RTT through the chain - median RTT direct) / 3

The chain is not symmetric: only the echo requests cross the three instances,
the replies come back directly, so this is one traversal per hop.  The ratio
is the chain's median RTT over the direct one.  There is no budget (an
emulated instance is a Python Click runtime, not a ClickOS VM).

The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from controller.demo import demo_topology, ping, start_stage, teardown  # noqa: E402 - after the path set-up
from topologies import emulator  # noqa: E402

ROUNDS = 10
PINGS = 50                   # per round and path
INTERVAL_S = 0.005
HOPS = 3

CHAIN = """
chains:
  - name: icmp-three
    description: pings from client1 to server1 through the web chain's three functions
    classifier: {src: 10.0.1.1/32, dst: 10.0.2.1/32, protocol: icmp}
    priority: 300
    on_failure: closed
    hops:
      - {name: fw, function: firewall, params: {default: deny, rules: [{action: allow, protocol: icmp}]}}
      - {name: mon, function: monitor}
      - {name: limit, function: rate-limiter, params: {pps: 20000}}
"""


def main() -> int:
    if os.geteuid() != 0:
        print("bench/chain_latency.py: needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="clicksteer-bench-latency-"))
    fabric_dir = work / "fabric"
    stage = None
    chain_rtts: list[float] = []
    direct_rtts: list[float] = []
    try:
        stage = start_stage(demo_topology(), work,
                            lambda topo, ctl: emulator.up(topo, controller=ctl, run_dir=fabric_dir))
        view = stage.apply(CHAIN)[0]
        if view["state"] != "active":
            raise RuntimeError(f"chain not active: {view['reason']}")
        client = stage.ns("client1")
        through, direct = stage.ip("server1"), stage.ip("server2")
        ping(client, through, 5)        # ARP and first packets out of the way
        ping(client, direct, 5)
        sent = 0
        for _ in range(ROUNDS):
            for dst, rtts in ((through, chain_rtts), (direct, direct_rtts)):
                result = ping(client, dst, PINGS, INTERVAL_S)
                rtts += result.rtts_ms
                sent += PINGS
        counted = stage.counters("icmp-three")
        crossed = [h["instances"][0]["counters"]["count_out"]["packets"] for h in counted]
        placed = ", ".join(f"{h['name']}@{h['instances'][0]['compute']}" for h in counted)
    finally:
        teardown(stage, fabric_dir)
    shutil.rmtree(work, ignore_errors=True)
    answered = len(chain_rtts) + len(direct_rtts)
    via, plain = statistics.median(chain_rtts), statistics.median(direct_rtts)
    per_hop = (via - plain) / HOPS
    print(f"3-hop chain ({placed}) vs direct path, {ROUNDS} rounds of {PINGS} pings each way, "
          f"{answered}/{sent} answered; every hop forwarded {crossed} echo requests")
    print(f"median RTT: through the chain {via:.3f} ms, direct {plain:.3f} ms; "
          f"added per hop {per_hop:.3f} ms (one traversal)")
    ok = answered == sent and min(crossed) >= ROUNDS * PINGS
    print(json.dumps({"bench": "chain_latency", "value": round(per_hop, 3), "unit": "ms", "budget": None,
                      "ratio": round(via / plain, 2), "ok": ok}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
