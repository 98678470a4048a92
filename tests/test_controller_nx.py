"""Open vSwitch's extensions (registers, resubmit, multipath, learn) on the wire and as ovs-ofctl text.

The fast encoder (controller/ofwire.py) is held byte for byte to os-ken's
serialisation, and both it and the ovs-ofctl text (controller/ofctl.py) to
what Open vSwitch itself makes of them: offline with ``ovs-ofctl ofp-print``
and ``parse-flow``, and on a real bridge, where a traced packet runs the
learn action.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest

from controller import ofctl, ofwire
from controller.core.ofmsg import (OFPP_IN_PORT, Barrier, Bucket, Flow, FlowMod, Group, GroupMod, Learn, Multipath,
                                   Output, PushMpls, Resubmit, SetField, match)
from controller.osken_app import ofp, parser, to_osken
from topologies.generators import linear
from topologies.ovs import run

DP = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)
UDP = match(eth_type=0x0800, ip_proto=17)
TCP = match(eth_type=0x0800, ip_proto=6)
PIN_COOKIE = 0xC500000000000100


def _pin(link: int, ports: tuple[str, str], fin_idle_timeout: int = 0) -> Learn:
    return Learn(3, 20, PIN_COOKIE + link, 30, ("eth_type", "ip_proto", "ipv4_src", "ipv4_dst", *ports, "reg1"),
                 (("reg0", 100 + link),), fin_idle_timeout)


def pipeline(dpid: int, port: int) -> list[Flow]:
    """The autoscaled-hop pattern: pick a link per flow, pin the flow to it, hand it over by register."""
    flows = []
    for proto, ports, fin in ((UDP, ("udp_src", "udp_dst"), 0), (TCP, ("tcp_src", "tcp_dst"), 2)):
        flows.append(Flow(dpid, 0, 10, proto, (SetField("reg1", 7), Resubmit(3), Resubmit(5))))
        flows.append(Flow(dpid, 3, 10, (*proto, ("reg1", 7)), (Multipath(2, "reg3"), Resubmit(4))))
        for link in range(2):
            flows.append(Flow(dpid, 4, 10, tuple(sorted((*proto, ("reg1", 7), ("reg3", (link, 0xFFFF))))),
                              (_pin(link, ports, fin), SetField("reg0", 100 + link)), cookie=PIN_COOKIE + link))
    for link in range(2):
        flows.append(Flow(dpid, 5, 10, match(reg0=100 + link), (Output(port),)))
    return flows


EXTRA = [
    # A Learn after the flow changed a field it copies: that field is copied, not pinned.
    Flow(1, 2, 5, match(in_port=3, reg2=1), (SetField("reg2", 4), Multipath(16, "reg5", basis=77),
                                             Learn(6, 9, 0, 0, ("in_port", "reg2", "reg5"), (("eth_dst", "02:00:00:00:00:09"),)),
                                             PushMpls(), SetField("mpls_label", 3), Output(OFPP_IN_PORT))),
    Flow(1, 1, 1, (), (Learn(2, 1, 0, 0, ("reg7",), ()),)),       # a Learn last: its padding ends the message
]


def _osken_bytes(message: Any, xid: int) -> bytes:
    msg = to_osken(message, DP)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def test_wire_encoder_matches_osken_byte_for_byte() -> None:
    group = Group(1, 9, "select", (Bucket((Resubmit(4), Output(2))), Bucket((Multipath(3, "reg0"),))))
    messages = [FlowMod("add", f) for f in [*pipeline(1, 1), *EXTRA]] + [GroupMod("add", group)]
    for xid, message in enumerate(messages):
        assert ofwire.encode(message, xid) == _osken_bytes(message, xid), message


def test_layouts() -> None:
    assert ofwire.oxm("reg3", 5) == bytes.fromhex("00010604" "00000005")                  # class NXM_NX, field 3
    assert ofwire.oxm("reg0", (1, 0xFFFF)) == bytes.fromhex("00010108" "00000001" "0000ffff")
    assert ofwire.action_bytes(Resubmit(5)) == bytes.fromhex("ffff0010" "00002320" "000e" "fff8" "05000000")
    assert ofwire.action_bytes(Multipath(4, "reg3", 9)) == bytes.fromhex(
        "ffff0020" "00002320" "000a" "0003" "0009" "0000" "0002" "0003" "00000000" "0000" "000f" "00010604")
    learn = Learn(3, 20, 0xAB, 30, ("eth_type", "ipv4_src"), (("reg0", 7),), 2)
    pins = ofwire.learn_pins(UDP, (learn,))[0]
    assert pins == (("eth_type", 0x0800),)
    assert ofwire.action_bytes(learn, pins) == bytes.fromhex(
        "ffff0048" "00002320" "0010" "001e" "0000" "0014" "00000000000000ab" "0000" "03" "00" "0002" "0000"
        "2010" "0800" "80000a02" "0000"                  # eth_type = 0x0800 (pinned by the flow's match)
        "0020" "80001604" "0000" "80001604" "0000"       # ipv4_src[] = ipv4_src[]
        "2820" "00000007" "00010004" "0000"              # load 7 -> reg0[]
        "00000000")                                       # padding to 8 bytes


def test_learn_pins_only_values_the_flow_still_holds() -> None:
    learn = Learn(3, 1, 0, 0, ("eth_type", "ip_proto", "ipv4_src", "reg1", "reg2", "in_port"), ())
    m = match(eth_type=0x0800, ip_proto=6, ipv4_src=("10.0.0.0", "255.0.0.0"), reg1=1, reg2=2, in_port=4)
    assert ofwire.learn_pins(m, (Output(1), learn)) == (
        (), (("eth_type", 0x0800), ("ip_proto", 6), ("reg1", 1), ("reg2", 2), ("in_port", 4)))
    assert ofwire.learn_pins(m, (SetField("reg1", 5), Multipath(2, "reg2"), learn))[2] == (
        ("eth_type", 0x0800), ("ip_proto", 6), ("in_port", 4))
    assert ofwire.learn_pins(m, (Resubmit(1), learn))[1] == ()
    assert ofwire.learn_pins(m, (Output(1),)) == ((),)


def test_ofctl_text() -> None:
    flows = pipeline(1, 1)
    assert ofctl.flow_line(flows[0]) == (
        "table=0,priority=10,cookie=0x0,eth_type=2048,ip_proto=17,actions=set_field:7->reg1,resubmit(,3),resubmit(,5)")
    assert ofctl.flow_line(flows[1]) == (
        "table=3,priority=10,cookie=0x0,eth_type=2048,ip_proto=17,reg1=7,"
        "actions=multipath(symmetric_l3l4+udp,0,hrw,2,0,reg3[0..15]),resubmit(,4)")
    assert ofctl.flow_line(flows[6]) == (
        "table=4,priority=10,cookie=0xc500000000000100,eth_type=2048,ip_proto=6,reg1=7,reg3=0/65535,"
        "actions=learn(table=3,priority=20,cookie=0xc500000000000100,idle_timeout=30,fin_idle_timeout=2,"
        "eth_type=2048,ip_proto=6,ip_src[],ip_dst[],tcp_src[],tcp_dst[],reg1=7,load:0x64->reg0[]),set_field:100->reg0")
    assert ofctl.action_text(EXTRA[0].actions[2]) == (
        "learn(table=6,priority=9,cookie=0x0,idle_timeout=0,fin_idle_timeout=0,in_port[],reg2[],reg5[],"
        "load:0x20000000009->eth_dst[])")


def _ovs_ofctl(*args: str) -> str:
    proc = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], capture_output=True, text=True)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not shutil.which("ovs-ofctl"), reason="needs ovs-ofctl")
def test_open_vswitch_reads_the_bytes_as_it_reads_the_text() -> None:
    # Open vSwitch's own decoder checks what os-ken cannot: the Nicira numbers (os-ken 4.2 does not
    # even name symmetric_l3l4+udp), the learn specs' widths and their prerequisites.
    for flow in [*pipeline(1, 1), *EXTRA]:
        printed = _ovs_ofctl("ofp-print", ofwire.encode(FlowMod("add", flow), 1).hex())
        parsed = _ovs_ofctl("parse-flow", ofctl.flow_line(flow))
        # The one expected difference: os-ken's in_port is the 32-bit OXM one, ovs-ofctl's the 16-bit NXM one.
        printed = printed.replace("OXM_OF_IN_PORT[]", "NXM_OF_IN_PORT[]").replace("in_port_oxm=", "in_port=")
        assert printed == parsed, flow
        assert "error" not in printed


# ---- on a real Open vSwitch ---------------------------------------------------------------------

def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the switch closed the connection")
        data += chunk
    return data


def send_bytes(mgmt_socket: str, messages: list[Any]) -> list[tuple[int, int, int]]:
    """Send the messages' ofwire bytes over a bridge's OpenFlow management socket, then a barrier;
    the (xid, type, code) of every error the switch answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(mgmt_socket)
        sock.sendall(struct.pack("!BBHI", ofwire.VERSION, 0, 8, 0))               # OFPT_HELLO
        barrier = len(messages) + 1
        sock.sendall(b"".join(ofwire.encode(m, xid) for xid, m in enumerate(messages, 1))
                     + ofwire.encode(Barrier(0), barrier))
        errors = []
        while True:
            _, kind, length, xid = struct.unpack("!BBHI", _read(sock, 8))
            body = _read(sock, length - 8)
            if kind == 1:                                                           # OFPT_ERROR
                errors.append((xid, *struct.unpack_from("!HH", body)))
            elif kind == 21 and xid == barrier:                                     # OFPT_BARRIER_REPLY
                return errors


