"""Flow compiler: topology + chains + placement + ready instances -> the desired flows of every switch.

Pipeline (the same on every switch)::

    table 0  STEER    chain classification at host-facing ports, MPLS transit,
                      hand-over to instances, instance returns, ARP answered
                      for NAT addresses
                      miss -> goto 2
    table 1  RESTORE  entered only at a chain's exit: eth_src := the real MAC of
                      the host that owns ipv4_src (the virtual MAC of a NAT
                      address); goto 2 (miss -> goto 2); filled on the switches
                      of compute hosts, for every host and NAT address
    table 2  FORWARD  normal forwarding by destination host, along the
                      deterministic shortest path: IPv4 by ipv4_dst (the last
                      switch also sets eth_dst to the host's MAC), ARP by
                      arp_tpa (so ARP is unicast to its owner, no flooding)
                      miss -> drop

A chain's path, for a packet from a host in the classifier's source block:

1. ingress (table 0, at the host's port): match in_port, ipv4_src = the host,
   ipv4_dst in the destination block, protocol and ports.  The first hop's
   instance is chosen here (see spreading), then the packet is *steered* to it.
2. steering to instance Y from switch S: if Y's compute host hangs off S, set
   eth_dst := Y's MAC, eth_src := the compute host's uplink MAC and output to
   the compute port (OFPP_IN_PORT when that is where the packet came from);
   otherwise push an MPLS label -- Y's own label, allocated by the planner --
   and send it towards Y's switch, where transit switches forward by label and
   Y's switch pops it and hands the plain packet in as above.
3. return (table 0): the instance sends the packet back from its MAC to the
   uplink MAC; match (in_port = compute port, eth_src = Y's MAC) and steer to
   the next hop's instance, or, after the last hop, exit: goto table 1, which
   restores eth_src, then table 2, which forwards to the destination and
   restores eth_dst on the last switch.  Endpoints never see steering.

NAT addresses.  A ``nat`` hop translates sources to an address that may be no
host's.  Each such address gets a virtual MAC (see ``virtual_mac``), and the
chain that uses it (the first by name, when several do) owns two kinds of
flows: on the switches of the hosts in its destination block, an ARP responder
in table 0 -- a request from host h for the address is turned into the reply
in place (set-field on eth and ARP fields, output IN_PORT), so those hosts can
reach the address and nothing floods; and in table 1 of every compute switch,
eth_src := the virtual MAC for packets from the address, so a packet leaving
the NAT looks as if the address owned a NIC.  Replies sent to the virtual MAC
need nothing more: classification matches IP fields only.

Symmetric chains also classify replies (addresses and ports swapped) at the
destination block's hosts and steer them through the same instances in
reverse order.  Their return flows tell the two directions apart by matching
the classifier fields (forward wins when a packet could be both).

Spreading.  Select groups are not used: OVS hashes no UDP ports, and the
choice must be the same at every switch and in both directions.  Instead the
*client* address (ipv4_src going forward, ipv4_dst coming back) picks the
instance: with n ready instances and b = bits to count n, slot = the b low
bits of the client address and instance = slot mod n.  Ingress flows match the
exact source host, so they know the slot; return flows and reverse ingress
flows match the b low bits with a masked ipv4 match (standard in OpenFlow
1.3).  Flows are thus spread per client host, both directions of a flow cross
the same instance, and UDP behaves like TCP.

Autoscaled hops.  A hop whose ``scaling.max`` exceeds its ``min`` changes its
number of instances while flows cross it, so spreading by client address
would move running flows.  Its instances are chosen per flow instead, and a
flow keeps the instance it started on (migration avoidance).  Every place
that steers into such a hop (a *stage*: chain, hop, direction) runs, on its
switch, with Open vSwitch extensions::

    reg1, reg2 := the stage's key (see stage_text); resubmit(PIN); resubmit(HANDOFF)
    table 3  PIN      learned: this flow's 5-tuple and stage -> reg0 := label
                      else, per protocol (TCP, UDP, other IP) and stage:
                      multipath(symmetric hash, n pickable instances) -> reg3;
                      resubmit(PICK)
    table 4  PICK     (stage, reg3 = link i): learn the flow's pin for the
                      i-th pickable instance, reg0 := its label
    table 5  HANDOFF  (stage, reg0 = label) -> the steering to that instance
                      (hand-in or MPLS push), as for a fixed hop; else, per
                      stage: a pin to an instance the stage no longer has
                      (a chain re-created, a missed deletion) picks again

A stage with a single instance needs no choice: its steering flows learn
the pin themselves (or through table 3, when they do not match the protocol)
and steer straight to the instance, so pins exist before a scale-out.  The
hash is symmetric, so both directions of a new flow pick the same
instance; pins (idle timeout ``PIN_IDLE_S``, or ``PIN_FIN_IDLE_S`` after a TCP
FIN) keep a flow on its instance when instances are added, and on a
*draining* instance (see ``compile_fabric``), which is no longer picked but
keeps its hand-over and return flows until its flows are gone.  The
learned pins carry their instance's cookie; when an instance's hand-over
goes, the diff deletes its pins first (see controller/core/diff.py), so
that its flows pick again before its return flows go.

Port ranges.  OpenFlow 1.3 has no range match.  A range of at most
``EXACT_PORTS`` ports becomes exact matches; a wider one becomes the minimal
set of (value, mask) prefixes, which needs masked tcp/udp port matches (an
Open vSwitch extension) -- the price of not installing thousands of flows.

Priorities.  Chains are ordered by their ``priority`` (the value itself when
every chain's is below ``MAX_LEVELS``, else the dense rank of the distinct
values), each level owning ``LEVEL_STRIDE`` OpenFlow priorities above the
lower tables' ones; within it the forward direction wins
over the reverse, then more spreading bits win (so a hop being scaled never
leaves two overlapping flows of equal priority while the diff is applied).

Not ready.  Only instances in ``ready`` get traffic.  A hop without a ready
instance is bypassed (``on_failure: open``) or the chain's traffic is dropped
at its ingress (``closed``).  An open chain with no ready hop at all still
classifies its traffic and forwards it normally, so that a lower-priority
chain never picks it up meanwhile.

Ranks.  Every flow gets a rank: its distance, in flows, from the end of any
packet's journey through it (forwarding < restore < label transit and
hand-over < returns, later hops first < classification), and the dropping
classification of a closed chain comes last of all.  ``diff`` installs in
increasing and deletes in decreasing rank, which is make-before-break.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import product

from chains.model import PROTOCOLS, Chain, PortRange
from controller.core import cookies
from controller.core.errors import PlanError
from controller.core.fabric import Fabric, fabric_for
from controller.core.gcpause import gc_paused
from controller.core.ofmsg import (OFPP_IN_PORT, Action, Flow, Group, Learn, MatchValue, Multipath, Output, PopMpls,
                                   PushMpls, Resubmit, SetField, match)
from controller.core.placement import InstanceSpec, Placement
from topologies.model import ComputeHost, Host, Topology

TABLE_STEER = 0
TABLE_RESTORE = 1
TABLE_FORWARD = 2
TABLE_PIN = 3
TABLE_PICK = 4
TABLE_HANDOFF = 5

PRIO_MISS = 0
PRIO_FORWARD = 100           # tables 1 and 2
PRIO_RETURN = 500            # + 16 if forward + spreading bits
PRIO_ARP_REPLY = 800         # ARP for NAT addresses, answered in table 0 (no IP flow overlaps it)
PRIO_DELIVER = 900           # MPLS transit and hand-over
PRIO_CLASSIFY = 1000         # + LEVEL_STRIDE * chain level + 16 if forward + spreading bits
PRIO_PINNED = 300            # learned pins, table 3
PRIO_PICK_L4 = 200           # tables 3 and 4: TCP and UDP flows (pinned by their ports)
PRIO_PICK_IP = 100           # tables 3 and 4: other IP flows (pinned by their addresses)
PRIO_HANDOFF = 100           # table 5; + 1 when the packet came in on the instance's own port
PRIO_REPICK = 50             # table 5: a stale pin
LEVEL_STRIDE = 32
MAX_LEVELS = (0xFFFF - PRIO_CLASSIFY) // LEVEL_STRIDE

ETH_IP = 0x0800
ETH_ARP = 0x0806
ETH_MPLS = 0x8847
ARP_REQUEST, ARP_REPLY = 1, 2
EXACT_PORTS = 16
STAGE_RANKS = 4              # ranks per chain stage: returns, then an autoscaled stage's hand-over, pick, pin
PIN_IDLE_S = 30              # a pinned flow silent this long picks again (a new flow, as far as we know)
PIN_FIN_IDLE_S = 2           # after a TCP FIN or RST
REG_LABEL, REG_STAGE_HI, REG_STAGE_LO, REG_LINK = "reg0", "reg1", "reg2", "reg3"
_PickProtocol = tuple[int | None, int, tuple[str, ...]]       # (ip_proto or None: other, priority, port fields)
_PICK_PROTOCOLS: tuple[_PickProtocol, ...] = ((PROTOCOLS["tcp"], PRIO_PICK_L4, ("tcp_src", "tcp_dst")),
                                              (PROTOCOLS["udp"], PRIO_PICK_L4, ("udp_src", "udp_dst")),
                                              (None, PRIO_PICK_IP, ()))
_PINNED_BY_PORTS = (PROTOCOLS["tcp"], PROTOCOLS["udp"])

FlowKey = tuple[int, int, int, tuple[tuple[str, MatchValue], ...]]
Items = tuple[tuple[str, MatchValue], ...]
L4 = tuple[Items, Items]                 # (ip_proto item or nothing, port items)
GroupKey = tuple[int, int]


class Paths(Mapping[str, tuple[str, ...]]):
    """Chain name -> its display path, worked out when first read (most plans are never shown)."""

    def __init__(self) -> None:
        self._pending: dict[str, Callable[[], tuple[str, ...]]] = {}
        self._known: dict[str, tuple[str, ...]] = {}

    def add(self, name: str, path: Callable[[], tuple[str, ...]]) -> None:
        self._pending[name] = path

    def __getitem__(self, name: str) -> tuple[str, ...]:
        found = self._known.get(name)
        if found is None:
            found = self._known[name] = self._pending[name]()
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._pending)

    def __len__(self) -> int:
        return len(self._pending)


@dataclass
class Desired:
    """What every switch should hold, plus what the operator wants to see about it.

    ``ranks`` orders installation (see the module docstring); ``paths`` is, per
    steered chain, the forward path of its first source host to its first
    destination host: host, switches, instance ids, switches, host.
    ``status`` says per chain whether and how it is steered.
    """

    flows: dict[FlowKey, Flow] = field(default_factory=dict)
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    ranks: dict[FlowKey, int] = field(default_factory=dict)
    paths: Paths = field(default_factory=Paths)
    chain_ids: dict[str, int] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    nat_macs: dict[str, str] = field(default_factory=dict)    # NAT address -> its virtual MAC

    @classmethod
    def empty(cls) -> Desired:
        return cls()

    def for_dpid(self, dpid: int) -> Desired:
        """Only the flows and groups of one switch (for a switch that (re)connects)."""
        flows = {k: f for k, f in self.flows.items() if k[0] == dpid}
        return Desired(flows, {k: g for k, g in self.groups.items() if k[0] == dpid},
                       {k: self.ranks[k] for k in flows}, self.paths, dict(self.chain_ids),
                       dict(self.status), dict(self.nat_macs))

    def dpids(self) -> set[int]:
        return {k[0] for k in self.flows} | {k[0] for k in self.groups}


def compile_fabric(topology: Topology, chains: Iterable[Chain], placement: Placement,
                   ready: Collection[str], draining: Collection[str] = ()) -> Desired:
    """The desired state of the whole fabric (see the module docstring).

    ``draining`` instances of autoscaled hops get no new flows but keep those pinned to them.
    """
    with gc_paused():
        return _compile(topology, sorted(chains, key=lambda c: c.name), placement, ready, draining)


def is_autoscaled(chain: Chain, hop_index: int) -> bool:
    """Whether the hop's instance count may change while it runs (its flows are then pinned)."""
    scaling = chain.hops[hop_index].scaling
    return scaling.max > scaling.min


