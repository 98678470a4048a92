"""Automatic scaling end to end: real switches, statistics, agents, instances and traffic.

A monitor hop (min 1, max 3, 1000 packets/s per instance) gets a UDP load of
many short flows from client1 to server1, and one long-lived TCP session
crosses it the whole time (both ways: the chain is symmetric, so a flow's
replies must come back through the instance its requests were pinned to).  The controller polls OpenFlow statistics every
0.5 s.  Checks count instances, events and packets; none is a timing budget
(bench/scale_reaction.py measures the reaction time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.agents import HttpAgentClient
from controller.demo import ROOT, Stage, poll, start_stage
from controller.loadgen import TcpEchoServer, TcpSession, UdpLoad
from topologies.loader import load_topology

pytestmark = [pytest.mark.ovs, pytest.mark.slow]

CHAIN = """
chains:
  - name: scaled
    classifier: {src: 10.0.1.1/32, dst: 10.0.2.1/32}
    symmetric: true
    hops:
      - name: mon
        function: monitor
        params: {by_protocol: true}
        scaling: {min: 1, max: 3, metric: pps, out_above: 1000, in_below: 300, cooldown: 2s}
"""
CONTROLLER_ARGS = ("--poll-interval", "0.5", "--drain-timeout", "10")


@pytest.fixture
def stage(fabric: Any, tmp_path: Path) -> Iterator[Stage]:
    bed = start_stage(load_topology(ROOT / "topologies" / "leaf-spine.yaml"), tmp_path,
                      lambda topo, controller: fabric(topo, controller=controller),
                      controller_args=CONTROLLER_ARGS)
    try:
        yield bed
    finally:
        bed.close()


def hop(stage: Stage) -> dict[str, Any]:
    return stage.counters("scaled")[0]


def running(stage: Stage) -> list[str]:
    """The ids of the hop's running instances that take new flows."""
    return [i["id"] for i in hop(stage)["instances"] if i["state"] == "running" and not i["draining"]]


def events(stage: Stage) -> list[dict[str, Any]]:
    return stage.api.ok("GET", "/v1/chains/scaled/events")["events"]


def by_protocol(stage: Stage, protocol: str) -> dict[str, int]:
    """Instance id -> packets of ``protocol`` it counted (the monitor's per-protocol counters)."""
    return {i["id"]: int(HttpAgentClient(stage.topology.compute_by_name[i["compute"]].agent)
                         .read_handler(i["id"], f"count_{protocol}", "count"))
            for i in hop(stage)["instances"]}


def wait_until(condition: Callable[[], bool], timeout: float, what: str, stage: Stage) -> None:
    if not poll(condition, timeout):
        pytest.fail(f"{what} did not happen within {timeout:g} s; events: {events(stage)}")


def test_a_hop_scales_out_under_load_keeps_sessions_and_scales_back_when_it_stops(stage: Stage) -> None:
    stage.apply(CHAIN)
    client, server, server_ip = stage.ns("client1"), stage.ns("server1"), stage.ip("server1")
    echo = TcpEchoServer(server, server_ip, 5002)
    session = TcpSession(client, server_ip, 5002)
    load = UdpLoad(client, server_ip, 5001, pps=1500)
    try:
        # Steady load near the threshold (1.5x): one step out, then it holds, with no flapping.
        wait_until(lambda: len(running(stage)) == 2, 20, "a scale-out to 2 instances", stage)
        steady = time.time()
        time.sleep(6)
        assert [e["action"] for e in events(stage) if e["time"] > steady] == []
        assert len(running(stage)) == 2

        # A step up: the per-instance load crosses the threshold again, so a third instance comes.
        load.set_rate(2500)
        wait_until(lambda: len(running(stage)) == 3, 20, "a scale-out to 3 instances", stage)
        time.sleep(2)
        udp, tcp = by_protocol(stage, "udp"), by_protocol(stage, "tcp")
        assert len(udp) == 3 and all(n > 0 for n in udp.values()), udp        # new flows go everywhere
        # The session started on the only instance and stayed pinned to it, both ways, through two scale-outs.
        assert [n > 0 for n in tcp.values()] == [True, False, False], tcp

        # Load gone: back to the minimum, one instance at a time, each drained first.
        load.set_rate(0)
        wait_until(lambda: len(hop(stage)["instances"]) == 1, 40, "a scale-in to 1 instance", stage)
    finally:
        load.stop()
        session.close()
        echo.close()
    actions = [e["action"] for e in events(stage)]
    assert actions.count("scale-out") == 2 and actions.count("scale-in") == 2, actions
    assert actions.count("instance-released") == 2, actions
    # The TCP session crossed the hop through both scale-outs and both scale-ins, unharmed.
    assert session.error == "" and session.echoed > 100, (session.error, session.echoed)
