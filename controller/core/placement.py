"""Placement: which compute host runs each instance of each hop.

Cost model.  A chain's traffic goes from its ingress switches (those of the
hosts in the classifier's source block) through every hop to its egress
switches (the destination block's).  Putting all of a chain's hops on one
compute host C costs sum(dist(ingress, C)) + sum(dist(C, egress)), and by the
triangle inequality no spread over several hosts is shorter, so the planner
gives every new instance the cheapest compute switch with free capacity (ties
by switch name), and there the first compute host by name with room.  When
the best host is full the chain spills to the next ones: greedy, but
deterministic and cheap (costs are computed once per distinct (ingress,
egress) set).

Stability.  Instances that already exist (``existing``) keep their compute
host, id, MAC and label, so re-planning never moves running instances; they
are counted against capacity before anything new is placed.  An existing
instance is matched by (chain, hop name, index), so inserting or removing
other hops does not disturb it; its ``hop_index`` and ``function`` follow the
chain (if the function changed, the caller must replace the running
instance).  An instance whose compute host left the topology keeps its
identity and is placed again.  Chains are placed by priority (highest
first), then name; ids, MACs and labels of every ``existing`` instance stay
reserved for the whole plan, even of those being removed.

Each instance also gets its MPLS label here (the smallest free one), so a
label stays with its instance for the instance's whole life and re-planning
does not rewrite every flow of the fabric.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import reduce

from chains.model import Chain
from controller.core.cookies import MAX_HOPS, MAX_INSTANCES
from controller.core.errors import PlanError
from controller.core.fabric import Fabric, fabric_for
from controller.core.gcpause import gc_paused
from topologies.model import Topology

__all__ = ["InstanceSpec", "Placement", "PlanError", "place", "instance_count"]

MAX_ID = 40
FIRST_LABEL = 16             # 0..15 are reserved MPLS labels
LAST_LABEL = (1 << 20) - 1
_ID_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

Slot = tuple[str, int]       # (chain name, hop index)


@dataclass(frozen=True)
class InstanceSpec:
    """One middlebox instance: it serves hop ``hop`` (index ``hop_index``) of ``chain``."""

    id: str
    chain: str
    hop: str
    hop_index: int
    index: int               # 0, 1, ... within the hop
    compute: str             # compute host name
    mac: str                 # locally administered unicast, derived from the id
    function: str
    label: int               # the MPLS label that steers packets to this instance


class Placement(dict[Slot, tuple[InstanceSpec, ...]]):
    """(chain name, hop index) -> that hop's instances, by index."""

    def by_id(self) -> dict[str, InstanceSpec]:
        """Every instance by id (what ``place`` takes back as ``existing``)."""
        return {spec.id: spec for specs in self.values() for spec in specs}


def instance_count(chain: Chain, hop_index: int, counts: Mapping[Slot, int]) -> int:
    """How many instances a hop gets: the scaler's wish within the hop's scaling bounds."""
    scaling = chain.hops[hop_index].scaling
    wanted = counts.get((chain.name, hop_index), scaling.min)
    return max(scaling.min, min(scaling.max, wanted))


def place(topology: Topology, chains: Iterable[Chain],
          existing: Mapping[str, InstanceSpec] = {},
          counts: Mapping[Slot, int] = {}) -> Placement:
    """Place every chain's instances (``counts`` overrides a hop's scaling.min; see instance_count).

    Raises PlanError when a chain's instances do not fit in the remaining capacity.
    """
    with gc_paused():
        return _place(topology, chains, existing, counts)


def _place(topology: Topology, chains: Iterable[Chain], existing: Mapping[str, InstanceSpec],
           counts: Mapping[Slot, int]) -> Placement:
    fabric = fabric_for(topology)
    ordered = sorted(chains, key=lambda c: (-c.priority, c.name))
    _check_chains(ordered)
    capacity = {c.name: c.capacity for c in topology.computes}
    load: Counter[str] = Counter()
    names = _Names(topology, existing.values())
    old = {(s.chain, s.hop, s.index): s for s in existing.values()}

    wanted = {(chain.name, k): instance_count(chain, k, counts)
              for chain in ordered for k in range(len(chain.hops))}

    # Pass 1: keep what exists (and still has a compute host), before placing anything new.
    kept: dict[tuple[str, int, int], InstanceSpec] = {}
    if old:
        for chain in ordered:
            for k, hop in enumerate(chain.hops):
                for index in range(wanted[chain.name, k]):
                    spec = old.get((chain.name, hop.name, index))
                    if spec is not None and spec.compute in capacity:
                        kept[chain.name, k, index] = replace(spec, hop_index=k, function=hop.function)
                        load[spec.compute] += 1

    # Pass 2: place the rest, on the cheapest compute switch with room (ties by name).
    hosts_at: dict[str, list[str]] = {}
    for compute in sorted(topology.computes, key=lambda c: c.name):
        hosts_at.setdefault(compute.switch, []).append(compute.name)
    roomy = [i for i, switch in enumerate(fabric.compute_switches)
             if any(load[c] < capacity[c] for c in hosts_at[switch])]
    costs: dict[tuple[frozenset[str], frozenset[str]], list[int]] = {}
    placement = Placement()
    for chain in ordered:
        cost: list[int] | None = None
        at = -1                 # the chain's cheapest switch with room: stays so until it fills up
        for k, hop in enumerate(chain.hops):
            specs = []
            for index in range(wanted[chain.name, k]):
                spec = kept.get((chain.name, k, index))
                if spec is None:
                    if at < 0:
                        if not roomy:
                            raise PlanError(chain.name, f"no compute host has room for instance {index} "
                                                        f"of hop {hop.name!r}")
                        if cost is None:
                            cost = _cost(fabric, chain, costs)
                        at = min(roomy, key=cost.__getitem__)
                    switch_hosts = hosts_at[fabric.compute_switches[at]]
                    compute = next(c for c in switch_hosts if load[c] < capacity[c])
                    load[compute] += 1
                    if all(load[c] >= capacity[c] for c in switch_hosts):
                        roomy.remove(at)
                        at = -1
                    moved = old.get((chain.name, hop.name, index))  # its compute host is gone
                    if moved is not None:
                        spec = replace(moved, hop_index=k, function=hop.function, compute=compute)
                    else:
                        spec = names.new(chain.name, hop.name, k, index, compute, hop.function)
                specs.append(spec)
            placement[chain.name, k] = tuple(specs)
    return placement


