"""Topology files, validation, generators and exports (no Open vSwitch needed)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from chains.errors import ConfigError
from topologies import generators
from topologies.emulator import plan
from topologies.graph import to_mininet, to_networkx
from topologies.loader import build, dump_topology, load_topology, write_topology
from topologies.model import Topology

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


def load_text(tmp_path: Path, text: str) -> Topology:
    path = tmp_path / "topo.yaml"
    path.write_text(textwrap.dedent(text))
    return load_topology(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return [str(p).split("topo.yaml:", 1)[1] for p in info.value.problems]


def test_leaf_spine_file_has_the_demo_address_plan() -> None:
    topo = load_topology(TOPOLOGIES / "leaf-spine.yaml")
    assert [s.name for s in topo.switches] == ["spine1", "spine2", "leaf1", "leaf2"]
    assert {(h.name, str(h.ip), h.switch) for h in topo.hosts} == {
        ("client1", "10.0.1.1/16", "leaf1"), ("client2", "10.0.1.2/16", "leaf1"),
        ("server1", "10.0.2.1/16", "leaf2"), ("server2", "10.0.2.2/16", "leaf2")}
    assert {(c.name, c.switch, c.agent) for c in topo.computes} == {
        ("compute1", "leaf1", "127.0.0.1:7101"), ("compute2", "leaf2", "127.0.0.1:7102")}
    assert {frozenset((lk.a, lk.b)) for lk in topo.links} == {
        frozenset((leaf, spine)) for leaf in ("leaf1", "leaf2") for spine in ("spine1", "spine2")}
    assert len({c.uplink_mac for c in topo.computes} | {h.mac for h in topo.hosts}) == 6


def test_fat_tree_file_is_the_generated_k4() -> None:
    topo = load_topology(TOPOLOGIES / "fat-tree-k4.yaml")
    assert topo == generators.fat_tree(4)
    assert len(topo.switches) == 20
    assert len(topo.links) == 32
    edges = [s.name for s in topo.switches if s.name.startswith("edge")]
    assert sorted({c.switch for c in topo.computes}) == sorted(edges)
    assert all(sum(h.switch == e for h in topo.hosts) == 2 for e in edges)


@pytest.mark.parametrize("topo, switches, hosts, computes, links", [
    (generators.linear(4), 4, 4, 0, 3),
    (generators.tree(3, 2), 7, 8, 0, 6),
    (generators.leaf_spine(2, 4, 3, 2), 6, 12, 8, 8),
    (generators.fat_tree(4), 20, 16, 8, 32),
    (generators.fat_tree(8), 80, 128, 32, 256),
])
def test_generators_make_the_usual_shapes(topo: Topology, switches: int, hosts: int, computes: int,
                                          links: int) -> None:
    assert (len(topo.switches), len(topo.hosts), len(topo.computes), len(topo.links)) == \
        (switches, hosts, computes, links)
    assert len({s.dpid for s in topo.switches}) == switches
    ports = [(h.switch, h.port) for h in topo.hosts] + [(c.switch, c.port) for c in topo.computes]
    ports += [(lk.a, lk.a_port) for lk in topo.links] + [(lk.b, lk.b_port) for lk in topo.links]
    assert len(set(ports)) == len(ports)
    assert build_from_dump(topo) == topo


def build_from_dump(topo: Topology) -> Topology:
    return build(yaml.safe_load(dump_topology(topo)), "<dump>")


def test_fat_tree_wiring() -> None:
    topo = generators.fat_tree(4)
    graph = to_networkx(topo)
    for core in ("core1", "core2", "core3", "core4"):
        assert sorted(graph.adj[core]) == sorted(f"agg{p}_{1 if core in ('core1', 'core2') else 2}"
                                                 for p in range(1, 5))
    assert sorted(graph.adj["edge2_1"]) == ["agg2_1", "agg2_2", "c2_1", "h2_1_1", "h2_1_2"]
    assert graph.edges["edge2_1", "agg2_2"]["ports"]["edge2_1"] == 2


def test_ports_are_deterministic_and_fixed_ones_are_kept(tmp_path: Path) -> None:
    topo = load_text(tmp_path, """\
        switches: [{name: s1, dpid: 1}, {name: s2, dpid: "00:00:00:00:00:00:00:02"}]
        links: [{a: s1, b: s2, a_port: 1}]
        hosts:
          - {name: h1, switch: s1, ip: 10.0.0.1/24, port: 2}
          - {name: h2, switch: s1, ip: 10.0.0.2/24}
          - {name: h3, switch: s2, ip: 10.0.0.3/24, mac: "02:00:00:00:00:33"}
        computes: [{name: c1, switch: s1, agent: "127.0.0.1:7101"}]
        """)
    assert topo.name == "topo"
    assert topo.switch_by_name["s2"].dpid == 2
    assert topo.links[0].b_port == 1
    assert [(h.name, h.port) for h in topo.hosts] == [("h1", 2), ("h2", 3), ("h3", 2)]
    assert topo.compute_by_name["c1"].port == 4
    assert topo.host_by_name["h2"].mac == "02:00:0a:00:00:02"
    assert topo.host_by_name["h3"].mac == "02:00:00:00:00:33"
    assert topo.host_by_name["h1"].ip == ipaddress.IPv4Interface("10.0.0.1/24")
    assert topo.compute_by_name["c1"].uplink_mac == "02:cc:00:00:00:00"


def test_dump_writes_a_file_that_loads_back_equal(tmp_path: Path) -> None:
    topo = generators.leaf_spine(2, 2, 2, 1)
    write_topology(topo, tmp_path / "ls.yaml")
    assert load_topology(tmp_path / "ls.yaml") == topo


def test_every_problem_is_reported_with_its_position(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        name: bad
        switches:
          - {name: s1, dpid: 1}
          - {name: s1, dpid: 1}
          - {name: toolongname, dpid: 3}
        links:
          - {a: s1, b: nowhere}
          - {a: s1, a_port: 2, b: toolongname, b_port: 70000}
        hosts:
          - {name: h1, switch: s1, ip: 10.0.0.1/8, port: 2}
          - {name: h2, switch: s1, ip: 10.0.0.1/8, mac: "02:00:00:00:00:01"}
          - {name: h3, switch: h1, ip: 10.0.0.3, colour: red}
        computes:
          - {name: c1, switch: s1, agent: "127.0.0.1:7101", uplink_mac: "02:00:0a:00:00:01"}
          - {name: c2, switch: s1, agent: "127.0.0.1:7101"}
        """)
    assert found == [
        "4:12: switches[1].name: duplicate name 's1'",
        "4:22: switches[1].dpid: duplicate datapath id 0x1 (also s1)",
        "5:12: switches[2].name: name 'toolongname' is too long: its bridge would be named "
        "'csXXXX-toolongname', 18 characters, and Linux interface names have at most 15 "
        "(use at most 8 characters)",
        "7:16: links[0].b: unknown switch 'nowhere'",
        "8:48: links[1].b_port: bad port 70000: an integer from 1 to 65279",
        "10:50: hosts[0].port: duplicate port 2 on switch 's1' (also links[1] to toolongname)",
        "11:32: hosts[1].ip: duplicate address 10.0.0.1 (also h1)",
        "12:24: hosts[2].switch: 'h1' is a host, not a switch",
        "12:32: hosts[2].ip: bad IPv4 address '10.0.0.3' (needs a prefix length); e.g. 10.0.1.1/16",
        "12:42: hosts[2].colour: unknown key 'colour' (expected ip, mac, name, port, switch)",
        "14:65: computes[0].uplink_mac: duplicate MAC address 02:00:0a:00:00:01 (also h1)",
        "15:35: computes[1].agent: duplicate agent address 127.0.0.1:7101 (also c1)",
    ]


