"""Shared test fixtures: the private Open vSwitch and emulated fabrics.

Integration tests (``@pytest.mark.ovs``) ask for ``fabric`` (or ``ovs``):

    @pytest.mark.ovs
    def test_something(fabric):
        state = fabric(load_topology("topologies/leaf-spine.yaml"), controller="tcp:127.0.0.1:6653")
        ns = state.host_namespace("client1")          # ip netns exec <ns> ...
        bridge = state.compute_bridge("compute1")     # the compute host's learning bridge
        state.ovs().ofctl("dump-flows", state.switch_bridge("leaf1"))

Every fabric gets its own temporary run directory and is torn down after the
test, pass or fail.  The Open vSwitch is the machine's one shared private
instance (topologies/ovs.py explains why there is one); the session holds it,
so it is not stopped and restarted between tests, and it stops at the end of
the session unless another session or fabric still uses it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from topologies import emulator
from topologies.model import Topology
from topologies.ovs import OVS


def ovs_missing() -> str | None:
    """Why integration tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ovs-vswitchd"):
        return "needs Open vSwitch (ovs-vswitchd)"
    return None


@pytest.fixture(scope="session")
def ovs() -> Iterator[OVS]:
    """The shared private Open vSwitch, running and held for the whole test session."""
    if reason := ovs_missing():
        pytest.skip(reason)
    instance = OVS()
    with instance.lock():
        instance.start()
        instance.hold()
    yield instance
    instance.release()
    with instance.lock():
        instance.stop_if_idle()


FabricFactory = Callable[..., emulator.FabricState]


@pytest.fixture
def fabric(ovs: OVS, tmp_path: Path) -> Iterator[FabricFactory]:
    """``fabric(topo, controller=None)`` brings ``topo`` up; everything comes down after the test."""
    run_dirs: list[Path] = []

    def make(topo: Topology, controller: str | None = None) -> emulator.FabricState:
        run_dir = tmp_path / f"fabric{len(run_dirs)}"
        run_dirs.append(run_dir)
        return emulator.up(topo, controller=controller, run_dir=run_dir, ovs_root=ovs.root)

    yield make
    for run_dir in run_dirs:
        if (run_dir / emulator.STATE_FILE).exists():
            emulator.down(run_dir)
