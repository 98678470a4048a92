"""What packets do on a fabric programmed by the compiler (generated topologies and chains).

Every test installs the compiled flows into the fake OpenFlow 1.3 fabric and
sends packets from hosts: chain traffic must cross the hops in order and
arrive unchanged; other traffic must take the shortest path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chains.model import Chain, Classifier, Hop, Scaling
from controller.core.compiler import Desired, compile_fabric
from controller.core.diff import diff
from controller.core.errors import PlanError
from controller.core import cookies
from controller.core.ofmsg import SetField, match
from controller.core.placement import InstanceSpec, Placement, place
from fake_openflow import FakeFabric, Trace
from topologies.generators import fat_tree, leaf_spine
from topologies.graph import to_networkx
from topologies.loader import build
from topologies.model import Host, Topology

# ------------------------------------------------------------------ scenarios (shared with test_core_diff)


def make_topology(n_switches: int, links: Iterable[tuple[int, int]], hosts: Sequence[int],
                  computes: Sequence[int], capacity: int = 32) -> Topology:
    """Switches s1..sN, host hK (10.0.0.K/24) on switch s(hosts[K-1]+1), compute cK likewise."""
    doc = {
        "name": "test",
        "switches": [{"name": f"s{i + 1}", "dpid": i + 1} for i in range(n_switches)],
        "links": [{"a": f"s{a + 1}", "b": f"s{b + 1}"} for a, b in links],
        "hosts": [{"name": f"h{k + 1}", "switch": f"s{s + 1}", "ip": f"10.0.0.{k + 1}/24"}
                  for k, s in enumerate(hosts)],
        "computes": [{"name": f"c{k + 1}", "switch": f"s{s + 1}", "agent": f"127.0.0.1:{7101 + k}",
                      "capacity": capacity} for k, s in enumerate(computes)],
    }
    return build(doc, "<test>")


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    n = draw(st.integers(1, 5))
    links = {(draw(st.integers(0, i - 1)), i) for i in range(1, n)}          # a spanning tree
    for a, b in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3)):
        if a != b and (a, b) not in links and (b, a) not in links:
            links.add((a, b))
    hosts = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=5))
    computes = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3))
    return make_topology(n, sorted(links), hosts, computes)


def _block(draw: st.DrawFn, topology: Topology) -> ipaddress.IPv4Network:
    """An address block around one of the topology's hosts."""
    host = draw(st.sampled_from(topology.hosts))
    prefix = draw(st.sampled_from([32, 31, 30, 29, 24, 16]))
    return ipaddress.ip_network(f"{host.ip.ip}/{prefix}", strict=False)


@st.composite
def chain_lists(draw: st.DrawFn, topology: Topology) -> list[Chain]:
    n = draw(st.integers(1, 3))
    priorities = draw(st.permutations([100, 200, 300]))
    chains = []
    for i in range(n):
        protocol = draw(st.sampled_from([None, 6, 17]))
        dst_port = None
        if protocol is not None:
            dst_port = draw(st.sampled_from([None, (80, 80), (80, 81), (1000, 1100)]))
        hops = tuple(Hop(f"hop{k}", "passthrough", scaling=Scaling(min=draw(st.integers(1, 2)), max=3))
                     for k in range(draw(st.integers(1, 3))))
        chains.append(Chain(f"chain{i}", Classifier(_block(draw, topology), _block(draw, topology), protocol, None,
                                                    dst_port),
                            hops, symmetric=draw(st.booleans()), priority=priorities[i],
                            on_failure=draw(st.sampled_from(["open", "closed"]))))
    return chains


@dataclass
class Scenario:
    topology: Topology
    chains: list[Chain]
    placement: Placement
    ready: frozenset[str]
    desired: Desired


def plan(topology: Topology, chains: list[Chain], ready: Iterable[str] | None = None,
         existing: dict[str, InstanceSpec] | None = None,
         counts: dict[tuple[str, int], int] | None = None) -> Scenario:
    placement = place(topology, chains, existing or {}, counts or {})
    ready_set = frozenset(placement.by_id() if ready is None else ready)
    return Scenario(topology, chains, placement, ready_set, compile_fabric(topology, chains, placement, ready_set))


@st.composite
def ready_subsets(draw: st.DrawFn, placement: Placement) -> frozenset[str]:
    ids = sorted(placement.by_id())
    if draw(st.booleans()):
        return frozenset(ids)
    return frozenset(i for i in ids if draw(st.booleans()))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    topology = draw(topologies())
    chains = draw(chain_lists(topology))
    try:
        placement = place(topology, chains)
    except PlanError:
        assume(False)
    ready = draw(ready_subsets(placement))
    return Scenario(topology, chains, placement, ready, compile_fabric(topology, chains, placement, ready))


