"""The xen backend: an instance is a ClickOS domain, driven as ClickOS's own tools do.

Steps (Agent terms):
- create: define and start the domain through libvirt (``csi-TAG-SEQ``), then
  poll until the guest has created ``/local/domain/<domid>/data/clickos``: only
  then is it a ClickOS domain that can take a config (sysml/clickos-ctl xs.cc,
  get_and_check_domain: "doesn't seem to be a ClickOS domain").
- attach: ``vale-ctl -a vale0:vif<domid>.<i>`` per interface (already attached
  by the vif-vale hotplug script is fine).
- install: in one transaction, router 0's ``elements`` and ``control``
  directories, ``config_name``, and the config in chunks of at most 512 bytes
  under ``config/0``, ``config/1``... (layout of cnplab/cosmos src/clickos.c,
  clickos_start; chunk size of sysml/clickos-ctl xs.hh, chunk_max_len = 512,
  which ClickOS accepts); then the guest is given ``elements`` and ``control``
  (cosmos: xenstore_chmod with the domain's read/write permission).
- start: ``status`` = ``Running`` in its own transaction, as cosmos does.
Handlers (cosmos clickos_read_handler / clickos_write_handler): a read writes
``control/read/<element>/<handler>`` and waits for the guest to put the value
in ``elements/<element>/<handler>``, then clears it; a write sets
``elements/<element>/<handler>``.  Stopping sets ``status`` = ``Halted``
(cosmos clickos_stop).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from clickos_agent.agent import BackendError, Instance, Interface, NotFound
from clickos_agent.xen.domxml import VALE_SWITCH, domain_xml
from clickos_agent.xen.libvirt_iface import Hypervisor, HypervisorError, NoDomain
from clickos_agent.xen.vale import Vale, ValeError
from clickos_agent.xen.xenstore import XenStore, XenStoreError, write

PREFIX = "csi"
CHUNK_MAX = 512
ROUTER_ID = 0          # one router per ClickOS domain, the first id ClickOS hands out
READY_TIMEOUT_S = 5.0
HANDLER_TIMEOUT_S = 5.0
POLL_S = 0.005


def domain_path(domid: int) -> str:
    return f"/local/domain/{domid}"


def ready_key(domid: int) -> str:
    """Exists once the ClickOS guest is up (clickos-ctl's click_base_path)."""
    return f"{domain_path(domid)}/data/clickos"


def router_path(domid: int, router: int = ROUTER_ID) -> str:
    return f"{domain_path(domid)}/clickos/{router}"


def chunks(config: str, size: int = CHUNK_MAX) -> list[str]:
    """The config in pieces of at most ``size`` bytes of UTF-8, never splitting a character."""
    data = config.encode()
    pieces, start = [], 0
    while start < len(data):
        end = min(start + size, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:   # inside a multi-byte character
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces or [""]


def install_pairs(domid: int, name: str, config: str) -> list[tuple[str, str]]:
    """Every key (and value) written to install a router's config, in order."""
    base = router_path(domid)
    pairs = [(f"{base}/elements", ""), (f"{base}/control", ""), (f"{base}/config_name", name)]
    pairs += [(f"{base}/config/{i}", piece) for i, piece in enumerate(chunks(config))]
    return pairs


class XenBackend:
    name = "xen"

    def __init__(self, hypervisor: Hypervisor, xenstore: XenStore, vale: Vale, kernel: str,
                 ready_timeout: float = READY_TIMEOUT_S, handler_timeout: float = HANDLER_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.hv = hypervisor
        self.xs = xenstore
        self.vale = vale
        self.kernel = kernel
        self.ready_timeout = ready_timeout
        self.handler_timeout = handler_timeout
        self.clock = clock
        self.sleep = sleep

    def bind(self, tag: str) -> None:
        """Nothing to prepare: a ClickOS domain is defined per instance."""

    def plan(self, inst: Instance, tag: str) -> None:
        inst.interfaces = [Interface(i, mac) for i, mac in enumerate(inst.spec.macs)]
        inst.handles = {"domain": f"{PREFIX}-{tag}-{inst.seq}", "domid": None, "attached": []}

    def create(self, inst: Instance) -> None:
        name = inst.handles["domain"]
        xml = domain_xml(name, self.kernel, inst.spec.macs, f"clicksteer instance {inst.id}", hypervisor=self.hv.kind)
        try:
            self.hv.define(xml)
            domid = self.hv.start(name)
        except HypervisorError as exc:
            raise BackendError(str(exc)) from None
        inst.handles["domid"] = domid
        self._wait_clickos(name, domid)

    def _wait_clickos(self, name: str, domid: int) -> None:
        deadline = self.clock() + self.ready_timeout
        while not self.xs.exists(ready_key(domid)):
            if self.clock() >= deadline:
                raise BackendError(f"domain {name} (id {domid}) is not a ClickOS domain yet after "
                                   f"{self.ready_timeout:g} s (no {ready_key(domid)})")
            self.sleep(POLL_S)

    def attach(self, inst: Instance) -> None:
        domid = inst.handles["domid"]
        for iface in inst.interfaces:
            vif = f"vif{domid}.{iface.index}"
            try:
                self.vale.attach(VALE_SWITCH, vif)
            except ValeError as exc:
                if exc.errno != errno.EEXIST:   # the vif-vale hotplug script attached it already
                    raise BackendError(str(exc)) from None
            inst.handles["attached"].append(vif)
            iface.port = f"{VALE_SWITCH}:{vif}"

    def install(self, inst: Instance) -> None:
        domid = inst.handles["domid"]
        try:
            self.xs.write_many(install_pairs(domid, inst.id, inst.spec.config))
            # The guest answers handler reads under elements/ and takes requests under
            # control/: it must own both (cosmos gives it read/write on them).
            for directory in ("elements", "control"):
                self.xs.give(f"{router_path(domid)}/{directory}", domid)
        except XenStoreError as exc:
            raise BackendError(f"installing the config: {exc}") from None

    def start(self, inst: Instance) -> None:
        status = f"{router_path(inst.handles['domid'])}/status"
        try:
            write(self.xs, status, "Running")
        except XenStoreError as exc:
            raise BackendError(f"starting the router: {exc}") from None

    def destroy(self, inst: Instance) -> None:
        domid = inst.handles.get("domid")
        name = inst.handles.get("domain")
        if domid is not None:
            try:
                if self.xs.exists(router_path(domid)):
                    write(self.xs, f"{router_path(domid)}/status", "Halted")
            except XenStoreError:
                pass   # the domain may be gone already, and its xenstore directory with it
            for vif in inst.handles.get("attached", []):
                try:
                    self.vale.detach(VALE_SWITCH, vif)
                except ValeError as exc:
                    if exc.errno != errno.ENOENT:   # not attached any more
                        raise BackendError(str(exc)) from None
            inst.handles["attached"] = []
        if name:
            try:
                self.hv.destroy(name)
                self.hv.undefine(name)
            except NoDomain:
                pass
            except HypervisorError as exc:
                raise BackendError(str(exc)) from None
        if domid is not None:
            # xenstored drops a dead domain's directory itself; a model (or a stuck toolstack) may not.
            try:
                self.xs.rm(domain_path(domid))
            except XenStoreError:
                pass

    def alive(self, inst: Instance) -> bool:
        try:
            domid = self.hv.domid(inst.handles["domain"])
        except HypervisorError:
            return False
        return domid is not None and domid == inst.handles["domid"]

    def sweep(self, tag: str, keep: list[Instance]) -> list[str]:
        kept = {i.handles["domain"] for i in keep}
        removed = []
        for name in self.hv.names():
            if name.startswith(f"{PREFIX}-{tag}-") and name not in kept:
                try:
                    self.hv.destroy(name)
                    self.hv.undefine(name)
                except NoDomain:
                    continue
                removed.append(f"domain {name}")
        return removed

    def read_handler(self, inst: Instance, element: str, handler: str) -> str:
        base = router_path(inst.handles["domid"])
        value_key = f"{base}/elements/{element}/{handler}"
        try:
            write(self.xs, f"{base}/control/read/{element}/{handler}", " ")
            deadline = self.clock() + self.handler_timeout
            while True:
                value = self.xs.read(value_key) if self.xs.exists(value_key) else ""
                if value:
                    break
                if self.clock() >= deadline:
                    raise NotFound(f"no answer for {element}.{handler} after {self.handler_timeout:g} s "
                                   f"(no such element or handler?)", field="handler")
                self.sleep(POLL_S)
            write(self.xs, value_key, "")
        except XenStoreError as exc:
            raise BackendError(f"reading {element}.{handler}: {exc}") from None
        return value

    def write_handler(self, inst: Instance, element: str, handler: str, value: str) -> None:
        key = f"{router_path(inst.handles['domid'])}/elements/{element}/{handler}"
        try:
            write(self.xs, key, value)
        except XenStoreError as exc:
            raise BackendError(f"writing {element}.{handler}: {exc}") from None
