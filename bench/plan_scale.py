"""Plan 10,000 chains on a k=16 fat tree: placement, paths and compilation, from cold.

Fabric: fat_tree(16) (320 switches, 1,024 hosts) with 3 compute hosts per edge
switch (384, 64 instances each).  Chains (seeded, so every run plans the same):
from one host or one edge switch's hosts (a /29) to one server host, TCP to one
of a few ports, 1-3 hops, half of them symmetric, a quarter with two instances
on their first hop; all instances ready.  One hop in four is autoscaled (max 4
instances: its flows are pinned, see controller/core/compiler.py), the others
have a fixed count.  The worst case, every hop autoscaled, is measured too and
printed apart (it is not the figure).

Measured: ``place`` + ``compile_fabric`` (placement, paths, flows of every
chain) with the fabric's path cache cleared, best of 5 runs, in CPU seconds of
this process (the machine is shared; the wall time of the best run is printed
too).  Not in the figure, printed apart:

- the topology-level flows (table misses and normal forwarding: every host on
  every switch, the source-MAC table of compute switches: some 790,000 flows
  here), which depend on the topology only
  and are computed once per topology and cached by the compiler;
- the garbage collector's pass over the plan's new objects: the core pauses
  the collector while it builds (else every full collection re-scans the
  whole plan), so the process pays one pass later; the bench keeps the
  collector off across a whole run and measures that pass afterwards.

Baseline, measured in the same run: plain networkx shortest paths
(``nx.shortest_path``) for the same chains, ingress switch -> each hop's
compute switch -> egress switch, with the placement already known -- the path
computations alone, none of the flows.  ratio = measured / baseline.

The last line printed is the JSON result.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import random
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chains.model import Chain, Classifier, Hop, Scaling  # noqa: E402
from controller.core import compiler, fabric  # noqa: E402
from controller.core.placement import Placement, place  # noqa: E402
from topologies.generators import fat_tree  # noqa: E402
from topologies.graph import shortest_path, switch_graph  # noqa: E402
from topologies.model import Topology  # noqa: E402

CHAINS = 10_000
BUDGET = 1.0
RUNS = 5
FUNCTIONS = ("firewall", "monitor", "nat", "ids", "passthrough")
AUTOSCALED = 0.25            # the share of hops whose instance count scales


def make_chains(topology: Topology, n: int, seed: int = 16, autoscaled: float = AUTOSCALED) -> list[Chain]:
    """Chains whose classifiers never overlap at equal priority (the loader would refuse them).

    Each hop is autoscaled with probability ``autoscaled``; the draws of everything else do
    not depend on it, so the chains differ only in that.
    """
    scaled = random.Random(seed + 1)
    rnd = random.Random(seed)
    hosts = sorted(topology.hosts, key=lambda h: int(h.ip.ip))
    used: set[tuple[str, int, int, ipaddress.IPv4Network]] = set()   # (server, port, priority, client /29)
    chains: list[Chain] = []
    while len(chains) < n:
        client = rnd.choice(hosts)
        block = ipaddress.ip_network(f"{client.ip.ip}/29", strict=False)
        server = str(rnd.choice(hosts).ip.ip)
        port = rnd.choice((80, 443, 8080, 5432))
        priority = 100 + rnd.randrange(7)
        if (server, port, priority, block) in used:
            continue
        used.add((server, port, priority, block))
        src = block if rnd.random() < 0.5 else ipaddress.ip_network(f"{client.ip.ip}/32")
        hops = []
        for k in range(rnd.randint(1, 3)):
            function, low = rnd.choice(FUNCTIONS), 2 if k == 0 and rnd.random() < 0.25 else 1
            hops.append(Hop(f"h{k}", function, scaling=Scaling(low, 4 if scaled.random() < autoscaled else low)))
        chains.append(Chain(f"chain{len(chains)}", Classifier(src, ipaddress.ip_network(f"{server}/32"), 6, None,
                                                              (port, port)),
                            tuple(hops), symmetric=rnd.random() < 0.5, priority=priority))
    return chains


def plan(topology: Topology, chains: list[Chain]) -> tuple[Placement, compiler.Desired]:
    placement = place(topology, chains)
    ready = placement.by_id().keys()
    return placement, compiler.compile_fabric(topology, chains, placement, ready)


def measured_plan(topology: Topology, chains: list[Chain]) -> tuple[float, float, float, compiler.Desired]:
    """(CPU s, wall s, CPU s of the collector's deferred pass, result) of one plan with cold paths."""
    fabric.fabric_for.cache_clear()
    gc.collect()
    gc.disable()        # see the module docstring: the collector's deferred pass is measured apart
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        _, desired = plan(topology, chains)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        start = time.process_time()
        gc.collect(0)   # what the process pays later for the objects the plan allocated
        return cpu, wall, time.process_time() - start, desired
    finally:
        gc.enable()


def baseline(topology: Topology, chains: list[Chain], placement: Placement) -> float:
    graph = switch_graph(topology)
    switch_of = {c.name: c.switch for c in topology.computes}
    hosts = sorted(topology.hosts, key=lambda h: int(h.ip.ip))
    ends = {}
    for chain in chains:
        ends[chain.name] = (next(h.switch for h in hosts if h.ip.ip in chain.classifier.src),
                            next(h.switch for h in hosts if h.ip.ip in chain.classifier.dst))
    start = time.process_time()
    for chain in chains:
        ingress, egress = ends[chain.name]
        stops = [ingress] + [switch_of[placement[chain.name, k][0].compute] for k in range(len(chain.hops))]
        for a, b in zip(stops, stops[1:] + [egress]):
            shortest_path(graph, a, b)
    return time.process_time() - start


def main() -> None:
    topology = fat_tree(16, computes_per_edge=3)
    chains = make_chains(topology, CHAINS)
    start = time.process_time()
    base = compiler.compile_fabric(topology, [], Placement(), ()).flows
    topology_seconds = time.process_time() - start
    runs = [measured_plan(topology, chains) for _ in range(RUNS)]
    value, wall, collect_seconds, desired = min(runs, key=lambda run: run[0])
    placement = place(topology, chains)
    base_seconds = baseline(topology, chains, placement)
    steered = sum(1 for s in desired.status.values() if s == "steered")
    print(f"fabric: {len(topology.switches)} switches, {len(topology.hosts)} hosts, "
          f"{len(topology.computes)} compute hosts")
    print(f"topology-level flows (table misses, normal forwarding of every host on every switch): "
          f"{len(base)} in {topology_seconds:.3f} s CPU, once per topology, not in the figure")
    print(f"chains: {len(chains)} ({steered} steered), instances: {len(placement.by_id())}, "
          f"chain flows: {len(desired.flows) - len(base)}, all flows: {len(desired.flows)} "
          f"on {len(desired.dpids())} switches")
    print(f"plan (place + paths + compile), CPU s per run: {', '.join(f'{r[0]:.3f}' for r in runs)}; "
          f"best run wall: {wall:.3f} s")
    print(f"deferred garbage-collector pass over the best run's objects: {collect_seconds:.3f} s CPU, "
          "not in the figure")
    print(f"baseline (networkx shortest_path per chain leg, no placement, no flows): {base_seconds:.3f} s CPU")
    worst = make_chains(topology, CHAINS, autoscaled=1.0)
    worst_runs = [measured_plan(topology, worst)[0] for _ in range(3)]
    print(f"worst case, every hop autoscaled (not the figure): best {min(worst_runs):.3f} s CPU of "
          f"{', '.join(f'{r:.3f}' for r in worst_runs)}")
    ratio = round(value / base_seconds, 3) if base_seconds > 0 else None
    print(json.dumps({"bench": "plan_scale", "value": round(value, 3), "unit": "s", "budget": BUDGET,
                      "ratio": ratio, "ok": value < BUDGET}))


if __name__ == "__main__":
    main()
