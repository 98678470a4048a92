"""The xen backend against libvirt's test driver, the xenstore model and the VALE model."""

from __future__ import annotations

import errno
import xml.etree.ElementTree as ET

import pytest

from clickos_agent.agent import Agent, AtCapacity, NotFound
from clickos_agent.backends.xen import (CHUNK_MAX, XenBackend, chunks, install_pairs, ready_key,
                                        router_path)
from clickos_agent.store import StateStore
from clickos_agent.xen.domxml import domain_xml
from clickos_agent.xen.vale import ValeError, ValeModel
from clickos_agent.xen.xenstore import XenStoreError, XenStoreModel

libvirt_iface = pytest.importorskip("clickos_agent.xen.libvirt_iface")
pytest.importorskip("libvirt")

CONFIG = "FromDevice(0) -> count_in :: Counter -> count_out :: Counter -> Queue -> ToDevice(0);\n"


class FakeTime:
    """A clock that moves only when the code under test sleeps; each sleep lets the guests act."""

    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: list = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for hook in self.on_sleep:
            hook()


class ClickOSGuests:
    """What the ClickOS guests of running domains do in xenstore: announce themselves after
    ``boot_s`` seconds, and answer handler reads from ``values``."""

    def __init__(self, hv, xs: XenStoreModel, time: FakeTime, boot_s: float | None = 0.03) -> None:
        self.hv, self.xs, self.time, self.boot_s = hv, xs, time, boot_s
        self.started: dict[str, float] = {}
        self.values = {"count_in/count": "42\n"}

    def tick(self) -> None:
        for name in self.hv.names():
            domid = self.hv.domid(name)
            if domid is None:
                continue
            if name not in self.started:
                # What the toolstack does at domain creation: the guest owns its data/ directory.
                self.started[name] = self.time.now
                self.xs.write_many([(f"/local/domain/{domid}/data", "")])
                self.xs.give(f"/local/domain/{domid}/data", domid)
            if self.boot_s is not None and self.time.now - self.started[name] >= self.boot_s:
                if not self.xs.exists(ready_key(domid)):
                    self.xs.write_many([(ready_key(domid), "")], domid=domid)
            read_dir = f"{router_path(domid)}/control/read"
            for element in (self.xs.list(read_dir) if self.xs.exists(read_dir) else []):
                for handler in self.xs.list(f"{read_dir}/{element}"):
                    if f"{element}/{handler}" in self.values:
                        self.xs.write_many([(f"{router_path(domid)}/elements/{element}/{handler}",
                                             self.values[f"{element}/{handler}"])], domid=domid)
                    self.xs.rm(f"{read_dir}/{element}/{handler}")


@pytest.fixture
def hv():
    hypervisor = libvirt_iface.LibvirtHypervisor("test:///default")
    before = set(hypervisor.names())
    yield hypervisor
    for name in set(hypervisor.names()) - before:
        hypervisor.destroy(name)
        hypervisor.undefine(name)


@pytest.fixture
def world(hv, tmp_path):
    time = FakeTime()
    xs = XenStoreModel()
    guests = ClickOSGuests(hv, xs, time)
    time.on_sleep.append(guests.tick)
    vale = ValeModel()
    backend = XenBackend(hv, xs, vale, "/boot/clickos_x86_64", ready_timeout=1.0, handler_timeout=1.0,
                         clock=time.clock, sleep=time.sleep)
    agent = Agent("c1", backend, StateStore(tmp_path / "state.json"), capacity=3, validator=lambda t, f: [],
                  clock=time.clock)
    agent.start()
    return agent, hv, xs, vale, guests


def body(instance_id: str = "web-fw-0", config: str = CONFIG, interfaces: int = 1) -> dict:
    return {"id": instance_id, "chain": "web", "hop": 0, "function": "firewall", "config": config,
            "interfaces": interfaces}


# -- pure parts -------------------------------------------------------------------------

def test_domain_xml_is_a_clickos_pv_guest_on_vale():
    xml = domain_xml("csi-ab12cd-0", "/boot/clickos_x86_64", ["02:00:00:00:00:01", "02:00:00:00:00:02"])
    root = ET.fromstring(xml)
    assert root.get("type") == "xen"
    assert root.findtext("name") == "csi-ab12cd-0"
    assert root.find("memory").get("unit") == "KiB" and int(root.findtext("memory")) <= 16384
    assert root.findtext("os/type") == "xenpv"
    assert root.findtext("os/kernel") == "/boot/clickos_x86_64"
    ifaces = root.findall("devices/interface")
    assert [i.get("type") for i in ifaces] == ["bridge", "bridge"]
    assert [i.find("source").get("bridge") for i in ifaces] == ["vale0", "vale0"]
    assert [i.find("script").get("path") for i in ifaces] == ["vif-vale", "vif-vale"]
    assert [i.find("mac").get("address") for i in ifaces] == ["02:00:00:00:00:01", "02:00:00:00:00:02"]