@pytest.mark.parametrize("text, expected", [
    ("switches: [{name: s1}]\n", "1:12: switches[0]: missing key 'dpid'"),
    ("switches: [{name: s1, dpid: 0}]\n", "1:29: switches[0].dpid: bad datapath id 0"),
    ("switches: [{name: s 1, dpid: 1}]\n", "1:19: switches[0].name: bad name 's 1'"),
    ("switches: [{name: s1, dpid: 1}]\nlinks: [{a: s1, b: s1}]\n", "2:20: links[0].b: a link from 's1' to itself"),
    ("switches: [{name: s1, dpid: 1}, {name: s2, dpid: 2}]\nlinks: [{a: s1, b: s2}, {a: s2, b: s1}]\n",
     "2:25: links[1]: duplicate link between 's2' and 's1' (also links[0])"),
    ("switches: [{name: s1, dpid: 1}]\nhosts: [{name: h, switch: s1, ip: 10.0.0.1/8, mac: '01:00:00:00:00:01'}]\n",
     "2:52: hosts[0].mac: '01:00:00:00:00:01' is a multicast address"),
    ("switchs: []\n", "1:1: switchs: unknown key 'switchs'"),
    ("switches: {}\n", "1:11: switches: 'switches' must be a list"),
    ("- 1\n", "1:1: a topology is a mapping"),
    ("switches: [\n", "invalid YAML"),
    ("switches: [{name: s1, dpid: 1}, {name: s1, dpid: 1, dpid: 2}]\n", "duplicate key 'dpid'"),
])
def test_bad_files_give_clean_errors(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_generated_topologies_obey_the_same_rules() -> None:
    with pytest.raises(ConfigError, match="is too long"):
        generators.fat_tree(22)  # edge22_11: 9 characters


def test_networkx_export() -> None:
    topo = load_topology(TOPOLOGIES / "leaf-spine.yaml")
    graph = to_networkx(topo)
    assert graph.nodes["leaf1"] == {"kind": "switch", "dpid": 0x20001}
    assert graph.nodes["client1"]["kind"] == "host"
    assert graph.nodes["compute2"]["kind"] == "compute"
    assert graph.edges["leaf1", "spine2"]["ports"] == {"leaf1": 2, "spine2": 1}
    assert graph.edges["client2", "leaf1"]["ports"] == {"leaf1": 4, "client2": None}
    assert graph.edges["compute1", "leaf1"]["ports"] == {"leaf1": 5, "compute1": None}
    assert graph.number_of_nodes() == 10 and graph.number_of_edges() == 10


def test_mininet_is_imported_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, topologies.graph, topologies.emulator, topologies.cli; print('mininet' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"

    class FakeTopo:  # records calls as Mininet's Topo would receive them
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def addSwitch(self, name: str, **opts: object) -> None:  # noqa: N802 (Mininet's API)
            self.calls.append(("switch", name, opts))

        def addHost(self, name: str, **opts: object) -> None:  # noqa: N802
            self.calls.append(("host", name, opts))

        def addLink(self, a: str, b: str, **opts: object) -> None:  # noqa: N802
            self.calls.append(("link", a, b, opts))

    fake = type(sys)("mininet.topo")
    fake.Topo = FakeTopo
    monkeypatch.setitem(sys.modules, "mininet", type(sys)("mininet"))
    monkeypatch.setitem(sys.modules, "mininet.topo", fake)
    mn = to_mininet(load_topology(TOPOLOGIES / "leaf-spine.yaml"))
    assert ("switch", "leaf1", {"dpid": "0000000000020001", "protocols": "OpenFlow13"}) in mn.calls
    assert ("host", "client1", {"ip": "10.0.1.1/16", "mac": "02:00:0a:00:01:01"}) in mn.calls
    assert ("link", "leaf1", "spine2", {"port1": 2, "port2": 1}) in mn.calls
    assert ("link", "compute1", "leaf1", {"port2": 5}) in mn.calls


def test_emulator_names_fit_linux_limits() -> None:
    state = plan(generators.fat_tree(16), "ab12", None, "/nowhere")
    names = state.bridges + state.veths + [lk["veths"][1] for lk in state.links]
    names += [c["uplink"] for c in state.computes.values()]
    assert max(len(n) for n in names) <= 15
    assert len(set(names)) == len(names)
    assert all(n.startswith(("csab12-", "csab12.")) for n in names + state.namespaces)
    assert state.host_namespace("h1_1_1") == "csab12-h1_1_1"
    assert state.compute_bridge("c3_2") == "csab12-c3_2"