def _compile(topology: Topology, chains: list[Chain], placement: Placement, ready: Collection[str],
             draining: Collection[str]) -> Desired:
    fabric = fabric_for(topology)
    base_flows, base_ranks = _base(topology)
    desired = Desired(dict(base_flows), {}, dict(base_ranks), Paths(),
                      cookies.chain_ids(c.name for c in chains), {})
    levels = _levels({c.priority for c in chains})
    compiler = _ChainCompiler(fabric, desired, draining)
    compiler.nat_addresses(chains, placement)
    for chain in chains:
        compiler.chain(chain, placement, ready, levels[chain.priority])
    return desired


def _levels(priorities: set[int]) -> dict[int, int]:
    """Chain priority -> level: the priority itself when all fit, else the dense rank.

    Using the priority itself keeps a chain's flows where they are when other
    chains come and go; ranks would shift, and for a moment a chain's old flows
    and another's new ones could overlap at equal priority.
    """
    if max(priorities, default=0) < MAX_LEVELS:
        return {p: p for p in priorities}
    if len(priorities) > MAX_LEVELS:
        raise PlanError("", f"more than {MAX_LEVELS} distinct chain priorities")
    return {p: i for i, p in enumerate(sorted(priorities))}


# ---------------------------------------------------------------- normal forwarding


