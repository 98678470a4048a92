"""The emu backend on the emulated fabric: real namespaces, a real OVS, real packets.

The fabric: one leaf (and a spine), hosts h1_1 and h1_2, compute host c1_1.
With no controller the leaf is made a plain learning switch (NORMAL), so the
test steers by hand the way the fabric would: h1_1 resolves h1_2's address to
the instance's MAC, the instance filters and hands packets to h1_2's MAC.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from clickos_agent.agent import Agent, derive_mac
from clickos_agent.api import build_api
from clickos_agent.backends.emu import POOL_PREFIX, PREFIX, EmuBackend
from clickos_agent.client import AgentClient, AgentClientError
from clickos_agent.httpapi import ApiServer
from clickos_agent.store import StateStore
from topologies import netns
from topologies.generators import leaf_spine

pytestmark = pytest.mark.ovs

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "t0ken"


def firewall_config(instance_mac: str, next_mac: str) -> str:
    """The frame of a rendered chain config: only frames to the instance, ICMP and UDP 5001 allowed."""
    inst = instance_mac.replace(":", "")
    return f"""
src :: FromDevice(0);
mine :: Classifier(0/{inst} 12/0800, -);
filter :: IPFilter(0 icmp, 0 udp dst port 5001, 1 all);
src -> mine;
mine[0] -> count_in :: Counter -> Strip(14) -> CheckIPHeader -> filter;
mine[1] -> Discard;
filter[0] -> Unstrip(14) -> count_out :: Counter -> EtherRewrite(SRC {instance_mac}, DST {next_mac})
          -> Queue -> ToDevice(0);
filter[1] -> count_drop :: Counter -> Discard;
"""


@pytest.fixture
def net(fabric):
    state = fabric(leaf_spine(1, 1, 2, 1))
    ovs = state.ovs()
    for switch in state.switches:
        ovs.ofctl("add-flow", state.switch_bridge(switch), "priority=0,actions=NORMAL")
    return state


def ping(state, src: str, dst: str, count: int = 3) -> bool:
    ip = state.hosts[dst]["ip"].split("/")[0]
    proc = netns.exec_in(state.host_namespace(src), ["ping", "-c", str(count), "-i", "0.2", "-W", "2", ip],
                         check=False)
    return proc.returncode == 0


def send_udp(state, src: str, dst: str, port: int, count: int) -> None:
    ip = state.hosts[dst]["ip"].split("/")[0]
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for _ in range({count}): s.sendto(b'x' * 32, ('{ip}', {port}))")
    netns.exec_in(state.host_namespace(src), [sys.executable, "-c", code])


def steer(state, src: str, dst: str, mac: str) -> None:
    """``src`` sends ``dst``'s traffic to ``mac`` (what the fabric's steering does)."""
    ip = state.hosts[dst]["ip"].split("/")[0]
    netns.exec_in(state.host_namespace(src), ["ip", "neigh", "replace", ip, "lladdr", mac, "dev", "eth0",
                                              "nud", "permanent"])


def leftovers(state, tag: str) -> list[str]:
    """Anything carrying the agent's tag: namespaces, links, bridge ports, processes in those namespaces."""
    bridge = state.compute_bridge("c1_1")
    names = (f"{PREFIX}{tag}", f"{POOL_PREFIX}{tag}")
    found = [ns for ns in netns.list_netns() if ns.startswith((f"{PREFIX}-{tag}-", f"{POOL_PREFIX}-{tag}-"))]
    found += [link for link in os.listdir("/sys/class/net") if link.startswith(names)]
    found += [p for p in state.ovs().vsctl("list-ports", bridge).split() if p.startswith(names)]
    return found


