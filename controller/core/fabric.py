"""The fabric as a graph: distances and deterministic shortest paths between switches.

Distances come from networkx breadth-first search (through topologies.graph,
the one module that imports networkx); among equally short paths we always
take the one whose next switch has the smallest name, so every part of the
core (and every run) picks the same path.  Because that choice depends only on the
current switch and the target, the paths towards one target form a tree:
flows that forward by "where is this packet going" never disagree, whichever
switch the packet came from.
"""

from __future__ import annotations

import bisect
import ipaddress
from functools import lru_cache

from controller.core.errors import PlanError
from controller.core.ofmsg import Output
from topologies.graph import hop_counts, switch_graph
from topologies.model import Host, Topology


class Fabric:
    """Read-only views of one Topology that the planner and compiler share (cached per topology)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.graph = switch_graph(topology)
        self._ports: dict[tuple[str, str], int] = {}
        self._outputs: dict[tuple[str, str], tuple[Output]] = {}
        for link in topology.links:
            self._ports[link.a, link.b] = link.a_port
            self._ports[link.b, link.a] = link.b_port
        self._neighbours = {n: sorted(self.graph.adj[n]) for n in self.graph}
        self._distances: dict[str, dict[str, int]] = {}
        self._next_hops: dict[str, dict[str, str]] = {}
        self._compute_distances: dict[str, list[int]] = {}
        self._hosts_in: dict[tuple[int, int], tuple[Host, ...]] = {}
        self.compute_switches = sorted({c.switch for c in topology.computes})
        self._hosts_by_ip = sorted(topology.hosts, key=lambda h: int(h.ip.ip))
        self._host_ips = [int(h.ip.ip) for h in self._hosts_by_ip]
        self.ip = {h.name: str(h.ip.ip) for h in topology.hosts}      # host name -> address text

    def compute_distances(self, source: str) -> list[int]:
        """Hop counts from ``source`` to each of ``compute_switches`` (unreachable: more than any path)."""
        found = self._compute_distances.get(source)
        if found is None:
            dist = self.distances(source)
            far = len(self.topology.switches)
            found = self._compute_distances[source] = [dist.get(s, far) for s in self.compute_switches]
        return found

    def distances(self, source: str) -> dict[str, int]:
        """Hop counts from ``source`` to every switch it can reach."""
        found = self._distances.get(source)
        if found is None:
            found = self._distances[source] = hop_counts(self.graph, source)
        return found

    def next_hops(self, target: str) -> dict[str, str]:
        """For every switch that reaches ``target`` (but the target): the neighbour to send to."""
        found = self._next_hops.get(target)
        if found is None:
            dist = self.distances(target)
            found = {}
            for node, d in dist.items():
                if d:
                    found[node] = next(n for n in self._neighbours[node] if dist.get(n) == d - 1)
            self._next_hops[target] = found
        return found

    def path(self, source: str, target: str) -> list[str]:
        """The switches from ``source`` to ``target``, both included."""
        hops = self.next_hops(target)
        if source != target and source not in hops:
            raise PlanError("", f"no path from switch {source} to switch {target}")
        path = [source]
        while path[-1] != target:
            path.append(hops[path[-1]])
        return path

    def port(self, switch: str, neighbour: str) -> int:
        """The port of ``switch`` that faces ``neighbour``."""
        return self._ports[switch, neighbour]

    def output_to(self, switch: str, neighbour: str) -> tuple[Output]:
        """The actions "send to ``neighbour``" at ``switch``, shared by every flow that needs them."""
        found = self._outputs.get((switch, neighbour))
        if found is None:
            found = self._outputs[switch, neighbour] = (Output(self._ports[switch, neighbour]),)
        return found

    def hosts_in(self, network: ipaddress.IPv4Network) -> tuple[Host, ...]:
        """The hosts whose address lies in ``network``, by address (a bisect, not a scan)."""
        first = int(network.network_address)
        key = (first, network.prefixlen)       # hashing an IPv4Network is slow; this is not
        found = self._hosts_in.get(key)
        if found is None:
            lo = bisect.bisect_left(self._host_ips, first)
            hi = bisect.bisect_right(self._host_ips, first + network.num_addresses - 1)
            found = self._hosts_in[key] = tuple(self._hosts_by_ip[lo:hi])
        return found


@lru_cache(maxsize=4)
def fabric_for(topology: Topology) -> Fabric:
    """The Fabric of a topology; re-planning on the same topology reuses its distances."""
    return Fabric(topology)