@lru_cache(maxsize=4)
def _base(topology: Topology) -> tuple[dict[FlowKey, Flow], dict[FlowKey, int]]:
    """Table misses, source restoration and normal forwarding: they depend on the topology only.

    Cached because a fabric of a thousand hosts has some 10^5 of them; callers copy.
    """
    fabric = fabric_for(topology)
    flows: dict[FlowKey, Flow] = {}
    ranks: dict[FlowKey, int] = {}
    dpid = {s.name: s.dpid for s in topology.switches}

    def add(flow: Flow, rank: int) -> None:
        flows[flow.key] = flow
        ranks[flow.key] = rank

    normal = cookies.NORMAL
    for switch in topology.switches:
        add(Flow(switch.dpid, TABLE_STEER, PRIO_MISS, (), (), TABLE_FORWARD, normal), 0)
        add(Flow(switch.dpid, TABLE_RESTORE, PRIO_MISS, (), (), TABLE_FORWARD, normal), 0)
        add(Flow(switch.dpid, TABLE_FORWARD, PRIO_MISS, (), (), None, normal), 0)
    for host in topology.hosts:
        ip = str(host.ip.ip)
        to_ip = match(eth_type=ETH_IP, ipv4_dst=ip)
        to_arp = match(eth_type=ETH_ARP, arp_tpa=ip)
        target = dpid[host.switch]
        add(Flow(target, TABLE_FORWARD, PRIO_FORWARD, to_ip,
                 (SetField("eth_dst", host.mac), Output(host.port)), None, normal), 0)
        add(Flow(target, TABLE_FORWARD, PRIO_FORWARD, to_arp, (Output(host.port),), None, normal), 0)
        distances = fabric.distances(host.switch)
        for switch, nxt in fabric.next_hops(host.switch).items():
            out = fabric.output_to(switch, nxt)
            rank = distances[switch]
            add(Flow(dpid[switch], TABLE_FORWARD, PRIO_FORWARD, to_ip, out, None, normal), rank)
            add(Flow(dpid[switch], TABLE_FORWARD, PRIO_FORWARD, to_arp, out, None, normal), rank)
    # Source restoration, where chains may exit: on the switches of compute hosts.  It depends
    # on the hosts only, so chain updates never touch it.
    restore_rank = len(topology.switches) + 1
    for switch in sorted({c.switch for c in topology.computes}):
        for host in topology.hosts:
            add(Flow(dpid[switch], TABLE_RESTORE, PRIO_FORWARD, match(eth_type=ETH_IP, ipv4_src=fabric.ip[host.name]),
                     (SetField("eth_src", host.mac),), TABLE_FORWARD, normal), restore_rank)
    return flows, ranks


# ---------------------------------------------------------------- chains


