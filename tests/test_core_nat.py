"""A chain with a source NAT hop: what packets to and from the NAT address do on the fake fabric.

The NAT address (chains/examples/nat.yaml: 10.0.1.200) is no host of the
topology: the fabric must answer ARP for it and give packets from it a MAC,
so that the server sees neither the NAT instance nor the steering.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from chains.loader import load_chains
from chains.model import Chain
from controller.core import cookies
from controller.core.compiler import ETH_ARP, Desired, compile_fabric, virtual_mac
from controller.core.diff import diff
from controller.core.placement import Placement, place
from fake_openflow import FakeFabric, Trace
from topologies.loader import load_topology
from topologies.model import Topology

ROOT = Path(__file__).resolve().parent.parent
NAT = "10.0.1.200"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def _chains(name: str) -> list[Chain]:
    path = ROOT / "chains" / "examples" / name
    return list(load_chains(path.read_text(), name).chains)


class Setup:
    def __init__(self, chains: list[Chain]) -> None:
        self.topology: Topology = load_topology(ROOT / "topologies" / "leaf-spine.yaml")
        self.placement: Placement = place(self.topology, chains)
        self.desired: Desired = compile_fabric(self.topology, chains, self.placement, self.placement.by_id())
        self.fabric = FakeFabric(self.topology, self.placement.by_id().values())
        self.fabric.apply_all(diff(Desired.empty(), self.desired))
        self.host = self.topology.host_by_name
        self.ids = {spec.hop: spec.id for spec in self.placement.by_id().values()}


@pytest.fixture
def nat() -> Setup:
    setup = Setup(_chains("nat.yaml"))
    client = str(setup.host["client1"].ip.ip)

    def translate(pkt: dict[str, Any]) -> dict[str, Any]:
        # What the NAT instance does to client1's connection (one mapping is enough here).
        if pkt["ipv4_dst"] == NAT:
            return dict(pkt, ipv4_dst=client, tcp_dst=40000)
        return dict(pkt, ipv4_src=NAT, tcp_src=20000)

    setup.fabric.rewrites[setup.ids["nat"]] = translate
    return setup


def _arp_request(setup: Setup, host: str, target: str) -> dict[str, Any]:
    h = setup.host[host]
    return {"eth_src": h.mac, "eth_dst": BROADCAST, "eth_type": ETH_ARP, "arp_op": 1, "arp_spa": str(h.ip.ip),
            "arp_tpa": target, "arp_sha": h.mac, "arp_tha": "00:00:00:00:00:00"}


def _tcp(src: str, dst: str, eth_src: str, eth_dst: str, sport: int, dport: int) -> dict[str, Any]:
    return {"eth_src": eth_src, "eth_dst": eth_dst, "eth_type": 0x0800, "ipv4_src": src, "ipv4_dst": dst,
            "ip_proto": 6, "tcp_src": sport, "tcp_dst": dport}


def _only_delivery(trace: Trace, host: str) -> dict[str, Any]:
    assert trace.delivered_to == [host], trace
    assert not trace.lost, trace
    return trace.delivered[0][1]


def test_the_nat_address_gets_a_locally_administered_unicast_mac_used_by_nothing_else(nat: Setup) -> None:
    vmac = nat.desired.nat_macs[NAT]
    first = int(vmac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01
    in_use = {h.mac for h in nat.topology.hosts} | {c.uplink_mac for c in nat.topology.computes} | \
        {s.mac for s in nat.placement.by_id().values()}
    assert vmac not in in_use
    assert vmac == Setup(_chains("nat.yaml")).desired.nat_macs[NAT]     # deterministic


def test_server_asking_for_the_nat_address_gets_the_reply_at_its_own_port(nat: Setup) -> None:
    server = nat.host["server2"]
    vmac = nat.desired.nat_macs[NAT]
    reply = _only_delivery(nat.fabric.send("server2", _arp_request(nat, "server2", NAT)), "server2")
    assert reply == {"eth_src": vmac, "eth_dst": server.mac, "eth_type": ETH_ARP, "arp_op": 2,
                     "arp_sha": vmac, "arp_spa": NAT, "arp_tha": server.mac, "arp_tpa": str(server.ip.ip)}
    # ARP between real hosts is still unicast to its owner.
    request = _arp_request(nat, "server2", str(nat.host["client1"].ip.ip))
    assert _only_delivery(nat.fabric.send("server2", request), "client1") == request


def test_packets_from_the_nat_reach_the_server_from_the_virtual_mac(nat: Setup) -> None:
    client, server = nat.host["client1"], nat.host["server2"]
    syn = _tcp(str(client.ip.ip), str(server.ip.ip), client.mac, server.mac, 40000, 80)
    trace = nat.fabric.send("client1", syn)
    assert trace.instances == [nat.ids["fw"], nat.ids["nat"]]
    got = _only_delivery(trace, "server2")
    assert got == dict(syn, eth_src=nat.desired.nat_macs[NAT], ipv4_src=NAT, tcp_src=20000)


def test_replies_to_the_virtual_mac_cross_the_hops_in_reverse_order(nat: Setup) -> None:
    client, server = nat.host["client1"], nat.host["server2"]
    reply = _tcp(str(server.ip.ip), NAT, server.mac, nat.desired.nat_macs[NAT], 80, 20000)
    trace = nat.fabric.send("server2", reply)
    assert trace.instances == [nat.ids["nat"], nat.ids["fw"]]
    got = _only_delivery(trace, "client1")
    assert got == dict(reply, eth_dst=client.mac, ipv4_dst=str(client.ip.ip), tcp_dst=40000)


def test_the_nat_flows_belong_to_the_chain_and_go_with_it(nat: Setup) -> None:
    chain_id = nat.desired.chain_ids["nat-egress"]
    nat_flows = [f for f in nat.desired.flows.values() if NAT in dict(f.match).values()]
    assert nat_flows
    assert all(cookies.decode(f.cookie).chain_id == chain_id for f in nat_flows)
    nat.fabric.apply_all(diff(nat.desired, compile_fabric(nat.topology, [], Placement(), ())))
    trace = nat.fabric.send("server2", _arp_request(nat, "server2", NAT))
    assert not trace.delivered and trace.lost == ["dropped at leaf2"]


def test_chains_without_nat_hops_add_no_nat_flows() -> None:
    setup = Setup(_chains("web.yaml"))
    assert setup.desired.nat_macs == {}
    base = compile_fabric(setup.topology, [], Placement(), ()).flows
    assert {k for k, f in setup.desired.flows.items() if f.cookie == cookies.NORMAL} == set(base)
    assert not any(dict(f.match).get("eth_type") == ETH_ARP for k, f in setup.desired.flows.items() if k not in base)


def test_a_virtual_mac_taken_by_a_host_moves_to_the_next_attempt() -> None:
    chains = _chains("nat.yaml")
    topology = load_topology(ROOT / "topologies" / "leaf-spine.yaml")
    hosts = tuple(replace(h, mac=virtual_mac(NAT)) if h.name == "server1" else h for h in topology.hosts)
    topology = replace(topology, hosts=hosts)
    placement = place(topology, chains)
    desired = compile_fabric(topology, chains, placement, placement.by_id())
    assert desired.nat_macs[NAT] == virtual_mac(NAT, 1)


def test_chains_sharing_a_nat_address_answer_for_it_at_every_destination_with_one_owner() -> None:
    tcp = _chains("nat.yaml")[0]
    udp = replace(tcp, name="nat-udp", classifier=replace(tcp.classifier, dst=ip_network("10.0.2.1/32"), protocol=17),
                  priority=300)
    setup = Setup([tcp, udp])
    vmac = setup.desired.nat_macs[NAT]
    for server in ("server1", "server2"):
        reply = _only_delivery(setup.fabric.send(server, _arp_request(setup, server, NAT)), server)
        assert (reply["arp_op"], reply["arp_sha"]) == (2, vmac)
    owner = setup.desired.chain_ids["nat-egress"]      # the first by name
    assert {cookies.decode(f.cookie).chain_id for f in setup.desired.flows.values()
            if NAT in dict(f.match).values() and dict(f.match).get("eth_type") == ETH_ARP} == {owner}
