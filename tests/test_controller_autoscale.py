"""Automatic scaling in the service: statistics in, instances and flows out (fake agents and switches).

The clock is the test's; rates are handed to ``observe`` as the poller would.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from chains.loader import load_chains
from controller.core.compiler import TABLE_PICK, TABLE_PIN
from controller.core.ofmsg import DeleteFlows, Multipath
from controller.core.stats import InstanceRates, Rates
from controller.service import ChainService
from test_controller_service import FakeAgent, FakeSwitches
from topologies.loader import load_topology
from topologies.model import Topology

TOPO = Path(__file__).resolve().parent.parent / "topologies" / "leaf-spine.yaml"
CHAIN = """
chains:
  - name: scaled
    classifier: {src: 10.0.1.0/24, dst: 10.0.2.0/24}
    hops:
      - name: mon
        function: monitor
        scaling: {min: 1, max: 3, metric: pps, out_above: 1000, in_below: 300, cooldown: 2s}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


Bed = tuple[ChainService, FakeAgent, FakeSwitches, Clock]


def make_bed(topology: Topology, chain: str = CHAIN) -> Bed:
    """A service with every switch up, agents that boot at once, and ``chain`` active."""
    agent = FakeAgent()
    agent.auto = True
    switches = FakeSwitches({s.dpid for s in topology.switches})
    clock = Clock()
    service = ChainService(topology, agents=lambda address: agent, southbound=switches, now=clock,
                           sleep=lambda seconds: None, drain_timeout=30)
    for switch in topology.switches:
        service.switch_up(switch.dpid, {n: f"p{n}" for n in range(1, 6)})
    service.create(load_chains(chain, "scaled.yaml"))
    service.wait(["scaled"], 5)
    assert service.status["scaled"].state == "active"
    return service, agent, switches, clock


@pytest.fixture
def bed() -> Bed:
    return make_bed(load_topology(TOPO))


def observe(service: ChainService, clock: Clock, pps: list[float]) -> None:
    """One poll round, 0.5 s after the last: ``pps[i]`` packets/s went to instance i of the hop."""
    clock.now += 0.5
    cid = service.installed.chain_ids["scaled"]
    service.observe(Rates(clock.now, {(cid, 0, i): InstanceRates(p, p * 800, p, p * 800)
                                      for i, p in enumerate(pps)}, {}))


def instances(service: ChainService) -> list[str]:
    return [s.id for s in service.placement["scaled", 0]]


def links(service: ChainService) -> set[int]:
    """The numbers of instances the pick flows spread new flows over."""
    return {a.n_links for f in service.installed.flows.values() if f.table_id == TABLE_PIN
            for a in f.actions if isinstance(a, Multipath)}


def actions(service: ChainService) -> list[str]:
    return [e["action"] for e in service.events_view("scaled")]


def test_load_above_the_threshold_adds_an_instance_that_new_flows_then_pick(bed) -> None:
    service, agent, _, clock = bed
    observe(service, clock, [2500])
    service.wait(["scaled"], 5)
    assert instances(service) == ["scaled-mon-0", "scaled-mon-1"]
    assert set(agent.instances) == {"scaled-mon-0", "scaled-mon-1"}
    assert actions(service) == ["scale-out", "instance-running"]
    event = service.events_view("scaled")[0]
    assert (event["instances"], event["target"], event["rate"], event["instance"]) == (1, 2, 2500, "scaled-mon-1")
    assert "2500 pps per instance > out_above 1000 pps" in event["reason"]
    assert links(service) == {2}
    view = service.chain_view("scaled")["hops"][0]
    assert view["load"]["pps"] is None         # the new instance has no rate yet
    observe(service, clock, [1200, 800])
    view = service.chain_view("scaled")["hops"][0]
    assert view["load"]["pps"] == 2000 and view["scaling"]["autoscaled"] is True


def test_a_quiet_hop_drains_its_last_instance_then_releases_it_and_its_pins(bed) -> None:
    service, agent, switches, clock = bed
    observe(service, clock, [2500])
    service.wait(["scaled"], 5)
    for _ in range(6):                        # 3 s of low load: past the 2 s cooldown and settle time
        observe(service, clock, [100, 100])
    assert actions(service)[-1] == "scale-in" and "scaled-mon-1" in service.draining
    assert links(service) == {1}              # new flows go to instance 0 only
    pick = [f for f in service.installed.flows.values() if f.table_id == TABLE_PICK]
    assert pick and all(f.cookie & 0xFF == 0 for f in pick)
    assert "scaled-mon-1" in agent.instances  # still serving the flows pinned to it
    observe(service, clock, [100, 30])        # its pinned flows still send
    observe(service, clock, [100, 0])
    observe(service, clock, [100, 0])
    assert "scaled-mon-1" in service.draining
    sent = len(switches.sent)
    observe(service, clock, [100, 0])         # quiet for 1 s: released
    assert instances(service) == ["scaled-mon-0"] and actions(service)[-1] == "instance-released"
    pins = [m for m in switches.sent[sent:] if isinstance(m, DeleteFlows) and m.table_id == TABLE_PIN]
    # Its pins go (where it was handed packets); so do the remaining instance's, which now takes
    # every flow directly (one instance: no hand-over table) and learns them again.
    assert {m.cookie & 0xFF for m in pins} == {0, 1}
    deadline = time.monotonic() + 5          # the release runs in its own thread
    while "scaled-mon-1" not in agent.deleted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "scaled-mon-1" in agent.deleted


