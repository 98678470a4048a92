"""The core's messages as os-ken messages and as ovs-ofctl lines, checked without a switch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from chains.loader import load_chains
from controller import lldp, ofctl, ofwire
from controller.core.compiler import compile_fabric
from controller.core.diff import diff, resync
from controller.core.ofmsg import (
    OFPP_IN_PORT,
    Barrier,
    Bucket,
    DeleteFlows,
    DeleteGroups,
    Flow,
    FlowMod,
    Group,
    GroupAction,
    GroupMod,
    Output,
    PopMpls,
    PushMpls,
    SetField,
    match,
)
from controller.core.placement import place
from controller.osken_app import ofp, parser, to_osken
from test_controller_service import WEB
from topologies.loader import load_topology

TOPO = Path(__file__).resolve().parent.parent / "topologies" / "leaf-spine.yaml"
NAT = Path(__file__).resolve().parent.parent / "chains" / "examples" / "nat.yaml"
DP = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)

FLOW = Flow(1, 0, 1234, match(in_port=3, eth_type=0x0800, ipv4_src="10.0.1.1", ipv4_dst=("10.0.2.0", "255.255.255.0"),
                              ip_proto=6, tcp_dst=(0x50, 0xFFF0)),
            (SetField("eth_dst", "0a:00:00:00:00:01"), PushMpls(), SetField("mpls_label", 17), Output(1),
             GroupAction(7)),
            goto_table=2, cookie=0xC5000000000001FF)


def _serialized(msg: object) -> bytes:
    msg.serialize()
    return bytes(msg.buf)


def test_flow_mod() -> None:
    mod = to_osken(FlowMod("add", FLOW), DP)
    assert (mod.command, mod.table_id, mod.priority, mod.cookie) == (ofp.OFPFC_ADD, 0, 1234, FLOW.cookie)
    assert mod.match["ipv4_dst"] == ("10.0.2.0", "255.255.255.0")
    assert mod.match["tcp_dst"] == (0x50, 0xFFF0)
    apply, goto = mod.instructions
    assert [type(a).__name__ for a in apply.actions] == ["OFPActionSetField", "OFPActionPushMpls",
                                                         "OFPActionSetField", "OFPActionOutput", "OFPActionGroup"]
    assert goto.table_id == 2
    assert _serialized(mod)[1] == ofp.OFPT_FLOW_MOD


def test_delete_strict_carries_no_instructions() -> None:
    mod = to_osken(FlowMod("delete_strict", FLOW), DP)
    assert mod.command == ofp.OFPFC_DELETE_STRICT and mod.instructions == []
    assert mod.out_port == ofp.OFPP_ANY and mod.out_group == ofp.OFPG_ANY


def test_drop_flow_has_no_instruction() -> None:
    assert to_osken(FlowMod("add", Flow(1, 2, 0, ())), DP).instructions == []


def test_group_delete_and_barrier_messages() -> None:
    group = Group(1, 7, "select", (Bucket((PopMpls(), Output(OFPP_IN_PORT)), 2), Bucket((Output(4),))))
    mod = to_osken(GroupMod("add", group), DP)
    assert (mod.command, mod.type, mod.group_id) == (ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 7)
    assert [b.weight for b in mod.buckets] == [2, 1]
    assert to_osken(GroupMod("delete", group), DP).buckets == []
    flows = to_osken(DeleteFlows(1, 0xC5 << 56, 0xFF << 56), DP)
    assert (flows.command, flows.table_id, flows.cookie_mask) == (ofp.OFPFC_DELETE, ofp.OFPTT_ALL, 0xFF << 56)
    assert to_osken(DeleteGroups(1), DP).group_id == ofp.OFPG_ALL
    assert _serialized(to_osken(Barrier(1), DP))[1] == ofp.OFPT_BARRIER_REQUEST


def test_ofctl_lines() -> None:
    assert ofctl.flow_line(FLOW) == (
        "table=0,priority=1234,cookie=0xc5000000000001ff,eth_type=2048,in_port=3,ip_proto=6,"
        "ip_dst=10.0.2.0/255.255.255.0,ip_src=10.0.1.1,tcp_dst=80/65520,"
        "actions=set_field:0a:00:00:00:00:01->eth_dst,push_mpls:0x8847,set_field:17->mpls_label,"
        "output:1,group:7,goto_table:2")
    assert ofctl.flow_line(Flow(1, 2, 0, ())) == "table=2,priority=0,cookie=0x0,actions=drop"
    group = Group(1, 7, "select", (Bucket((Output(OFPP_IN_PORT),), 2),))
    assert ofctl.group_line(group) == "group_id=7,type=select,bucket=weight:2,actions=in_port"
    arp = Flow(1, 0, 800, match(eth_type=0x0806, in_port=4, arp_op=1, arp_spa="10.0.2.2", arp_tpa="10.0.1.200"),
               (SetField("arp_op", 2), SetField("arp_sha", "0e:00:00:00:00:01"), SetField("arp_tha", "02:00:00:00:00:02"),
                Output(OFPP_IN_PORT)))
    assert ofctl.flow_line(arp) == (
        "table=0,priority=800,cookie=0x0,arp_op=1,arp_spa=10.0.2.2,arp_tpa=10.0.1.200,eth_type=2054,in_port=4,"
        "actions=set_field:2->arp_op,set_field:0e:00:00:00:00:01->arp_sha,set_field:02:00:00:00:00:02->arp_tha,"
        "in_port")


def _compiled() -> list:
    topology = load_topology(TOPO)
    # web.yaml: steering with labels and masks; nat.yaml: ARP answered in place (ARP set-fields, IN_PORT).
    chains = [*load_chains(WEB, "web.yaml").chains, *load_chains(NAT.read_text(), "nat.yaml").chains]
    placement = place(topology, chains)
    desired = compile_fabric(topology, chains, placement, placement.by_id())
    return [*diff(compile_fabric(topology, [], {}, ()), desired), *resync(desired, 0x20001)]


def test_every_compiled_message_translates() -> None:
    messages = _compiled()
    assert any(isinstance(m, FlowMod) for m in messages)
    assert any(isinstance(m, FlowMod) and SetField("arp_op", 2) in m.flow.actions for m in messages)
    for message in messages:
        assert _serialized(to_osken(message, DP))


@pytest.mark.skipif(not shutil.which("ovs-ofctl"), reason="needs ovs-ofctl")
def test_ovs_ofctl_parses_every_compiled_flow() -> None:
    lines = [ofctl.flow_line(m.flow) for m in _compiled() if isinstance(m, FlowMod)]
    for line in lines:
        proc = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "parse-flow", line], capture_output=True, text=True)
        assert proc.returncode == 0, (line, proc.stderr)


def _osken_bytes(message: object, xid: int) -> bytes:
    msg = to_osken(message, DP)
    msg.set_xid(xid)
    return _serialized(msg)


def test_wire_encoder_matches_osken_byte_for_byte() -> None:
    group = Group(1, 7, "select", (Bucket((PopMpls(), Output(OFPP_IN_PORT)), 2), Bucket((Output(4),))))
    extra = [FlowMod("add", FLOW), FlowMod("modify_strict", FLOW), FlowMod("delete_strict", FLOW),
             FlowMod("add", Flow(1, 2, 0, ())), GroupMod("add", group), GroupMod("modify", group),
             GroupMod("delete", group), GroupMod("add", Group(1, 8, "all", (Bucket((Output(1),)),))),
             DeleteFlows(1, 0xC5 << 56, 0xFF << 56), DeleteGroups(1), Barrier(1),
             FlowMod("add", Flow(1, 0, 9, match(eth_type=0x0806, arp_tpa="10.0.0.1", eth_src=("0a:00:00:00:00:01",
                                                                                            "ff:ff:ff:00:00:00")),
                                 (SetField("ipv4_dst", "10.1.2.3"), Output(2))))]
    for xid, message in enumerate([*extra, *_compiled()]):
        assert ofwire.encode(message, xid) == _osken_bytes(message, xid), message


def test_masked_values_are_stored_masked() -> None:
    # 10.0.1.7/255.255.255.0 goes on the wire as 10.0.1.0 (OpenFlow requires value & mask).
    assert ofwire.oxm("ipv4_src", ("10.0.1.7", "255.255.255.0"))[4:] == bytes([10, 0, 1, 0, 255, 255, 255, 0])


def test_packet_out_matches_osken() -> None:
    frame = lldp.probe(0x20001, 3)
    msg = parser.OFPPacketOut(DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                              actions=[parser.OFPActionOutput(3, ofp.OFPCML_NO_BUFFER)], data=frame)
    msg.set_xid(5)
    assert ofwire.packet_out(5, 3, frame) == _serialized(msg)


def test_lldp_probe_round_trip() -> None:
    assert lldp.parse(lldp.probe(0x30402, 17)) == (0x30402, 17)
    assert lldp.parse(b"\x00" * 60) is None
    other = lldp.probe(1, 1).replace(b"clicksteer:", b"otherswitch")
    assert lldp.parse(other) is None
