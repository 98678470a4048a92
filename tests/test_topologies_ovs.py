"""The emulator on real Open vSwitch: fabrics come up as described and go down without a trace."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FabricFactory, ovs_missing
from topologies import emulator, generators, netns
from topologies.loader import load_topology
from topologies.ovs import OVS, add_port_args, del_port

pytestmark = [pytest.mark.ovs, pytest.mark.skipif(bool(ovs_missing()), reason=ovs_missing() or "")]

REPO = Path(__file__).resolve().parent.parent
LEAF_SPINE = REPO / "topologies" / "leaf-spine.yaml"


def clicksteer(*args: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", "fabric", *args, "--run-dir", str(run_dir)],
                          capture_output=True, text=True, cwd=REPO)


def leftovers(state: emulator.FabricState) -> list[str]:
    """Every interface or namespace of this run that still exists (names carry the run's tag)."""
    links = [name for name in os.listdir("/sys/class/net") if name.startswith((f"{state.tag}-", f"{state.tag}."))]
    return links + [ns for ns in netns.list_netns() if ns.startswith(f"{state.tag}-")]


def port_numbers(ovs: OVS, bridge: str) -> dict[str, int]:
    """Port name -> OpenFlow port number, as ``ovs-ofctl show`` reports them."""
    return {name: int(number) for number, name in re.findall(r"^ (\d+)\((\S+)\):", ovs.ofctl("show", bridge), re.M)}


def eventually(probe: Callable[[], object], expected: object, limit: float = 10.0) -> bool:
    """Whether ``probe()`` comes to equal ``expected``: OVS reflects a kernel change on its next poll."""
    deadline = time.monotonic() + limit
    while (value := probe()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return value == expected


def test_leaf_spine_comes_up_as_described(fabric: FabricFactory) -> None:
    topo = load_topology(LEAF_SPINE)
    state = fabric(topo)
    ovs = state.ovs()
    for switch in topo.switches:
        bridge = state.switch_bridge(switch.name)
        assert f"dpid:{switch.dpid:016x}" in ovs.ofctl("show", bridge)
        assert ovs.vsctl("get", "Bridge", bridge, "fail_mode").strip() == "secure"
        assert ovs.vsctl("get", "Bridge", bridge, "datapath_type").strip() == "netdev"
        expected = {lk.a_port for lk in topo.links if lk.a == switch.name}
        expected |= {lk.b_port for lk in topo.links if lk.b == switch.name}
        expected |= {h.port for h in topo.hosts if h.switch == switch.name}
        expected |= {c.port for c in topo.computes if c.switch == switch.name}
        assert set(port_numbers(ovs, bridge).values()) == expected
    leaf1 = port_numbers(ovs, state.switch_bridge("leaf1"))
    assert leaf1[state.hosts["client1"]["veth"]] == 3
    assert leaf1[state.computes["compute1"]["veth"]] == 5
    assert leaf1[state.find_link("leaf1", "spine2")["veths"][0]] == 2

    client1 = state.host_namespace("client1")
    shown = netns.exec_in(client1, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert "10.0.1.1/16" in shown
    assert "02:00:0a:00:01:01" in netns.exec_in(client1, ["ip", "link", "show", "dev", "eth0"]).stdout
    assert re.search(r"^tx-checksumming: off", netns.exec_in(client1, ["ethtool", "-k", "eth0"]).stdout, re.M)

    compute = state.computes["compute1"]
    assert ovs.vsctl("get", "Bridge", compute["bridge"], "fail_mode").strip() == "standalone"
    assert ovs.vsctl("get", "Bridge", compute["bridge"], "controller").strip() == "[]"
    assert port_numbers(ovs, compute["bridge"]) == {compute["uplink"]: 1}
    assert emulator.load_state(state.run_dir).compute_bridge("compute2") == state.compute_bridge("compute2")


def test_hosts_on_one_switch_ping_once_a_flow_is_installed(fabric: FabricFactory) -> None:
    assert shutil.which("ping"), "ping is missing: install Debian's iputils-ping"
    state = fabric(load_topology(LEAF_SPINE))
    ovs = state.ovs()
    leaf1 = state.switch_bridge("leaf1")
    client1, client2 = state.host_namespace("client1"), state.host_namespace("client2")
    ping = ["ping", "-c", "1", "-W", "1", "10.0.1.2"]
    assert netns.exec_in(client1, ping, check=False).returncode != 0  # fail_mode=secure: nothing flows yet
    ovs.ofctl("add-flow", leaf1, "in_port=3,actions=output:4")
    ovs.ofctl("add-flow", leaf1, "in_port=4,actions=output:3")
    netns.exec_in(client1, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.1.2"])
    netns.exec_in(client2, ["ping", "-c", "1", "-W", "2", "10.0.1.1"])


def test_compute_bridge_learns_like_a_switch(fabric: FabricFactory) -> None:
    """A namespace attached to the compute bridge (as the agent attaches instances) reaches a host."""
    state = fabric(load_topology(LEAF_SPINE))
    ovs = state.ovs()
    compute = state.computes["compute1"]
    ns, veth = f"{state.tag}-inst", f"{state.tag}.i1"
    try:
        netns.batch([netns.add_netns_cmd(ns), netns.add_veth_cmd(veth, "eth0", peer_netns=ns),
                     netns.set_up_cmd(veth)])
        netns.batch([netns.set_address_cmd("eth0", "10.0.1.99/16"), netns.set_up_cmd("eth0")], netns=ns)
        netns.offload_off("eth0", ns)
        ovs.vsctl(*add_port_args(compute["bridge"], veth, 7))
        assert port_numbers(ovs, compute["bridge"])[veth] == 7
        leaf1 = state.switch_bridge("leaf1")
        ovs.ofctl("add-flow", leaf1, f"in_port=3,actions=output:{compute['port']}")
        ovs.ofctl("add-flow", leaf1, f"in_port={compute['port']},actions=output:3")
        netns.exec_in(state.host_namespace("client1"), ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.99"])
    finally:
        del_port(ovs, compute["bridge"], veth)
        netns.del_link(veth)
        netns.del_netns(ns)


def test_controller_settings(fabric: FabricFactory) -> None:
    state = fabric(load_topology(LEAF_SPINE), controller="tcp:127.0.0.1:6699")
    ovs = state.ovs()
    for name in state.switches:
        bridge = state.switch_bridge(name)
        assert ovs.vsctl("get", "Bridge", bridge, "protocols").strip() == "[OpenFlow13]"
        controller = ovs.vsctl("get", "Bridge", bridge, "controller").strip()[1:-1]
        settings = ovs.vsctl("get", "Controller", controller, "target", "max_backoff", "connection_mode").split()
        assert settings == ['"tcp:127.0.0.1:6699"', str(emulator.MAX_BACKOFF_MS), "out-of-band"]


def test_link_cut_and_restore(fabric: FabricFactory) -> None:
    state = fabric(load_topology(LEAF_SPINE))
    ovs = state.ovs()
    link = state.find_link("spine1", "leaf2")

    def states() -> list[tuple[str, str]]:
        """(kernel operational state, OVS's link state) of both ends."""
        kernel = [netns.run(["ip", "-br", "link", "show", "dev", v]).split()[1] for v in link["veths"]]
        return [(k, ovs.vsctl("get", "Interface", v, "link_state").strip()) for k, v in zip(kernel, link["veths"])]

    emulator.set_link("leaf2", "spine1", False, state.run_dir)
    assert emulator.load_state(state.run_dir).find_link("leaf2", "spine1")["up"] is False
    assert eventually(states, [("DOWN", "down"), ("DOWN", "down")])
    emulator.set_link("spine1", "leaf2", True, state.run_dir)
    assert eventually(states, [("UP", "up"), ("UP", "up")])
    assert port_numbers(ovs, state.switch_bridge("leaf2"))[link["veths"][0]] == 1
    with pytest.raises(emulator.FabricError, match="no link between"):
        emulator.set_link("spine1", "spine2", False, state.run_dir)


def test_up_twice_is_an_error_and_a_failed_up_rolls_back(fabric: FabricFactory,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    topo = load_topology(LEAF_SPINE)
    state = fabric(topo)
    with pytest.raises(emulator.FabricError, match="a fabric is already up"):
        emulator.up(topo, run_dir=state.run_dir, ovs_root=state.ovs_root)

    planned: list[emulator.FabricState] = []

    def broken_check(ovs: OVS, st: emulator.FabricState) -> None:
        planned.append(st)
        raise emulator.FabricError("injected failure")

    monkeypatch.setattr(emulator, "_check_ports", broken_check)
    with pytest.raises(emulator.FabricError, match="injected failure"):
        fabric(generators.leaf_spine(1, 2, 1, 1))
    failed = planned[0]
    assert leftovers(failed) == []
    assert not set(failed.bridges) & set(failed.ovs().bridges())
    assert leftovers(state) != []  # the first fabric is untouched


def test_down_after_a_crash_halfway_through_up(ovs: OVS, tmp_path: Path) -> None:
    """up killed between creating links and bridges: down still finds and removes all of it."""
    script = textwrap.dedent(f"""\
        import os, signal
        from topologies import emulator, generators
        def crash(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        emulator._create_bridges = crash
        emulator.up(generators.leaf_spine(2, 2, 2, 1), run_dir={str(tmp_path)!r}, ovs_root={str(ovs.root)!r})
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = emulator.load_state(tmp_path)
    assert state.status == "creating"
    assert len(leftovers(state)) > 0
    emulator.down(tmp_path)
    assert leftovers(state) == []
    assert not (tmp_path / emulator.STATE_FILE).exists()


def test_cli_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    """Through the command line, without the session's hold: down also stops the OVS it started."""
    shared = OVS()
    was_running = shared.alive()
    up = clicksteer("up", str(LEAF_SPINE), "--no-controller", run_dir=tmp_path)
    assert up.returncode == 0, up.stderr
    assert "fabric leaf-spine is up" in up.stdout
    state = emulator.load_state(tmp_path)
    again = clicksteer("up", str(LEAF_SPINE), run_dir=tmp_path)
    assert again.returncode == 1
    assert "a fabric is already up" in again.stderr
    assert "bridges: 6/6 present" in clicksteer("status", run_dir=tmp_path).stdout
    status = clicksteer("status", "--json", run_dir=tmp_path)
    assert status.returncode == 0, status.stdout
    report = json.loads(status.stdout)
    assert all(report["bridges"].values()) and all(report["namespaces"].values())
    assert report["ovs"]["alive"]
    down = clicksteer("down", run_dir=tmp_path)
    assert down.returncode == 0, down.stderr
    assert leftovers(state) == []
    assert not set(state.bridges) & set(shared.bridges() if shared.alive() else [])
    if not was_running and not shared.held():
        assert shared.pids() == {}
        assert not Path("/sys/class/net/ovs-netdev").exists()
    assert clicksteer("down", run_dir=tmp_path).returncode == 1


def test_bad_topology_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("switches:\n  - {name: s1, dpid: 1}\nlinks:\n  - {a: s1, b: nowhere}\n")
    proc = clicksteer("up", str(bad), run_dir=tmp_path / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{bad}:4:16: links[0].b: unknown switch 'nowhere'"
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_fat_tree_k4_up_and_down(fabric: FabricFactory) -> None:
    topo = load_topology(REPO / "topologies" / "fat-tree-k4.yaml")
    state = fabric(topo)
    ovs = state.ovs()
    assert set(state.bridges) <= set(ovs.bridges())
    assert len(state.bridges) == 28
    for switch in topo.switches:
        assert f"dpid:{switch.dpid:016x}" in ovs.ofctl("show", state.switch_bridge(switch.name))
    emulator.down(state.run_dir)
    assert leftovers(state) == []
