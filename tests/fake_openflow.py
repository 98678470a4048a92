"""A fake OpenFlow 1.3 fabric: switches that apply our messages as the spec says, and a packet walker.

The switch model follows OpenFlow 1.3.x where our flows depend on it:

- flow entries are identified by (table, priority, match); ``add`` replaces
  an identical entry, ``modify_strict`` changes the instructions of an
  existing one and keeps its cookie (and does nothing when there is none),
  ``delete_strict`` removes it;
- a match is checked when it is added: every field's prerequisites must be in
  the match (ipv4_* needs eth_type 0x0800, tcp_* needs ip_proto 6, mpls_label
  needs eth_type 0x8847, ...), only maskable fields may carry a mask, and a
  masked value may have no bit set outside its mask; goto_table must go
  forward; a flow may not name a group that does not exist;
- lookup picks the highest-priority matching entry; two matching entries of
  the same priority leave the outcome undefined by the spec: in a steady
  state that is a bug in the controller, so the fake raises ``Ambiguous``;
  while an update is applied it may happen for a moment, and ``send_all``
  then follows every possible choice;
- apply-actions run in order: Output sends a copy of the packet as it is at
  that point; Output to the port the packet came in on sends nothing (the
  spec wants OFPP_IN_PORT for that); set_field needs the packet to have the
  field's prerequisites (no ipv4_dst on an MPLS packet, no mpls_label on a
  plain one); push/pop MPLS change eth_type as the spec says;
- no matching entry in a table means drop (OpenFlow 1.3 has no implicit
  table-miss behaviour beyond that);
- groups: ``all`` runs every bucket on a copy, ``indirect`` its one bucket,
  ``select`` one bucket chosen by a hash of the addresses, protocol and TCP
  ports (as Open vSwitch's default, which leaves out UDP ports); deleting a
  group deletes the flows that use it;
- Open vSwitch's extensions, as it runs them: registers ``reg0``..``reg7``
  are 0 when a packet enters a switch and are gone when it leaves;
  ``Resubmit`` runs the actions of the entry it finds in another table (and
  that entry's goto_table) and goes on, a miss does nothing, nesting deeper
  than 64 is an error; ``Multipath`` writes a link number chosen by highest
  random weight over a symmetric hash of the IPv4 addresses, protocol and
  TCP/UDP ports (both directions of a flow pick the same link; one link more
  moves about 1/n of the flows); ``Learn`` adds (or replaces) a flow that
  matches the packet's current values of its fields and loads its constants,
  with the Learn's cookie (its timeouts are not modelled).  A flow carrying a
  Learn is refused as Open vSwitch refuses it: every field the learned flow
  copies from the packet needs its prerequisites in the flow's own match,
  and every field of the learned flow needs them among the constant fields
  before it (controller/ofwire.learn_pins says which copies go as constants).

``FakeFabric`` wires switches by the topology's links and walks a packet from
a host port: at a compute port it plays the compute host's learning switch
and the instance (the instance sends the packet back from its own MAC to the
uplink MAC, after what ``rewrites`` says it does to the packet, as a NAT
does), at a host port it delivers.  A ``Trace`` says which instances the
packet crossed, where it was delivered (and how it looked there), which
switches it crossed and why any copy was lost.
"""

from __future__ import annotations

import hashlib
import ipaddress
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from controller.core.ofmsg import (OFPG_ALL, OFPP_IN_PORT, OFPTT_ALL, Barrier, DeleteFlows, DeleteGroups, Flow,
                                   FlowMod, Group, GroupAction, GroupMod, Learn, Message, Multipath, Output, PopMpls,
                                   PushMpls, Resubmit, SetField, match)
from controller.core.placement import InstanceSpec
from controller.core.ofmsg import dpid_of
from controller.ofwire import learn_pins
from topologies.model import Topology

ETH_IP, ETH_ARP, ETH_MPLS, ETH_MPLS_MC, ETH_IPV6 = 0x0800, 0x0806, 0x8847, 0x8848, 0x86DD
MAX_STEPS = 64
MAX_RESUBMIT_DEPTH = 64            # Open vSwitch's limit on nested resubmits
REGISTERS = tuple(f"reg{i}" for i in range(8))
MULTIPATH_BITS = 0xFFFF            # Multipath writes the low 16 bits of its register