@contextmanager
def started_agent(net: Any, tmp_path: Path, **options: Any) -> Iterator[tuple[EmuBackend, Agent]]:
    """An agent started on c1_1 with an emu backend (``options`` go to the backend);
    on the way out the backend is closed and whatever the agent tagged is swept."""
    backend = EmuBackend(net.compute_bridge("c1_1"), net.ovs(), tmp_path / "run", **options)
    backend.open()
    agent = Agent("c1_1", backend, StateStore(tmp_path / "state.json"))
    agent.start()
    try:
        yield backend, agent
    finally:
        backend.close()
        backend.sweep(agent.tag, [])


def test_firewall_instance_forwards_counts_and_leaves_nothing(net, tmp_path):
    with started_agent(net, tmp_path) as (_, agent):
        server = ApiServer(build_api(agent, TOKEN), "127.0.0.1", 0).start()
        client = AgentClient(f"http://{server.address}", token=TOKEN)
        mac = derive_mac("web-fw-0", 0)
        try:
            assert ping(net, "h1_1", "h1_2")                      # the fabric works without the instance
            with pytest.raises(AgentClientError) as refused:
                client.create_instance("web-fw-0", "web", 0, "firewall", "FromDevice(0) -> Nope -> ToDevice(0);")
            assert refused.value.status == 422 and not leftovers(net, agent.tag)

            inst = client.create_instance("web-fw-0", "web", 0, "firewall",
                                          firewall_config(mac, net.hosts["h1_2"]["mac"]))
            assert inst["state"] == "running", inst["reason"]
            assert inst["interfaces"][0]["mac"] == mac
            assert inst["interfaces"][0]["port"] in net.ovs().vsctl("list-ports", net.compute_bridge("c1_1")).split()
            assert set(inst["timings_ms"]) == {"create", "attach", "install", "start", "total"}

            steer(net, "h1_1", "h1_2", mac)
            assert ping(net, "h1_1", "h1_2", count=3)              # through the firewall and back
            send_udp(net, "h1_1", "h1_2", 5002, 5)                 # denied
            count_in = int(client.read_handler("web-fw-0", "count_in", "count"))
            count_out = int(client.read_handler("web-fw-0", "count_out", "count"))
            count_drop = int(client.read_handler("web-fw-0", "count_drop", "count"))
            assert count_in >= 8 and count_out >= 3 and count_drop == 5
            assert count_in == count_out + count_drop

            client.write_handler("web-fw-0", "count_in", "reset", "")
            assert int(client.read_handler("web-fw-0", "count_in", "count")) == 0
            with pytest.raises(AgentClientError) as missing:
                client.read_handler("web-fw-0", "nosuch", "count")
            assert missing.value.status == 404

            pid = agent.get("web-fw-0").handles["pid"]
            assert client.delete_instance("web-fw-0")
            assert leftovers(net, agent.tag) == []
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            assert client.list_instances() == []
            assert not ping(net, "h1_1", "h1_2", count=1)          # steered into nothing now
        finally:
            server.stop()