def _check_chains(chains: list[Chain]) -> None:
    seen = set()
    for chain in chains:
        if chain.name in seen:
            raise PlanError(chain.name, "two chains have this name")
        seen.add(chain.name)
        if len(chain.hops) > MAX_HOPS:
            raise PlanError(chain.name, f"more than {MAX_HOPS} hops")
        for hop in chain.hops:
            if hop.scaling.max > MAX_INSTANCES:
                raise PlanError(chain.name, f"hop {hop.name!r}: more than {MAX_INSTANCES} instances")


def _cost(fabric: Fabric, chain: Chain,
          cache: dict[tuple[frozenset[str], frozenset[str]], list[int]]) -> list[int]:
    """Per compute switch (``fabric.compute_switches``): the chain's path length if all its hops ran there."""
    ingress = frozenset(h.switch for h in fabric.hosts_in(chain.classifier.src))
    egress = frozenset(h.switch for h in fabric.hosts_in(chain.classifier.dst))
    found = cache.get((ingress, egress))
    if found is None:
        ends = [fabric.compute_distances(s) for s in sorted(ingress)] + \
               [fabric.compute_distances(s) for s in sorted(egress)]
        found = reduce(_add, ends) if ends else [0] * len(fabric.compute_switches)
        cache[ingress, egress] = found
    return found


def _add(a: list[int], b: list[int]) -> list[int]:
    return list(map(operator.add, a, b))


class _Names:
    """Allocates ids, MACs and labels that collide with nothing in use (nor with the topology's MACs)."""

    def __init__(self, topology: Topology, existing: Iterable[InstanceSpec]) -> None:
        self.ids: set[str] = set()
        self.macs = {h.mac for h in topology.hosts} | {c.uplink_mac for c in topology.computes}
        self.labels: set[int] = set()
        for spec in existing:
            self.ids.add(spec.id)
            self.macs.add(spec.mac)
            self.labels.add(spec.label)
        self._next_label = FIRST_LABEL

    def new(self, chain: str, hop: str, hop_index: int, index: int, compute: str,
            function: str) -> InstanceSpec:
        attempt = 0
        while (iid := instance_id(chain, hop, index, attempt)) in self.ids:
            attempt += 1
        self.ids.add(iid)
        attempt = 0
        while (mac := instance_mac(iid, attempt)) in self.macs:
            attempt += 1
        self.macs.add(mac)
        while self._next_label in self.labels:
            self._next_label += 1
        if self._next_label > LAST_LABEL:
            raise PlanError(chain, "no MPLS label left")
        label = self._next_label
        self.labels.add(label)
        return InstanceSpec(iid, chain, hop, hop_index, index, compute, mac, function, label)


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


def instance_id(chain: str, hop: str, index: int, attempt: int = 0) -> str:
    """"CHAIN-HOP-INDEX" when that is short and plain; else a readable prefix and a hash.

    ``attempt`` > 0 gives the alternatives used after a collision.
    """
    plain = f"{chain}-{hop}-{index}"
    if attempt == 0 and len(plain) <= MAX_ID and _ID_OK.match(plain):
        return plain
    key = "\0".join((chain, hop, str(index), str(attempt)))
    tail = f"-{_digest(key, 4).hex()}-{index}"
    head = re.sub(r"[^A-Za-z0-9_.-]", "_", chain)[:MAX_ID - len(tail)] or "i"
    if not head[0].isalnum():
        head = "i" + head[1:]
    return head + tail


def instance_mac(instance_id: str, attempt: int = 0) -> str:
    """A locally administered unicast MAC (0a:...) from the id; ``attempt`` > 0 after a collision."""
    raw = _digest(instance_id if attempt == 0 else f"{instance_id}#{attempt}", 5)
    return "0a:" + raw.hex(":")