# field -> (bit width, maskable, prerequisite field, allowed prerequisite values)
FIELDS: dict[str, tuple[int, bool, str | None, tuple[int, ...]]] = {
    "in_port": (32, False, None, ()),
    "eth_dst": (48, True, None, ()),
    "eth_src": (48, True, None, ()),
    "eth_type": (16, False, None, ()),
    "ip_proto": (8, False, "eth_type", (ETH_IP, ETH_IPV6)),
    "ipv4_src": (32, True, "eth_type", (ETH_IP,)),
    "ipv4_dst": (32, True, "eth_type", (ETH_IP,)),
    # Masked transport ports are an Open vSwitch extension; the compiler uses them for wide ranges only.
    "tcp_src": (16, True, "ip_proto", (6,)),
    "tcp_dst": (16, True, "ip_proto", (6,)),
    "udp_src": (16, True, "ip_proto", (17,)),
    "udp_dst": (16, True, "ip_proto", (17,)),
    "arp_op": (16, False, "eth_type", (ETH_ARP,)),
    "arp_spa": (32, True, "eth_type", (ETH_ARP,)),
    "arp_tpa": (32, True, "eth_type", (ETH_ARP,)),
    "arp_sha": (48, True, "eth_type", (ETH_ARP,)),
    "arp_tha": (48, True, "eth_type", (ETH_ARP,)),
    "mpls_label": (20, False, "eth_type", (ETH_MPLS, ETH_MPLS_MC)),
    **{reg: (32, True, None, ()) for reg in REGISTERS},
}


Choose = Callable[[int], int]   # given how many entries tie, the index of the one to use


class OFError(Exception):
    """What a switch would answer with an OpenFlow error message."""


class Ambiguous(Exception):
    """Two entries of the same priority match one packet: the spec leaves the outcome undefined."""


@lru_cache(maxsize=None)
def to_int(name: str, value: Any) -> int:
    """A field value as an integer (addresses are given as text)."""
    if isinstance(value, int):
        return value
    if name.startswith(("eth_src", "eth_dst")) or value.count(":") == 5:
        return int(value.replace(":", ""), 16)
    return int(ipaddress.IPv4Address(value))


def _prereqs_ok(name: str, values: Mapping[str, Any]) -> bool:
    """Whether exact field ``values`` satisfy ``name``'s prerequisites, all the way down (tcp_src: ip_proto, eth_type)."""
    _, _, prereq, allowed = FIELDS[name]
    return prereq is None or (values.get(prereq) in allowed and _prereqs_ok(prereq, values))


def _check_learns(flow: Flow) -> None:
    """Open vSwitch's checks of a flow's Learn actions (learn_check in its lib/learn.c)."""
    exact = {name: value for name, value in flow.match if not isinstance(value, tuple)}
    for action, pins in zip(flow.actions, learn_pins(flow.match, flow.actions)):
        if not isinstance(action, Learn):
            continue
        pinned = dict(pins)
        constants: dict[str, Any] = {}    # the learned flow's constant fields so far
        for name in action.copy:
            if name not in FIELDS:
                raise OFError(f"OFPBAC_BAD_SET_TYPE: learn of unknown field {name}")
            if name not in pinned and not _prereqs_ok(name, exact):
                raise OFError(f"OFPBAC_MATCH_INCONSISTENT: learn copies {name}, whose prerequisites the flow "
                              f"does not match")
            if not _prereqs_ok(name, constants):
                raise OFError(f"OFPBAC_MATCH_INCONSISTENT: the learned flow's {name} lacks its prerequisites "
                              f"among the constant fields before it")
            if name in pinned:
                constants[name] = pinned[name]
        for name, _ in action.load:
            if name not in FIELDS or not _prereqs_ok(name, constants):
                raise OFError(f"OFPBAC_MATCH_INCONSISTENT: learn loads {name} without its prerequisites")


