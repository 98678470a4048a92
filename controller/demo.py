"""``clicksteer demo``: the whole system on an emulated fabric, with real traffic, checked.

It brings up the leaf-spine fabric, one agent per compute host and the
controller (child processes, see controller/testbed.py), applies
``chains/examples/`` through the REST API and drives traffic from the client
namespaces to the server namespaces: HTTP, a UDP stream, pings.  Then it
prints, per chain, each hop's instance, compute host and counters, the times
at which one packet reached each instance (captured there), and every check.
Last, a chain of its own shows automatic scaling: a load scales its hop out
and, once stopped, back in, and the demo prints the scaling events.  It tears
everything down and exits 0 only when every check passed.
``--keep`` leaves the fabric, agents and controller up (``--down`` removes them).

The pieces (a ``Stage`` with its processes, traffic run inside host
namespaces, captures at instances) are also what the end-to-end tests
(tests/test_e2e_*.py) and bench/chain_latency.py use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from controller import testbed
from controller.client import ControllerClient
from controller.commands import events_table, table
from controller.core.compiler import virtual_mac
from controller.loadgen import UdpLoad, in_netns, ns_socket
from topologies import emulator
from topologies.emulator import FabricState
from topologies.loader import load_topology
from topologies.model import Topology
from topologies.netns import exec_argv
from topologies.ovs import OVSError, wait_gone

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "topologies" / "leaf-spine.yaml"
EXAMPLES = ROOT / "chains" / "examples"
KEEP_DIR = Path("/run/clicksteer-demo")      # where a --keep demo records what to stop
NAT_ADDRESS = "10.0.1.200"                   # chains/examples/nat.yaml's source address
COMPUTE1_CAPACITY = 7                        # so that the 3-hop web chain spans both compute hosts
# The controller polls statistics often, so the scaling step sees a load change within a second,
# and releases a draining instance after 10 s at most (a demo must not wait for the default 60 s).
CONTROLLER_ARGS = ("--poll-interval", "0.5", "--drain-timeout", "10")
AUTOSCALE_PORT = 5300
# udp-inspect (priority 200) covers every UDP flow from the clients to the servers: this narrower
# chain needs a higher priority to be accepted, and to take its flows.
AUTOSCALE_CHAIN = f"""
chains:
  - name: autoscale
    description: a monitor hop scaled by its packet rate
    classifier: {{src: 10.0.1.2/32, dst: 10.0.2.2/32, protocol: udp, dst_port: {AUTOSCALE_PORT}}}
    priority: 300
    hops:
      - name: mon
        function: monitor
        scaling: {{min: 1, max: 2, metric: pps, out_above: 800, in_below: 200, cooldown: 1s}}
"""
AUTOSCALE_LOAD_PPS = 1500
SCALE_TIMEOUT = 15.0                         # per wait; generous: a loaded machine boots instances slower

T = TypeVar("T")


class WebServer:
    """An HTTP server inside a namespace; remembers the source address of every request."""

    def __init__(self, namespace: str, ip: str, port: int) -> None:
        import http.server   # here: every clicksteer command imports this module, few run servers

        self.clients: list[str] = []
        clients = self.clients

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                clients.append(self.client_address[0])
                body = f"hello from {ip}:{port}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass      # the demo prints its own summary

        self.server = in_netns(namespace, http.server.ThreadingHTTPServer, (ip, port), Handler)
        threading.Thread(target=self.server.serve_forever, name=f"http-{ip}:{port}", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def http_get(namespace: str, url: str, timeout: float = 3.0) -> int:
    """One GET from inside ``namespace``: the HTTP status, 0 when no answer came."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never a proxy from the env

    def get() -> int:
        try:
            with opener.open(url, timeout=timeout) as answer:
                answer.read()
                return answer.status
        except OSError:
            return 0
    return in_netns(namespace, get)


def tcp_connect(namespace: str, src_ip: str, src_port: int, dst: str, port: int, timeout: float = 3.0) -> bool:
    """Open and close one TCP connection from a chosen source port (so a capture can single it out)."""
    sock = ns_socket(namespace, socket.SOCK_STREAM)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((src_ip, src_port))
        sock.settimeout(timeout)
        try:
            sock.connect((dst, port))
        except OSError:
            return False
    return True


