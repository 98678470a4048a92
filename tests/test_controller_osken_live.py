"""The os-ken application against a real Open vSwitch: phases confirmed by barriers, switch errors
mapped back to the message that caused them.

os-ken's threads cannot be stopped, so the application runs in a child
process that reports what ``send`` returned as JSON and exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller import testbed
from topologies import netns
from topologies.generators import linear

pytestmark = [pytest.mark.ovs, pytest.mark.slow]

CHILD = """
import json, os, sys, time
from controller import osken_app
from controller.core.ofmsg import Barrier, Flow, FlowMod, GroupAction, Output, match

port, dpid = int(sys.argv[1]), int(sys.argv[2])
app = osken_app.start(None, "127.0.0.1", port)
print("listening", flush=True)
for _ in range(300):
    if dpid in app.connected():
        break
    time.sleep(0.05)
good = FlowMod("add", Flow(dpid, 0, 10, match(in_port=1), (Output(2),), cookie=0xC500000000000101))
bad = FlowMod("add", Flow(dpid, 0, 11, match(in_port=2), (GroupAction(999),), cookie=0xC500000000000202))
later = FlowMod("add", Flow(dpid, 0, 12, match(in_port=3), (Output(1),), cookie=0xC500000000000303))
result = app.send([good, bad, Barrier(dpid), later, Barrier(dpid)])
absent = app.send([FlowMod("add", Flow(dpid + 1, 0, 1, (), (Output(1),)))])
print(json.dumps({"errors": [[e.dpid, e.message.flow.cookie if e.message else None, e.reason]
                             for e in result.errors],
                  "unconfirmed": sorted(result.unconfirmed), "absent": sorted(absent.unconfirmed)}), flush=True)
os._exit(0)
"""


def test_errors_map_to_their_message_and_phases_are_confirmed(fabric: Any) -> None:
    topology = linear(1)
    dpid = topology.switches[0].dpid
    port = testbed.free_port()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(port), str(dpid)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "listening"
        state = fabric(topology, controller=f"tcp:127.0.0.1:{port}")
        report = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    assert report["errors"] == [[dpid, 0xC500000000000202, "OFPET_BAD_ACTION(2)/OFPBAC_BAD_OUT_GROUP(9)"]]
    assert report["unconfirmed"] == []
    assert report["absent"] == [dpid + 1]
    flows = state.ovs().ofctl("dump-flows", "--no-stats", state.switch_bridge("s1"))
    # The good flows of both phases are in; the refused one is not.
    assert "priority=10,in_port=1" in flows and "priority=12,in_port=3" in flows
    assert "priority=11" not in flows


STATS_CHILD = """
import json, os, sys, time
from controller import osken_app
from controller.core.compiler import PRIO_RETURN, TABLE_HANDOFF, TABLE_STEER
from controller.core.ofmsg import Barrier, Flow, FlowMod, Output, match

port, s1, s2 = (int(a) for a in sys.argv[1:4])
app = osken_app.start(None, "127.0.0.1", port)
print("listening", flush=True)
ports = json.loads(sys.stdin.readline())
for _ in range(300):
    if {s1, s2} <= app.connected():
        break
    time.sleep(0.05)
h1, up1, h2, up2 = ports["h1"], ports["up1"], ports["h2"], ports["up2"]
IN, OUT, BACK = 0xC500000012340100, 0xC500000012340101, 0xC500000012340102
flows = [Flow(s1, TABLE_STEER, PRIO_RETURN, match(in_port=h1), (), TABLE_HANDOFF, OUT),
         Flow(s1, TABLE_HANDOFF, 100, match(in_port=h1), (Output(up1),), cookie=IN),
         Flow(s1, TABLE_STEER, PRIO_RETURN, match(in_port=up1), (Output(h1),), cookie=BACK),
         Flow(s2, TABLE_STEER, 10, match(in_port=h2), (Output(up2),), cookie=BACK),
         Flow(s2, TABLE_STEER, 10, match(in_port=up2), (Output(h2),), cookie=BACK)]
# Enough flows on s2 that its flow statistics reply comes in several parts (64 KiB each).
flows += [Flow(s2, TABLE_STEER, 1, match(eth_type=0x800, ipv4_dst=f"10.1.{i // 256}.{i % 256}"), (Output(up2),),
               cookie=BACK) for i in range(1500)]
