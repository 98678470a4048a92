"""Updates are make-before-break: no table state along a diff loses a packet.

Each test installs a plan in the fake fabric, then applies the diff to the
next plan one message at a time -- in any order within a phase, as a real
fabric may -- and after every single message sends every probe packet.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chains.model import Chain, Classifier, Hop, Scaling
from controller.core import cookies
from controller.core.compiler import PRIO_PINNED, TABLE_PIN, Desired, compile_fabric
from controller.core.diff import diff, resync
from controller.core.errors import PlanError
from controller.core.ofmsg import Barrier, DeleteFlows, Flow, FlowMod, GroupMod, Output, match
from controller.core.placement import InstanceSpec, place
from controller.core.ofmsg import dpid_of
from fake_openflow import FakeFabric, phases
from topologies.model import Topology
from test_core_steering import (Scenario, _block, check_all, classify, installed, make_topology, plan, probes,
                                ready_stages, ready_subsets, scenarios)


def _mutate(draw: st.DrawFn, chain: Chain, topology: Topology, free_priorities: list[int]) -> Chain | None:
    op = draw(st.sampled_from(["keep", "remove", "add_hop", "drop_hop", "priority", "symmetric",
                               "on_failure", "dst", "function"]))
    if op == "remove":
        return None
    if op == "add_hop" and len(chain.hops) < 3:
        at = draw(st.integers(0, len(chain.hops)))
        hop = Hop(f"new{len(chain.hops)}", "passthrough", scaling=Scaling(1, 3))
        return dataclasses.replace(chain, hops=chain.hops[:at] + (hop,) + chain.hops[at:])
    if op == "drop_hop" and len(chain.hops) > 1:
        at = draw(st.integers(0, len(chain.hops) - 1))
        return dataclasses.replace(chain, hops=chain.hops[:at] + chain.hops[at + 1:])
    if op == "priority" and free_priorities:
        return dataclasses.replace(chain, priority=free_priorities.pop())
    if op == "symmetric":
        return dataclasses.replace(chain, symmetric=not chain.symmetric)
    if op == "on_failure":
        return dataclasses.replace(chain, on_failure="open" if chain.on_failure == "closed" else "closed")
    if op == "dst":
        return dataclasses.replace(chain, classifier=dataclasses.replace(chain.classifier, dst=_block(draw, topology)))
    if op == "function":
        hops = tuple(dataclasses.replace(h, function="monitor") for h in chain.hops)
        return dataclasses.replace(chain, hops=hops)
    return chain


@st.composite
def updates(draw: st.DrawFn) -> tuple[Scenario, Scenario]:
    before = draw(scenarios())
    free = [p for p in (50, 150, 250, 350) if p not in {c.priority for c in before.chains}]
    chains = [c for c in (_mutate(draw, c, before.topology, free) for c in before.chains) if c]
    counts = {(c.name, k): draw(st.integers(1, 3)) for c in chains for k in range(len(c.hops))
              if draw(st.booleans())}
    try:
        placement = place(before.topology, chains, before.placement.by_id(), counts)
    except PlanError:
        assume(False)
    ready = draw(ready_subsets(placement))
    after = Scenario(before.topology, chains, placement, ready,
                     compile_fabric(before.topology, chains, placement, ready))
    return before, after


def _drops(s: Scenario, pkt: dict[str, Any]) -> bool:
    found = classify(s.chains, pkt)
    return found is not None and ready_stages(s, found[0]) is None


def check_nothing_lost(before: Scenario, after: Scenario, fabric: FakeFabric, where: str) -> None:
    for src, dst, pkt in probes(before.topology):
        for trace in fabric.send_all(src.name, pkt):
            for seen in trace.received:
                assert "mpls_label" not in seen, where
            if not trace.delivered and (_drops(before, pkt) or _drops(after, pkt)):
                continue     # a chain that fails closed may drop, before or after the update
            assert not trace.lost and trace.delivered_to == [dst.name], f"{where}: {trace}"
            assert trace.delivered[0][1] == pkt, f"{where}: {trace}"


def _running(*scenarios: Scenario) -> Iterable[InstanceSpec]:
    """Old instances run until the diff is applied; new ones are up before it starts."""
    by_id: dict[str, InstanceSpec] = {}
    for s in scenarios:
        by_id.update(s.placement.by_id())
    return by_id.values()


def assert_tables_hold(fabric: FakeFabric, desired: Desired) -> None:
    for switch in fabric.switches.values():
        want = {f for f in desired.flows.values() if f.dpid == switch.dpid}
        # Pins the switch learned from the packets sent are its own, not the controller's.
        assert {f for f in switch.flows() if (f.table_id, f.priority) != (TABLE_PIN, PRIO_PINNED)} == want


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates(), st.randoms(use_true_random=False))
def test_every_intermediate_state_of_an_update_delivers_every_packet(update: tuple[Scenario, Scenario],
                                                                      rnd: Any) -> None:
    before, after = update
    fabric = installed(before)
    fabric.set_instances(_running(before, after))
    messages = diff(before.desired, after.desired)
    for number, phase in enumerate(phases(messages)):
        rnd.shuffle(phase)
        for message in phase:
            fabric.apply(message)
            check_nothing_lost(before, after, fabric, f"phase {number}, after {message}")
    assert_tables_hold(fabric, after.desired)
    fabric.set_instances(after.placement.by_id().values())
    # The probes pinned their forward direction only; once those pins idle out, the new state
    # steers both directions of every flow as the model says.
    fabric.apply_all(DeleteFlows(dpid, cookies.TAG << 56, cookies.OWNER_MASK, TABLE_PIN) for dpid in fabric.by_dpid)
    check_all(after, fabric)


@settings(max_examples=20, deadline=None)
@given(scenarios())
def test_diff_of_a_plan_with_itself_is_empty_and_a_rebuilt_plan_is_identical(s: Scenario) -> None:
    assert diff(s.desired, s.desired) == []
    again = compile_fabric(s.topology, s.chains, place(s.topology, s.chains, s.placement.by_id()), s.ready)
    assert diff(s.desired, again) == []


def test_phases_end_with_a_barrier_for_every_switch_they_touch() -> None:
    topology = make_topology(3, [(0, 1), (1, 2)], [0, 0, 2, 2, 2], [1])
    messages = diff(Desired.empty(), plan(topology, [Chain("web", _classifier(), (Hop("fw", "passthrough"),))]).desired)
    pending: set[int] = set()
    in_barriers = False
    for message in messages:
        if isinstance(message, Barrier):
            pending.discard(message.dpid)
            in_barriers = True
        else:
            if in_barriers:
                assert not pending, "a phase left a switch without a barrier"
                in_barriers = False
            pending.add(dpid_of(message))
    assert not pending and isinstance(messages[-1], Barrier)


def test_changed_actions_are_modified_in_place_and_a_changed_cookie_is_re_added() -> None:
    flow = Flow(1, 2, 100, match(eth_type=0x0800, ipv4_dst="10.0.0.1"), (Output(1),), None, cookies.NORMAL)
    moved = dataclasses.replace(flow, actions=(Output(2),))
    recooked = dataclasses.replace(flow, cookie=cookies.cookie(7))
    old = Desired({flow.key: flow}, ranks={flow.key: 0})
    assert diff(old, Desired({flow.key: moved}, ranks={flow.key: 0})) == [FlowMod("modify_strict", moved),
                                                                          Barrier(1)]
    assert diff(old, Desired({flow.key: recooked}, ranks={flow.key: 0})) == [FlowMod("add", recooked),
                                                                             Barrier(1)]
    assert diff(old, Desired.empty()) == [FlowMod("delete_strict", flow), Barrier(1)]


def test_resync_replaces_whatever_a_switch_holds_with_its_desired_flows() -> None:
    topology = make_topology(3, [(0, 1), (1, 2)], [0, 0, 2, 2, 2], [1])
    chain = Chain("web", _classifier(), (Hop("fw", "passthrough"),), symmetric=True)
    s = plan(topology, [chain])
    fabric = installed(s)
    stray = Flow(2, 0, 7, match(in_port=9), (), None, cookies.cookie(99))
    foreign = Flow(2, 0, 8, match(in_port=8), (), None, 0x1234)
    fabric.apply(FlowMod("add", stray))
    fabric.apply(FlowMod("add", foreign))
    messages = resync(s.desired, 2)
    assert isinstance(messages[0], DeleteFlows) and not any(isinstance(m, GroupMod) for m in messages)
    fabric.apply_all(messages)
    assert set(fabric.switches["s2"].flows()) == {f for f in s.desired.flows.values() if f.dpid == 2} | {foreign}
    check_all(s, fabric)


def _classifier() -> Classifier:
    return Classifier(ipaddress.ip_network("10.0.0.0/30"), ipaddress.ip_network("10.0.0.4/30"), 6, None, (80, 80))


def test_scaling_a_hop_out_and_in_never_loses_a_packet() -> None:
    topology = make_topology(3, [(0, 1), (1, 2)], [0, 0, 2, 2, 2], [0, 2])
    chain = Chain("web", _classifier(), (Hop("fw", "passthrough", scaling=Scaling(1, 4)), Hop("mon", "monitor")),
                  symmetric=True)
    one = plan(topology, [chain])
    three = plan(topology, [chain], existing=one.placement.by_id(), counts={("web", 0): 3})
    assert three.placement["web", 0][0] == one.placement["web", 0][0]   # the running instance stays put
    for before, after in ((one, three), (three, plan(topology, [chain], existing=three.placement.by_id()))):
        fabric = installed(before)
        fabric.set_instances(_running(before, after))
        for message in diff(before.desired, after.desired):
            fabric.apply(message)
            check_nothing_lost(before, after, fabric, str(message))
        assert_tables_hold(fabric, after.desired)
