"""End to end, each test on a fresh emulated fabric: real switches, controller, agents, instances, traffic.

The stage (controller/demo.py) is the demo's: the leaf-spine fabric, the
controller and one agent per compute host as child processes.  compute1 has
room for two instances only, so a 3-hop chain spans both compute hosts.
Traffic runs inside the host namespaces; what the instances saw comes from
their counters (through the REST API) and from captures on their ports.
Every check counts packets; none depends on timing.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controller.demo import ROOT, Stage, UdpSink, ns_socket, ordered, ping, start_stage, udp_stream
from topologies.loader import load_topology

pytestmark = [pytest.mark.ovs, pytest.mark.slow]

TOPO = ROOT / "topologies" / "leaf-spine.yaml"
PROBE_PORT = 45000          # the source port that singles out the captured packet

T = TypeVar("T")


@pytest.fixture
def stage(fabric: Any, tmp_path: Path) -> Iterator[Stage]:
    topology = load_topology(TOPO)
    computes = tuple(dataclasses.replace(c, capacity=2) if c.name == "compute1" else c for c in topology.computes)
    bed = start_stage(dataclasses.replace(topology, computes=computes), tmp_path,
                      lambda topo, controller: fabric(topo, controller=controller))
    try:
        yield bed
    finally:
        bed.close()      # the fabric fixture removes the fabric afterwards


def udp_chain(name: str, src: str, dst: str, port: int | str, hops: str, extra: str = "") -> str:
    """A chain document for UDP from ``src`` to ``dst``:``port`` (or a "LOW-HIGH" range); ``hops``: YAML, indented 6."""
    return f"""
chains:
  - name: {name}
    classifier: {{src: {src}, dst: {dst}, protocol: udp, dst_port: {port}}}
    priority: 200
{extra}    hops:
{hops}"""


THREE_HOPS = """\
      - {name: fw, function: firewall, params: {default: deny, rules: [{action: allow, protocol: udp}]}}
      - {name: mon, function: monitor}
      - {name: limit, function: rate-limiter, params: {pps: 100000}}
"""
TWO_HOPS = """\
      - {name: a, function: passthrough}
      - {name: b, function: monitor}