def multipath_link(packet: Mapping[str, Any], n_links: int, basis: int = 0) -> int:
    """The link Multipath picks: highest random weight over a symmetric hash of the flow's L3/L4 fields.

    Not Open vSwitch's hash function, but its properties: both directions of
    a flow hash alike (addresses and ports sorted), and each link's weight
    depends only on the flow and the link, so one more link takes ~1/n flows.
    """
    ports = next(((packet[a], packet[b]) for a, b in (("tcp_src", "tcp_dst"), ("udp_src", "udp_dst"))
                  if a in packet), ())
    addresses = tuple(to_int(f, packet[f]) for f in ("ipv4_src", "ipv4_dst") if f in packet)
    key = repr((basis, sorted(addresses), packet.get("ip_proto"), sorted(ports))).encode()
    return max(range(n_links),
               key=lambda link: hashlib.blake2b(key + link.to_bytes(2, "big"), digest_size=8).digest())


def _compile_match(flow: Flow) -> tuple[tuple[str, int, int], ...]:
    """(field, value, mask) triples, after the checks a switch makes on a flow-mod."""
    fields = dict(flow.match)
    out = []
    for name, raw in flow.match:
        if name not in FIELDS:
            raise OFError(f"OFPBMC_BAD_FIELD {name}")
        width, maskable, prereq, allowed = FIELDS[name]
        full = (1 << width) - 1
        if isinstance(raw, tuple):
            if not maskable:
                raise OFError(f"OFPBMC_BAD_MASK {name} cannot be masked")
            value, mask = to_int(name, raw[0]), to_int(name, raw[1])
            if value & ~mask & full:
                raise OFError(f"OFPBMC_BAD_WILDCARDS {name}={raw}")
        else:
            value, mask = to_int(name, raw), full
        if prereq is not None and fields.get(prereq) not in allowed:
            raise OFError(f"OFPBMC_BAD_PREREQ {name} needs {prereq} in {allowed}")
        out.append((name, value, mask))
    return tuple(out)


@dataclass
class _Entry:
    flow: Flow
    compiled: tuple[tuple[str, int, int], ...]


