"""The fake OpenFlow 1.3 switch itself: it must refuse and do what the spec says, or the other tests prove nothing."""

from __future__ import annotations

import pytest

from controller.core.ofmsg import (OFPP_IN_PORT, Bucket, DeleteFlows, Flow, FlowMod, Group, GroupAction, GroupMod,
                                   Output, PopMpls, PushMpls, SetField, match)
from fake_openflow import Ambiguous, FakeSwitch, OFError

IP = {"eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:02", "eth_type": 0x0800,
      "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2", "ip_proto": 17, "udp_src": 5000, "udp_dst": 53}


def add(switch: FakeSwitch, priority: int, m: tuple, actions: tuple = (), goto: int | None = None,
        table: int = 0, cookie: int = 0) -> Flow:
    flow = Flow(1, table, priority, m, actions, goto, cookie)
    switch.apply(FlowMod("add", flow))
    return flow


@pytest.mark.parametrize("m", [
    match(ipv4_src="10.0.0.1"),                                  # needs eth_type 0x0800
    match(eth_type=0x0800, tcp_dst=80),                          # needs ip_proto 6
    match(eth_type=0x0800, ip_proto=17, tcp_dst=80),             # ... not 17
    match(mpls_label=16),                                        # needs an MPLS eth_type
    match(arp_tpa="10.0.0.1", eth_type=0x0800),                  # needs ARP
    match(in_port=(1, 3)),                                       # in_port has no mask
    match(eth_type=0x0800, ipv4_src=("10.0.0.1", "255.255.255.0")),  # bits outside the mask
])
def test_flow_mods_that_break_the_spec_are_refused(m: tuple) -> None:
    with pytest.raises(OFError):
        add(FakeSwitch(1), 10, m)


def test_masked_matches_priorities_and_ties() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(eth_type=0x0800, ipv4_src=("10.0.0.1", "255.255.255.1")), (Output(1),))
    add(switch, 20, match(eth_type=0x0800, ipv4_src=("10.0.0.0", "255.255.255.1")), (Output(2),))
    assert switch.process(IP, 9) == [(1, IP)]
    assert switch.process(dict(IP, ipv4_src="10.0.0.4"), 9)[0][0] == 2
    add(switch, 10, match(eth_type=0x0800, ip_proto=17), (Output(3),))
    with pytest.raises(Ambiguous):
        switch.process(IP, 9)


def test_output_to_the_in_port_needs_ofpp_in_port() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(in_port=4), (Output(4),))
    assert switch.process(IP, 4) == []
    add(switch, 10, match(in_port=4), (Output(OFPP_IN_PORT),))
    assert switch.process(IP, 4) == [(4, IP)]


def test_mpls_push_set_pop_and_set_field_prerequisites() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(in_port=1), (PushMpls(), SetField("mpls_label", 99), Output(2)))
    [(_, labelled)] = switch.process(IP, 1)
    assert labelled["eth_type"] == 0x8847 and labelled["mpls_label"] == 99
    add(switch, 10, match(eth_type=0x8847, mpls_label=99), (PopMpls(0x0800), Output(3)))
    [(_, plain)] = switch.process(labelled, 2)
    assert plain == IP
    add(switch, 10, match(in_port=5), (SetField("mpls_label", 1), Output(2)))
    with pytest.raises(OFError):
        switch.process(IP, 5)                 # no label to set on a plain packet
    add(switch, 10, match(in_port=6), (PushMpls(), SetField("ipv4_dst", "1.2.3.4"), Output(2)))
    with pytest.raises(OFError):
        switch.process(IP, 6)                 # no IPv4 header to rewrite under a label


def test_goto_table_and_table_miss() -> None:
    switch = FakeSwitch(1)
    add(switch, 0, (), (SetField("eth_dst", "02:00:00:00:00:09"),), goto=2)
    add(switch, 1, (), (Output(1),), table=2)
    assert switch.process(IP, 7) == [(1, dict(IP, eth_dst="02:00:00:00:00:09"))]
    with pytest.raises(OFError):
        add(switch, 0, (), (), goto=0, table=2)
    assert FakeSwitch(1).process(IP, 7) == []


def test_modify_keeps_the_cookie_add_replaces_delete_by_cookie_mask() -> None:
    switch = FakeSwitch(1)
    flow = add(switch, 10, match(in_port=1), (Output(2),), cookie=0xAB00)
    switch.apply(FlowMod("modify_strict", Flow(1, 0, 10, flow.match, (Output(3),), None, 0xCD00)))
    assert switch.flows() == [Flow(1, 0, 10, flow.match, (Output(3),), None, 0xAB00)]
    switch.apply(FlowMod("modify_strict", Flow(1, 0, 11, flow.match, (Output(4),))))   # no such entry
    assert len(switch.flows()) == 1
    add(switch, 10, flow.match, (Output(5),), cookie=0xCD00)
    assert switch.flows() == [Flow(1, 0, 10, flow.match, (Output(5),), None, 0xCD00)]
    add(switch, 12, match(in_port=2), cookie=0xAB01)
    switch.apply(DeleteFlows(1, 0xAB00, 0xFF00))
    assert [f.cookie for f in switch.flows()] == [0xCD00]


def test_groups_all_select_and_deleting_a_group_deletes_its_flows() -> None:
    switch = FakeSwitch(1)
    with pytest.raises(OFError):
        add(switch, 10, match(in_port=1), (GroupAction(7),))
    switch.apply(GroupMod("add", Group(1, 7, "all", (Bucket((Output(2),)), Bucket((Output(3),))))))
    add(switch, 10, match(in_port=1), (GroupAction(7),))
    assert [port for port, _ in switch.process(IP, 1)] == [2, 3]
    switch.apply(GroupMod("modify", Group(1, 7, "select", (Bucket((Output(2),)), Bucket((Output(3),))))))
    # Like Open vSwitch's default hash, UDP ports do not count: every UDP flow of a host pair goes one way.
    ports = {switch.process(dict(IP, udp_src=p), 1)[0][0] for p in range(5000, 5020)}
    assert len(ports) == 1
    with pytest.raises(OFError):
        switch.apply(GroupMod("add", Group(1, 7, "all", ())))
    switch.apply(GroupMod("delete", Group(1, 7, "all", ())))
    assert switch.flows() == []