# ------------------------------------------------------------------ packets and what they should do


PROBES = [(6, 40001, 80), (17, 40002, 81), (6, 40003, 1050), (1, None, None)]


def packet(src: Host, dst: Host, proto: int, sport: int | None, dport: int | None) -> dict[str, Any]:
    pkt: dict[str, Any] = {"eth_src": src.mac, "eth_dst": dst.mac, "eth_type": 0x0800,
                           "ipv4_src": str(src.ip.ip), "ipv4_dst": str(dst.ip.ip), "ip_proto": proto}
    if proto in (6, 17):
        name = "tcp" if proto == 6 else "udp"
        pkt[f"{name}_src"], pkt[f"{name}_dst"] = sport, dport
    return pkt


def probes(topology: Topology) -> list[tuple[Host, Host, dict[str, Any]]]:
    return [(a, b, packet(a, b, *p)) for a in topology.hosts for b in topology.hosts if a != b for p in PROBES]


def _matches(c: Classifier, pkt: dict[str, Any], forward: bool) -> bool:
    src, dst = (c.src, c.dst) if forward else (c.dst, c.src)
    if ipaddress.ip_address(pkt["ipv4_src"]) not in src or ipaddress.ip_address(pkt["ipv4_dst"]) not in dst:
        return False
    if c.protocol is None:
        return True
    if c.protocol != pkt["ip_proto"]:
        return False
    name = {6: "tcp", 17: "udp"}[c.protocol]
    sport, dport = pkt[f"{name}_src"], pkt[f"{name}_dst"]
    if not forward:
        sport, dport = dport, sport
    return all(r is None or r[0] <= p <= r[1] for r, p in ((c.src_port, sport), (c.dst_port, dport)))


def classify(chains: Sequence[Chain], pkt: dict[str, Any]) -> tuple[Chain, bool] | None:
    """The chain (and direction) a packet belongs to: highest priority first, forward before reverse."""
    for chain in sorted(chains, key=lambda c: -c.priority):
        if _matches(chain.classifier, pkt, True):
            return chain, True
        if chain.symmetric and _matches(chain.classifier, pkt, False):
            return chain, False
    return None


def ready_stages(s: Scenario, chain: Chain) -> list[list[str]] | None:
    """Ready instance ids per steered hop; None when the chain drops its traffic."""
    stages = [[i.id for i in s.placement[chain.name, k] if i.id in s.ready] for k in range(len(chain.hops))]
    if any(not ids for ids in stages) and chain.on_failure == "closed":
        return None
    return [ids for ids in stages if ids]


def shortest(topology: Topology, a: str, b: str) -> int:
    return nx.shortest_path_length(to_networkx(topology), a, b)


def check_plain(trace: Trace, dst: Host, pkt: dict[str, Any]) -> None:
    assert not trace.lost, trace
    assert trace.delivered_to == [dst.name], trace
    assert trace.delivered[0][1] == pkt, "the destination must see the packet as it was sent"


def check(s: Scenario, fabric: FakeFabric, src: Host, dst: Host, pkt: dict[str, Any]) -> Trace:
    """Send one packet and check it against the steering model; returns its trace."""
    trace = fabric.send(src.name, pkt)
    found = classify(s.chains, pkt)
    stages = ready_stages(s, found[0]) if found else []
    if stages is None:
        assert trace.delivered == [] and trace.instances == [], trace
        return trace
    check_plain(trace, dst, pkt)
    if not stages:
        assert len(trace.switches) == shortest(s.topology, src.switch, dst.switch) + 1, trace
        return trace
    chain, forward = found
    order = stages if forward else stages[::-1]
    assert len(trace.instances) == len(order), trace
    for got, ids in zip(trace.instances, order):
        assert got in ids, f"{chain.name}: instance {got} is not one of {ids}"
    for instance_id, seen in zip(trace.instances, trace.received):
        spec = s.placement.by_id()[instance_id]
        assert seen["eth_dst"] == spec.mac
        assert seen["eth_src"] == s.topology.compute_by_name[spec.compute].uplink_mac
        assert "mpls_label" not in seen and seen["eth_type"] == 0x0800
        assert {k: seen[k] for k in pkt if not k.startswith("eth_")} == \
               {k: pkt[k] for k in pkt if not k.startswith("eth_")}
    return trace