"""


def hop_counts(stage: Stage, chain: str, element: str = "count_in") -> list[int]:
    """Per hop of ``chain`` (one instance each): packets its ``element`` counted."""
    return [h["instances"][0]["counters"].get(element, {}).get("packets", 0) for h in stage.counters(chain)]


def hop_ids(stage: Stage, chain: str) -> list[str]:
    return [h["instances"][0]["id"] for h in stage.counters(chain)]


class UdpEcho:
    """A UDP server in ``host`` that sends every datagram back, until ``close``."""

    def __init__(self, stage: Stage, host: str, port: int) -> None:
        self.sock = ns_socket(stage.ns(host), socket.SOCK_DGRAM)
        self.sock.bind((stage.ip(host), port))
        self.sock.settimeout(0.1)        # closing a socket does not wake a blocked recvfrom: poll a flag
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.sock.sendto(data, peer)

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def test_three_hop_chain_is_crossed_in_order_across_two_compute_hosts(stage: Stage) -> None:
    chains = stage.apply(udp_chain("order", "10.0.1.1/32", "10.0.2.1/32", 9000, THREE_HOPS))
    assert chains[0]["state"] == "active", chains
    assert {h["instances"][0]["compute"] for h in chains[0]["hops"]} == {"compute1", "compute2"}
    sink = UdpSink(stage.ns("server1"), stage.ip("server1"), 9000)
    try:
        capture = stage.capture("order", f"udp src port {PROBE_PORT}")
        probe = ns_socket(stage.ns("client1"), socket.SOCK_DGRAM)
        with probe:
            probe.bind((stage.ip("client1"), PROBE_PORT))
            probe.sendto(b"\0\0\0\0probe", (stage.ip("server1"), 9000))
            assert sink.settle(1) == 1
        first_seen = capture.stop()
        udp_stream(stage.ns("client1"), stage.ip("server1"), 9000, 99, 0.001, first=1)
        assert sink.settle(100) == 100
    finally:
        sink.close()
    ids = hop_ids(stage, "order")
    assert ordered(first_seen, ids), first_seen
    # Every packet entered and left every hop, and nothing else did.
    assert hop_counts(stage, "order") == [100, 100, 100]
    assert hop_counts(stage, "order", "count_out") == [100, 100, 100]


def test_symmetric_chain_replies_cross_the_same_instances_in_reverse(stage: Stage) -> None:
    doc = udp_chain("sym", "10.0.1.1/32", "10.0.2.2/32", 7007, TWO_HOPS, extra="    symmetric: true\n")
    assert stage.apply(doc)[0]["state"] == "active"
    echo = UdpEcho(stage, "server2", 7007)
    client = ns_socket(stage.ns("client1"), socket.SOCK_DGRAM)
    try:
        client.bind((stage.ip("client1"), PROBE_PORT))
        client.settimeout(3)
        forward = stage.capture("sym", f"udp dst port 7007 and src port {PROBE_PORT}")
        reverse = stage.capture("sym", f"udp src port 7007 and dst port {PROBE_PORT}")
        client.sendto(b"ping", (stage.ip("server2"), 7007))
        assert client.recvfrom(100)[0] == b"ping"
        there, back = forward.stop(), reverse.stop()
        for _ in range(9):
            client.sendto(b"more", (stage.ip("server2"), 7007))
            assert client.recvfrom(100)[0] == b"more"
    finally:
        client.close()
        echo.close()
    a, b = hop_ids(stage, "sym")
    assert ordered(there, [a, b]), there
    assert ordered(back, [b, a]), back
    # Ten requests and ten replies each crossed both instances.
    assert hop_counts(stage, "sym") == [20, 20]


def test_two_chains_sharing_switches_and_links_stay_isolated(stage: Stage) -> None:
    # Both go from leaf1 to server1 on leaf2: the same switches, the same uplinks.
    stage.apply(udp_chain("left", "10.0.1.1/32", "10.0.2.1/32", 9001, TWO_HOPS))
    stage.apply(udp_chain("right", "10.0.1.2/32", "10.0.2.1/32", 9001, TWO_HOPS))
    assert {c["name"]: c["state"] for c in stage.api.ok("GET", "/v1/chains")["chains"]} == \
        {"left": "active", "right": "active"}
    sink = UdpSink(stage.ns("server1"), stage.ip("server1"), 9001)
    try:
        udp_stream(stage.ns("client1"), stage.ip("server1"), 9001, 120, 0.0005)
        udp_stream(stage.ns("client2"), stage.ip("server1"), 9001, 45, 0.0005, first=1000)
        assert sink.settle(165) == 165
    finally:
        sink.close()
    assert hop_counts(stage, "left") == [120, 120]
    assert hop_counts(stage, "right") == [45, 45]
    assert not set(hop_ids(stage, "left")) & set(hop_ids(stage, "right"))


def test_unmatched_traffic_bypasses_instances_and_denied_traffic_never_arrives(stage: Stage) -> None:
    hops = """\
      - {name: fw, function: firewall, params: {default: allow, rules: [{action: deny, protocol: udp, dst_port: 9999}]}}
      - {name: mon, function: monitor}