sent = app.send([FlowMod("add", f) for f in flows] + [Barrier(s1), Barrier(s2)])
assert sent.ok, sent
print("installed", flush=True)
sys.stdin.readline()      # the traffic has been sent
start = time.monotonic()
polls = []
while True:
    got = app.stats([s1, 999], timeout=2.0)
    counted = sum(f.packets for f in got[s1].flows if f.cookie == IN) if s1 in got else 0
    counted_bytes = sum(f.bytes for f in got[s1].flows if f.cookie == IN) if s1 in got else 0
    polls.append([round(time.monotonic() - start, 3), counted])
    # ARP counts too: wait for the bytes of all 5 echo requests, not just 5 packets.
    if counted_bytes >= 5 * 98 or time.monotonic() - start > 10:
        break
    time.sleep(0.02)
before = time.monotonic()
absent = app.stats([999], timeout=2.0)
absent_s = time.monotonic() - before
both = app.stats(timeout=2.0)
print(json.dumps({
    "polls": polls, "keys": sorted(got), "absent": sorted(absent), "absent_s": absent_s, "all": sorted(both),
    "time_ok": start < got[s1].time <= time.monotonic(),
    "flows": [[f.table_id, f.priority, f.cookie, f.match, f.packets, f.bytes] for f in got[s1].flows],
    "ports": {p.port_no: [p.rx_packets, p.tx_packets, p.rx_bytes, p.tx_bytes] for p in got[s1].ports},
    "s2_flows": len(both[s2].flows)}), flush=True)
os._exit(0)
"""


def test_stats_count_packets_of_our_flows_and_ports(fabric: Any) -> None:
    topology = linear(2)
    s1, s2 = (s.dpid for s in topology.switches)
    port = testbed.free_port()
    child = subprocess.Popen([sys.executable, "-c", STATS_CHILD, str(port), str(s1), str(s2)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "listening"
        state = fabric(topology, controller=f"tcp:127.0.0.1:{port}")
        link = state.find_link("s1", "s2")
        up1, up2 = (link["a_port"], link["b_port"]) if link["a"] == "s1" else (link["b_port"], link["a_port"])
        h1, h2 = state.hosts["h1"]["port"], state.hosts["h2"]["port"]
        child.stdin.write(json.dumps({"h1": h1, "up1": up1, "h2": h2, "up2": up2}) + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "installed"
        ip2 = state.hosts["h2"]["ip"].split("/")[0]
        pinged = netns.exec_in(state.host_namespace("h1"), ["ping", "-c", "5", "-i", "0.2", "-W", "2", ip2],
                               check=False)
        assert pinged.returncode == 0, pinged.stdout + pinged.stderr
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.poll() is not None else "no report"
        report = json.loads(line)
    finally:
        child.kill()
        child.wait()
    print("flow counter polls [seconds after the ping ended, packets]:", report["polls"])
    assert report["polls"][-1][1] >= 5, report["polls"]               # the 5 echo requests (and ARP)
    assert report["keys"] == [s1] and report["absent"] == [] and report["all"] == [s1, s2]
    assert report["absent_s"] < 0.5          # nothing to wait for when no asked switch is connected
    assert report["time_ok"]
    # Only our cookies (not the LLDP flow), only the two tables, matches in the core's canonical form.
    flows = {(t, prio, cookie): (m, packets, octets) for t, prio, cookie, m, packets, octets in report["flows"]}
    assert set(flows) == {(0, 500, 0xC500000012340101), (5, 100, 0xC500000012340100), (0, 500, 0xC500000012340102)}
    assert flows[(5, 100, 0xC500000012340100)][0] == [["in_port", h1]]
    assert flows[(5, 100, 0xC500000012340100)][2] >= 5 * 98           # 98-byte ICMP echo frames
    # h1's port received what h1 sent and sent what came back.
    rx_packets, tx_packets, rx_bytes, tx_bytes = report["ports"][str(h1)]
    assert rx_packets >= 5 and tx_packets >= 5 and rx_bytes >= 5 * 98 and tx_bytes >= 5 * 98
    assert report["s2_flows"] == 1502          # every part of a multipart reply