class UdpSink:
    """Counts the UDP datagrams that reach ``ip:port`` inside a namespace, by sequence number."""

    def __init__(self, namespace: str, ip: str, port: int) -> None:
        self.sock = ns_socket(namespace, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.2)
        self.seen: set[int] = set()
        self.bytes = 0
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"udp-{ip}:{port}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.seen.add(int.from_bytes(data[:4], "big"))
            self.bytes += len(data)
            self.last = time.monotonic()

    def settle(self, expected: int, quiet: float = 0.5) -> int:
        """Wait until ``expected`` datagrams arrived or none came for ``quiet`` s; how many arrived."""
        start = time.monotonic()
        while len(self.seen) < expected and time.monotonic() - max(self.last, start) < quiet:
            time.sleep(0.01)
        return len(self.seen)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def udp_stream(namespace: str, dst: str, port: int, count: int, interval: float, size: int = 200,
               first: int = 0, source_port: int = 0) -> None:
    """Send ``count`` numbered datagrams, one every ``interval`` s (paced against the clock, no drift)."""
    sock = ns_socket(namespace, socket.SOCK_DGRAM)
    padding = bytes(max(0, size - 4))
    start = time.monotonic()
    with sock:
        if source_port:
            sock.bind(("0.0.0.0", source_port))
        for n in range(count):
            delay = start + n * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendto((first + n).to_bytes(4, "big") + padding, (dst, port))


@dataclasses.dataclass
class PingResult:
    sent: int
    received: int
    rtts_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rtts_ms) if self.rtts_ms else float("nan")


def ping(namespace: str, dst: str, count: int, interval: float = 0.01) -> PingResult:
    """``ping`` from inside ``namespace``; every reply's round-trip time."""
    proc = subprocess.run(exec_argv(namespace, ["ping", "-n", "-c", str(count), "-i", f"{interval:g}",
                                                "-W", "1", dst]), capture_output=True, text=True)
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", proc.stdout)]
    return PingResult(count, len(rtts), rtts)