def _ip(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _masked_ip(net: ipaddress.IPv4Network | None, slot: int, bits: int) -> MatchValue | None | bool:
    """The ipv4 match for "in ``net`` with low ``bits`` bits = ``slot``".

    Returns None when that is any address (no match field), False when the
    two constraints contradict each other (no packet can match).
    """
    if bits == 0:
        return _net_field(net)
    value, mask = (int(net.network_address), int(net.netmask)) if net is not None else (0, 0)
    low = (1 << bits) - 1
    if (value ^ slot) & mask & low:
        return False
    value, mask = (value & mask) | slot, mask | low
    if mask == 0:
        return None
    if mask == 0xFFFFFFFF:
        return _ip(value)
    return _ip(value), _ip(mask)


def _bits(n: int) -> int:
    return (n - 1).bit_length()


def _port_values(ports: PortRange) -> list[MatchValue]:
    """Exact ports for a small range, else the minimal (value, mask) prefix cover."""
    lo, hi = ports
    if hi - lo < EXACT_PORTS:
        return list(range(lo, hi + 1))
    out: list[MatchValue] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while lo + size - 1 > hi:
            size //= 2
        out.append(lo if size == 1 else (lo, 0xFFFF & ~(size - 1)))
        lo += size
    return out


@lru_cache(maxsize=4096)
def _l4_matches(protocol: int | None, src_port: PortRange | None, dst_port: PortRange | None,
                forward: bool) -> tuple[L4, ...]:
    """Protocol and port fields of one direction: one (protocol items, port items) pair per flow needed.

    Match tuples are built by concatenation in canonical (sorted) field order --
    eth_*, in_port, ip_proto, ipv4_dst, ipv4_src, then ports -- which is faster
    than sorting each one; a test checks that every match comes out sorted.
    """
    if protocol is None:
        if src_port is not None or dst_port is not None:
            raise PlanError("", "ports given without a protocol")
        return (((), ()),)
    fields: dict[str, list[MatchValue]] = {"ip_proto": [protocol]}
    if src_port is not None or dst_port is not None:
        prefix = {PROTOCOLS["tcp"]: "tcp", PROTOCOLS["udp"]: "udp"}.get(protocol)
        if prefix is None:
            raise PlanError("", f"ports given for protocol {protocol}")
        src, dst = (f"{prefix}_src", f"{prefix}_dst") if forward else (f"{prefix}_dst", f"{prefix}_src")
        if src_port is not None:
            fields[src] = _port_values(src_port)
        if dst_port is not None:
            fields[dst] = _port_values(dst_port)
    ports = sorted(n for n in fields if n != "ip_proto")
    proto = (("ip_proto", protocol),)
    return tuple((proto, tuple(zip(ports, values))) for values in product(*(fields[n] for n in ports)))


@dataclass
class _Direction:
    forward: bool
    src: ipaddress.IPv4Network           # where packets of this direction come from
    dst: ipaddress.IPv4Network
    src_hosts: tuple[Host, ...]          # the topology's hosts in ``src``
    src_field: MatchValue | None         # ``src`` and ``dst`` as ipv4 match values
    dst_field: MatchValue | None
    l4: tuple[L4, ...]
    stages: list[tuple[InstanceSpec, ...]]   # ready instances per active hop, in crossing order

    @property
    def client(self) -> str:
        """The field that holds the client's address (it picks instances)."""
        return "ipv4_src" if self.forward else "ipv4_dst"


def _net_field(net: ipaddress.IPv4Network | None) -> MatchValue | None:
    """An ipv4 match for a block; None for "any"."""
    return None if net is None else _block_field(int(net.network_address), net.prefixlen)


@lru_cache(maxsize=4096)
def _block_field(address: int, prefixlen: int) -> MatchValue | None:
    # Keyed by integers: hashing an IPv4Network costs more than the rest of this function.
    if prefixlen == 0:
        return None
    if prefixlen == 32:
        return _ip(address)
    return _ip(address), _ip((0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF)


class _Stage:
    """One autoscaled stage (chain, hop, direction) as the compiler needs it on every switch."""

    def __init__(self, key: int, cid: int, instances: tuple[InstanceSpec, ...], draining: Collection[str],
                 protocols: tuple[_PickProtocol, ...]) -> None:
        self.key = key
        self.cid = cid
        self.instances = instances
        self.protocols = protocols           # what its flows are pinned by
        # A draining instance keeps its pinned flows but is picked for no new one; the
        # service never drains a hop's last instance.
        self.pickable = tuple(s for s in instances if s.id not in draining) or instances
        high, low = key >> 32, key & 0xFFFFFFFF
        self.match: Items = (("reg1", high), ("reg2", low))
        self.prefix: tuple[Action, ...] = (SetField(REG_STAGE_HI, high), SetField(REG_STAGE_LO, low))
        self.cookies = {s.id: cookies.cookie(cid, s.hop_index, s.index) for s in instances}
        self._learns: dict[tuple[int | None, str], Learn] = {}

    def learn(self, protocol: int) -> Learn | None:
        """The pin a flow of ``protocol`` learns for the single instance (None: not one the stage takes)."""
        for option in self.protocols:
            if option[0] == protocol or option[0] is None and protocol not in _PINNED_BY_PORTS:
                return self._learn(option, self.pickable[0])
        return None

    def _learn(self, option: _PickProtocol, spec: InstanceSpec) -> Learn:
        found = self._learns.get((option[0], spec.id))
        if found is None:
            protocol, _, ports = option
            copy = ("eth_type", "ip_proto", "ipv4_src", "ipv4_dst", *ports, REG_STAGE_HI, REG_STAGE_LO)
            fin = PIN_FIN_IDLE_S if protocol == PROTOCOLS["tcp"] else 0
            found = self._learns[option[0], spec.id] = Learn(TABLE_PIN, PRIO_PINNED, self.cookies[spec.id],
                                                             PIN_IDLE_S, copy, ((REG_LABEL, spec.label),), fin)
        return found

    def flows(self) -> list[tuple[int, int, Items, tuple[Action, ...], int, int]]:
        """Its table flows, any switch's: (table, priority, match, actions, cookie, rank below the
        steering flows')."""
        hop_cookie = cookies.cookie(self.cid, self.instances[0].hop_index)
        pick = (Multipath(len(self.pickable), REG_LINK), Resubmit(TABLE_PICK))
        out = []
        for option in self.protocols:
            protocol, priority, _ = option
            # Matches in canonical (sorted) order: eth_type, ip_proto, reg1, reg2, reg3.
            head: Items = (("eth_type", ETH_IP),) + ((("ip_proto", protocol),) if protocol is not None else ())
            if len(self.instances) == 1:
                out.append((TABLE_PIN, priority, head + self.match, (self._learn(option, self.pickable[0]),),
                            hop_cookie, 1))
                continue
            out.append((TABLE_PIN, priority, head + self.match, pick, hop_cookie, 1))
            for link, spec in enumerate(self.pickable):
                out.append((TABLE_PICK, priority, head + self.match + (("reg3", link),),
                            (self._learn(option, spec), SetField(REG_LABEL, spec.label)), self.cookies[spec.id], 2))
        if len(self.instances) > 1:
            # Re-picking learns a fresh pin over a stale one (same match), then hands over.
            out.append((TABLE_HANDOFF, PRIO_REPICK, self.match, (*pick, Resubmit(TABLE_HANDOFF)), hop_cookie, 1))
        return out


class _ChainCompiler:
    def __init__(self, fabric: Fabric, desired: Desired, draining: Collection[str] = ()) -> None:
        self.fabric = fabric
        self.draining = draining
        self.desired = desired
        self.flows, self.ranks = desired.flows, desired.ranks
        self.dpid = {s.name: s.dpid for s in fabric.topology.switches}
        self.compute = fabric.topology.compute_by_name
        self.host_int = {h.name: int(h.ip) for h in fabric.topology.hosts}   # IPv4Interface.ip builds an object
        n = len(fabric.topology.switches)
        self.rank_restore = n + 1            # as the topology's own restore flows
        self.rank_label = n + 2              # hand-over; transit adds its distance
        # Exit; each earlier stage adds STAGE_RANKS, room for the pin, pick and hand-over
        # flows of an autoscaled stage between its instances' returns and the flows that
        # steer into it (see _stage_flows).
        self.rank_return = 2 * n + 3
        self.rank_drop = self.rank_return + STAGE_RANKS * (cookies.MAX_HOPS + 1) + 1
        self.labelled: set[tuple[int, str]] = set()
        self.current = ""                    # the chain being compiled, for errors
        self.steering: dict[tuple[str, str, bool], tuple[Action, ...]] = {}
        self.autoscaled: set[int] = set()    # hop indexes of the chain being compiled
        self.chain_now: Chain | None = None  # the chain being compiled, and of its autoscaled stages:
        self.chain_text = ""                 # what their keys hash (see stage_text)
        self.pick_protocols: tuple[_PickProtocol, ...] = ()   # what they pin by
        self.stage_cache: dict[tuple[int, bool], _Stage] = {}
        self.stages: dict[int, tuple[str, int, bool]] = {}   # stage key -> (chain, hop, direction): collisions
        self.stage_tables: set[tuple[str, int]] = set()   # (switch, stage key) with pin and pick flows

    def add(self, flow: Flow, rank: int) -> None:
        key = (flow.dpid, flow.table_id, flow.priority, flow.match)
        known = self.flows.setdefault(key, flow)
        if known is flow:
            self.ranks[key] = rank
            return
        if known != flow:
            # Two chains claim the same packets at the same priority (the chain loader refuses those).
            raise PlanError(self.current, f"its flow {flow} clashes with {known}")
        if rank > self.ranks[key]:
            self.ranks[key] = rank

    def nat_addresses(self, chains: list[Chain], placement: Placement) -> None:
        """Virtual MACs, ARP responders and source restoration for the NAT addresses of ``chains``.

        ``chains`` come sorted by name: the first chain using an address owns its flows, and the
        hosts answered are those of every using chain's destination block.
        """
        owners: dict[str, int] = {}
        askers: dict[str, dict[str, Host]] = {}
        for chain in chains:
            for k, address in nat_hops(chain):
                if self.fabric.hosts_in(ipaddress.IPv4Network(address)):
                    continue    # a real host's address: the host answers ARP, table 1 restores its MAC
                owners.setdefault(address, cookies.cookie(self.desired.chain_ids[chain.name], k))
                askers.setdefault(address, {}).update((h.name, h) for h in self.fabric.hosts_in(chain.classifier.dst))
        if not owners:
            return
        topology = self.fabric.topology
        taken = {h.mac for h in topology.hosts} | {c.uplink_mac for c in topology.computes} | \
            {spec.mac for specs in placement.values() for spec in specs}
        for address in sorted(owners):
            attempt = 0
            while (vmac := virtual_mac(address, attempt)) in taken:
                attempt += 1
            taken.add(vmac)
            self.desired.nat_macs[address] = vmac
            cookie = owners[address]
            for switch in self.fabric.compute_switches:
                self.add(Flow(self.dpid[switch], TABLE_RESTORE, PRIO_FORWARD, match(eth_type=ETH_IP, ipv4_src=address),
                              (SetField("eth_src", vmac),), TABLE_FORWARD, cookie), self.rank_restore)
            for _, host in sorted(askers[address].items()):
                ip = self.fabric.ip[host.name]
                request = match(eth_type=ETH_ARP, in_port=host.port, arp_op=ARP_REQUEST, arp_spa=ip, arp_tpa=address)
                reply = (SetField("eth_dst", host.mac), SetField("eth_src", vmac), SetField("arp_op", ARP_REPLY),
                         SetField("arp_sha", vmac), SetField("arp_spa", address), SetField("arp_tha", host.mac),
                         SetField("arp_tpa", ip), Output(OFPP_IN_PORT))
                self.add(Flow(self.dpid[host.switch], TABLE_STEER, PRIO_ARP_REPLY, request, reply, None, cookie), 0)

    def chain(self, chain: Chain, placement: Placement, ready: Collection[str], level: int) -> None:
        self.current = chain.name
        self.autoscaled = {k for k in range(len(chain.hops)) if is_autoscaled(chain, k)}
        if self.autoscaled:
            self.chain_now = chain
            self.chain_text = stage_text(chain)
            self.stage_cache = {}
            protocol = chain.classifier.protocol
            # Only the protocols the classifier admits reach the stages (other IP: pinned by addresses).
            self.pick_protocols = tuple(p for p in _PICK_PROTOCOLS
                                        if protocol is None or p[0] == protocol or p[0] is None and protocol not in
                                        _PINNED_BY_PORTS)
        stages: list[tuple[InstanceSpec, ...]] = []
        missing = []
        for k, hop in enumerate(chain.hops):
            # An instance whose compute host is not (or no longer) in the topology cannot get traffic.
            specs = tuple(s for s in placement.get((chain.name, k), ()) if s.id in ready and s.compute in self.compute)
            if specs:
                stages.append(specs)
            else:
                missing.append(hop.name)
        cid = self.desired.chain_ids[chain.name]
        closed = bool(missing) and chain.on_failure == "closed"
        c = chain.classifier
        sources, targets = self.fabric.hosts_in(c.src), self.fabric.hosts_in(c.dst)
        try:
            src, dst = _net_field(c.src), _net_field(c.dst)
            directions = [_Direction(True, c.src, c.dst, sources, src, dst,
                                     _l4_matches(c.protocol, c.src_port, c.dst_port, True), stages)]
            if chain.symmetric:
                directions.append(_Direction(False, c.dst, c.src, targets, dst, src,
                                             _l4_matches(c.protocol, c.src_port, c.dst_port, False), stages[::-1]))
        except PlanError as e:
            raise PlanError(chain.name, e.reason) from None
        status = self.desired.status
        if closed:
            status[chain.name] = f"closed: no ready instance of hop(s) {', '.join(missing)}"
        elif not stages:
            status[chain.name] = "not steered: no hop has a ready instance"
        else:
            status[chain.name] = ("steered" if not missing else
                                  f"steered, bypassing hop(s) {', '.join(missing)} (no ready instance)")
        for d in directions:
            if closed or not stages:
                # The chain still claims its traffic, so that lower-priority chains do not take it.
                self._ingress(cid, level, d, None, None if closed else TABLE_FORWARD)
                continue
            self._ingress(cid, level, d, d.stages[0])
            for j, specs in enumerate(d.stages):
                following = d.stages[j + 1] if j + 1 < len(d.stages) else None
                rank = self.rank_return + STAGE_RANKS * (len(d.stages) - 1 - j)
                for spec in specs:
                    self._return(chain, cid, d, spec, following, rank)
        if stages and not closed:
            self.desired.paths.add(chain.name, partial(self._display_path, sources, targets, stages))

    def _ingress(self, cid: int, level: int, d: _Direction,
                 first: tuple[InstanceSpec, ...] | None, goto: int | None = None) -> None:
        """Classification at the host ports of the direction's source block.

        Steers to one of ``first``; without ``first``, drops, or forwards normally when ``goto`` says so.
        """
        dst = d.dst_field
        pinned = first is not None and first[0].hop_index in self.autoscaled
        n = len(first) if first and not pinned else 1
        bits = 0 if d.forward else _bits(n)
        priority = PRIO_CLASSIFY + LEVEL_STRIDE * level + 16 * d.forward + bits
        # Dropping breaks a path: it goes in after every flow that makes one (a packet another
        # chain is taking over must not be dropped meanwhile).
        rank = self.rank_drop if first is None and goto is None else \
            self.rank_return + STAGE_RANKS * len(d.stages)
        cookie = cookies.cookie(cid)
        # Going forward the source host's own address picks the instance; coming back, the
        # masked destination (the client) does, the same for every host.
        slot_mask = (1 << _bits(n)) - 1
        reverse_choices = [] if d.forward else [(v, slot % n) for slot in range(1 << bits)
                                                if (v := _masked_ip(d.dst, slot, bits)) is not False]
        for host in d.src_hosts:
            ip = self.fabric.ip[host.name]
            dpid = self.dpid[host.switch]
            choices = [(dst, (self.host_int[host.name] & slot_mask) % n)] if d.forward else reverse_choices
            head = (("eth_type", ETH_IP), ("in_port", host.port))
            for dst_value, which in choices:
                addresses: Items = (("ipv4_src", ip),) if dst_value is None else \
                    (("ipv4_dst", dst_value), ("ipv4_src", ip))
                for proto, ports in d.l4:
                    actions = () if first is None else \
                        self._into(host.switch, host.port, cid, d.forward, first, which, rank, proto)
                    fields = head + proto + addresses + ports
                    self.add(Flow(dpid, TABLE_STEER, priority, fields, actions, goto, cookie), rank)

    def _return(self, chain: Chain, cid: int, d: _Direction, spec: InstanceSpec,
                following: tuple[InstanceSpec, ...] | None, rank: int) -> None:
        """What to do with packets coming back from ``spec``: the next stage, or the exit."""
        compute = self.compute[spec.compute]
        dpid = self.dpid[compute.switch]
        cookie = cookies.cookie(cid, spec.hop_index, spec.index)
        pinned = following is not None and following[0].hop_index in self.autoscaled
        n = len(following) if following and not pinned else 1
        bits = _bits(n)
        priority = PRIO_RETURN + 16 * d.forward + bits
        # Only a symmetric chain's instances see two directions; tell them apart by the classifier.
        if chain.symmetric:
            l4s = d.l4
            client_net, client_field, other_field, other = \
                (d.src, d.src_field, "ipv4_dst", d.dst_field) if d.forward else \
                (d.dst, d.dst_field, "ipv4_src", d.src_field)
        else:
            l4s, client_net, client_field, other_field, other = (((), ()),), None, None, "", None
            if pinned and chain.classifier.protocol is not None:
                # All the chain carries: matching it lets the flow learn pins itself (see _pick).
                l4s = (((("ip_proto", chain.classifier.protocol),), ()),)
        head = (("eth_src", spec.mac), ("eth_type", ETH_IP), ("in_port", compute.port))
        for slot in range(1 << bits):
            client = _masked_ip(client_net, slot, bits) if bits else client_field
            if client is False:
                continue
            goto = TABLE_RESTORE if following is None else None
            addresses = tuple(sorted((f, v) for f, v in ((d.client, client), (other_field, other))
                                     if v is not None))
            for proto, ports in l4s:
                actions = () if following is None else \
                    self._into(compute.switch, compute.port, cid, d.forward, following, slot % n, rank, proto)
                fields = head + proto + addresses + ports
                self.add(Flow(dpid, TABLE_STEER, priority, fields, actions, goto, cookie), rank)

    def _into(self, switch: str, in_port: int, cid: int, forward: bool, stage: tuple[InstanceSpec, ...],
              which: int, rank: int, proto: Items) -> tuple[Action, ...]:
        """Actions at ``switch`` that take a packet (from ``in_port``, matched by ``proto``) into
        ``stage``: to its ``which``-th instance, or for an autoscaled stage, to the one its flow
        is pinned to."""
        if stage[0].hop_index in self.autoscaled:
            return self._pick(switch, in_port, cid, forward, stage, rank, proto[0][1] if proto else None)
        return self._steer(switch, in_port, stage[which])

    def _pick(self, switch: str, in_port: int, cid: int, forward: bool, stage: tuple[InstanceSpec, ...],
              rank: int, protocol: int | None) -> tuple[Action, ...]:
        """Actions at ``switch`` that take a packet (from ``in_port``) to its flow's instance of an
        autoscaled ``stage``.  ``rank`` is that of the flow doing it (see _stage_flows), and
        ``protocol`` the IP protocol it matches (None: any).

        A stage with one instance only learns pins and steers to it directly: the pick
        and hand-over tables are for stages with a choice (most hops run at their
        minimum of one instance most of the time, and these tables would double the
        flows of a fabric).  A flow that matches its protocol learns the pin itself
        (Open vSwitch wants the copied fields' prerequisites matched); one that does
        not resubmits to the stage's table-3 flows, which do.
        """
        hop = stage[0].hop_index
        found = self.stage_cache.get((hop, forward))
        if found is None:
            found = self.stage_cache[hop, forward] = _Stage(self._stage_key(hop, forward), cid, stage,
                                                            self.draining, self.pick_protocols)
        if len(stage) == 1 and protocol is not None:
            learn = found.learn(protocol)
            if learn is not None:
                return found.prefix + (learn,) + self._steer(switch, in_port, stage[0])
        if (switch, found.key) not in self.stage_tables:
            self.stage_tables.add((switch, found.key))
            self._stage_flows(switch, found, rank)
        if len(stage) == 1:
            return found.prefix + (Resubmit(TABLE_PIN),) + self._steer(switch, in_port, stage[0])
        return found.prefix + (Resubmit(TABLE_PIN), Resubmit(TABLE_HANDOFF))

    def _stage_key(self, hop: int, forward: bool) -> int:
        """The stage's key (see stage_text), checked against the other stages' keys."""
        assert self.chain_now is not None
        text = self.chain_text + "\0" + self.chain_now.hops[hop].name + "\0" + str(forward)
        key = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
        owner = self.stages.setdefault(key, (self.chain_now.name, hop, forward))
        if owner != (self.chain_now.name, hop, forward):
            raise PlanError(self.current, f"the stage key of hop {hop} collides with that of {owner}")
        return key

    def _stage_flows(self, switch: str, stage: _Stage, rank: int) -> None:
        """The table flows of one stage on one switch, and the hand-overs of its instances.

        Ranked below ``rank`` (the flows steering into the stage) and above the stage's
        returns (``rank - STAGE_RANKS``): hand-over, then pick, then pin, so that an
        instance is picked only once every flow its packets need is in place, and
        the last to go.
        """
        dpid = self.dpid[switch]
        for table, priority, fields, actions, cookie, below in stage.flows():
            self.add(Flow(dpid, table, priority, fields, actions, None, cookie), rank - below)
        if len(stage.instances) == 1:
            return
        for spec in stage.instances:
            cookie = stage.cookies[spec.id]
            compute = self.compute[spec.compute]
            # in_port -1 is no port: the plain hand-in; a packet from the instance's own host port
            # (the previous hop ran there) must leave by IN_PORT.
            self.add(Flow(dpid, TABLE_HANDOFF, PRIO_HANDOFF, (("reg0", spec.label),) + stage.match,
                          self._steer(switch, -1, spec), None, cookie), rank - 3)
            if compute.switch == switch:
                self.add(Flow(dpid, TABLE_HANDOFF, PRIO_HANDOFF + 1,
                              (("in_port", compute.port), ("reg0", spec.label)) + stage.match,
                              self._steer(switch, compute.port, spec), None, cookie), rank - 3)

    def _steer(self, switch: str, in_port: int, target: InstanceSpec) -> tuple[Action, ...]:
        """Actions at ``switch`` that take a plain packet (arrived on ``in_port``) to ``target``."""
        compute = self.compute[target.compute]
        key = (switch, target.id, in_port == compute.port)
        found = self.steering.get(key)
        if found is None:
            found = self.steering[key] = self._new_steer(switch, in_port, target, compute)
        return found

    def _new_steer(self, switch: str, in_port: int, target: InstanceSpec,
                   compute: ComputeHost) -> tuple[Action, ...]:
        if compute.switch == switch:
            return _hand_in(target, compute, OFPP_IN_PORT if compute.port == in_port else compute.port)
        hops = self.fabric.next_hops(compute.switch)
        if switch not in hops:
            raise PlanError(target.chain, f"no path from switch {switch} to {target.compute}")
        self._label_path(hops[switch], target, compute)
        return PushMpls(ETH_MPLS), SetField("mpls_label", target.label), Output(self.fabric.port(switch, hops[switch]))

    def _label_path(self, start: str, target: InstanceSpec, compute: ComputeHost) -> None:
        """Transit flows for ``target``'s label from ``start`` on, and the hand-over at its switch."""
        hops = self.fabric.next_hops(compute.switch)
        distances = self.fabric.distances(compute.switch)
        cookie = cookies.cookie(self.desired.chain_ids[target.chain], target.hop_index, target.index)
        by_label = match(eth_type=ETH_MPLS, mpls_label=target.label)
        switch = start
        while (target.label, switch) not in self.labelled:
            self.labelled.add((target.label, switch))
            dpid = self.dpid[switch]
            if switch == compute.switch:
                actions = (PopMpls(ETH_IP),) + _hand_in(target, compute, compute.port)
                self.add(Flow(dpid, TABLE_STEER, PRIO_DELIVER, by_label, actions, None, cookie), self.rank_label)
                return
            nxt = hops[switch]
            self.add(Flow(dpid, TABLE_STEER, PRIO_DELIVER, by_label, self.fabric.output_to(switch, nxt),
                          None, cookie), self.rank_label + distances[switch])
            switch = nxt

    def _display_path(self, sources: tuple[Host, ...], targets: tuple[Host, ...],
                      stages: list[tuple[InstanceSpec, ...]]) -> tuple[str, ...]:
        out: list[str] = []
        at: str | None = None
        if sources:
            out.append(sources[0].name)
            at = sources[0].switch
        for specs in stages:
            spec = specs[0]
            switch = self.compute[spec.compute].switch
            out += self._between(at, switch)
            out.append(spec.id)
            at = switch
        if targets:
            out += self._between(at, targets[0].switch)
            out.append(targets[0].name)
        return tuple(out)

    def _between(self, at: str | None, switch: str) -> list[str]:
        return [switch] if at is None else self.fabric.path(at, switch)


def stage_text(chain: Chain) -> str:
    """What a chain's stage keys are hashed from, besides hop name and direction.

    Stage keys (64 bits, one per chain, hop and direction) hash names, not
    indexes, so that pins learned before an update that inserts or removes hops
    still lead to the hop they were learned for; and the classifier, so that a
    chain whose classifier changes gets new stages: its old classification
    flows, until they go, keep steering into the old stages, whose instances
    return packets by the old return flows.
    """
    c = chain.classifier
    # Addresses as integers: formatting them (or the classifier's repr) costs ten times more.
    return (f"{chain.name}\0{int(c.src.network_address)}/{c.src.prefixlen}\0{int(c.dst.network_address)}/"
            f"{c.dst.prefixlen}\0{c.protocol}\0{c.src_port}\0{c.dst_port}\0{chain.symmetric}")


def nat_hops(chain: Chain) -> list[tuple[int, str]]:
    """(hop index, address) of every ``nat`` hop of ``chain``: the address it translates sources to.

    The chain loader refuses a nat hop without an address; a chain built in code (the
    benchmarks) may still lack one, and such a hop has no address to answer for.
    """
    return [(k, str(ipaddress.IPv4Address(hop.params["address"])))
            for k, hop in enumerate(chain.hops) if hop.function == "nat" and "address" in hop.params]


def virtual_mac(address: str, attempt: int = 0) -> str:
    """The MAC a NAT address answers ARP with: locally administered unicast, derived from the address.

    The 0e prefix keeps it apart from instance MACs (0a); ``attempt`` > 0 gives the
    alternatives used after a collision with a MAC in use.
    """
    text = address if attempt == 0 else f"{address}#{attempt}"
    return "0e:" + hashlib.blake2b(f"nat:{text}".encode(), digest_size=5).digest().hex(":")


def _hand_in(target: InstanceSpec, compute: ComputeHost, port: int) -> tuple[Action, ...]:
    return SetField("eth_dst", target.mac), SetField("eth_src", compute.uplink_mac), Output(port)

