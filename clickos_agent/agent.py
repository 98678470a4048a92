"""The agent's lifecycle core: the instance table, states, timings, capacity.

An instance goes ``booting`` -> ``running`` (or ``failed`` with a reason) and
``stopping`` -> gone.  Booting is four steps, each timed: ``create`` (the VM or
namespace exists: "VM running"), ``attach`` (its interfaces are on the host
switch), ``install`` (the Click configuration is in place) and ``start`` (the
router runs and is ready to forward: "router running").

Everything outside this module is passed in: the backend (xen or emu), the
state store, the clock and the config validator, so tests drive it with fakes.

Crash safety: every resource an instance owns is named from the agent's tag
and the instance's sequence number (``csi-<tag>-<seq>``), and the state file
says which instances are live.  An agent restarted at any moment re-adopts the
live ones, releases those that died, and sweeps every tagged resource that no
live instance owns (say, one created just before a crash, before the table
was saved); it never touches anything else.  So the table is saved (atomically,
by rename) once per boot, when the instance is running or failed and before the
answer goes out, and once per delete: the only disk waits on the boot path.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from clickos_agent.store import StateStore

log = logging.getLogger(__name__)

BOOTING, RUNNING, FAILED, STOPPING = "booting", "running", "failed", "stopping"
STEPS = ("create", "attach", "install", "start")
MAX_INTERFACES = 8
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
STATE_VERSION = 1


class AgentError(Exception):
    """A request the agent refuses; ``status`` is the HTTP answer it maps to."""

    status = 400

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.field = field
        self.details = details


class BadRequest(AgentError):
    status = 400


class NotFound(AgentError):
    status = 404


class Conflict(AgentError):
    status = 409


class AtCapacity(Conflict):
    """The host runs as many instances as it may."""


class InvalidConfig(AgentError):
    status = 422


class BackendError(Exception):
    """A backend step failed; the message is the reason the instance reports."""


@dataclass
class InstanceSpec:
    """What the controller asks for (POST /v1/instances)."""

    id: str
    chain: str
    hop: int
    function: str
    config: str
    interfaces: int = 1
    macs: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: Any) -> InstanceSpec:
        """Parse and check a request body; BadRequest names the field at fault."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object", field="body")
        known = {"id", "chain", "hop", "function", "config", "interfaces", "macs"}
        for key in body:
            if key not in known:
                raise BadRequest(f"unknown field {key!r}", field=key)
        for key in ("id", "chain", "function", "config"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise BadRequest(f"{key} is required and must be a non-empty string", field=key)
        if not _ID.match(body["id"]):
            raise BadRequest("id must be 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit",
                             field="id")
        hop = body.get("hop", 0)
        if not isinstance(hop, int) or isinstance(hop, bool) or hop < 0:
            raise BadRequest("hop must be a non-negative integer", field="hop")
        count = body.get("interfaces", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_INTERFACES:
            raise BadRequest(f"interfaces must be an integer from 1 to {MAX_INTERFACES}", field="interfaces")
        macs = body.get("macs")
        if macs is None:
            macs = [derive_mac(body["id"], i) for i in range(count)]
        elif not isinstance(macs, list) or len(macs) != count:
            raise BadRequest(f"macs must be a list of {count} MAC addresses (one per interface)", field="macs")
        else:
            macs = [str(m).lower() for m in macs]
            for index, mac in enumerate(macs):
                if not _MAC.match(mac) or int(mac[:2], 16) & 1:
                    raise BadRequest(f"{mac!r} is not a unicast MAC address", field=f"macs[{index}]")
        return cls(body["id"], body["chain"], hop, body["function"], body["config"], count, macs)


def derive_mac(instance_id: str, index: int) -> str:
    """A deterministic, locally administered unicast MAC for an instance's interface."""
    digest = hashlib.sha256(f"{instance_id}/{index}".encode()).digest()
    octets = [(digest[0] & 0xFC) | 0x02, *digest[1:6]]
    return ":".join(f"{b:02x}" for b in octets)


@dataclass
class Interface:
    index: int
    mac: str
    port: str = ""               # the host-switch port (veth or vif name)
    ofport: int | None = None    # its OpenFlow port number, when the switch has one


@dataclass
class Instance:
    spec: InstanceSpec
    seq: int                                  # per-agent sequence number, part of resource names
    state: str = BOOTING
    reason: str = ""
    vm: str = "none"                          # none | running
    router: str = "none"                      # none | installed | running
    interfaces: list[Interface] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    created_at: float = 0.0
    adopted: bool = False
    handles: dict[str, Any] = field(default_factory=dict)   # backend-owned resource names (pid, domid...)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.spec.id

    def to_record(self) -> dict[str, Any]:
        """What the state file keeps (everything but the locks)."""
        return {"spec": asdict(self.spec), "seq": self.seq, "state": self.state, "reason": self.reason,
                "vm": self.vm, "router": self.router, "interfaces": [asdict(i) for i in self.interfaces],
                "timings_ms": self.timings_ms, "created_at": self.created_at, "handles": self.handles}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Instance:
        inst = cls(InstanceSpec(**record["spec"]), record["seq"], record["state"], record["reason"],
                   record["vm"], record["router"], [Interface(**i) for i in record["interfaces"]],
                   record["timings_ms"], record["created_at"], handles=record["handles"])
        if inst.state != BOOTING:
            inst.done.set()
        return inst

    def to_json(self) -> dict[str, Any]:
        """The API's view of an instance."""
        spec = self.spec
        return {"id": spec.id, "chain": spec.chain, "hop": spec.hop, "function": spec.function,
                "state": self.state, "reason": self.reason, "vm": self.vm, "router": self.router,
                "interfaces": [asdict(i) for i in self.interfaces], "timings_ms": self.timings_ms,
                "created_at": self.created_at, "adopted": self.adopted}


class Backend(Protocol):
    """How instances are realised (emu: netns + Click runtime; xen: ClickOS domains).

    ``bind`` tells it the agent's tag once the start-up sweep is done.  ``plan``
    names everything an instance will own (in ``inst.handles``), and ``destroy``
    releases whatever of it exists, so it is safe after a failure at any step
    and safe to repeat.
    """

    name: str

    def bind(self, tag: str) -> None: ...
    def plan(self, inst: Instance, tag: str) -> None: ...
    def create(self, inst: Instance) -> None: ...
    def attach(self, inst: Instance) -> None: ...
    def install(self, inst: Instance) -> None: ...
    def start(self, inst: Instance) -> None: ...
    def destroy(self, inst: Instance) -> None: ...
    def alive(self, inst: Instance) -> bool: ...
    def sweep(self, tag: str, keep: list[Instance]) -> list[str]: ...
    def read_handler(self, inst: Instance, element: str, handler: str) -> str: ...
    def write_handler(self, inst: Instance, element: str, handler: str, value: str) -> None: ...


Validator = Callable[[str, str], list[dict[str, Any]]]


def click_validator(text: str, filename: str) -> list[dict[str, Any]]:
    """Errors of a Click configuration as the Click toolkit reports them (empty: valid)."""
    from clickos_agent.click.check import check  # imported late: the toolkit is heavy and optional in tests

    # Each error as JSON, with its one-line ``file:line:col: message`` text.
    return [{**problem.as_dict(), "text": str(problem)} for problem in check(text, filename).errors]


class Agent:
    def __init__(self, host: str, backend: Backend, store: StateStore, capacity: int = 128,
                 validator: Validator = click_validator, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.host = host
        self.backend = backend
        self.store = store
        self.capacity = capacity
        self.validator = validator
        self.clock = clock
        self.wall = wall
        self.tag = ""
        self.next_seq = 0
        self.instances: dict[str, Instance] = {}
        self.lock = threading.RLock()
        self.started_at = 0.0

    # -- start-up -------------------------------------------------------------

    def start(self) -> dict[str, list[str]]:
        """Load the table, re-adopt live instances, release the rest and sweep orphans.

        Returns what happened, for the log: ``adopted``, ``released`` (ids) and
        ``swept`` (orphan resource names).
        """
        self.started_at = self.wall()
        saved = self.store.load()
        report: dict[str, list[str]] = {"adopted": [], "released": [], "swept": []}
        if saved is None:
            # The tag marks every resource this agent creates, for exact clean-up after a crash.
            self.tag = secrets.token_hex(3)
        else:
            self.tag = saved["tag"]
            self.next_seq = saved["next_seq"]
            for record in saved["instances"]:
                inst = Instance.from_record(record)
                self.instances[inst.id] = inst
                if inst.state == RUNNING and self._alive(inst):
                    inst.adopted = True
                    report["adopted"].append(inst.id)
                    continue
                was = inst.state
                self._release(inst)
                report["released"].append(inst.id)
                if was == STOPPING:
                    del self.instances[inst.id]
                elif was != FAILED:
                    inst.state = FAILED
                    inst.reason = ("the agent restarted while it was booting" if was == BOOTING
                                   else "the router was gone when the agent restarted")
                    inst.done.set()
        live = [i for i in self.instances.values() if i.state == RUNNING]
        report["swept"] = self.backend.sweep(self.tag, live)
        self._save()
        self.backend.bind(self.tag)
        return report

    def _alive(self, inst: Instance) -> bool:
        try:
            return self.backend.alive(inst)
        except Exception:  # noqa: BLE001 - an unanswerable liveness check means "not alive"
            log.exception("liveness check of %s failed", inst.id)
            return False

    # -- requests -------------------------------------------------------------

    def create(self, body: Any, wait: bool = True) -> tuple[bool, Instance]:
        """Create an instance; ``(False, existing)`` when the id already exists.

        A failed instance with the same id is replaced (a retry).  With ``wait``
        the call returns once the instance is running or failed; otherwise it
        returns at once with the instance booting.
        """
        spec = InstanceSpec.from_json(body)
        errors = self.validator(spec.config, f"{spec.id}.click")
        if errors:
            raise InvalidConfig("the Click configuration is invalid", field="config", errors=errors)
        with self.lock:
            existing = self.instances.get(spec.id)
            if existing is not None and existing.state != FAILED:
                return False, existing
            active = sum(1 for i in self.instances.values() if i.state != FAILED)
            if active >= self.capacity:
                raise AtCapacity(f"host {self.host} is at capacity ({self.capacity} instances)")
            inst = Instance(spec, self.next_seq, created_at=self.wall())
            self.next_seq += 1
            self.backend.plan(inst, self.tag)
            self.instances[spec.id] = inst
        if wait:
            self._boot(inst)
        else:
            threading.Thread(target=self._boot, args=(inst,), name=f"boot-{spec.id}", daemon=True).start()
        return True, inst

    def _boot(self, inst: Instance) -> None:
        with inst.lock:
            begin = self.clock()
            try:
                for step in STEPS:
                    t0 = self.clock()
                    getattr(self.backend, step)(inst)
                    inst.timings_ms[step] = round((self.clock() - t0) * 1000, 3)
                    if step == "create":
                        inst.vm = "running"
                    elif step == "install":
                        inst.router = "installed"
                inst.router = "running"
                inst.timings_ms["total"] = round((self.clock() - begin) * 1000, 3)
                inst.state = RUNNING
            except Exception as exc:  # noqa: BLE001 - any failure becomes the instance's reason
                if not isinstance(exc, BackendError):
                    log.exception("booting %s failed", inst.id)
                inst.reason = f"{step} failed: {exc}"
                self._release(inst)
                inst.state = FAILED
            with self.lock:
                self._save()
            inst.done.set()

    def _release(self, inst: Instance) -> None:
        """Free everything the instance may own; a failure here is logged, and kept in the reason."""
        try:
            self.backend.destroy(inst)
        except Exception as exc:  # noqa: BLE001 - release must go on; the reason tells the operator
            log.exception("releasing %s failed", inst.id)
            inst.reason = (inst.reason + "; " if inst.reason else "") + f"release failed: {exc}"
        inst.vm = inst.router = "none"

    def get(self, instance_id: str) -> Instance:
        with self.lock:
            inst = self.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"no instance {instance_id!r} on host {self.host}", field="id")
        self._check(inst)
        return inst

    def _check(self, inst: Instance) -> None:
        """A running instance whose router died is failed (and released) on sight."""
        if inst.state != RUNNING or self._alive(inst):
            return
        with inst.lock:
            if inst.state != RUNNING:
                return
            inst.reason = "the router exited"
            self._release(inst)
            inst.state = FAILED
            with self.lock:
                self._save()

    def list(self) -> list[Instance]:
        with self.lock:
            found = sorted(self.instances.values(), key=lambda i: i.seq)
        for inst in found:
            self._check(inst)
        return found

    def wait(self, inst: Instance, timeout: float | None = None) -> bool:
        """Wait until the instance is done booting; False on timeout."""
        return inst.done.wait(timeout)

    def delete(self, instance_id: str) -> Instance:
        """Stop an instance and free everything it owns (waits for a boot in progress)."""
        inst = self.get(instance_id)
        with inst.lock:
            with self.lock:
                if self.instances.get(instance_id) is not inst:
                    raise NotFound(f"no instance {instance_id!r} on host {self.host}", field="id")
                inst.state = STOPPING
            self._release(inst)
            with self.lock:
                del self.instances[instance_id]
                self._save()
        return inst

    def read_handler(self, instance_id: str, element: str, handler: str) -> str:
        return self.backend.read_handler(self._running(instance_id), element, handler)

    def write_handler(self, instance_id: str, element: str, handler: str, value: str) -> None:
        self.backend.write_handler(self._running(instance_id), element, handler, value)

    def _running(self, instance_id: str) -> Instance:
        inst = self.get(instance_id)
        if inst.state != RUNNING:
            raise Conflict(f"instance {instance_id!r} is {inst.state}, not running", field="id")
        return inst

    def health(self) -> dict[str, Any]:
        with self.lock:
            states = [i.state for i in self.instances.values()]
        return {"status": "ok", "host": self.host, "backend": self.backend.name, "tag": self.tag,
                "capacity": self.capacity, "instances": len(states),
                "running": states.count(RUNNING), "booting": states.count(BOOTING),
                "failed": states.count(FAILED), "uptime_s": round(self.wall() - self.started_at, 3)}

    def _save(self) -> None:
        """Write the table (hold ``self.lock``)."""
        self.store.save({"version": STATE_VERSION, "host": self.host, "backend": self.backend.name,
                         "tag": self.tag, "next_seq": self.next_seq,
                         "instances": [i.to_record() for i in sorted(self.instances.values(),
                                                                     key=lambda i: i.seq)]})