class FirstFrame:
    """tcpdump in a host's namespace, for the Ethernet source of the first frame matching ``bpf``."""

    def __init__(self, namespace: str, bpf: str) -> None:
        self.proc = subprocess.Popen(exec_argv(namespace, ["tcpdump", "-i", "eth0", "-e", "-nn", "-t", "-l",
                                                           "--immediate-mode", "-c", "1", bpf]),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:            # "listening on IFACE ...": from now on it captures
            if "listening on" in line:
                return
        self.proc.wait()
        raise RuntimeError(f"tcpdump exited before it captured: {self.proc.args}")

    def source(self, patience: float = 2.0) -> str:
        """The frame's source MAC ("" when none came within ``patience`` seconds); stops tcpdump."""
        try:
            out, _ = self.proc.communicate(timeout=patience)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            out, _ = self.proc.communicate()
        words = out.split()               # "SRC > DST, ethertype IPv4 ..."
        return words[0] if words else ""


def neighbour(namespace: str, address: str) -> str:
    """The link-layer address ``namespace`` has resolved ``address`` to ("" when none)."""
    words = subprocess.run(exec_argv(namespace, ["ip", "neigh", "show", address, "dev", "eth0"]),
                           capture_output=True, text=True, check=True).stdout.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else ""


class Capture:
    """tcpdump on the host-switch side of each instance's port: when each one was handed a packet.

    The ports are the root-namespace ends of the instances' veths (the agent
    reports them); a frame handed to an instance carries its MAC as
    destination, so ``first_seen`` is the kernel timestamp of the first frame
    matching ``bpf`` that went to each instance.
    """

    def __init__(self, ports: dict[str, tuple[str, str]], bpf: str, work: Path) -> None:
        """``ports``: instance id -> (interface, instance MAC)."""
        self.files: dict[str, Path] = {}
        self.procs: list[subprocess.Popen[str]] = []
        for iid, (iface, mac) in ports.items():
            # A file of its own (several captures may run at once on the same instance).
            with tempfile.NamedTemporaryFile("w", dir=work, prefix=f"capture-{iid}-", suffix=".txt",
                                             delete=False) as handle:
                self.files[iid] = Path(handle.name)
                self.procs.append(subprocess.Popen(
                    ["tcpdump", "-i", iface, "-nn", "-tt", "-l", "--immediate-mode", "-c", "1000",
                     f"ether dst {mac} and ({bpf})"],
                    stdout=handle, stderr=subprocess.PIPE, text=True))
        for proc in self.procs:
            assert proc.stderr is not None
            for line in proc.stderr:            # "listening on IFACE ...": from now on it captures
                if "listening on" in line:
                    break
            else:
                self.stop()
                raise RuntimeError(f"tcpdump exited before it captured: {proc.args}")

    def stop(self, patience: float = 1.0) -> dict[str, float]:
        """Stop every tcpdump (by PID); instance id -> first timestamp (missing when none was seen).

        A packet still on its way (a datagram just sent) gets up to ``patience``
        seconds to reach every instance before the captures stop.
        """
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline and not all(self._stamps(path) for path in self.files.values()):
            time.sleep(0.01)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        return {iid: min(stamps) for iid, path in self.files.items() if (stamps := self._stamps(path))}

    @staticmethod
    def _stamps(path: Path) -> list[float]:
        """The timestamps of the complete lines tcpdump wrote (``-tt``: seconds since the epoch first)."""
        return [float(line.split()[0]) for line in path.read_text().splitlines(keepends=True)
                if line[:1].isdigit() and line.endswith("\n")]


# ---- the stage: fabric, controller, agents ---------------------------------------------------

FabricUp = Callable[[Topology, str], FabricState]


@dataclasses.dataclass
class Stage:
    """An emulated fabric with its controller and agents up (child processes, stopped by PID)."""

    topology: Topology
    fabric: FabricState
    api: ControllerClient
    children: list[testbed.Child]
    work: Path
    token_file: Path

    def ns(self, host: str) -> str:
        return self.fabric.host_namespace(host)

    def ip(self, host: str) -> str:
        return str(self.topology.host_by_name[host].ip.ip)

    def agent(self, compute: str) -> ControllerClient:
        return ControllerClient(self.topology.compute_by_name[compute].agent)

    def agent_instances(self) -> dict[str, list[str]]:
        """Compute host -> the ids of the instances its agent runs."""
        return {c.name: sorted(i["id"] for i in self.agent(c.name).ok("GET", "/v1/instances")["instances"])
                for c in self.topology.computes}

    def instance_ports(self, chain: str) -> dict[str, tuple[str, str]]:
        """Instance id -> (its port on the host switch, its MAC), for every instance of ``chain``."""
        ports = {}
        for hop in self.api.ok("GET", f"/v1/chains/{chain}?counters=0")["hops"]:
            for inst in hop["instances"]:
                answer = self.agent(inst["compute"]).ok("GET", f"/v1/instances/{inst['id']}")
                ports[inst["id"]] = (answer["interfaces"][0]["port"], inst["mac"])
        return ports

    def capture(self, chain: str, bpf: str) -> Capture:
        return Capture(self.instance_ports(chain), bpf, self.work)

    def apply(self, document: str, wait: float = 30.0) -> list[dict[str, Any]]:
        """POST a chain document (YAML); the chains' views once active (ApiError when refused)."""
        return self.api.ok("POST", f"/v1/chains?wait={wait:g}", document, "application/yaml")["chains"]

    def counters(self, chain: str) -> list[dict[str, Any]]:
        """Per hop of ``chain``, in order: its instances with their counters."""
        return self.api.ok("GET", f"/v1/chains/{chain}")["hops"]

    def instance_packets(self) -> dict[str, int]:
        """Instance id -> packets it was handed (count_in), over every chain."""
        out = {}
        for chain in self.api.ok("GET", "/v1/chains")["chains"]:
            for hop in self.counters(chain["name"]):
                for inst in hop["instances"]:
                    out[inst["id"]] = inst.get("counters", {}).get("count_in", {}).get("packets", 0)
        return out

    def wait_released(self, ids: Collection[str] | None = None, timeout: float = 10.0) -> set[str]:
        """Wait until no agent runs any of ``ids`` (any instance at all, when None); the ones left.

        The controller releases instances in its own threads, after answering.
        """
        deadline = time.monotonic() + timeout
        while True:
            running = {i for found in self.agent_instances().values() for i in found}
            left = running if ids is None else running & set(ids)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def close(self) -> None:
        """Delete every instance at its agent (agents leave theirs running when they stop), stop the children."""
        testbed.release_instances(c.agent for c in self.topology.computes)
        for child in reversed(self.children):
            child.stop()


def start_stage(topology: Topology, work: Path, fabric_up: FabricUp,
                progress: Callable[[str], None] = lambda _: None, controller_args: Iterable[str] = ()) -> Stage:
    """Controller, fabric (``fabric_up(topology, controller_target)``) and agents, with switches connected.

    ``topology``'s agents get free ports.  On failure, whatever was started is
    stopped again (the fabric is ``fabric_up``'s caller's to remove).
    """
    topology = testbed.with_free_agent_ports(topology)
    work.mkdir(parents=True, exist_ok=True)
    topo_file = testbed.write(topology, work / "topology.yaml")
    token_file = work / "token"
    token_file.write_text(secrets.token_hex(16) + "\n")
    token_file.chmod(0o600)
    openflow, api_port = testbed.free_port(), testbed.free_port()
    children: list[testbed.Child] = []
    try:
        progress("starting the controller")
        children.append(testbed.start_controller(topo_file, openflow, api_port, work, token_file,
                                                 extra=controller_args))
        progress(f"bringing up fabric {topology.name}")
        fabric = fabric_up(topology, f"tcp:127.0.0.1:{openflow}")
        progress(f"starting {len(topology.computes)} agents")
        children += testbed.start_agents(topology, fabric.run_dir, work)
        api = ControllerClient(f"127.0.0.1:{api_port}", token_file.read_text().strip())
        stage = Stage(topology, fabric, api, children, work, token_file)
        testbed.wait_switches(api, len(topology.switches), progress)
        return stage
    except BaseException:
        for child in reversed(children):
            child.stop()
        raise


# ---- the demo --------------------------------------------------------------------------------

class Report:
    """Prints steps as they happen (with elapsed time) and records every check."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.checks: list[tuple[bool, str]] = []

    def step(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:5.1f}s] {text}", flush=True)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((ok, text))
        print(f"         {'ok  ' if ok else 'FAIL'} {text}", flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.checks)


def hop_table(hops: list[dict[str, Any]], first_seen: dict[str, float] | None = None) -> str:
    """One row per instance, in hop order: where it runs and what it counted."""
    rows = []
    t0 = min(first_seen.values()) if first_seen else 0.0
    for number, hop in enumerate(hops, 1):
        for inst in hop["instances"]:
            c = inst.get("counters", {})
            seen = first_seen.get(inst["id"]) if first_seen else None
            rows.append((number, hop["name"], hop["function"], inst["id"], inst["compute"],
                         *(c.get(e, {}).get(f, "-") for e in ("count_in", "count_out") for f in ("packets", "bytes")),
                         c.get("count_drop", {}).get("packets", "-"),
                         "-" if seen is None else f"+{(seen - t0) * 1000:.3f} ms"))
    return table(("#", "HOP", "FUNCTION", "INSTANCE", "HOST", "PKTS IN", "BYTES IN", "PKTS OUT", "BYTES OUT",
                  "DROPPED", "PROBE SEEN"), rows)


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def ordered(first_seen: dict[str, float], ids: list[str]) -> bool:
    """The probe reached every instance, in the chain's order."""
    return all(i in first_seen for i in ids) and all(
        first_seen[a] <= first_seen[b] for a, b in zip(ids, ids[1:]))


def hop_ids(hops: list[dict[str, Any]]) -> list[str]:
    return [hop["instances"][0]["id"] for hop in hops]


def drive_traffic(stage: Stage, report: Report) -> None:
    """The example chains' traffic, and the checks that it did what the chains say."""
    c1, c2, s1, s2 = (stage.ns(h) for h in ("client1", "client2", "server1", "server2"))
    ip = stage.ip
    servers = [WebServer(s1, ip("server1"), 80), WebServer(s1, ip("server1"), 8081),
               WebServer(s2, ip("server2"), 80), WebServer(s2, ip("server2"), 23)]
    udp_ok, udp_tftp, udp_direct = (UdpSink(s2, ip("server2"), 5201), UdpSink(s2, ip("server2"), 69),
                                    UdpSink(c1, ip("client1"), 7000))
    try:
        report.step("one probe packet per chain, captured at every instance (tcpdump on their ports)")
        probes: dict[str, tuple[str, Callable[[], object]]] = {
            "web": ("tcp src port 40000 and tcp[tcpflags] & tcp-syn != 0",
                    lambda: tcp_connect(c1, ip("client1"), 40000, ip("server1"), 80)),
            "nat-egress": ("tcp src port 40001 and tcp[tcpflags] & tcp-syn != 0",
                           lambda: tcp_connect(c1, ip("client1"), 40001, ip("server2"), 80)),
            "udp-inspect": ("udp src port 40002",
                            lambda: udp_stream(c1, ip("server2"), 5202, 1, 0, source_port=40002)),
            "icmp-probe": ("icmp[icmptype] == icmp-echo", lambda: ping(c1, ip("server1"), 1)),
        }
        seen: dict[str, dict[str, float]] = {}
        for name, (bpf, send) in probes.items():
            capture = stage.capture(name, bpf)
            try:
                send()
            finally:
                seen[name] = capture.stop()
            hops = stage.counters(name)
            report.check(ordered(seen[name], hop_ids(hops)),
                         f"{name}: the probe reached {', then '.join(h['name'] for h in hops)}")

        report.step("web: 20 HTTP requests client1 -> server1:80, 5 to :8081, and client2 -> server1:8081")
        answers = [http_get(c1, f"http://{ip('server1')}/") for _ in range(20)]
        admin = [http_get(c1, f"http://{ip('server1')}:8081/") for _ in range(5)]
        denied = _parallel(lambda: http_get(c2, f"http://{ip('server1')}:8081/", timeout=1.0), 3)
        report.check(all(a == 200 for a in answers + admin),
                     f"web: {answers.count(200)}/20 requests to :80 and {admin.count(200)}/5 to :8081 answered")
        report.check(not any(denied), f"web: client2 -> server1:8081 blocked by the firewall "
                                      f"({denied.count(0)}/3 attempts got no answer)")

        report.step("nat-egress: 10 HTTP requests client1 -> server2:80, telnet client2 -> server2:23")
        sniffer = FirstFrame(s2, f"tcp and src host {NAT_ADDRESS}")
        try:
            nat_answers = [http_get(c1, f"http://{ip('server2')}/") for _ in range(10)]
        finally:
            frame_source = sniffer.source()
        telnet = _parallel(lambda: tcp_connect(c2, ip("client2"), 0, ip("server2"), 23, timeout=1.0), 2)
        sources = sorted(set(servers[2].clients))
        report.check(nat_answers.count(200) == 10 and sources == [NAT_ADDRESS],
                     f"nat-egress: {nat_answers.count(200)}/10 answered; server2 saw them from {sources}")
        # The fabric answers ARP for the NAT address and sends its packets from the same virtual MAC:
        # server2 sees one neighbour, not the NAT instance behind it.
        vmac, resolved = virtual_mac(NAT_ADDRESS), neighbour(s2, NAT_ADDRESS)
        report.check(resolved == vmac == frame_source,
                     f"nat-egress: server2 resolved {NAT_ADDRESS} by ARP to {resolved or 'nothing'} and got its "
                     f"packets from {frame_source or 'nothing'} (the fabric's virtual MAC: {vmac})")
        report.check(not any(telnet) and not servers[3].clients,
                     "nat-egress: telnet to server2:23 blocked by the firewall")

        report.step("udp-inspect: a UDP stream client1 -> server2:5201 (2000 datagrams in 1 s), "
                    "50 tftp datagrams client2 -> server2:69")
        sender = threading.Thread(target=udp_stream, args=(c1, ip("server2"), 5201, 2000, 0.0005))
        sender.start()
        udp_stream(c2, ip("server2"), 69, 50, 0.001)
        sender.join()
        got = udp_ok.settle(2000)
        report.check(got == 2000, f"udp-inspect: {got}/2000 datagrams of the stream arrived")
        tftp = udp_tftp.settle(50, quiet=0.3)
        ids_hop = stage.counters("udp-inspect")[0]["instances"][0]["id"]
        sig = int(stage.agent(stage.counters("udp-inspect")[0]["instances"][0]["compute"]).ok(
            "GET", f"/v1/instances/{ids_hop}/handlers/sig_tftp/count")["value"])
        report.check(tftp == 0 and sig == 50, f"udp-inspect: tftp dropped by the IDS ({tftp} arrived, "
                                              f"sig_tftp counted {sig})")

        report.step("icmp-probe: 100 pings client1 -> server1, 10 ms apart")
        pings = ping(c1, ip("server1"), 100)
        report.check(pings.received == 100, f"icmp-probe: {pings.received}/100 pings answered "
                                            f"(median {pings.median_ms:.3f} ms)")

        report.step("outside every chain: 50 pings client1 -> client2, 500 UDP datagrams server1 -> client1")
        before = stage.instance_packets()
        direct_ping = ping(c1, ip("client2"), 50)
        udp_stream(s1, ip("client1"), 7000, 500, 0.0005)
        direct_udp = udp_direct.settle(500)
        after = stage.instance_packets()
        report.check(direct_ping.received == 50 and direct_udp == 500 and before == after,
                     f"direct: {direct_ping.received}/50 pings, {direct_udp}/500 datagrams, "
                     f"no instance saw any of them ({sum(after.values()) - sum(before.values())} packets)")

        report.step("counters per chain (GET /v1/chains/NAME)")
        for chain in stage.api.ok("GET", "/v1/chains")["chains"]:
            name = chain["name"]
            hops = stage.counters(name)
            print(f"\n  chain {name}: {chain['state']}")
            print(indent(hop_table(hops, seen.get(name))))
            forwarded = all(h["instances"][0].get("counters", {}).get("count_out", {}).get("packets", 0) > 0
                            for h in hops)
            report.check(forwarded, f"{name}: every hop handed packets on")
            if name == "web":
                fw = hops[0]["instances"][0]["counters"]
                report.check(fw.get("count_drop", {}).get("packets", 0) >= 3,
                             "web: the firewall counted the blocked SYNs in count_drop")
        print()
    finally:
        for server in servers:
            server.close()
        for sink in (udp_ok, udp_tftp, udp_direct):
            sink.close()


def show_autoscaling(stage: Stage, report: Report) -> None:
    """A load above the threshold scales a hop out, new flows reach the new instance, and it goes when the load does."""
    def hop() -> dict[str, Any]:
        return stage.counters("autoscale")[0]

    def events() -> list[dict[str, Any]]:
        return stage.api.ok("GET", "/v1/chains/autoscale/events")["events"]

    def first(action: str) -> dict[str, Any] | None:
        return next((e for e in events() if e["action"] == action), None)

    def packets_in(iid: str) -> int:
        """Packets handed to instance ``iid`` once it runs (0 before)."""
        return next((i.get("counters", {}).get("count_in", {}).get("packets", 0) for i in hop()["instances"]
                     if i["id"] == iid and i["state"] == "running"), 0)

    report.step(f"autoscale: a monitor hop, 1 to 2 instances (out above 800 pps per instance, in below 200), "
                f"gets {AUTOSCALE_LOAD_PPS} pps of short UDP flows client2 -> server2:{AUTOSCALE_PORT}")
    [chain] = stage.apply(AUTOSCALE_CHAIN)
    report.check(chain["state"] == "active", f"autoscale: active ({chain['hops'][0]['instances'][0]['id']}@"
                                             f"{chain['hops'][0]['instances'][0]['compute']})")
    load = UdpLoad(stage.ns("client2"), stage.ip("server2"), AUTOSCALE_PORT, pps=AUTOSCALE_LOAD_PPS)
    try:
        out = poll(lambda: first("scale-out"))
        new = out["instance"] if out else ""
        # New flows keep coming while the instance boots: once it runs, it gets its share of them
        # (a hundred packets make that plain; the check asks for any).
        if new:
            poll(lambda: packets_in(new) >= 100)
    finally:
        load.stop()
    received = packets_in(new) if new else 0
    if out is None:
        # Say what the hop measured: no rate (statistics) and no packets (steering) fail differently.
        first_instance = hop()["instances"][0]
        rate = hop()["load"]["pps"]
        report.check(False, f"autoscale: no scale-out within {SCALE_TIMEOUT:g} s (the hop measured "
                            f"{'no rate' if rate is None else f'{rate:.0f} pps'}; {first_instance['id']} "
                            f"received {packets_in(first_instance['id'])} packets)")
    else:
        report.check(out["target"] == 2 and received > 0,
                     f"autoscale: scaled out to {out['target']} instances; the new one, {new}, "
                     f"received {received} packets")

    if new:     # else there is nothing to scale in, and the demo failed already
        report.step("autoscale: load stopped; the hop drains the new instance, then releases it")
        scaled_in, released = poll(lambda: first("scale-in")), poll(lambda: first("instance-released"))
        left = stage.wait_released({new}, timeout=SCALE_TIMEOUT)
        count = len(hop()["instances"])
        report.check(scaled_in is not None and released is not None and released["instance"] == new
                     and count == 1 and not left,
                     f"autoscale: scaled back in to {count} instance; {new} released "
                     f"({'still running at its agent' if left else 'gone from its agent'})")

    report.step("scaling events (GET /v1/chains/autoscale/events, as 'clicksteer chains events autoscale' prints)")
    print(f"\n{indent(events_table(events()))}\n")
    stage.api.ok("DELETE", "/v1/chains/autoscale")


def poll(probe: Callable[[], T], timeout: float = SCALE_TIMEOUT, every: float = 0.2) -> T:
    """``probe()``'s first true value within ``timeout`` s, else its last one (the caller checks it, not the time)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


def _parallel(call: Callable[[], T], count: int) -> list[T]:
    """``count`` calls at once (attempts that time out then cost one timeout, not ``count``)."""
    results: list[Any] = [None] * count

    def one(i: int) -> None:
        results[i] = call()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def demo_topology() -> Topology:
    """The leaf-spine fabric, compute1 with room for only some instances, so chains spread over both hosts."""
    topology = load_topology(TOPOLOGY)
    computes = tuple(dataclasses.replace(c, capacity=COMPUTE1_CAPACITY) if c.name == "compute1" else c
                     for c in topology.computes)
    return dataclasses.replace(topology, computes=computes)


def missing_tools() -> list[str]:
    return [tool for tool in ("ovs-vswitchd", "ovs-vsctl", "ip", "tcpdump", "ping", "ethtool")
            if shutil.which(tool) is None]


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so teardown runs either way."""
    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(args: argparse.Namespace) -> int:
    if args.down:
        return stop_kept()
    if os.geteuid() != 0:
        print("clicksteer demo: error: run it as root (it creates namespaces and bridges)", file=sys.stderr)
        return 1
    if missing := missing_tools():
        print(f"clicksteer demo: error: missing {', '.join(missing)}; 'make demo' installs them", file=sys.stderr)
        return 1
    if args.keep:
        if (KEEP_DIR / "demo.json").exists():
            print(f"clicksteer demo: error: a kept demo is up ({KEEP_DIR}); 'clicksteer demo --down' first",
                  file=sys.stderr)
            return 1
        KEEP_DIR.mkdir(parents=True, exist_ok=True)
        work = KEEP_DIR
    else:
        work = Path(tempfile.mkdtemp(prefix="clicksteer-demo-"))
    report = Report()
    stage: Stage | None = None
    fabric_dir = work / "fabric"
    kept = False
    with terminate_as_interrupt():
        try:
            report.step("ClickSteer demo: leaf-spine fabric, 2 compute hosts, the chains of chains/examples/")
            # The children must not see the terminal's Ctrl-C (an agent would stop, leaving its
            # instances behind): they inherit a blocked SIGINT, and the teardown stops them in order.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                stage = start_stage(demo_topology(), work,
                                    lambda topo, ctl: emulator.up(topo, controller=ctl, run_dir=fabric_dir),
                                    progress=report.step, controller_args=CONTROLLER_ARGS)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            for path in sorted(EXAMPLES.glob("*.yaml")):
                started = time.monotonic()
                chains = stage.apply(path.read_text())
                for chain in chains:
                    where = ", ".join(f"{h['name']}@{h['instances'][0]['compute']}" for h in chain["hops"])
                    report.step(f"POST /v1/chains {path.name}: {chain['name']} {chain['state']} in "
                                f"{time.monotonic() - started:.2f} s ({where})")
                    report.check(chain["state"] == "active", f"{chain['name']}: active")
            drive_traffic(stage, report)
            show_autoscaling(stage, report)
            if args.keep:
                kept = True
                keep_running(stage, fabric_dir)
                return 0 if report.passed else 1
        except KeyboardInterrupt:
            report.check(False, "interrupted")
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, then torn down
            traceback.print_exc()
            report.check(False, f"{type(exc).__name__}: {exc}")
        finally:
            others = foreign_bridges(stage)
            if not kept:
                report.step("tearing down: instances, agents, controller, fabric")
                teardown(stage, fabric_dir)
    failed = [text for ok, text in report.checks if not ok]
    wall = time.monotonic() - report.start
    if failed:
        print(f"demo FAILED ({len(failed)} of {len(report.checks)} checks) in {wall:.1f} s; logs in {work}")
        if others:
            print(f"note: the shared Open vSwitch also carried {others} bridges of other fabrics; while they "
                  "change, its userspace datapath stalls and drops packets on every path (run the demo alone)")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"demo passed: {len(report.checks)} checks, wall time {wall:.1f} s")
    return 0


