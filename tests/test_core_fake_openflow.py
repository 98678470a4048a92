"""The fake OpenFlow 1.3 switch itself: it must refuse and do what the spec says, or the other tests prove nothing."""

from __future__ import annotations

import pytest

from controller.core.ofmsg import (OFPP_IN_PORT, Bucket, DeleteFlows, Flow, FlowMod, Group, GroupAction, GroupMod,
                                   Learn, Multipath, Output, PopMpls, PushMpls, Resubmit, SetField, match)
from fake_openflow import Ambiguous, FakeSwitch, OFError, multipath_link

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


# ---- Open vSwitch extensions: registers, resubmit, multipath, learn ----------------------------

TCP = dict(IP, ip_proto=6, tcp_src=40000, tcp_dst=80)
del TCP["udp_src"], TCP["udp_dst"]


def _reply(pkt: dict) -> dict:
    """The same flow's packet in the other direction."""
    out = dict(pkt, ipv4_src=pkt["ipv4_dst"], ipv4_dst=pkt["ipv4_src"], eth_src=pkt["eth_dst"], eth_dst=pkt["eth_src"])
    for src, dst in (("tcp_src", "tcp_dst"), ("udp_src", "udp_dst")):
        if src in pkt:
            out[src], out[dst] = pkt[dst], pkt[src]
    return out


def test_registers_start_at_zero_in_every_switch_and_never_leave_it() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(reg0=0), (SetField("reg0", 5), Resubmit(1)))
    add(switch, 10, match(reg0=5), (Output(2),), table=1)
    add(switch, 10, match(reg0=(0x100, 0x100)), (Output(3),), table=1)
    # The second packet starts from 0 again (else it would miss table 0), and no copy carries a register.
    assert switch.process(IP, 1) == [(2, IP)]
    assert switch.process(IP, 1) == [(2, IP)]
    with pytest.raises(OFError):
        add(switch, 1, match(reg8=1))


def test_resubmit_runs_the_entry_found_and_goes_on() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(in_port=1), (Resubmit(2), Output(4)))
    add(switch, 10, (), (SetField("eth_dst", "02:00:00:00:00:09"), Output(3)), goto=3, table=2)
    add(switch, 10, (), (SetField("reg1", 1),), table=3)
    add(switch, 10, match(in_port=5), (Resubmit(7), Output(4)))       # table 7 is empty: a miss does nothing
    rewritten = dict(IP, eth_dst="02:00:00:00:00:09")
    # The resubmitted entry's changes stay, and its goto_table is followed before going on.
    assert switch.process(IP, 1) == [(3, rewritten), (4, rewritten)]
    assert switch.process(IP, 5) == [(4, IP)]
    add(switch, 10, match(in_port=6), (Resubmit(0),))                 # backwards is allowed, and loops
    with pytest.raises(OFError, match="deeper than 64"):
        switch.process(dict(IP, eth_src="02:00:00:00:00:06"), 6)


def test_multipath_is_symmetric_and_a_new_link_moves_few_flows() -> None:
    flows = [dict(TCP, ipv4_src=f"10.0.{i % 7}.{i % 251}", tcp_src=1024 + i) for i in range(600)]
    flows += [dict(IP, ipv4_src=f"10.1.0.{i % 251}", udp_src=2000 + i) for i in range(600)]
    four = [multipath_link(f, 4) for f in flows]
    assert [multipath_link(_reply(f), 4) for f in flows] == four
    counts = [four.count(link) for link in range(4)]
    assert min(counts) > 0.2 * len(flows)
    five = [multipath_link(f, 5) for f in flows]
    moved = [(a, b) for a, b in zip(four, five) if a != b]
    assert all(b == 4 for _, b in moved)                 # only to the new link
    assert 0.12 < len(moved) / len(flows) < 0.28         # ~1/5
    assert any(multipath_link(f, 4, basis=1) != link for f, link in zip(flows, four))
    assert {multipath_link(f, 1) for f in flows} == {0}