class FakeSwitch:
    """One OpenFlow 1.3 switch: flow tables and a group table."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.tables: dict[int, dict[tuple[int, tuple], _Entry]] = {}
        self.groups: dict[int, Group] = {}

    # ------------------------------------------------------------ messages

    def apply(self, message: Message) -> None:
        if isinstance(message, FlowMod):
            self._flow_mod(message)
        elif isinstance(message, GroupMod):
            self._group_mod(message)
        elif isinstance(message, DeleteFlows):
            for table_id, table in self.tables.items():
                if message.table_id in (OFPTT_ALL, table_id):
                    for key in [k for k, e in table.items()
                                if e.flow.cookie & message.cookie_mask == message.cookie & message.cookie_mask]:
                        del table[key]
        elif isinstance(message, DeleteGroups):
            for group_id in list(self.groups) if message.group_id == OFPG_ALL else [message.group_id]:
                self._delete_group(group_id)
        elif not isinstance(message, Barrier):
            raise OFError(f"unknown message {message!r}")

    def _flow_mod(self, mod: FlowMod) -> None:
        flow = mod.flow
        table = self.tables.setdefault(flow.table_id, {})
        key = (flow.priority, flow.match)
        if mod.command == "delete_strict":
            table.pop(key, None)
            return
        if flow.goto_table is not None and flow.goto_table <= flow.table_id:
            raise OFError("OFPBIC_BAD_TABLE_ID: goto_table must go forward")
        for action in flow.actions:
            if isinstance(action, GroupAction) and action.group_id not in self.groups:
                raise OFError(f"OFPBAC_BAD_OUT_GROUP {action.group_id}")
            if isinstance(action, Multipath) and (action.dst not in REGISTERS or not 1 <= action.n_links <= 0x10000):
                raise OFError(f"OFPBAC_BAD_ARGUMENT {action!r}")
        _check_learns(flow)
        if mod.command == "add":
            table[key] = _Entry(flow, _compile_match(flow))
        elif mod.command == "modify_strict":
            old = table.get(key)
            if old is not None:   # the cookie stays
                old.flow = Flow(flow.dpid, flow.table_id, flow.priority, flow.match, flow.actions,
                                flow.goto_table, old.flow.cookie)
        else:
            raise OFError(f"unknown flow-mod command {mod.command}")

    def _group_mod(self, mod: GroupMod) -> None:
        group = mod.group
        if mod.command == "add":
            if group.group_id in self.groups:
                raise OFError("OFPGMFC_GROUP_EXISTS")
            self.groups[group.group_id] = group
        elif mod.command == "modify":
            if group.group_id not in self.groups:
                raise OFError("OFPGMFC_UNKNOWN_GROUP")
            self.groups[group.group_id] = group
        elif mod.command == "delete":
            self._delete_group(group.group_id)
        else:
            raise OFError(f"unknown group-mod command {mod.command}")

    def _delete_group(self, group_id: int) -> None:
        self.groups.pop(group_id, None)
        for table in self.tables.values():   # the spec removes the flows that forward to it
            for key in [k for k, e in table.items() if GroupAction(group_id) in e.flow.actions]:
                del table[key]

    def flows(self) -> list[Flow]:
        return [e.flow for t in sorted(self.tables) for e in self.tables[t].values()]

    # ------------------------------------------------------------ packets

    def lookup(self, table_id: int, packet: Mapping[str, Any], choose: Choose | None = None) -> _Entry | None:
        """The entry a packet hits; ``choose`` picks among tied entries, else a tie raises Ambiguous."""
        best: list[_Entry] = []
        for entry in self.tables.get(table_id, {}).values():
            if best and entry.flow.priority < best[0].flow.priority:
                continue
            if all(n in packet and to_int(n, packet[n]) & m == v for n, v, m in entry.compiled):
                if best and entry.flow.priority == best[0].flow.priority:
                    best.append(entry)
                else:
                    best = [entry]
        if len(best) > 1:
            if choose is None:
                raise Ambiguous(f"switch {self.dpid:#x} table {table_id}: {[e.flow for e in best]} "
                                f"for {dict(packet)}")
            return sorted(best, key=lambda e: str(e.flow.match))[choose(len(best))]
        return best[0] if best else None

    def process(self, packet: Mapping[str, Any], in_port: int,
                choose: Choose | None = None) -> list[tuple[int, dict[str, Any]]]:
        """The (port, packet) copies the switch sends for a packet that came in on ``in_port``."""
        pkt = dict(packet, in_port=in_port, **dict.fromkeys(REGISTERS, 0))
        out: list[tuple[int, dict[str, Any]]] = []
        self._pipeline(0, pkt, out, choose, 0)
        return out

    def _pipeline(self, table_id: int | None, pkt: dict[str, Any], out: list[tuple[int, dict[str, Any]]],
                  choose: Choose | None, depth: int) -> None:
        """Look up, run the actions, follow goto_table, from ``table_id`` on."""
        while table_id is not None:
            entry = self.lookup(table_id, pkt, choose)
            if entry is None:
                return
            self._run(entry.flow.actions, pkt, out, choose, depth)
            table_id = entry.flow.goto_table

    def _run(self, actions: Iterable[Any], pkt: dict[str, Any], out: list[tuple[int, dict[str, Any]]],
             choose: Choose | None = None, depth: int = 0) -> None:
        for action in actions:
            if isinstance(action, Output):
                port = pkt["in_port"] if action.port == OFPP_IN_PORT else action.port
                if action.port != pkt["in_port"]:
                    # in_port and the registers are the switch's, not the packet's.
                    out.append((port, {k: v for k, v in pkt.items() if k != "in_port" and k not in REGISTERS}))
            elif isinstance(action, SetField):
                _, _, prereq, allowed = FIELDS[action.field]
                if prereq is not None and pkt.get(prereq) not in allowed:
                    raise OFError(f"set_field {action.field} on a packet without {prereq} in {allowed}")
                pkt[action.field] = action.value
            elif isinstance(action, PushMpls):
                # The new outermost label copies the old one's, or is 0 on an unlabelled packet.
                if pkt["eth_type"] in (ETH_MPLS, ETH_MPLS_MC):
                    pkt["mpls_below"] = pkt["mpls_below"] + (pkt["mpls_label"],)
                else:
                    pkt["mpls_payload"], pkt["mpls_below"], pkt["mpls_label"] = pkt["eth_type"], (), 0
                pkt["eth_type"] = action.ethertype
            elif isinstance(action, PopMpls):
                if pkt["eth_type"] not in (ETH_MPLS, ETH_MPLS_MC):
                    raise OFError("pop_mpls on a packet without MPLS")
                if pkt["mpls_below"]:
                    pkt["mpls_label"], pkt["mpls_below"] = pkt["mpls_below"][-1], pkt["mpls_below"][:-1]
                else:
                    if action.ethertype != pkt["mpls_payload"]:
                        raise OFError(f"pop_mpls to {action.ethertype:#x} of a label over {pkt['mpls_payload']:#x}")
                    for key in ("mpls_label", "mpls_below", "mpls_payload"):
                        del pkt[key]
                pkt["eth_type"] = action.ethertype
            elif isinstance(action, GroupAction):
                self._group(self.groups[action.group_id], pkt, out, choose, depth)
            elif isinstance(action, Resubmit):
                if depth >= MAX_RESUBMIT_DEPTH:
                    raise OFError(f"resubmit nested deeper than {MAX_RESUBMIT_DEPTH} (Open vSwitch drops the packet)")
                self._pipeline(action.table_id, pkt, out, choose, depth + 1)
            elif isinstance(action, Multipath):
                link = multipath_link(pkt, action.n_links, action.basis)
                pkt[action.dst] = pkt[action.dst] & ~MULTIPATH_BITS | link
            elif isinstance(action, Learn):
                self._learn(action, pkt)
            else:
                raise OFError(f"unknown action {action!r}")

    def _learn(self, learn: Learn, pkt: Mapping[str, Any]) -> None:
        """Add the flow ``learn`` makes for this packet; one with the same match is replaced (cookie included)."""
        missing = [name for name in learn.copy if name not in pkt]
        if missing:
            raise OFError(f"learn copies {missing}, which the packet does not have")
        flow = Flow(self.dpid, learn.table_id, learn.priority, match(**{name: pkt[name] for name in learn.copy}),
                    tuple(SetField(name, value) for name, value in learn.load), None, learn.cookie)
        self.tables.setdefault(flow.table_id, {})[(flow.priority, flow.match)] = _Entry(flow, _compile_match(flow))

    def _group(self, group: Group, pkt: dict[str, Any], out: list[tuple[int, dict[str, Any]]],
               choose: Choose | None = None, depth: int = 0) -> None:
        if group.type == "select":
            key = tuple(pkt.get(f) for f in ("eth_src", "eth_dst", "ipv4_src", "ipv4_dst", "ip_proto",
                                             "tcp_src", "tcp_dst"))
            weights = [b.weight for b in group.buckets]
            pick = zlib.crc32(repr(key).encode()) % sum(weights)
            for bucket in group.buckets:
                if pick < bucket.weight:
                    self._run(bucket.actions, dict(pkt), out, choose, depth)
                    return
                pick -= bucket.weight
        elif group.type in ("all", "indirect"):
            for bucket in group.buckets:
                self._run(bucket.actions, dict(pkt), out, choose, depth)
        else:
            raise OFError(f"group type {group.type} not modelled")


@dataclass
class Trace:
    """What became of one packet sent into the fabric."""

    instances: list[str] = field(default_factory=list)            # instance ids, in crossing order
    received: list[dict[str, Any]] = field(default_factory=list)   # the packets as those instances got them
    delivered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (host, packet as it arrived)
    switches: list[str] = field(default_factory=list)             # every switch crossed, in order
    lost: list[str] = field(default_factory=list)                 # why copies were lost

    @property
    def delivered_to(self) -> list[str]:
        return [host for host, _ in self.delivered]


class FakeFabric:
    """Switches wired as the topology says, with running instances behind the compute ports."""

    def __init__(self, topology: Topology, instances: Iterable[InstanceSpec] = ()) -> None:
        self.topology = topology
        self.switches = {s.name: FakeSwitch(s.dpid) for s in topology.switches}
        self.by_dpid = {s.dpid: self.switches[s.name] for s in topology.switches}
        self.name_of = {s.dpid: s.name for s in topology.switches}
        self.ports: dict[tuple[str, int], tuple[str, Any]] = {}
        for link in topology.links:
            self.ports[link.a, link.a_port] = ("link", (link.b, link.b_port))
            self.ports[link.b, link.b_port] = ("link", (link.a, link.a_port))
        for host in topology.hosts:
            self.ports[host.switch, host.port] = ("host", host)
        for compute in topology.computes:
            self.ports[compute.switch, compute.port] = ("compute", compute)
        self.instances: dict[tuple[str, str], InstanceSpec] = {}
        self.set_instances(instances)
        # Instance id -> what that instance does to a packet's fields (default: nothing).
        self.rewrites: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}

    def set_instances(self, instances: Iterable[InstanceSpec]) -> None:
        """The instances that are running, each behind its compute host's port."""
        self.instances = {(i.compute, i.mac): i for i in instances}

    def apply(self, message: Message) -> None:
        self.by_dpid[dpid_of(message)].apply(message)

    def apply_all(self, messages: Iterable[Message]) -> None:
        for message in messages:
            self.apply(message)

    def send_all(self, host_name: str, packet: Mapping[str, Any], limit: int = 256) -> list[Trace]:
        """The traces of every way the packet may go when entries of equal priority overlap.

        The spec leaves the choice to the switch, which happens for a moment
        during an update (an old flow and its replacement); every choice must
        then be a good one.  Explores all combinations of choices, in order.
        """
        traces: list[Trace] = []
        script: list[int] = []
        while len(traces) < limit:
            options: list[int] = []

            def choose(n: int) -> int:
                options.append(n)
                return script[len(options) - 1] if len(options) <= len(script) else 0

            traces.append(self.send(host_name, packet, choose))
            picks = (script + [0] * len(options))[:len(options)]
            while picks and picks[-1] + 1 >= options[len(picks) - 1]:
                picks.pop()
            if not picks:
                break
            picks[-1] += 1
            script = picks
        return traces

    def send(self, host_name: str, packet: Mapping[str, Any], choose: Choose | None = None) -> Trace:
        """Inject ``packet`` (header fields by OXM name) at the port of host ``host_name``.

        Entries of equal priority that both match raise Ambiguous, unless ``choose`` picks one.
        """
        host = self.topology.host_by_name[host_name]
        trace = Trace()
        queue: list[tuple[str, int, dict[str, Any]]] = [(host.switch, host.port, dict(packet))]
        steps = 0
        while queue:
            switch, in_port, pkt = queue.pop(0)
            steps += 1
            if steps > MAX_STEPS:
                trace.lost.append("loop")
                break
            trace.switches.append(switch)
            copies = self.switches[switch].process(pkt, in_port, choose)
            if not copies:
                trace.lost.append(f"dropped at {switch}")
            for port, out in copies:
                kind, peer = self.ports.get((switch, port), (None, None))
                if kind == "link":
                    queue.append((peer[0], peer[1], out))
                elif kind == "host":
                    trace.delivered.append((peer.name, out))
                elif kind == "compute":
                    self._instance(peer, switch, port, out, queue, trace)
                else:
                    trace.lost.append(f"sent to unconnected port {switch}:{port}")
        return trace

    def _instance(self, compute: Any, switch: str, port: int, pkt: dict[str, Any],
                  queue: list[tuple[str, int, dict[str, Any]]], trace: Trace) -> None:
        """The compute host's learning switch hands the packet to the instance owning eth_dst."""
        instance = self.instances.get((compute.name, pkt.get("eth_dst")))
        if instance is None:
            trace.lost.append(f"no running instance with MAC {pkt.get('eth_dst')} on {compute.name}")
            return
        trace.instances.append(instance.id)
        trace.received.append(dict(pkt))
        rewrite = self.rewrites.get(instance.id)
        back = dict(rewrite(dict(pkt)) if rewrite else pkt, eth_src=instance.mac, eth_dst=compute.uplink_mac)
        queue.append((switch, port, back))


def phases(messages: list[Message]) -> list[list[Message]]:
    """The messages between barriers: within one, a real fabric may apply them in any order."""
    out: list[list[Message]] = [[]]
    for message in messages:
        if isinstance(message, Barrier):
            if out[-1]:
                out.append([])
        else:
            out[-1].append(message)
    return [p for p in out if p]
