"""End to end on the emulated fabric: real Open vSwitch, the controller process, real agents and instances.

A 3-hop chain applied through the REST API steers real TCP packets through
its three instances in order (captures on the instances' ports and their
counters show it); a bad chain is refused with nothing changed; deleting the
chain restores normal forwarding and releases the instances.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import testbed
from controller.client import ControllerClient
from test_controller_service import WEB
from topologies.loader import load_topology

pytestmark = [pytest.mark.ovs, pytest.mark.slow]

TOPO = Path(__file__).resolve().parent.parent / "topologies" / "leaf-spine.yaml"
TOKEN = "integration-token"
SERVER_IP = "10.0.2.1"


class Bed:
    def __init__(self, fabric: Any, client: ControllerClient, topology: Any, children: list[testbed.Child],
                 restart: Any) -> None:
        self.fabric = fabric
        self.client = client
        self.topology = topology
        self.children = children
        self.restart = restart      # restart(chains_file): a new controller process on the same ports

    def ns(self, host: str) -> str:
        return self.fabric.host_namespace(host)

    def http_get(self) -> int:
        """One HTTP request from client1 to server1 (port 80); the status, 0 when it failed."""
        proc = subprocess.run(["ip", "netns", "exec", self.ns("client1"), "curl", "-s", "-m", "5", "-o",
                               "/dev/null", "-w", "%{http_code}", f"http://{SERVER_IP}/"],
                              capture_output=True, text=True)
        return int(proc.stdout or 0)

    def flows(self) -> dict[str, list[str]]:
        ovs = self.fabric.ovs()
        return {name: sorted(ovs.ofctl("dump-flows", "--no-stats", self.fabric.switch_bridge(name)).splitlines()[1:])
                for name in sorted(self.fabric.switches)}


@pytest.fixture
def bed(fabric: Any, tmp_path: Path) -> Iterator[Bed]:
    topology = testbed.with_free_agent_ports(load_topology(TOPO))
    topo_file = testbed.write(topology, tmp_path / "topo.yaml")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    openflow, api = testbed.free_port(), testbed.free_port()
    children = [testbed.start_controller(topo_file, openflow, api, tmp_path, token_file)]
    server = None
    try:
        state = fabric(topology, controller=f"tcp:127.0.0.1:{openflow}")
        children += testbed.start_agents(topology, state.run_dir, tmp_path)
        server = subprocess.Popen(["ip", "netns", "exec", state.host_namespace("server1"), "python3", "-u", "-m",
                                   "http.server", "80", "--bind", SERVER_IP],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert server.stdout is not None
        server.stdout.readline()                      # "Serving HTTP on ...": it listens
        client = ControllerClient(f"127.0.0.1:{api}", TOKEN)
        testbed.wait_switches(client, len(topology.switches))

        def restart(chains_file: Path) -> None:
            children[0].stop()
            children[0] = testbed.start_controller(topo_file, openflow, api, tmp_path, token_file,
                                                   chains_file=chains_file)

        yield Bed(state, client, topology, children, restart)
    finally:
        testbed.release_instances(c.agent for c in topology.computes)
        if server is not None:
            server.terminate()
            server.wait()
        for child in reversed(children):
            child.stop()


def _first_syn_times(packets: Any, macs: dict[str, str]) -> dict[str, float]:
    """When each instance was first handed the SYN (frames addressed to its MAC, seen on its port)."""
    from scapy.all import TCP, Ether
    out = {}
    for iid, mac in macs.items():
        times = [p.time for p in packets if Ether in p and p[Ether].dst == mac and TCP in p and p[TCP].flags == "S"]
        assert times, f"no SYN was handed to {iid}"
        out[iid] = float(min(times))
    return out


def test_three_hop_chain_steers_real_packets_in_order(bed: Bed, tmp_path: Path) -> None:
    client = bed.client
    for _ in range(100):                              # LLDP probes go out as switches connect
        if client.ok("GET", "/v1/health")["links"]["confirmed"] == len(bed.topology.links):
            break
        time.sleep(0.1)
    health = client.ok("GET", "/v1/health")
    assert health["status"] == "ok" and health["links"]["confirmed"] == len(bed.topology.links), health
    assert bed.http_get() == 200                      # normal forwarding before any chain
    flows_before = bed.flows()

    bad = WEB.replace("function: monitor", "function: nosuch")
    status, body = client.call("POST", "/v1/chains", bad, "application/yaml")
    assert status == 422 and body["field"] == "chains[0].hops[1].function"
    assert bed.flows() == flows_before

    chains = client.ok("POST", "/v1/chains?wait=30", WEB, "application/yaml")["chains"]
    assert chains[0]["state"] == "active", chains
    view = client.ok("GET", "/v1/chains/web")
    ids = [h["instances"][0]["id"] for h in view["hops"]]
    agents = {c.name: c.agent for c in bed.topology.computes}
    ports = {}
    for hop in view["hops"]:
        inst = hop["instances"][0]
        answer = ControllerClient(agents[inst["compute"]]).ok("GET", f"/v1/instances/{inst['id']}")
        ports[inst["id"]] = answer["interfaces"][0]["port"]
    macs = {h["instances"][0]["id"]: h["instances"][0]["mac"] for h in view["hops"]}

    # Capture on the three instances' ports while one HTTP request crosses the chain.
    from scapy.all import AsyncSniffer
    started = threading.Event()
    sniffer = AsyncSniffer(iface=list(ports.values()), filter="tcp dst port 80", started_callback=started.set)
    sniffer.start()
    started.wait(10)
    assert bed.http_get() == 200
    times = _first_syn_times(sniffer.stop(), macs)
    assert times[ids[0]] <= times[ids[1]] <= times[ids[2]], times

    view = client.ok("GET", "/v1/chains/web")
    for hop in view["hops"]:
        counters = hop["instances"][0]["counters"]
        assert counters["count_in"]["packets"] > 0 and counters["count_out"]["packets"] > 0, hop

    # A bad chain is refused while one runs, with nothing changed.
    flows_with_chain, instances = bed.flows(), client.ok("GET", "/v1/instances")
    overlapping = WEB.replace("name: web", "name: web2")
    status, body = client.call("POST", "/v1/chains", overlapping, "application/yaml")
    assert status == 422 and body["field"] == "chains[0].classifier"
    assert (bed.flows(), client.ok("GET", "/v1/instances")) == (flows_with_chain, instances)
    assert ControllerClient(client.base).call("POST", "/v1/chains", WEB, "application/yaml")[0] == 401

    # Deleting the chain restores normal forwarding and releases the instances.
    client.ok("DELETE", "/v1/chains/web")
    assert bed.flows() == flows_before
    assert bed.http_get() == 200
    assert client.ok("GET", "/v1/instances")["instances"] == []
    for compute in bed.topology.computes:      # released by the controller's threads: wait for them
        agent = ControllerClient(compute.agent)
        for _ in range(100):
            if not agent.ok("GET", "/v1/instances")["instances"]:
                break
            time.sleep(0.1)
        assert agent.ok("GET", "/v1/instances")["instances"] == []


def test_restarted_controller_resyncs_switches(bed: Bed, tmp_path: Path) -> None:
    client = bed.client
    assert client.ok("POST", "/v1/chains?wait=30", WEB, "application/yaml")["chains"][0]["state"] == "active"
    assert bed.http_get() == 200
    flows_with_chain = bed.flows()

    # The controller goes away; one switch loses every flow meanwhile.  A new controller, given the
    # same chains, finds the instances running at their agents and resyncs every switch that connects.
    chains_file = tmp_path / "web.yaml"
    chains_file.write_text(WEB)
    bed.children[0].stop()
    bed.fabric.ovs().ofctl("del-flows", bed.fabric.switch_bridge("leaf1"))
    bed.restart(chains_file)
    testbed.wait_switches(client, len(bed.topology.switches))
    for _ in range(100):
        if client.ok("GET", "/v1/chains/web?counters=0")["state"] == "active":
            break
        time.sleep(0.1)
    assert client.ok("GET", "/v1/chains/web?counters=0")["state"] == "active"
    assert bed.flows() == flows_with_chain
    before = client.ok("GET", "/v1/chains/web")["hops"][0]["instances"][0]["counters"]["count_in"]["packets"]
    assert bed.http_get() == 200
    after = client.ok("GET", "/v1/chains/web")["hops"][0]["instances"][0]["counters"]["count_in"]["packets"]
    assert after > before
    client.ok("DELETE", "/v1/chains/web")