"""
    assert stage.apply(udp_chain("guard", "10.0.1.0/24", "10.0.2.1/32", "9000-9999", hops))[0]["state"] == "active"
    c1, s1 = stage.ns("client1"), stage.ns("server1")
    allowed, denied = UdpSink(s1, stage.ip("server1"), 9000), UdpSink(s1, stage.ip("server1"), 9999)
    outside = [UdpSink(s1, stage.ip("server1"), 8999), UdpSink(stage.ns("server2"), stage.ip("server2"), 9000),
               UdpSink(c1, stage.ip("client1"), 9000)]
    try:
        udp_stream(c1, stage.ip("server1"), 9000, 30, 0.0005)
        udp_stream(c1, stage.ip("server1"), 9999, 40, 0.0005)
        assert allowed.settle(30) == 30
        assert denied.settle(40, quiet=0.3) == 0
        assert hop_counts(stage, "guard") == [70, 30]
        assert hop_counts(stage, "guard", "count_drop")[0] == 40

        # Another port, another server, the other direction, another protocol: no instance sees them.
        udp_stream(c1, stage.ip("server1"), 8999, 25, 0.0005)
        udp_stream(c1, stage.ip("server2"), 9000, 25, 0.0005)
        udp_stream(s1, stage.ip("client1"), 9000, 25, 0.0005)
        assert [sink.settle(25) for sink in outside] == [25, 25, 25]
        assert ping(c1, stage.ip("server1"), 20).received == 20
        assert hop_counts(stage, "guard") == [70, 30]
    finally:
        for sink in [allowed, denied, *outside]:
            sink.close()


PROBES = 3000                 # one per millisecond: about 3 s
CONTROL_PORT = 9500
ATTEMPTS = 3


def probe_run(stage: Stage, port: int, during: Callable[[], T]) -> tuple[set[int], set[int], T]:
    """Probes client1 -> server1:``port`` and, alongside, client2 -> server2 (the control, in no chain).

    ``during`` is called once a tenth of the probes arrived.  Returns the
    probes lost, the control probes lost, and what ``during`` returned.
    """
    sinks = [UdpSink(stage.ns("server1"), stage.ip("server1"), port),
             UdpSink(stage.ns("server2"), stage.ip("server2"), CONTROL_PORT)]
    streams = [threading.Thread(target=udp_stream, args=(stage.ns(src), stage.ip(dst), dst_port, PROBES, 0.001))
               for src, dst, dst_port in (("client1", "server1", port), ("client2", "server2", CONTROL_PORT))]
    try:
        for stream in streams:
            stream.start()
        sinks[0].settle(PROBES // 10, quiet=2.0)
        result = during()
        for stream in streams:
            stream.join()
        lost = [set(range(PROBES)) - sink.seen if sink.settle(PROBES) < PROBES else set() for sink in sinks]
    finally:
        for stream in streams:
            if stream.ident is not None:
                stream.join()
        for sink in sinks:
            sink.close()
    return lost[0], lost[1], result


def without_stalls(stage: Stage, port: int, during: Callable[[int], T]) -> tuple[set[int], T]:
    """``probe_run``, repeated while the control stream loses probes too (``during`` gets the attempt).

    The fabric's switches share one userspace datapath with every other
    fabric on the machine; when another one adds or removes ports, it can
    stall for a while and drop packets on every path.  A run where the
    control stream lost nothing shows what the chain alone did.
    """
    for attempt in range(ATTEMPTS):
        lost, control_lost, result = probe_run(stage, port, lambda: during(attempt))
        if not control_lost:
            return lost, result
    pytest.fail(f"the control stream lost probes in all {ATTEMPTS} attempts: the datapath keeps stalling")


# A closed chain cannot bypass a hop that is not ready, so it shows that the controller makes the new
# version before it breaks the old one (DESIGN.md, habit 9); an open one must not bypass either.
@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_replacing_a_chain_with_put_loses_no_probe(stage: Stage, on_failure: str) -> None:
    name, port = "swap", 9100
    extra = f"    on_failure: {on_failure}\n"
    first = udp_chain(name, "10.0.1.1/32", "10.0.2.1/32", port, TWO_HOPS, extra=extra)
    replacement = udp_chain(name, "10.0.1.1/32", "10.0.2.1/32", port, """\
      - {name: fw, function: firewall, params: {default: allow}}
      - {name: b, function: monitor, params: {by_protocol: true}}
      - {name: c, function: passthrough}