def foreign_bridges(stage: Stage | None) -> int:
    """How many bridges of other fabrics (other sessions, benches) share our Open vSwitch."""
    if stage is None:
        return 0
    try:
        return len(set(stage.fabric.ovs().bridges()) - set(stage.fabric.bridges))
    except OVSError:
        return 0


def teardown(stage: Stage | None, fabric_dir: Path) -> None:
    if stage is not None:
        stage.close()
    if (fabric_dir / emulator.STATE_FILE).exists():
        emulator.down(fabric_dir)


def keep_running(stage: Stage, fabric_dir: Path) -> None:
    """Record what runs (for --down) and say how to reach it; the children outlive this process."""
    record = {"pids": [child.proc.pid for child in stage.children], "fabric_dir": str(fabric_dir),
              "agents": [c.agent for c in stage.topology.computes], "api": stage.api.base}
    (KEEP_DIR / "demo.json").write_text(json.dumps(record, indent=1))
    print(f"""
The demo keeps running.  Query it:

  export CLICKSTEER_API={stage.api.base} CLICKSTEER_TOKEN_FILE={stage.token_file}
  clicksteer chains list
  clicksteer chains show web
  curl -s $CLICKSTEER_API/v1/chains/web          # JSON: placement, path, counters
  curl -s $CLICKSTEER_API/v1/health
  ip netns exec {stage.ns('client1')} ping -c 3 {stage.ip('server1')}    # through icmp-probe
  clicksteer fabric status --run-dir {fabric_dir}

Stop it: clicksteer demo --down""")


def stop_kept() -> int:
    """Undo ``--keep``: delete the instances, stop the controller and agents by PID, remove the fabric."""
    path = KEEP_DIR / "demo.json"
    if not path.exists():
        print(f"clicksteer demo: no kept demo ({path} does not exist)")
        return 0
    record = json.loads(path.read_text())
    testbed.release_instances(record["agents"])
    for pid in reversed(record["pids"]):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        wait_gone(pid, 10.0)
    if (Path(record["fabric_dir"]) / emulator.STATE_FILE).exists():
        emulator.down(record["fabric_dir"])
    shutil.rmtree(KEEP_DIR, ignore_errors=True)
    print("the kept demo is down")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``clicksteer demo`` (controller/cli.py calls this)."""
    p = subparsers.add_parser("demo", help="the whole system on an emulated fabric with real traffic, checked")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true", help="leave it running and print how to query it")
    mode.add_argument("--down", action="store_true", help="stop a demo left running by --keep")
    p.set_defaults(func=run_demo)
