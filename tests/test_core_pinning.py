"""Autoscaled hops in the fake OpenFlow table: flows spread per flow, keep their instance, drain.

Packets go through the spec-following fake (with Open vSwitch's resubmit,
multipath and learn), so each test asserts which instance a packet crosses.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from chains.model import Classifier
from controller.core import cookies
from controller.core.compiler import PRIO_PINNED, TABLE_PIN, compile_fabric
from controller.core.diff import diff
from controller.core.ofmsg import FlowMod, SetField
from controller.core.placement import place
from fake_openflow import FakeFabric
from test_core_steering import _chain, _line, check, installed, packet, plan, reply

TOPOLOGY = _line([0, 0, 2, 2, 2], [1])         # h1, h2 on s0; h3-h5 on s2; compute host on s1
UDP = Classifier(ipaddress.ip_network("10.0.0.0/30"), ipaddress.ip_network("10.0.0.4/30"), 17)


def chain(symmetric: bool = True):  # noqa: ANN201 - a Chain
    return _chain(hops=2, instances=1, most=3, symmetric=symmetric, classifier=UDP)


def flows(n: int, first: int = 40000) -> list[dict]:
    hosts = TOPOLOGY.host_by_name
    return [packet(hosts["h1"], hosts["h4"], 17, first + i, 53) for i in range(n)]


def crossed(fabric: FakeFabric, pkt: dict) -> list[str]:
    return fabric.send("h1", pkt).instances


def rescale(fabric: FakeFabric, before, count: int, draining: tuple[str, ...] = ()):  # noqa: ANN001, ANN201
    """Apply to ``fabric`` the plan with ``count`` instances of hop 0 (all ready), as the service would."""
    placement = place(TOPOLOGY, before.chains, before.placement.by_id(), {(before.chains[0].name, 0): count})
    ready = placement.by_id()
    desired = compile_fabric(TOPOLOGY, before.chains, placement, ready, draining)
    fabric.set_instances(ready.values())
    fabric.apply_all(diff(before.desired, desired))
    return type(before)(TOPOLOGY, before.chains, placement, frozenset(ready), desired)


def test_flows_from_one_client_spread_over_the_instances_and_replies_follow_them() -> None:
    s = plan(TOPOLOGY, [chain()], counts={("web", 0): 3})
    fabric = installed(s)
    hosts = TOPOLOGY.host_by_name
    used = set()
    for pkt in flows(60):
        there = check(s, fabric, hosts["h1"], hosts["h4"], pkt)
        back = check(s, fabric, hosts["h4"], hosts["h1"], reply(pkt))
        assert back.instances == there.instances[::-1]
        used.add(there.instances[0])
    assert used == {"web-h0-0", "web-h0-1", "web-h0-2"}


def test_a_scale_out_sends_new_flows_to_the_new_instance_and_keeps_old_flows_where_they_were() -> None:
    s = plan(TOPOLOGY, [chain()])
    fabric = installed(s)
    old = flows(20)
    for p in old:             # both directions of each flow run before the scale-out, as a session's do
        assert crossed(fabric, p)[0] == "web-h0-0"
        assert fabric.send("h4", reply(p)).instances[-1] == "web-h0-0"
    s = rescale(fabric, s, 2)
    for p in old:             # pinned, both ways
        assert crossed(fabric, p)[0] == "web-h0-0"
        assert fabric.send("h4", reply(p)).instances[-1] == "web-h0-0"
    hosts = TOPOLOGY.host_by_name
    new = {crossed(fabric, p)[0] for p in flows(40, first=41000)}
    assert new == {"web-h0-0", "web-h0-1"}
    for p in flows(40, first=41000):
        check(s, fabric, hosts["h1"], hosts["h4"], p)


def test_a_draining_instance_gets_no_new_flow_but_keeps_its_own_until_released() -> None:
    s = plan(TOPOLOGY, [chain()], counts={("web", 0): 2})
    fabric = installed(s)
    on_second = [p for p in flows(40) if crossed(fabric, p)[0] == "web-h0-1"]
    assert on_second
    s = rescale(fabric, s, 2, draining=("web-h0-1",))
    assert {crossed(fabric, p)[0] for p in on_second} == {"web-h0-1"}     # pinned flows stay
    assert {crossed(fabric, p)[0] for p in flows(40, first=42000)} == {"web-h0-0"}
    s = rescale(fabric, s, 1)             # released: the diff deletes its pins first
    assert {crossed(fabric, p)[0] for p in on_second} == {"web-h0-0"}     # re-picked, not lost


def test_a_pin_to_an_instance_the_stage_no_longer_has_picks_again() -> None:
    # A stale pin (say, learned between a chain's deletion and its return with the same classifier)
    # names a label that no hand-over of the stage knows: the packet picks again and relearns.
    s = plan(TOPOLOGY, [chain()], counts={("web", 0): 2})
    fabric = installed(s)
    pkt = flows(1)[0]
    first = crossed(fabric, pkt)[0]
    def pins() -> list:  # noqa: ANN202 - Flows
        """The pins learned for hop 0 (two instances: it picks through the hand-over table)."""
        return [f for sw in fabric.switches.values() for f in sw.flows()
                if (f.table_id, f.priority) == (TABLE_PIN, PRIO_PINNED) and cookies.decode(f.cookie).hop == 0]

    [pin] = pins()
    fabric.apply(FlowMod("add", dataclasses.replace(pin, actions=(SetField("reg0", 99999),))))
    assert crossed(fabric, pkt)[0] == first           # the same hash picks the same instance
    assert pins() == [pin]                            # and the pin is whole again
