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