class AgentProcess:
    """``clicksteer agent`` as a separate process, as in production."""

    def __init__(self, state, tmp_path: Path) -> None:
        self.args = [sys.executable, "-m", "clickos_agent.agentcli", "--host", "c1_1", "--backend", "emu",
                     "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "agent"), "--pool", "2",
                     "--fabric-dir", state.run_dir, "--token-file", str(tmp_path / "token")]
        (tmp_path / "token").write_text(TOKEN + "\n")
        self.log = tmp_path / "agent.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> AgentClient:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.proc.stdout.readline()   # "agent c1_1 (emu) listening on http://ADDR"
        assert "listening on" in line, self.log.read_text()
        return AgentClient(line.split("listening on ")[1].strip(), token=TOKEN)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def test_killed_agent_restarts_and_readopts_forwarding_instances(net, tmp_path):
    """The agent process runs with a warm pool, so instances here take pre-built slots."""
    agent = AgentProcess(net, tmp_path)
    client = agent.start()
    tag = client.health()["tag"]
    try:
        macs = {}
        for n, (src, dst) in enumerate((("h1_1", "h1_2"), ("h1_2", "h1_1"))):
            macs[n] = derive_mac(f"fw-{n}", 0)
            inst = client.create_instance(f"fw-{n}", "web", n, "firewall",
                                          firewall_config(macs[n], net.hosts[dst]["mac"]))
            assert inst["state"] == "running", inst["reason"]
            steer(net, src, dst, macs[n])
        assert ping(net, "h1_1", "h1_2")

        agent.kill()
        assert ping(net, "h1_1", "h1_2")                       # routers outlive the agent
        # A crash can leave a tagged namespace the table does not know: the restart removes it.
        netns.add_netns(f"{PREFIX}-{tag}-999")

        client = agent.start()
        assert client.health()["tag"] == tag
        listed = client.list_instances()
        assert [(i["id"], i["state"], i["adopted"]) for i in listed] == [("fw-0", "running", True),
                                                                        ("fw-1", "running", True)]
        assert not netns.netns_exists(f"{PREFIX}-{tag}-999")
        assert ping(net, "h1_1", "h1_2")                       # still forwarding, both ways steered
        assert int(client.read_handler("fw-0", "count_in", "count")) >= 6
        assert int(client.read_handler("fw-1", "count_in", "count")) >= 6

        for n in range(2):
            assert client.delete_instance(f"fw-{n}")
        saved = json.loads((tmp_path / "agent" / "instances.json").read_text())
        assert saved["instances"] == []
        agent.stop()                                           # and its warm pool goes with it
        assert leftovers(net, tag) == []
    finally:
        agent.stop()
        backend = EmuBackend(net.compute_bridge("c1_1"), net.ovs(), tmp_path / "agent" / "run")
        backend.sweep(tag, [])


def test_warm_pool_instance_gets_its_mac_and_forwards(net, tmp_path):
    with started_agent(net, tmp_path, pool_size=1) as (backend, agent):
        while not backend.pool:              # the slot is built in the background
            backend.pool_wanted.wait(0.01)
        mac = derive_mac("web-fw-0", 0)
        _, inst = agent.create({"id": "web-fw-0", "chain": "web", "hop": 0, "function": "firewall",
                                "config": firewall_config(mac, net.hosts["h1_2"]["mac"])})
        assert inst.state == "running", inst.reason
        assert inst.handles["pooled"] and inst.handles["netns"].startswith(f"{POOL_PREFIX}-{agent.tag}-")
        shown = netns.exec_in(inst.handles["netns"], ["ip", "-o", "link", "show", "eth0"]).stdout
        assert mac in shown and "UP" in shown
        steer(net, "h1_1", "h1_2", mac)
        assert ping(net, "h1_1", "h1_2")
        agent.delete("web-fw-0")
        backend.close()                      # removes the refilled slot too
        assert leftovers(net, agent.tag) == []


def test_a_dead_router_worker_is_replaced(net, tmp_path):
    with started_agent(net, tmp_path) as (backend, agent):
        backend.spawner.proc.kill()          # the worker this test's backend started
        backend.spawner.proc.wait()
        mac = derive_mac("web-fw-0", 0)
        _, inst = agent.create({"id": "web-fw-0", "chain": "web", "hop": 0, "function": "firewall",
                                "config": firewall_config(mac, net.hosts["h1_2"]["mac"])})
        assert inst.state == "running", inst.reason
        agent.delete("web-fw-0")
        assert leftovers(net, agent.tag) == []


def test_a_router_that_cannot_start_fails_with_its_error_and_releases(net, tmp_path):
    with started_agent(net, tmp_path) as (backend, agent):
        # Valid Click, but the instance has no device 3: the runtime fails while initializing.
        _, inst = agent.create({"id": "bad", "chain": "web", "hop": 0, "function": "firewall",
                                "config": "FromDevice(3) -> Discard;\n"})
        assert inst.state == "failed"
        assert inst.reason.startswith("start failed: the router exited before it was ready")
        assert "FromDevice" in inst.reason
        assert leftovers(net, agent.tag) == []
        assert list((tmp_path / "run").iterdir()) == []
