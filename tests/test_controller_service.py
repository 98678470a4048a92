"""The controller's service with a fake southbound and fake agents: no switch, no thread races.

Agents answer in the test's thread when the test releases them, so every
state the service goes through is observed, never timed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from chains.errors import ConfigError
from chains.loader import load_chains
from controller.agents import AgentError
from controller.core.ofmsg import Barrier, DeleteFlows, FlowMod, GroupMod, Message, SetField
from controller.service import DRAIN_GRACE_S, DRAIN_POLL_S, DRAIN_READS, ChainService, Conflict, NotFound
from controller.core.ofmsg import dpid_of
from controller.southbound import SendResult, SwitchError, phases
from topologies.loader import load_topology

TOPO = Path(__file__).resolve().parent.parent / "topologies" / "leaf-spine.yaml"

WEB = """
chains:
  - name: web
    classifier: {src: 10.0.1.0/24, dst: 10.0.2.0/24, protocol: tcp, dst_port: 80}
    hops:
      - {name: fw, function: firewall, params: {default: allow}}
      - {name: mon, function: monitor}
      - {name: pass, function: passthrough}
"""


class FakeAgent:
    """Instances boot when the test says so (``settle``); ``fail`` makes one fail.

    An instance's packet counters read 7 unless ``counts`` scripts them: (instance,
    element) -> the values of the next reads, the last one repeating.  ``mute``
    instances answer no handler read.
    """

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.fail: set[str] = set()
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.mute: set[str] = set()
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.auto = False

    def create(self, body: dict[str, Any], wait: bool) -> dict[str, Any]:
        with self.lock:
            gate = self.gates.setdefault(body["id"], threading.Event())
            if self.auto:
                gate.set()
        gate.wait(10)
        if body["id"] in self.fail:
            raise AgentError(f"instance {body['id']} crashed", 500)
        with self.lock:
            self.instances[body["id"]] = {**body, "state": "running"}
        return self.instances[body["id"]]

    def get(self, instance_id: str) -> dict[str, Any] | None:
        return self.instances.get(instance_id)

    def list_instances(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.instances.values())

    def delete(self, instance_id: str) -> None:
        with self.lock:
            self.instances.pop(instance_id, None)
            self.deleted.append(instance_id)

    def read_handler(self, instance_id: str, element: str, handler: str) -> str:
        if instance_id in self.mute:
            raise AgentError(f"instance {instance_id} does not answer", 502)
        if element == "count_drop":
            raise AgentError("no such element", 404)
        if handler != "count":
            return "700"
        with self.lock:
            script = self.counts.get((instance_id, element), [7])
            return str(script.pop(0) if len(script) > 1 else script[0])


class FakeSwitches:
    """Records what is sent; refuses flows whose cookie is in ``refuse``."""

    def __init__(self, dpids: set[int]) -> None:
        self.dpids = dpids
        self.sent: list[Message] = []
        self.refuse: set[int] = set()

    def send(self, messages: Sequence[Message]) -> SendResult:
        result = SendResult()
        for message in messages:
            if dpid_of(message) not in self.dpids:
                result.unconfirmed.add(dpid_of(message))
                continue
            self.sent.append(message)
            if isinstance(message, FlowMod) and message.flow.cookie in self.refuse:
                result.errors.append(SwitchError(message.flow.dpid, message, "OFPET_BAD_MATCH/OFPBMC_BAD_FIELD"))
        return result


@pytest.fixture
def setup() -> tuple[ChainService, FakeAgent, FakeSwitches]:
    topology = load_topology(TOPO)
    agent = FakeAgent()
    switches = FakeSwitches({s.dpid for s in topology.switches})
    service = ChainService(topology, agents=lambda address: agent, southbound=switches, now=lambda: 0.0,
                           sleep=lambda seconds: None)
    for switch in topology.switches:
        ports = {n: f"p{n}" for n in range(1, 6)}
        service.switch_up(switch.dpid, ports)
    return service, agent, switches


def serving_service() -> tuple[ChainService, FakeAgent]:
    """A service on TOPO whose agent boots every instance at once, every switch up:
    for the tests of what is in front of the service (API, CLI)."""
    topology = load_topology(TOPO)
    agent = FakeAgent()
    agent.auto = True
    service = ChainService(topology, agents=lambda address: agent,
                           southbound=FakeSwitches({s.dpid for s in topology.switches}))
    for switch in topology.switches:
        service.switch_up(switch.dpid, {n: f"p{n}" for n in range(1, 6)})
    return service, agent


def boot_all(service: ChainService, agent: FakeAgent, names: Sequence[str]) -> None:
    with agent.lock:
        agent.auto = True
        for gate in agent.gates.values():
            gate.set()
    service.wait(names, 10)


def test_phases_split_at_barrier_runs() -> None:
    a = FlowMod("add", _flow(1))
    b = FlowMod("add", _flow(2))
    c = FlowMod("add", _flow(1, priority=5))
    out = phases([a, b, Barrier(1), Barrier(2), c, Barrier(1)])
    assert out == [([a, b], {1, 2}), ([c], {1})]
    # A batch without barriers is still confirmed on every switch it touched.
    assert phases([a, b]) == [([a, b], {1, 2})]


def handovers(service: ChainService, macs: set[str]) -> set[str]:
    """The instance MACs that installed flows hand packets to."""
    return {a.value for f in service.installed.flows.values() for a in f.actions
            if isinstance(a, SetField) and a.field == "eth_dst" and a.value in macs}


def join_releases() -> None:
    """Wait for the threads that drain and release instances (by joining them, not by time)."""
    for thread in threading.enumerate():
        if thread.name.startswith("_release"):
            thread.join()


def _flow(dpid: int, priority: int = 1) -> Any:
    from controller.core.ofmsg import Flow, Output, match
    return Flow(dpid, 0, priority, match(in_port=1), (Output(2),))


def test_chain_goes_booting_then_active_and_steers_only_ready_instances(setup: Any) -> None:
    service, agent, switches = setup
    assert service.create(load_chains(WEB, "web.yaml")) == ["web"]
    view = service.chain_view("web")
    assert view["state"] == "booting"
    assert [h["name"] for h in view["hops"]] == ["fw", "mon", "pass"]
    macs = {i["mac"] for h in view["hops"] for i in h["instances"]}
    # Traffic is handed to an instance (eth_dst := its MAC) only once it runs.
    assert not handovers(service, macs)
    boot_all(service, agent, ["web"])
    view = service.chain_view("web", counters=True)
    assert view["state"] == "active", view
    assert set(agent.instances) == {i["id"] for h in view["hops"] for i in h["instances"]}
    assert handovers(service, macs) == macs
    installed = {m.flow.key for m in switches.sent if isinstance(m, FlowMod) and m.command != "delete_strict"}
    assert set(service.installed.flows) <= installed
    assert view["hops"][0]["instances"][0]["counters"]["count_in"] == {"packets": 7, "bytes": 700}
    assert view["path"]


def test_bad_chain_changes_nothing(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    sent, instances = len(switches.sent), dict(service.instances)
    overlapping = WEB.replace("name: web", "name: web2")
    with pytest.raises(ConfigError) as err:
        service.create(load_chains(overlapping, "web2.yaml"))
    assert err.value.problems[0].path == "chains[0].classifier"
    assert "chain 'web' (running)" in err.value.problems[0].message
    with pytest.raises(Conflict):
        service.create(load_chains(WEB, "web.yaml"))
    assert len(switches.sent) == sent and service.instances == instances
    assert service.chain_names() == ["web"] and service.chain_view("web")["state"] == "active"


def test_replace_keeps_unchanged_instances_and_makes_changed_ones_before_breaking(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    before = {i["id"]: i["mac"] for i in service.instances_view()}
    old_fw = service.placement["web", 0][0]
    assert "0 all" in agent.instances[old_fw.id]["config"]    # default: allow
    agent.auto = False                     # the new firewall boots only when the test says so
    changed = WEB.replace("params: {default: allow}", "params: {default: deny}")
    assert service.replace("web", load_chains(changed, "web.yaml")) is False
    new_fw = service.placement["web", 0][0]
    assert new_fw.id != old_fw.id and new_fw.mac != old_fw.mac
    assert service.placement["web", 1][0].id in before      # unchanged hops keep their instances
    # While the new firewall boots, traffic still goes through the old one.
    assert handovers(service, {old_fw.mac, new_fw.mac}) == {old_fw.mac}
    assert service.chain_view("web")["state"] == "booting"
    assert {i["id"]: i["retiring"] for i in service.instances_view()}[old_fw.id] is True
    boot_all(service, agent, ["web"])
    assert service.chain_view("web")["state"] == "active"
    assert handovers(service, {old_fw.mac, new_fw.mac}) == {new_fw.mac}
    for thread in threading.enumerate():   # the old firewall is released by a thread: join it
        if thread.name == f"_release-{old_fw.id}":
            thread.join()
    assert agent.deleted == [old_fw.id]
    assert sorted(i["id"] for i in service.instances_view()) == sorted({*before, new_fw.id} - {old_fw.id})
    assert "1 all" in agent.instances[new_fw.id]["config"]    # the firewall's new default: deny


def test_delete_restores_forwarding_then_drains_and_releases_instances(setup: Any) -> None:
    service, agent, switches = setup
    baseline = dict(service.installed.flows)
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    ids = {spec.id for spec in service.placement.by_id().values()}
    mon = service.placement["web", 1][0].id
    agent.mute = {mon}                   # its counters cannot be read: it gets the fixed grace period
    naps: dict[str, list[tuple[float, bool, bool, bool]]] = {}

    def sleep(seconds: float) -> None:
        # In a release thread: is forwarding normal, the instance still running, the lock free?
        iid = threading.current_thread().name.removeprefix("_release-")
        naps.setdefault(iid, []).append((seconds, service.installed.flows == baseline, iid in agent.instances,
                                         not service._lock._is_owned()))

    service.sleep = sleep
    service.delete("web")
    assert service.installed.flows == baseline
    join_releases()
    # Counters that do not move: two reads one poll apart.
    assert naps == {iid: [(DRAIN_GRACE_S if iid == mon else DRAIN_POLL_S, True, True, True)] for iid in ids}
    assert sorted(agent.deleted) == sorted(ids) and not agent.instances
    with pytest.raises(NotFound):
        service.delete("web")


def test_replaced_instances_are_released_only_once_drained(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    old_fw = service.placement["web", 0][0]
    # After the switch, packets still arrive from the datapath's cache and one waits inside it.
    agent.counts[old_fw.id, "count_in"] = [7, 9, 10, 10]
    agent.counts[old_fw.id, "count_out"] = [7, 8, 10, 10]
    naps: list[tuple[float, set[str], bool, bool]] = []

    def sleep(seconds: float) -> None:
        # What the switches hand to the old firewall, whether it still runs, whether the lock is free.
        naps.append((seconds, handovers(service, {old_fw.mac}), old_fw.id in agent.instances,
                     not service._lock._is_owned()))

    service.sleep = sleep
    agent.auto = False
    service.replace("web", load_chains(WEB.replace("default: allow", "default: deny"), "web.yaml"))
    assert not naps and not agent.deleted              # the old version serves while the new one boots
    boot_all(service, agent, ["web"])
    join_releases()
    # Drained after the switch, released once two reads agreed and every packet in had gone out.
    assert naps == [(DRAIN_POLL_S, set(), True, True)] * 3
    assert agent.deleted == [old_fw.id]


def test_an_instance_that_keeps_counting_is_released_after_the_longest_drain(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    fw = service.placement["web", 0][0].id
    agent.counts[fw, "count_in"] = list(range(DRAIN_READS + 1))
    agent.counts[fw, "count_out"] = list(range(DRAIN_READS + 1))
    naps: dict[str, list[float]] = {}

    def sleep(seconds: float) -> None:
        naps.setdefault(threading.current_thread().name, []).append(seconds)

    service.sleep = sleep
    service.delete("web")
    join_releases()
    assert naps[f"_release-{fw}"] == [DRAIN_POLL_S] * DRAIN_READS
    assert fw in agent.deleted and not agent.instances


def test_a_chain_created_again_while_its_old_instances_drain_gets_new_ones(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    old = {spec.id: spec.mac for spec in service.placement.by_id().values()}
    drained = threading.Event()
    service.sleep = lambda seconds: drained.wait(10)    # the old instances drain until the test says so
    service.delete("web")
    service.create(load_chains(WEB, "web.yaml"))
    new = {spec.id: spec.mac for spec in service.placement.by_id().values()}
    # A draining instance still runs with its MAC on the host switch: nothing new may share them.
    assert not set(new) & set(old) and not set(new.values()) & set(old.values())
    drained.set()
    join_releases()
    boot_all(service, agent, ["web"])
    assert sorted(agent.deleted) == sorted(old) and set(agent.instances) == set(new)
    assert service.chain_view("web")["state"] == "active"


def test_switch_error_marks_the_chain_that_caused_it(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    chain_id = service.installed.chain_ids["web"]
    from controller.core import cookies
    switches.refuse = {cookies.cookie(chain_id)} | {cookies.cookie(chain_id, h, i) for h in range(3)
                                                    for i in (0, None)}
    boot_all(service, agent, ["web"])
    view = service.chain_view("web")
    assert view["state"] == "error"
    assert "OFPBMC_BAD_FIELD" in view["reason"]


def test_failed_instance_puts_the_chain_in_error(setup: Any) -> None:
    service, agent, switches = setup
    agent.fail = {"web-mon-0"}
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    view = service.chain_view("web")
    assert view["state"] == "error" and "crashed" in view["reason"]


def test_reconnecting_switch_is_resynced_from_scratch(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    dpid = service.topology.switches[0].dpid
    service.switch_down(dpid)
    assert service.health()["switches"]["connected"] == len(service.topology.switches) - 1
    assert service.chain_view("web")["state"] == "pending"
    mark = len(switches.sent)
    service.switch_up(dpid, {n: f"p{n}" for n in range(1, 6)})
    resent = switches.sent[mark:]
    assert isinstance(resent[0], DeleteFlows) and resent[0].dpid == dpid
    flows = {m.flow.key for m in resent if isinstance(m, FlowMod)}
    assert flows == {k for k in service.installed.flows if k[0] == dpid}
    assert not [m for m in resent if isinstance(m, GroupMod) and m.group.dpid != dpid]
    assert service.chain_view("web")["state"] == "active"


def test_port_mismatch_is_reported(setup: Any) -> None:
    service, _, _ = setup
    leaf1 = service.topology.switch_by_name["leaf1"].dpid
    service.switch_up(leaf1, {1: "a", 2: "b"})
    health = service.health()
    assert health["status"] == "degraded"
    assert any("port 5" in p for p in health["switches"]["problems"][f"{leaf1:#x}"])
    service.switch_up(0xDEAD, {})
    assert service.health()["switches"]["unexpected"] == ["0xdead"]


def test_a_switch_that_does_not_confirm_puts_its_chains_in_error(setup: Any) -> None:
    service, agent, switches = setup
    leaf1 = service.topology.switch_by_name["leaf1"].dpid
    original = switches.send

    def silent(messages: Sequence[Message]) -> SendResult:
        result = original(messages)
        result.unconfirmed |= {dpid_of(m) for m in messages} & {leaf1}
        return result

    switches.send = silent
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    view = service.chain_view("web")
    assert view["state"] == "error" and "did not confirm" in view["reason"]


def test_a_resync_clears_the_errors_of_that_switch(setup: Any) -> None:
    service, agent, switches = setup
    leaf1 = service.topology.switch_by_name["leaf1"].dpid
    original = switches.send
    switches.send = lambda messages: SendResult(unconfirmed={leaf1}) if messages else SendResult()
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    for thread in threading.enumerate():   # the chain is in error at once: wait for its instances anyway
        if thread.name == "boot-all":
            thread.join()
    assert service.chain_view("web")["state"] == "error"
    switches.send = original
    service.switch_up(leaf1, {n: f"p{n}" for n in range(1, 6)})
    assert service.chain_view("web")["state"] == "active"


def test_instances_already_running_are_steered_into_at_once(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    # A restarted controller (a new service) finds the agents running the chain's instances.
    restarted = ChainService(service.topology, agents=lambda address: agent, southbound=switches)
    for switch in service.topology.switches:
        restarted.switch_up(switch.dpid, {n: f"p{n}" for n in range(1, 6)})
    agent.auto = False                     # a create would now block: none may happen
    restarted.create(load_chains(WEB, "web.yaml"))
    assert restarted.chain_view("web")["state"] == "active"
    assert restarted.installed.flows == service.installed.flows


def test_links_seen_by_lldp_confirm_the_topology_or_report_miswiring(setup: Any) -> None:
    service, _, _ = setup
    dpid = {s.name: s.dpid for s in service.topology.switches}
    assert service.health()["links"] == {"expected": 4, "confirmed": 0, "problems": []}
    service.link_seen(dpid["leaf1"], 1, dpid["spine1"], 1)
    service.link_seen(dpid["spine2"], 1, dpid["leaf1"], 2)
    assert service.health()["links"]["confirmed"] == 2
    service.link_seen(dpid["leaf2"], 1, dpid["spine2"], 2)       # the topology says spine1 port 2
    health = service.health()
    assert health["status"] == "degraded"
    assert health["links"]["problems"] == ["leaf2 port 1 leads to spine2 port 2; the topology says spine1 port 2"]
    service.switch_down(dpid["spine1"])
    assert service.health()["links"]["confirmed"] == 1


def test_deleting_a_chain_mid_replacement_releases_old_and_new_instances(setup: Any) -> None:
    service, agent, switches = setup
    baseline = dict(service.installed.flows)
    service.create(load_chains(WEB, "web.yaml"))
    boot_all(service, agent, ["web"])
    old_fw = service.placement["web", 0][0]
    agent.auto = False
    service.replace("web", load_chains(WEB.replace("default: allow", "default: deny"), "web.yaml"))
    new_fw = service.placement["web", 0][0]
    service.delete("web")
    assert service.installed.flows == baseline and not service.previous and not service.instances
    boot_all(service, agent, [])           # let the new firewall's boot finish: it is released, not used
    for _ in range(2):                     # boot-all starts the last release: join it, then that
        for thread in threading.enumerate():
            if thread.name in ("boot-all", f"_release-{old_fw.id}", f"_release-{new_fw.id}"):
                thread.join()
    assert old_fw.id in agent.deleted and not service.instances
    assert new_fw.id not in agent.instances


TWO_HOPS_CLOSED = """
chains:
  - name: web
    on_failure: closed
    classifier: {src: 10.0.1.0/24, dst: 10.0.2.0/24, protocol: tcp, dst_port: 80}
    hops:
      - {name: a, function: monitor}
      - {name: b, function: passthrough}