def test_domain_xml_for_the_test_driver_differs_only_in_types():
    xen = ET.fromstring(domain_xml("d", "/k", ["02:00:00:00:00:01"]))
    test = ET.fromstring(domain_xml("d", "/k", ["02:00:00:00:00:01"], hypervisor="test"))
    assert (test.get("type"), test.findtext("os/type")) == ("test", "hvm")
    xen.set("type", "test")
    xen.find("os/type").text = "hvm"
    assert ET.tostring(xen) == ET.tostring(test)


def test_chunks_are_at_most_512_bytes_and_rejoin_exactly():
    config = "".join(f"e{i} :: Counter; // é\n" for i in range(200))
    pieces = chunks(config)
    assert all(len(p.encode()) <= CHUNK_MAX for p in pieces)
    assert len(pieces) > 1 and "".join(pieces) == config
    assert chunks("x" * 1024) == ["x" * 512, "x" * 512]
    assert chunks("x" * 1025)[-1] == "x"


def test_install_writes_the_exact_keys():
    pairs = install_pairs(7, "web-fw-0", "a" * 600)
    assert pairs == [("/local/domain/7/clickos/0/elements", ""), ("/local/domain/7/clickos/0/control", ""),
                     ("/local/domain/7/clickos/0/config_name", "web-fw-0"),
                     ("/local/domain/7/clickos/0/config/0", "a" * 512),
                     ("/local/domain/7/clickos/0/config/1", "a" * 88)]


# -- the models raise the real errors ------------------------------------------------------

def test_xenstore_model_errors():
    xs = XenStoreModel(readonly=["/local/domain/0"])
    with pytest.raises(XenStoreError) as missing:
        xs.read("/local/domain/3/data/clickos")
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(XenStoreError) as denied:
        xs.write_many([("/local/domain/3/x", "1"), ("/local/domain/0/name", "evil")])
    assert denied.value.errno == errno.EACCES
    assert not xs.exists("/local/domain/3/x")   # a failed transaction writes nothing
    with pytest.raises(XenStoreError) as bad:
        xs.read("relative/path")
    assert bad.value.errno == errno.EINVAL
    xs.write_many([("/local/domain/3/a/b", "v")])
    assert xs.list("/local/domain/3") == ["a"] and xs.read("/local/domain/3/a") == ""
    xs.rm("/local/domain/3")
    assert not xs.exists("/local/domain/3/a/b")
    with pytest.raises(XenStoreError):
        xs.rm("/local/domain/3")


def test_xenstore_model_guests_write_only_what_they_own():
    xs = XenStoreModel()
    xs.write_many([("/local/domain/5/clickos/0/elements", ""), ("/local/domain/5/clickos/0/config/0", "x")])
    with pytest.raises(XenStoreError) as denied:
        xs.write_many([("/local/domain/5/clickos/0/elements/c/count", "1")], domid=5)
    assert denied.value.errno == errno.EACCES
    xs.give("/local/domain/5/clickos/0/elements", 5)
    xs.write_many([("/local/domain/5/clickos/0/elements/c/count", "1")], domid=5)   # inherited
    with pytest.raises(XenStoreError):
        xs.write_many([("/local/domain/5/clickos/0/config/0", "evil")], domid=5)
    with pytest.raises(XenStoreError) as missing:
        xs.give("/local/domain/6/x", 6)
    assert missing.value.errno == errno.ENOENT


def test_vale_model_errors():
    vale = ValeModel(interfaces=lambda: {"vif1.0"})
    with pytest.raises(ValeError) as nodev:
        vale.attach("vale0", "vif9.0")
    assert nodev.value.errno == errno.ENXIO
    vale.attach("vale0", "vif1.0")
    with pytest.raises(ValeError) as twice:
        vale.attach("vale0", "vif1.0")
    assert twice.value.errno == errno.EEXIST
    vale.detach("vale0", "vif1.0")
    with pytest.raises(ValeError) as gone:
        vale.detach("vale0", "vif1.0")
    assert gone.value.errno == errno.ENOENT


def test_libvirt_test_driver_lifecycle_and_errors(hv):
    name = "csi-test00-0"
    hv.define(domain_xml(name, "/k", ["02:00:00:00:00:01"], hypervisor="test"))
    assert name in hv.names() and hv.domid(name) is None
    domid = hv.start(name)
    assert domid > 0 and hv.domid(name) == domid
    with pytest.raises(libvirt_iface.HypervisorError):
        hv.start(name)                           # already running
    hv.destroy(name)
    hv.destroy(name)                             # safe to repeat
    hv.undefine(name)
    with pytest.raises(libvirt_iface.NoDomain):
        hv.domid(name)
    with pytest.raises(libvirt_iface.NoDomain):
        hv.undefine(name)
    with pytest.raises(libvirt_iface.HypervisorError):
        hv.define(domain_xml(name, "/k", []))     # type='xen' is refused by the test driver


