"""Placement, identifiers and cookies: deterministic, collision-checked, capacity-respecting, stable."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.model import Chain, Classifier, Hop, Scaling
from controller.core import cookies
from controller.core.errors import PlanError
from controller.core.placement import MAX_ID, InstanceSpec, instance_id, place
from test_core_steering import make_topology
from topologies.generators import fat_tree, leaf_spine

NET = ipaddress.ip_network


def chain(name: str, src: str, dst: str, hops: int = 2, instances: int = 1, priority: int = 100) -> Chain:
    return Chain(name, Classifier(NET(src), NET(dst)),
                 tuple(Hop(f"h{k}", "passthrough", scaling=Scaling(instances, 4)) for k in range(hops)),
                 priority=priority)


def specs(placement: dict) -> list[InstanceSpec]:
    return [s for group in placement.values() for s in group]


def test_a_chain_goes_to_the_compute_host_on_its_path() -> None:
    # leaf1 hosts 10.0.1.x, leaf2 10.0.2.x, leaf3 10.0.3.x; one compute host per leaf.
    topology = leaf_spine(2, 3, 2, 1)
    placement = place(topology, [chain("a", "10.0.1.0/24", "10.0.1.2/32"), chain("b", "10.0.3.1/32", "10.0.3.2/32")])
    assert {s.compute for s in placement["a", 0] + placement["a", 1]} == {"c1_1"}
    assert {s.compute for s in placement["b", 0] + placement["b", 1]} == {"c3_1"}


def test_capacity_is_respected_and_spills_to_the_next_cheapest_host() -> None:
    topology = make_topology(3, [(0, 1), (1, 2)], [0, 2], [0, 1, 2], capacity=2)
    placement = place(topology, [chain("a", "10.0.0.1/32", "10.0.0.1/32", hops=3)])
    computes = [s.compute for s in specs(placement)]
    assert computes == ["c1", "c1", "c2"]          # c1 is on the host's switch, c2 one hop away


def test_not_enough_capacity_is_a_plan_error_naming_the_chain() -> None:
    topology = make_topology(1, [], [0, 0], [0], capacity=3)
    with pytest.raises(PlanError) as raised:
        place(topology, [chain("big", "10.0.0.1/32", "10.0.0.2/32", hops=2, instances=2)])
    assert raised.value.chain == "big" and "room" in raised.value.reason


def test_higher_priority_chains_are_placed_first() -> None:
    topology = make_topology(3, [(0, 1), (1, 2)], [0, 2], [0, 2], capacity=1)
    placement = place(topology, [chain("low", "10.0.0.1/32", "10.0.0.1/32", hops=1, priority=1),
                                 chain("high", "10.0.0.1/32", "10.0.0.1/32", hops=1, priority=9)])
    assert placement["high", 0][0].compute == "c1" and placement["low", 0][0].compute == "c2"


def test_replanning_keeps_running_instances_where_they_are() -> None:
    topology = make_topology(3, [(0, 1), (1, 2)], [0, 2], [0, 1, 2], capacity=4)
    first = place(topology, [chain("a", "10.0.0.1/32", "10.0.0.2/32", hops=2)])
    # Another chain, higher priority, now wants the same hosts: "a" must not move.
    second = place(topology, [chain("a", "10.0.0.1/32", "10.0.0.2/32", hops=2),
                              chain("b", "10.0.0.1/32", "10.0.0.2/32", hops=3, priority=500)],
                   existing=first.by_id())
    assert second["a", 0] == first["a", 0] and second["a", 1] == first["a", 1]
    # Growing and shrinking a hop keeps the instances with the lowest indexes.
    grown = place(topology, [chain("a", "10.0.0.1/32", "10.0.0.2/32")], existing=first.by_id(), counts={("a", 0): 3})
    assert grown["a", 0][0] == first["a", 0][0] and [s.index for s in grown["a", 0]] == [0, 1, 2]
    shrunk = place(topology, [chain("a", "10.0.0.1/32", "10.0.0.2/32")], existing=grown.by_id(), counts={("a", 0): 1})
    assert shrunk["a", 0] == grown["a", 0][:1]
    # Counts stay within the hop's scaling bounds.
    assert len(place(topology, [chain("a", "10.0.0.1/32", "10.0.0.2/32")], counts={("a", 0): 99})["a", 0]) == 4


def test_a_hop_inserted_before_others_keeps_their_instances_by_hop_name() -> None:
    topology = make_topology(2, [(0, 1)], [0, 1], [0, 1])
    old = chain("a", "10.0.0.1/32", "10.0.0.2/32", hops=2)
    first = place(topology, [old])
    new = dataclasses.replace(old, hops=(Hop("fresh", "monitor"),) + old.hops)
    second = place(topology, [new], existing=first.by_id())
    assert [s.id for s in second["a", 1]] == [s.id for s in first["a", 0]]
    assert second["a", 1][0].hop_index == 1 and second["a", 1][0].label == first["a", 0][0].label


def test_an_instance_whose_compute_host_left_the_topology_is_placed_again_with_its_identity() -> None:
    topology = make_topology(2, [(0, 1)], [0, 1], [0, 1])
    first = place(topology, [chain("a", "10.0.0.1/32", "10.0.0.1/32", hops=1)])
    assert first["a", 0][0].compute == "c1"
    smaller = dataclasses.replace(topology, computes=topology.computes[1:])
    again = place(smaller, [chain("a", "10.0.0.1/32", "10.0.0.1/32", hops=1)], existing=first.by_id())
    assert again["a", 0][0] == dataclasses.replace(first["a", 0][0], compute="c2")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet="ab-_.é x" + "c" * 5, min_size=1, max_size=50), min_size=1, max_size=8,
                unique=True),
       st.lists(st.text(alphabet="ab-", min_size=1, max_size=30), min_size=1, max_size=3, unique=True))
def test_ids_macs_and_labels_are_unique_well_formed_and_deterministic(names: list[str], hops: list[str]) -> None:
    topology = make_topology(1, [], [0], [0], capacity=1000)
    chains = [Chain(n, Classifier(NET("10.0.0.0/24"), NET("10.0.0.0/24")),
                    tuple(Hop(h, "passthrough", scaling=Scaling(2, 2)) for h in hops)) for n in names]
    placement = place(topology, chains)
    all_specs = specs(placement)
    assert placement == place(topology, list(reversed(chains)))
    assert len({s.id for s in all_specs}) == len({s.mac for s in all_specs}) == len({s.label for s in all_specs}) \
        == len(all_specs)
    for s in all_specs:
        assert len(s.id) <= MAX_ID and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", s.id)
        first_octet = int(s.mac[:2], 16)
        assert first_octet & 2 and not first_octet & 1          # locally administered, unicast
        assert 16 <= s.label < 1 << 20
    assert {s.mac for s in all_specs}.isdisjoint({h.mac for h in topology.hosts} |
                                                 {c.uplink_mac for c in topology.computes})


def test_colliding_plain_ids_fall_back_to_hashed_ones() -> None:
    assert instance_id("a-b", "c", 0) == instance_id("a", "b-c", 0) == "a-b-c-0"
    topology = make_topology(1, [], [0], [0])
    chains = [Chain("a-b", Classifier(NET("10.0.0.0/24"), NET("10.0.0.0/24")), (Hop("c", "passthrough"),)),
              Chain("a", Classifier(NET("10.0.0.0/24"), NET("10.0.0.0/24")), (Hop("b-c", "passthrough"),))]
    ids = sorted(s.id for s in specs(place(topology, chains)))
    assert "a-b-c-0" in ids and len(set(ids)) == 2
    assert len(instance_id("x" * 60, "y" * 60, 3)) <= MAX_ID


def test_cookies_round_trip_and_select_a_whole_chain() -> None:
    ids = cookies.chain_ids(["web", "dns", "mail"])
    assert len(set(ids.values())) == 3 and 0 not in ids.values()
    assert cookies.chain_ids(["mail", "web", "dns"]) == ids
    value = cookies.cookie(ids["web"], 2, 1)
    assert cookies.decode(value) == (ids["web"], 2, 1)
    assert cookies.decode(cookies.cookie(ids["web"])) == (ids["web"], None, None)
    assert cookies.decode(0x1234) is None and cookies.decode(cookies.NORMAL).chain_id == 0
    want, mask = cookies.chain_cookie(ids["web"])
    assert value & mask == want & mask
    assert cookies.cookie(ids["dns"], 2, 1) & mask != want & mask
    assert cookies.is_ours(value) and value & cookies.OWNER_MASK == cookies.TAG << 56


def test_chain_id_collisions_are_resolved_in_name_order(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cookies._hash
    monkeypatch.setattr(cookies, "_hash", lambda name, attempt: 42 if attempt == 0 else real(name, attempt))
    ids = cookies.chain_ids(["b", "a", "c"])
    assert ids["a"] == 42 and len(set(ids.values())) == 3


def test_placement_on_a_generated_fat_tree_uses_the_ingress_pod() -> None:
    topology = fat_tree(4)
    placement = place(topology, [chain("a", "10.1.1.1/32", "10.1.2.1/32", hops=2)])
    assert {s.compute for s in specs(placement)} <= {"c1_1", "c1_2"}