"""


def test_a_closed_chain_keeps_its_old_version_until_the_new_hops_run(setup: Any) -> None:
    service, agent, switches = setup
    service.create(load_chains(TWO_HOPS_CLOSED, "web.yaml"))
    boot_all(service, agent, ["web"])
    old = {i["id"]: i["mac"] for i in service.instances_view()}
    agent.auto = False
    replacement = TWO_HOPS_CLOSED.replace("{name: a, function: monitor}",
                                          "{name: fw, function: firewall, params: {default: allow}}")
    replacement = replacement.replace("      - {name: b, function: passthrough}\n",
                                      "      - {name: b, function: passthrough}\n      - {name: c, function: monitor}\n")
    service.replace("web", load_chains(replacement, "web.yaml"))
    # New hops boot; the old version (a, b) keeps the traffic meanwhile, nothing is dropped.
    assert handovers(service, set(old.values())) == set(old.values())
    new = {s.mac for k in range(3) for s in service.placement["web", k]}
    assert handovers(service, new - set(old.values())) == set()
    boot_all(service, agent, ["web"])
    assert service.chain_view("web")["state"] == "active"
    assert handovers(service, new | set(old.values())) == new
    a = next(i for i in old if "-a-" in i)
    for thread in threading.enumerate():
        if thread.name == f"_release-{a}":
            thread.join()
    assert a in agent.deleted and "web-b-0" not in agent.deleted