# -- the backend through the agent ------------------------------------------------------

def test_boot_installs_config_in_chunks_then_sets_running(world):
    agent, hv, xs, vale, _ = world
    config = CONFIG + "".join(f"c{i} :: Counter;\n" for i in range(60))
    created, inst = agent.create(body(config=config, interfaces=2))
    assert created and inst.state == "running", inst.reason
    assert (inst.vm, inst.router) == ("running", "running")
    domid = inst.handles["domid"]
    assert hv.domid(inst.handles["domain"]) == domid
    base = f"/local/domain/{domid}/clickos/0"
    stored = xs.list(f"{base}/config")
    assert stored == [str(i) for i in range(len(stored))] and len(stored) > 1
    assert "".join(xs.read(f"{base}/config/{i}") for i in range(len(stored))) == config
    assert all(len(xs.read(f"{base}/config/{i}").encode()) <= 512 for i in range(len(stored)))
    assert xs.read(f"{base}/config_name") == "web-fw-0"
    assert xs.read(f"{base}/status") == "Running"
    # The config went in one transaction, and the status after it in another.
    config_tx = next(tx for tx in xs.writes if any("/config/0" in p for p, _ in tx))
    assert xs.writes[xs.writes.index(config_tx) + 1] == [(f"{base}/status", "Running")]
    assert vale.switches["vale0"] == {f"vif{domid}.0", f"vif{domid}.1"}
    assert [i.port for i in inst.interfaces] == [f"vale0:vif{domid}.0", f"vale0:vif{domid}.1"]
    assert set(inst.timings_ms) >= {"create", "attach", "install", "start", "total"}


def test_handlers_go_through_control_read_and_elements(world):
    agent, _, xs, _, guests = world
    _, inst = agent.create(body())
    assert agent.read_handler("web-fw-0", "count_in", "count") == "42\n"
    base = router_path(inst.handles["domid"])
    assert xs.read(f"{base}/elements/count_in/count") == ""          # cleared after reading, as cosmos does
    assert [(f"{base}/control/read/count_in/count", " ")] in xs.writes
    agent.write_handler("web-fw-0", "count_in", "reset", "")
    assert xs.exists(f"{base}/elements/count_in/reset")
    with pytest.raises(NotFound):
        agent.read_handler("web-fw-0", "nosuch", "count")              # the guest never answers


def test_readiness_timeout_fails_with_a_clear_reason_and_releases(world):
    agent, hv, xs, vale, guests = world
    guests.boot_s = None   # a guest that never becomes a ClickOS domain
    _, inst = agent.create(body())
    assert inst.state == "failed"
    assert "is not a ClickOS domain yet after 1 s" in inst.reason
    assert inst.reason.startswith("create failed")
    assert inst.handles["domain"] not in hv.names()        # destroyed and undefined
    assert not vale.switches.get("vale0")
    assert not xs.exists(f"/local/domain/{inst.handles['domid']}")


def test_delete_frees_everything(world):
    agent, hv, xs, vale, _ = world
    _, inst = agent.create(body())
    domid = inst.handles["domid"]
    agent.delete("web-fw-0")
    assert inst.handles["domain"] not in hv.names()
    assert vale.switches["vale0"] == set()
    assert not xs.exists(f"/local/domain/{domid}")
    with pytest.raises(NotFound):
        agent.get("web-fw-0")


def test_xenstore_refusal_fails_the_instance(world):
    agent, hv, xs, vale, _ = world
    # The guests announce themselves, but the routers' directories may not be written.
    xs.readonly.extend(f"/local/domain/{domid}/clickos" for domid in range(1, 64))
    _, inst = agent.create(body())
    assert inst.state == "failed" and "install failed" in inst.reason and "Permission denied" in inst.reason
    assert inst.handles["domain"] not in hv.names()


def test_capacity_and_restart_adopts_live_domains_and_sweeps_tagged_orphans(world, tmp_path):
    agent, hv, xs, vale, guests = world
    for n in range(3):
        agent.create(body(f"i{n}"))
    with pytest.raises(AtCapacity):
        agent.create(body("i3"))
    # An orphan of ours (a crash between define and the state write), and someone else's domain.
    hv.define(domain_xml(f"csi-{agent.tag}-99", "/k", [], hypervisor="test"))
    hv.define(domain_xml("not-ours", "/k", [], hypervisor="test"))
    hv.destroy("csi-" + agent.tag + "-1")          # instance i1's domain died while the agent was down
    restarted = Agent("c1", agent.backend, agent.store, capacity=3, validator=lambda t, f: [], clock=agent.clock)
    report = restarted.start()
    assert report["adopted"] == ["i0", "i2"]
    assert report["released"] == ["i1"]
    assert report["swept"] == [f"domain csi-{agent.tag}-99"]
    assert restarted.get("i1").state == "failed"
    assert "not-ours" in hv.names()
    hv.undefine("not-ours")