def _flows(state: Any, bridge: str, *args: str) -> list[str]:
    out = state.ovs().ofctl("dump-flows", "--no-stats", bridge, *args)
    return sorted(line.strip() for line in out.splitlines() if "actions=" in line)


def _pins(state: Any, bridge: str) -> dict[tuple[str, str, str, str], str]:
    """The learned pins: (nw_src, nw_dst, tp_src, tp_dst) -> the reg0 value they load."""
    out = {}
    for line in _flows(state, bridge, "table=3"):
        if "priority=20" in line:
            fields = dict(re.findall(r"(nw_src|nw_dst|tp_src|tp_dst)=([^,\s]+)", line))
            out[fields["nw_src"], fields["nw_dst"], fields["tp_src"], fields["tp_dst"]] = \
                re.search(r"load:(0x[0-9a-f]+)->NXM_NX_REG0", line).group(1)
    return out


@pytest.mark.ovs
def test_open_vswitch_takes_the_flows_both_ways_and_runs_the_learn(fabric: Any) -> None:
    topology = linear(1)
    state = fabric(topology)
    bridge = state.switch_bridge("s1")
    ovs = state.ovs()
    port = state.hosts["h1"]["port"]
    flows = pipeline(topology.switches[0].dpid, port)

    for flow in flows:
        ovs.ofctl("add-flow", bridge, ofctl.flow_line(flow))
    as_text = _flows(state, bridge)
    assert len(as_text) == len(flows)
    text = "\n".join(as_text)
    for part in ("multipath(symmetric_l3l4+udp,0,hrw,2,0,NXM_NX_REG3[0..15])", "resubmit(,3)", "set_field:0x7->reg1",
                 "learn(table=3,idle_timeout=30,fin_idle_timeout=2,priority=20,cookie=0xc500000000000101,"
                 "eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],NXM_OF_IP_DST[],NXM_OF_TCP_SRC[],NXM_OF_TCP_DST[],"
                 "reg1=0x7,load:0x65->NXM_NX_REG0[])"):
        assert part in text

    # The same flows as ofwire bytes, through an OpenFlow connection: no error, the same table.
    ovs.ofctl("del-flows", bridge)
    assert send_bytes(str(ovs.rundir / f"{bridge}.mgmt"), [FlowMod("add", f) for f in flows]) == []
    assert _flows(state, bridge) == as_text

    # Packets (traced with -generate, which runs learn): each flow is pinned to the link multipath
    # picked, both directions of a flow to the same one, and the flows spread over both links.
    vswitchd = str(ovs.ctl_socket("ovs-vswitchd"))
    for sport in range(5000, 5016):
        for src, dst, tp_src, tp_dst in (("10.0.0.1", "10.0.0.9", sport, 53), ("10.0.0.9", "10.0.0.1", 53, sport)):
            run(["ovs-appctl", "-t", vswitchd, "ofproto/trace", bridge,
                 f"in_port={port},udp,nw_src={src},nw_dst={dst},udp_src={tp_src},udp_dst={tp_dst}", "-generate"],
                ovs.env)
    pins = _pins(state, bridge)
    assert len(pins) == 32
    for (src, dst, tp_src, tp_dst), load in pins.items():
        assert pins[dst, src, tp_dst, tp_src] == load
    assert set(pins.values()) == {"0x64", "0x65"}
    # A pinned flow's next packet hits its pin.
    trace = run(["ovs-appctl", "-t", vswitchd, "ofproto/trace", bridge,
                 f"in_port={port},udp,nw_src=10.0.0.1,nw_dst=10.0.0.9,udp_src=5000,udp_dst=53"], ovs.env)
    assert re.search(r"\b3\. udp,reg1=0x7,.*, priority 20, cookie 0xc50000000000010[01]\n", trace)
    assert f"load:{pins['10.0.0.1', '10.0.0.9', '5000', '53']}->NXM_NX_REG0[]" in trace