""", extra=extra)
    assert stage.apply(first)[0]["state"] == "active"

    def put(attempt: int) -> tuple[str, list[str], dict[str, Any]]:
        """Every attempt changes the chain: to the replacement, back, and so on."""
        document = (replacement, first)[attempt % 2]
        before = hop_ids(stage, name)
        return document, before, stage.api.ok("PUT", f"/v1/chains/{name}?wait=30", document, "application/yaml")

    lost, (document, old_ids, view) = without_stalls(stage, port, put)
    assert view["state"] == "active", view
    assert [h["name"] for h in stage.counters(name)] == (["fw", "b", "c"] if document is replacement else ["a", "b"])
    assert all(n > 0 for n in hop_counts(stage, name)), "the new chain carried the stream's end"
    assert stage.wait_released(set(old_ids) - set(hop_ids(stage, name))) == set()
    # The old instances are released only once drained, so even the last probes handed to them arrive.
    assert not lost, f"{len(lost)} probes lost: {sorted(lost)[:20]}"


def flows(stage: Stage) -> dict[str, list[str]]:
    ovs = stage.fabric.ovs()
    return {name: sorted(ovs.ofctl("dump-flows", "--no-stats", stage.fabric.switch_bridge(name)).splitlines()[1:])
            for name in sorted(stage.fabric.switches)}


def test_deleting_a_chain_restores_direct_forwarding_and_releases_its_instances(stage: Stage) -> None:
    before = flows(stage)
    assert stage.apply(udp_chain("gone", "10.0.1.0/24", "10.0.2.0/24", 9200, THREE_HOPS))[0]["state"] == "active"
    sink = UdpSink(stage.ns("server2"), stage.ip("server2"), 9200)
    try:
        udp_stream(stage.ns("client2"), stage.ip("server2"), 9200, 50, 0.0005)
        assert sink.settle(50) == 50
        assert hop_counts(stage, "gone") == [50, 50, 50]
        ids = set(hop_ids(stage, "gone"))
        assert ids <= {i for found in stage.agent_instances().values() for i in found}

        assert stage.api.ok("DELETE", "/v1/chains/gone")["state"] == "deleted"
        assert flows(stage) == before
        udp_stream(stage.ns("client2"), stage.ip("server2"), 9200, 50, 0.0005, first=50)
        assert sink.settle(100) == 100
    finally:
        sink.close()
    assert stage.api.ok("GET", "/v1/instances")["instances"] == []
    assert stage.wait_released() == set()
    # Their namespaces went with them.
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [i for i in ids if i in namespaces]


BAD_FUNCTION = udp_chain("broken", "10.0.1.2/32", "10.0.2.2/32", 9400, """\
      - {name: a, function: teleporter}
""")
BAD_YAML = "chains:\n  - name: broken\n    classifier: {src: 10.0.1.2/32\n"


def test_a_bad_chain_is_refused_by_api_and_cli_and_running_chains_keep_forwarding(stage: Stage,
                                                                               tmp_path: Path) -> None:
    running = udp_chain("steady", "10.0.1.1/32", "10.0.2.1/32", 9300, TWO_HOPS)
    assert stage.apply(running)[0]["state"] == "active"
    flows_before, instances_before = flows(stage), stage.api.ok("GET", "/v1/instances")
    api = stage.api
    # Valid on its own, but it overlaps the running chain at the same priority: the controller says no.
    overlap = running.replace("steady", "shadow")
    env = {"CLICKSTEER_API": api.base, "CLICKSTEER_TOKEN_FILE": str(stage.token_file), "PATH": "/usr/bin:/bin"}

    def refuse(_: int) -> None:
        """Every way in refuses every bad document."""
        status, body = api.call("POST", "/v1/chains", BAD_FUNCTION, "application/yaml")
        assert status == 422 and body["field"] == "chains[0].hops[0].function", body
        status, body = api.call("POST", "/v1/chains", BAD_YAML, "application/yaml")
        assert status == 422, body
        status, body = api.call("PUT", "/v1/chains/steady", BAD_FUNCTION.replace("broken", "steady"),
                                "application/yaml")
        assert status == 422, body
        status, body = api.call("POST", "/v1/chains", overlap, "application/yaml")
        assert status == 422 and body["field"] == "chains[0].classifier", body
        for text, code, words in ((BAD_FUNCTION, 2, "teleporter"), (BAD_YAML, 2, "bad.yaml:"),
                                  (overlap, 1, "overlap")):
            path = tmp_path / "bad.yaml"
            path.write_text(text)
            cli = subprocess.run([sys.executable, "-m", "controller.cli", "chains", "apply", str(path)],
                                 capture_output=True, text=True, env=env, cwd=ROOT)
            assert cli.returncode == code, (text, cli.stdout, cli.stderr)
            assert words in cli.stderr, cli.stderr

    lost, _ = without_stalls(stage, 9300, refuse)
    assert not lost, f"{len(lost)} probes lost: {sorted(lost)[:20]}"
    assert flows(stage) == flows_before
    assert stage.api.ok("GET", "/v1/instances") == instances_before
    assert [c["name"] for c in stage.api.ok("GET", "/v1/chains")["chains"]] == ["steady"]
    # The probes crossed both hops (none bypassed them, none was lost between them).
    first, second = hop_counts(stage, "steady")
    assert first == second >= PROBES