def test_multipath_writes_the_low_16_bits_of_its_register() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(in_port=1), (SetField("reg3", 0xABCD0000 | 0xFFFF), Multipath(3, "reg3"), Resubmit(1)))
    for link in range(3):
        add(switch, 10, match(reg3=0xABCD0000 | link), (Output(10 + link),), table=1)
    assert switch.process(TCP, 1) == [(10 + multipath_link(TCP, 3), TCP)]
    for bad in (Multipath(0, "reg3"), Multipath(2, "eth_dst")):
        with pytest.raises(OFError):
            add(switch, 10, match(in_port=2), (bad,))


PIN = Learn(3, 300, 0xAB01, 30, ("eth_type", "ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "reg1"),
            (("reg0", 7),))


def test_learn_installs_a_flow_that_the_next_packet_hits() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(eth_type=0x0800, ip_proto=6), (SetField("reg1", 9), Resubmit(3), Resubmit(5)))
    add(switch, 1, match(eth_type=0x0800, ip_proto=6, reg1=9), (PIN, SetField("reg0", 1)), table=3)
    add(switch, 10, match(reg0=1), (Output(1),), table=5)
    add(switch, 10, match(reg0=7), (Output(7),), table=5)
    assert switch.process(TCP, 2) == [(1, TCP)]           # the first packet picks, and pins
    learned = Flow(1, 3, 300, match(eth_type=0x0800, ip_proto=6, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.2",
                                    tcp_src=40000, tcp_dst=80, reg1=9), (SetField("reg0", 7),), None, 0xAB01)
    assert learned in switch.flows()
    assert switch.process(TCP, 2) == [(7, TCP)]           # the next hits the pin
    assert switch.process(dict(TCP, tcp_src=40001), 2) == [(1, dict(TCP, tcp_src=40001))]   # another flow: no pin
    switch.apply(DeleteFlows(1, 0xAB00, 0xFF00, table_id=3))  # pins go by cookie like any flow
    assert [f.priority for f in switch.flows() if f.table_id == 3] == [1]


def test_learning_the_same_match_again_replaces_the_learned_flow() -> None:
    switch = FakeSwitch(1)
    for cookie in (0xAB01, 0xAB02):
        add(switch, 10, match(eth_type=0x0800, ip_proto=6), (Learn(3, 300, cookie, 30, PIN.copy, PIN.load),))
        switch.process(TCP, 2)
        switch.process(TCP, 2)
        assert [f.cookie for f in switch.flows() if f.table_id == 3] == [cookie]


@pytest.mark.parametrize("m, learn", [
    # The learned flow's ipv4_src needs eth_type among the constant fields before it (the flow pins eth_type).
    (match(eth_type=0x0800), Learn(3, 1, 0, 0, ("ipv4_src", "eth_type"), ())),
    # Copying ipv4_src needs the flow to match IPv4, and an unmatched eth_type is no constant.
    (match(in_port=1), Learn(3, 1, 0, 0, ("eth_type", "ipv4_src"), ())),
    # tcp_src needs ip_proto 6 in the flow; matching ip_proto 17 is not enough.
    (match(eth_type=0x0800, ip_proto=17), Learn(3, 1, 0, 0, ("eth_type", "ip_proto", "tcp_src"), ())),
    (match(eth_type=0x0800), Learn(3, 1, 0, 0, ("reg1",), (("ipv4_dst", 1),))),
])
def test_learn_is_refused_as_open_vswitch_refuses_it(m: tuple, learn: Learn) -> None:
    with pytest.raises(OFError, match="MATCH_INCONSISTENT"):
        add(FakeSwitch(1), 10, m, (learn,))


def test_a_learn_after_the_flow_changed_a_field_copies_the_new_value() -> None:
    switch = FakeSwitch(1)
    add(switch, 10, match(in_port=1, reg1=0), (SetField("reg1", 4), Learn(3, 1, 0, 0, ("in_port", "reg1"), ())))
    switch.process(IP, 1)
    assert [f.match for f in switch.flows() if f.table_id == 3] == [match(in_port=1, reg1=4)]