def reply(pkt: dict[str, Any]) -> dict[str, Any]:
    out = dict(pkt, eth_src=pkt["eth_dst"], eth_dst=pkt["eth_src"], ipv4_src=pkt["ipv4_dst"],
               ipv4_dst=pkt["ipv4_src"])
    for name in ("tcp", "udp"):
        if f"{name}_src" in pkt:
            out[f"{name}_src"], out[f"{name}_dst"] = pkt[f"{name}_dst"], pkt[f"{name}_src"]
    return out


def check_all(s: Scenario, fabric: FakeFabric) -> None:
    for src, dst, pkt in probes(s.topology):
        trace = check(s, fabric, src, dst, pkt)
        found = classify(s.chains, pkt)
        back = reply(pkt)
        if found and found[1] and found[0].symmetric and classify(s.chains, back) == (found[0], False):
            back_trace = check(s, fabric, dst, src, back)
            assert back_trace.instances == trace.instances[::-1], "a reply must cross the same instances"


def installed(s: Scenario) -> FakeFabric:
    fabric = FakeFabric(s.topology, s.placement.by_id().values())
    fabric.apply_all(diff(Desired.empty(), s.desired))
    return fabric


# ------------------------------------------------------------------ tests

LEAF_SPINE = leaf_spine(2, 3, 2, 1)
FAT_TREE = fat_tree(4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_generated_chains_steer_as_the_model_says(s: Scenario) -> None:
    check_all(s, installed(s))
    for key, flow in s.desired.flows.items():
        assert flow.match == match(**dict(flow.match)), "matches must be canonical (sorted) for diffing"
        assert key == flow.key and key in s.desired.ranks


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_chains_on_generated_leaf_spine_and_fat_tree_fabrics(data: st.DataObject) -> None:
    topology = data.draw(st.sampled_from([LEAF_SPINE, FAT_TREE]))
    chains = data.draw(chain_lists(topology))
    placement = place(topology, chains)
    ready = data.draw(ready_subsets(placement))
    s = Scenario(topology, chains, placement, ready, compile_fabric(topology, chains, placement, ready))
    check_all(s, installed(s))


@settings(max_examples=30, deadline=None)
@given(topologies())
def test_without_chains_every_packet_and_arp_takes_the_shortest_path(topology: Topology) -> None:
    s = plan(topology, [])
    fabric = installed(s)
    check_all(s, fabric)
    for a in topology.hosts:
        for b in topology.hosts:
            if a != b:
                arp = {"eth_src": a.mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
                       "arp_spa": str(a.ip.ip), "arp_tpa": str(b.ip.ip)}
                trace = fabric.send(a.name, arp)
                assert trace.delivered_to == [b.name] and not trace.lost
                assert len(trace.switches) == shortest(topology, a.switch, b.switch) + 1


def _line(hosts: Sequence[int], computes: Sequence[int]) -> Topology:
    return make_topology(3, [(0, 1), (1, 2)], hosts, computes)


def _chain(name: str = "web", hops: int = 2, instances: int = 1, most: int | None = None, **kw: Any) -> Chain:
    """Hops of ``instances`` instances each; autoscaled up to ``most`` when that is given."""
    classifier = kw.pop("classifier", Classifier(ipaddress.ip_network("10.0.0.0/30"),
                                                  ipaddress.ip_network("10.0.0.4/30")))
    scaling = Scaling(instances, most or instances)
    return Chain(name, classifier, tuple(Hop(f"h{k}", "passthrough", scaling=scaling)
                                         for k in range(hops)), **kw)


def test_two_instances_split_clients_and_keep_both_directions_together_for_udp() -> None:
    # h1 (10.0.0.1) and h2 (10.0.0.2) differ in the low bit: with two instances they are split.
    topology = _line([0, 0, 2, 2, 2], [1])
    chain = _chain(hops=1, instances=2, symmetric=True,
                   classifier=Classifier(ipaddress.ip_network("10.0.0.0/30"), ipaddress.ip_network("10.0.0.4/30"),
                                         17, None, (53, 53)))
    s = plan(topology, [chain])
    fabric = installed(s)
    hosts = topology.host_by_name
    seen = {}
    for client in ("h1", "h2"):
        for sport in (5000, 5001):
            pkt = packet(hosts[client], hosts["h4"], 17, sport, 53)
            there = check(s, fabric, hosts[client], hosts["h4"], pkt)
            back = check(s, fabric, hosts["h4"], hosts[client], reply(pkt))
            assert back.instances == there.instances
            seen.setdefault(client, set()).update(there.instances)
    assert seen["h1"] != seen["h2"] and all(len(v) == 1 for v in seen.values())


def test_cookies_map_flows_back_to_their_chain_hop_and_instance_and_paths_show_the_route() -> None:
    topology = _line([0, 0, 2, 2, 2], [0, 2])
    s = plan(topology, [_chain(hops=2, instances=2, symmetric=True), _chain("other", hops=1, priority=5)])
    names = {cid: name for name, cid in s.desired.chain_ids.items()}
    by_mac = {spec.mac: spec for spec in s.placement.by_id().values()}
    handed_over = 0
    for flow in s.desired.flows.values():
        fields = cookies.decode(flow.cookie)
        assert fields is not None
        if fields.chain_id == cookies.NORMAL_CHAIN_ID:
            assert flow.table_id != 0 or flow.priority == 0
            continue
        name = names[fields.chain_id]
        handed = [a.value for a in flow.actions if isinstance(a, SetField) and a.field == "eth_dst"]
        # A flow that hands packets to an instance counts for that instance, unless it is an ingress or return.
        if handed and dict(flow.match).get("eth_type") == 0x8847:
            spec = by_mac[handed[0]]
            assert (spec.chain, spec.hop_index, spec.index) == (name, fields.hop, fields.instance)
            handed_over += 1
    assert handed_over, "the plan must hand labelled packets to instances, or the check above checked nothing"
    path = s.desired.paths["web"]
    assert path[0] == "h1" and path[-1] == "h4"
    assert [p for p in path if p.startswith("web-")] == ["web-h0-0", "web-h1-0"]


def test_consecutive_hops_on_one_compute_host_go_back_out_the_same_port() -> None:
    topology = _line([0, 2, 0, 2, 2], [1])
    s = plan(topology, [_chain(hops=3)])
    assert len({i.compute for i in s.placement.by_id().values()}) == 1
    check_all(s, installed(s))


def test_hop_without_ready_instance_is_bypassed_when_open_and_drops_when_closed() -> None:
    topology = _line([0, 0, 2, 2, 2], [1])
    for on_failure in ("open", "closed"):
        placement = place(topology, [_chain(on_failure=on_failure)])
        ready = {placement["web", 1][0].id}
        s = plan(topology, [_chain(on_failure=on_failure)], ready)
        hosts = topology.host_by_name
        pkt = packet(hosts["h1"], hosts["h4"], 6, 1234, 80)
        trace = check(s, installed(s), hosts["h1"], hosts["h4"], pkt)
        if on_failure == "open":
            assert trace.instances == [placement["web", 1][0].id]
            assert s.desired.status["web"].startswith("steered, bypassing hop(s) h0")
        else:
            assert trace.delivered == [] and s.desired.status["web"].startswith("closed")


def test_higher_priority_chain_wins_and_other_traffic_is_not_steered() -> None:
    topology = _line([0, 0, 2, 2, 2], [1, 2])
    wide = _chain("wide", hops=1, priority=10)
    narrow = _chain("narrow", hops=2, priority=20,
                    classifier=Classifier(ipaddress.ip_network("10.0.0.1/32"), ipaddress.ip_network("10.0.0.4/30"),
                                          6, None, (80, 80)))
    s = plan(topology, [wide, narrow])
    fabric = installed(s)
    hosts = topology.host_by_name
    trace = check(s, fabric, hosts["h1"], hosts["h4"], packet(hosts["h1"], hosts["h4"], 6, 999, 80))
    assert [i.split("-")[0] for i in trace.instances] == ["narrow", "narrow"]
    trace = check(s, fabric, hosts["h1"], hosts["h4"], packet(hosts["h1"], hosts["h4"], 6, 999, 443))
    assert [i.split("-")[0] for i in trace.instances] == ["wide"]
    trace = check(s, fabric, hosts["h4"], hosts["h1"], packet(hosts["h4"], hosts["h1"], 6, 80, 999))
    assert trace.instances == []   # neither chain is symmetric


def test_wide_port_range_becomes_masked_prefixes_covering_exactly_the_range() -> None:
    from controller.core.compiler import _port_values

    for lo, hi in [(1000, 1100), (0, 65535), (1, 65534), (80, 95), (32768, 61000)]:
        covered = set()
        for value in _port_values((lo, hi)):
            v, m = value if isinstance(value, tuple) else (value, 0xFFFF)
            block = {p for p in range(v, v + (0xFFFF ^ m) + 1)}
            assert not covered & block
            covered |= block
        assert covered == set(range(lo, hi + 1))
