"""Processes around an emulated fabric, for integration tests and benches: controller and agents.

Everything started here is a child process stopped by its PID; ports are
picked free at start, and the topology is rewritten so its agents listen on
them (several test sessions may share the machine).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from controller.client import ApiError, ControllerClient
from topologies.loader import write_topology
from topologies.model import Topology

CLICKSTEER = [sys.executable, "-m", "controller.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_free_agent_ports(topology: Topology) -> Topology:
    computes = tuple(dataclasses.replace(c, agent=f"127.0.0.1:{free_port()}") for c in topology.computes)
    return dataclasses.replace(topology, computes=computes)


class Child:
    """A clicksteer subcommand run as a child process; ``ready`` waits for its announcement line."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        self.log = open(log, "a")
        self.proc = subprocess.Popen(CLICKSTEER + argv, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     cwd=Path(__file__).resolve().parent.parent)

    def ready(self, marker: str) -> str:
        """Block until the child prints a line containing ``marker``; RuntimeError if it exits first."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if marker in line:
                return line
        self.proc.wait()
        raise RuntimeError(f"{self.proc.args} exited ({self.proc.returncode}); see {self.log_path}:\n"
                           + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def start_controller(topology_file: Path, openflow_port: int, api_port: int, work: Path,
                     token_file: Path | None = None, chains_file: Path | None = None,
                     extra: Iterable[str] = ()) -> Child:
    argv = ["controller", "--topology", str(topology_file), "--openflow", f"127.0.0.1:{openflow_port}",
            "--api", f"127.0.0.1:{api_port}", "--log-level", "INFO", *extra]
    if token_file is not None:
        argv += ["--token-file", str(token_file)]
    if chains_file is not None:
        argv += ["--chains", str(chains_file)]
    child = Child(argv, work / "controller.log")
    try:
        child.ready("clicksteer controller:")
    except BaseException:
        child.stop()
        raise
    return child


def start_agents(topology: Topology, fabric_dir: str, work: Path) -> list[Child]:
    agents = []
    for compute in topology.computes:
        state_dir = work / f"agent-{compute.name}"
        agents.append(Child(["agent", "--host", compute.name, "--backend", "emu", "--listen", compute.agent,
                             "--fabric-dir", fabric_dir, "--state-dir", str(state_dir)],
                            work / f"agent-{compute.name}.log"))
    try:
        for agent in agents:
            agent.ready("listening on")
    except BaseException:
        for agent in agents:     # the caller never sees these: stop them here
            agent.stop()
        raise
    return agents


def wait_switches(api: ControllerClient, expected: int, progress: Callable[[str], None] = lambda _: None,
                  timeout: float = 30.0) -> None:
    """Readiness is the controller's own view of the switches (DESIGN.md), so poll /v1/health."""
    deadline = time.monotonic() + timeout
    shown = -1
    while True:
        connected = api.ok("GET", "/v1/health")["switches"]["connected"]
        if connected != shown:
            progress(f"switches connected: {connected}/{expected}")
            shown = connected
        if connected == expected:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {connected} of {expected} switches connected after {timeout:g} s")
        time.sleep(0.05)


def release_instances(agents: Iterable[str]) -> None:
    """Delete every instance at every agent ("HOST:PORT"; agents leave theirs running when they stop)."""
    for address in agents:
        agent = ControllerClient(address)
        try:
            for inst in agent.ok("GET", "/v1/instances")["instances"]:
                agent.call("DELETE", f"/v1/instances/{inst['id']}")
        except ApiError:
            pass      # that agent never started or already stopped


def write(topology: Topology, path: Path) -> Path:
    write_topology(topology, path)
    return path