def test_load_coming_back_while_draining_cancels_the_drain(bed) -> None:
    service, _, _, clock = bed
    observe(service, clock, [2500])
    service.wait(["scaled"], 5)
    for _ in range(6):
        observe(service, clock, [100, 100])
    assert "scaled-mon-1" in service.draining
    observe(service, clock, [1500, 0])
    assert not service.draining and actions(service)[-1] == "scale-in-cancelled"
    assert links(service) == {2} and instances(service) == ["scaled-mon-0", "scaled-mon-1"]


def test_steady_load_near_the_threshold_scales_out_once_and_holds(bed) -> None:
    service, _, _, clock = bed
    for n in range(60):                       # 30 s of 1500 pps, +-10 %
        total = 1500 * (1.1 if n % 3 == 0 else 0.9)
        count = len(instances(service))
        observe(service, clock, [total / count] * count)
        service.wait(["scaled"], 5)
    assert actions(service) == ["scale-out", "instance-running"]


def test_no_room_for_another_instance_is_an_event_and_changes_nothing() -> None:
    topology = load_topology(TOPO)
    service, _, _, clock = make_bed(dataclasses.replace(topology, computes=tuple(
        dataclasses.replace(c, capacity=1) for c in topology.computes[:1])))
    observe(service, clock, [2500])
    assert actions(service) == ["scale-out-failed"]
    assert "no compute host has room" in service.events_view("scaled")[0]["reason"]
    assert instances(service) == ["scaled-mon-0"] and not service.counts
    for _ in range(19):                       # it does not try again (nor log it) every round
        observe(service, clock, [2500])
    assert actions(service) == ["scale-out-failed"]
    observe(service, clock, [2500])           # 10 s later
    assert actions(service) == ["scale-out-failed"] * 2


def test_metrics_are_prometheus_text_with_rates_and_counts(bed) -> None:
    service, _, _, clock = bed
    observe(service, clock, [500])
    text = service.metrics_text()
    assert 'clicksteer_instance_in_packets_per_second{chain="scaled",hop="mon",instance="scaled-mon-0"} 500' in text
    assert 'clicksteer_hop_instances{chain="scaled",hop="mon"} 1' in text
    assert "# TYPE clicksteer_scaling_events_total counter" in text
    observe(service, clock, [2500])
    assert 'clicksteer_scaling_events_total{action="scale-out",chain="scaled",hop="mon"} 1' in service.metrics_text()


def test_flows_of_a_hop_without_autoscaling_are_not_pinned() -> None:
    service, _, _, _ = make_bed(load_topology(TOPO), CHAIN.replace("max: 3", "max: 1").replace(
        "out_above: 1000, in_below: 300, ", ""))
    flows = service.installed.flows.values()
    assert not any(f.table_id in (TABLE_PIN, TABLE_PICK) for f in flows)


def test_a_hop_with_one_instance_is_measured_by_what_it_sends_back(bed) -> None:
    # One instance: no hand-over flow counts what goes in, so its return flows measure the load.
    service, _, _, clock = bed
    clock.now += 0.5
    cid = service.installed.chain_ids["scaled"]
    service.observe(Rates(clock.now, {(cid, 0, 0): InstanceRates(None, None, 2500, 2500 * 800)}, {}))
    assert actions(service) == ["scale-out"]


def test_instances_a_restarted_controller_does_not_plan_are_deleted_and_the_planned_ones_adopted() -> None:
    # Before a restart the hop ran two instances; the new controller plans one (its minimum).
    topology = load_topology(TOPO)
    agent = FakeAgent()
    agent.auto = True
    for iid, chain in (("scaled-mon-0", "scaled"), ("scaled-mon-1", "scaled"), ("other-x-0", "other")):
        agent.instances[iid] = {"id": iid, "chain": chain, "state": "running"}
    service = ChainService(topology, agents=lambda address: agent, sleep=lambda seconds: None)
    service.create(load_chains(CHAIN, "scaled.yaml"))
    deadline = time.monotonic() + 5          # the sweep runs in its own thread
    while "scaled-mon-1" not in agent.deleted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert agent.deleted == ["scaled-mon-1"]
    assert service.instances["scaled-mon-0"].state == "running"   # adopted, not booted again
    assert set(agent.instances) == {"scaled-mon-0", "other-x-0"}
