"""The northbound facade: chains in, instances and flows out.  No os-ken here.

The service holds the topology, the last good chains, their placement, the
state of every instance, and what the switches have (``installed``).  Every
change goes the same way: validate the whole request (loader, overlaps,
placement, rendering, compilation) and change nothing when any of it fails;
then commit, ask the agents for missing instances (in threads), compile the
fabric with only ``running`` instances ready, diff against what is
installed, and send the diff through the southbound (os-ken in production,
a fake in tests).  A chain's state: ``pending`` -> ``booting`` -> ``active``,
or ``error`` with the reason (a failed instance, a switch that refused one of
its flows).  A replaced chain keeps its old version (chain and instances)
serving until every instance of the new one runs: make before break.  An
instance that traffic no longer goes to is released only once drained.

Automatic scaling: ``observe`` takes each round of OpenFlow statistics (the
poller in controller/poller.py calls it), keeps the rates for the views and
asks the pure scaler (controller/core/scaler.py) about every autoscaled hop.
Scaling out raises the hop's count and re-plans: the new instance boots and
is picked for new flows once it runs.  Scaling in first *drains* the hop's
highest-index instance (no new flows; pinned ones stay, see the compiler), and
releases it once no packet went to it for ``DRAIN_QUIET_S`` or after
``drain_timeout``.  Every decision and its outcome is an event
(``events_view``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields, is_dataclass, replace
from types import MappingProxyType
from typing import Any

from chains import catalog
from chains.errors import ConfigError, Problem
from chains.loader import find_overlaps
from chains.model import Chain, ChainSet, CustomFunction
from controller.agents import AgentClient, AgentError
from controller.core import cookies
from controller.core.compiler import Desired, compile_fabric, is_autoscaled
from controller.core.metrics import Family, render
from controller.core.scaler import Decision, Scaler
from controller.core.stats import InstanceRates, Rates
from controller.core.diff import diff, resync
from controller.core.errors import PlanError
from controller.core.ofmsg import FlowMod, GroupMod, Message, dpid_of
from controller.core.placement import InstanceSpec, Placement, place
from controller.southbound import SendResult, Southbound
from topologies.model import Link, Topology

log = logging.getLogger(__name__)

PENDING, BOOTING, ACTIVE, ERROR = "pending", "booting", "active", "error"
RUNNING, FAILED = "running", "failed"
RETIRED = "\0retired:"     # a hop-name prefix no chain can use: keeps a retired instance's names taken
COUNTER_ELEMENTS = ("count_in", "count_out", "count_drop")
PROBE_TIMEOUT_S = 1.0
# Draining an instance traffic no longer goes to, before it is released (see ``_drain``).
DRAIN_POLL_S = 0.05          # between two reads of its counters
DRAIN_READS = 60             # at most (about 3 s): an instance that keeps counting is released anyway
DRAIN_GRACE_S = 0.5          # the wait instead, when its counters cannot be read
# Scaling in: an instance that gets no new flows is released once no packet went to it for this long.
DRAIN_QUIET_S = 1.0
DRAIN_TIMEOUT_S = 60.0       # ... or after this long anyway (its remaining flows pick another instance)
MAX_EVENTS = 1000            # kept per chain
OUT_RETRY_S = 10.0           # after a scale-out found no room, the hop waits this long before trying again


class NotFound(Exception):
    """No chain of that name (404)."""


class Conflict(Exception):
    """The request clashes with what exists (409); ``field`` names where."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Instance:
    """What the controller knows of one instance it asked an agent for."""

    spec: InstanceSpec
    config: str                      # the Click config it was (or is being) booted with
    state: str = BOOTING             # booting, running, failed
    reason: str = ""


@dataclass
class ChainStatus:
    state: str = PENDING
    reason: str = ""
    switch_error: str = ""           # sticky until the chain is replaced or that switch is resynced
    switch_error_dpid: int | None = None
    since: float = field(default_factory=time.time)


@dataclass
class _Plan:
    """A validated next state, computed before anything is committed."""

    chains: dict[str, Chain]
    functions: Mapping[str, CustomFunction]
    placement: Placement
    configs: dict[str, str]          # instance id -> rendered Click config
    changed: set[str]                # running instances retired because their config changes


@dataclass
class _Drain:
    """An instance being scaled in: since when it gets no new flows, and since when no packet at all."""

    since: float
    quiet_since: float | None = None


@dataclass(frozen=True)
class _Version:
    """A replaced chain as it was: it keeps the traffic until every instance of the new one runs."""

    chain: Chain
    slots: dict[tuple[str, int], tuple[InstanceSpec, ...]]

    def ids(self) -> set[str]:
        return {spec.id for specs in self.slots.values() for spec in specs}


class ChainService:
    def __init__(self, topology: Topology, agents: Callable[[str], AgentClient],
                 southbound: Southbound | None = None, now: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, drain_timeout: float = DRAIN_TIMEOUT_S) -> None:
        self.topology = topology
        self.agents = agents           # compute host's agent address -> client
        self.southbound = southbound
        self.now = now
        self.sleep = sleep             # release threads wait with it while instances drain
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.chains: dict[str, Chain] = {}
        self.functions: Mapping[str, CustomFunction] = MappingProxyType({})
        self.placement = Placement()
        self.previous: dict[str, _Version] = {}   # replaced chains still serving until their new instances run
        self.instances: dict[str, Instance] = {}
        self.releasing: list[InstanceSpec] = []   # draining, then deleted (once per pending release)
        self.status: dict[str, ChainStatus] = {}
        # Automatic scaling (see the module docstring).
        self.scaler = Scaler()
        self.counts: dict[tuple[str, int], int] = {}      # (chain, hop index) -> the scaler's instance count
        self.draining: dict[str, _Drain] = {}              # instance id -> its drain
        self.drain_timeout = drain_timeout
        self.rates: Rates | None = None                    # the last round of statistics
        self.events: dict[str, deque[dict[str, Any]]] = {}
        self.event_counts: Counter[tuple[str, str, str]] = Counter()   # (chain, hop, action): for /v1/metrics
        self.no_room: dict[tuple[str, int], float] = {}    # hops whose last scale-out found no room -> when
        self.scaled: dict[str, tuple[str, int]] = {}       # instances booted by a scale-out -> (chain, hop)
        self.installed: Desired = compile_fabric(topology, [], Placement(), ())
        self.connected: dict[int, dict[int, str]] = {}    # dpid -> port number -> name
        self.port_problems: dict[int, list[str]] = {}
        self.links_seen: dict[tuple[int, int], tuple[int, int]] = {}   # LLDP: (dpid, port) -> its far end
        self.link_problems: dict[tuple[int, int], str] = {}
        by_name = topology.switch_by_name
        self.link_ends: dict[tuple[int, int], tuple[int, int]] = {}    # the topology's: (dpid, port) -> far end
        for link in topology.links:
            a, b = (by_name[link.a].dpid, link.a_port), (by_name[link.b].dpid, link.b_port)
            self.link_ends[a], self.link_ends[b] = b, a

    def attach(self, southbound: Southbound) -> None:
        self.southbound = southbound

    # ---- northbound: chains -------------------------------------------------------------

    def create(self, chainset: ChainSet, filename: str = "<request>") -> list[str]:
        """Add the document's chains; none of them may exist yet.  Returns their names."""
        with self._lock:
            for index, chain in enumerate(chainset.chains):
                if chain.name in self.chains:
                    raise Conflict(f"chain {chain.name!r} exists; replace it with PUT /v1/chains/{chain.name}",
                                   field=f"chains[{index}].name")
            self._apply({**self.chains, **{c.name: c for c in chainset.chains}}, chainset, filename)
            return [c.name for c in chainset.chains]

    def replace(self, name: str, chainset: ChainSet, filename: str = "<request>") -> bool:
        """Create or replace one chain (the document holds exactly it); True when it was created."""
        if len(chainset.chains) != 1 or chainset.chains[0].name != name:
            found = [c.name for c in chainset.chains]
            raise ConfigError([Problem(filename, 1, 1, f"the document must hold exactly the chain {name!r}, "
                                                       f"found {found}", "chains")])
        with self._lock:
            created = name not in self.chains
            self._apply({**self.chains, name: chainset.chains[0]}, chainset, filename)
            return created

    def delete(self, name: str) -> None:
        """Remove a chain: normal forwarding is restored first, then its instances are drained and released."""
        with self._lock:
            if name not in self.chains:
                raise NotFound(name)
            rest = {n: c for n, c in self.chains.items() if n != name}
            plan = self._plan(rest, self.functions, ChainSet(), "<delete>")
            self._forget_scaling(name)
            self.events.pop(name, None)
            for key in [key for key in self.event_counts if key[0] == name]:
                del self.event_counts[key]
            self._commit(plan)

    def wait(self, names: Collection[str], timeout: float) -> None:
        """Block until every named chain is active or in error, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(self.status.get(n, ChainStatus()).state in (PENDING, BOOTING) for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    # ---- validation and commit ----------------------------------------------------------

    def _apply(self, chains: dict[str, Chain], request: ChainSet, filename: str) -> None:
        functions = self._merge_functions(request, filename)
        self._check_overlaps(request, filename)
        plan = self._plan(chains, functions, request, filename)
        for chain in request.chains:
            self.status.pop(chain.name, None)   # a new version starts with a clean slate
            self._forget_scaling(chain.name)
        self._commit(plan)
        threading.Thread(target=self._sweep, args=({c.name for c in request.chains},), daemon=True,
                         name="sweep").start()

    def _merge_functions(self, request: ChainSet, filename: str) -> Mapping[str, CustomFunction]:
        merged = dict(self.functions)
        for name, function in request.functions.items():
            used_elsewhere = any(hop.function == name for chain in self.chains.values()
                                 if chain.name not in {c.name for c in request.chains} for hop in chain.hops)
            if name in merged and merged[name] != function and used_elsewhere:
                raise Conflict(f"function {name!r} is defined differently by chains already running",
                               field=f"functions.{name}")
            merged[name] = function
        return MappingProxyType(merged)

    def _check_overlaps(self, request: ChainSet, filename: str) -> None:
        """A new chain's classifier may not overlap a running chain's at the same priority."""
        replaced = {c.name for c in request.chains}
        running = [c for n, c in sorted(self.chains.items()) if n not in replaced]
        offset = len(running)
        problems = []
        for index, earlier, message in find_overlaps(list(enumerate([*running, *request.chains]))):
            if index >= offset:
                # The loader's message names positions in the list built here; name running chains instead.
                where = "(running)" if earlier < offset else f"(chains[{earlier - offset}])"
                text = message.replace(f"(chains[{earlier}])", where)
                problems.append(Problem(filename, 1, 1, text, f"chains[{index - offset}].classifier"))
        if problems:
            raise ConfigError(problems)

    def _plan(self, chains: dict[str, Chain], functions: Mapping[str, CustomFunction],
              request: ChainSet, filename: str) -> _Plan:
        """Everything that can fail, before anything changes.

        A running instance whose config would change (its hop's function or
        params did) is not rebooted under its id: the hop gets new instances
        (new ids, MACs and labels), so that the old version of the chain can
        keep serving until they run (make-before-break; see ``_serving``).
        """
        positions = {c.name: i for i, c in enumerate(request.chains)}
        placement, configs = self._place(chains, functions, positions, filename, set())
        changed = {iid for iid, config in configs.items() if iid in self.instances
                   and self.instances[iid].state == RUNNING and self.instances[iid].config != config}
        if changed:
            placement, configs = self._place(chains, functions, positions, filename, changed)
        return _Plan(chains, functions, placement, configs, changed)

    def _place(self, chains: dict[str, Chain], functions: Mapping[str, CustomFunction],
               positions: dict[str, int], filename: str, changed: set[str]) -> tuple[Placement, dict[str, str]]:
        """Placement and rendered configs; ``changed`` instances are retired (their names stay taken)."""
        existing = {iid: replace(spec, hop=RETIRED + spec.hop) if iid in changed else spec
                    for iid, spec in self.placement.by_id().items()}
        for version in self.previous.values():
            existing.update({spec.id: replace(spec, hop=RETIRED + spec.hop) for specs in version.slots.values()
                             for spec in specs if spec.id not in existing})
        # An instance still draining holds its MAC on the host switch: a new one may not take it yet.
        existing.update({spec.id: replace(spec, hop=RETIRED + spec.hop) for spec in self.releasing
                         if spec.id not in existing})
        try:
            placement = place(self.topology, chains.values(), existing=existing, counts=self.counts)
            compile_fabric(self.topology, chains.values(), placement, ())
        except PlanError as exc:
            at = positions.get(exc.chain)
            raise ConfigError([Problem(filename, 1, 1, exc.reason,
                                       f"chains[{at}]" if at is not None else "chains")]) from None
        configs = {}
        computes = self.topology.compute_by_name
        for (chain_name, hop_index), specs in placement.items():
            hop = chains[chain_name].hops[hop_index]
            for spec in specs:
                try:
                    configs[spec.id] = catalog.render(hop.function, hop.params, instance_mac=spec.mac,
                                                      uplink_mac=computes[spec.compute].uplink_mac,
                                                      functions=functions)
                except ConfigError as exc:
                    at = positions.get(chain_name)
                    where = f"chains[{at}].hops[{hop_index}]" if at is not None else f"chain {chain_name}"
                    raise ConfigError([Problem(filename, p.line, p.col, p.message, f"{where}.{p.path}")
                                       for p in exc.problems]) from None
        return placement, configs

    def _commit(self, plan: _Plan) -> None:
        """Adopt a validated plan: steer, then boot what is new and release what is gone."""
        wanted = plan.placement.by_id()
        for name, chain in plan.chains.items():
            current = self.chains.get(name)
            if current is None or current == chain or name in self.previous:
                continue    # new, unchanged, or already replaced by a version still booting (the oldest serves)
            slots = {(name, k): self.placement[name, k] for k in range(len(current.hops))}
            version = _Version(current, slots)
            new = [s.id for k in range(len(chain.hops)) for s in plan.placement[name, k]]
            must_boot = any(i not in self.instances or self.instances[i].config != plan.configs[i]
                            or self.instances[i].state != RUNNING for i in new)
            if must_boot and all(self.instances[i].state == RUNNING for i in version.ids()):
                self.previous[name] = version
        for name in list(self.previous):
            if name not in plan.chains:
                del self.previous[name]          # deleted: nothing serves it any more
        serving = {i for version in self.previous.values() for i in version.ids()}
        # Failed instances are stale too: applying again retries them (same id).
        stale = {iid for iid, inst in self.instances.items() if iid not in serving
                 and (iid not in wanted or plan.configs[iid] != inst.config or inst.state == FAILED)}
        self.chains, self.functions, self.placement = plan.chains, plan.functions, plan.placement
        for name in list(self.status):
            if name not in self.chains:
                del self.status[name]
        for name in self.chains:
            self.status.setdefault(name, ChainStatus(since=self.now()))
        # Stop steering into instances that go away before releasing them.
        gone = {iid: self.instances.pop(iid) for iid in stale}
        new = [spec for iid, spec in wanted.items() if iid not in self.instances]
        for spec in new:
            self.instances[spec.id] = Instance(spec, plan.configs[spec.id])
        for iid in self._probe([spec for spec in new if spec.id not in gone]):
            self.instances[iid].state = RUNNING
        new = [spec for spec in new if self.instances[spec.id].state != RUNNING]
        self._reconcile()
        for iid, inst in gone.items():
            if iid not in wanted:
                self._retire(inst.spec)
        if new:
            # A failed instance retried under the same id: the boot thread deletes the old one first.
            batch = [(spec, plan.configs[spec.id], spec.id in gone) for spec in new]
            threading.Thread(target=self._boot_all, args=(batch,), daemon=True, name="boot-all").start()

    # ---- instances (agent threads) ---------------------------------------------------------

    @staticmethod
    def _spawn(target: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True, name=f"{target.__name__}-{args[0].id}").start()

    def _agent(self, spec: InstanceSpec) -> AgentClient:
        return self.agents(self.topology.compute_by_name[spec.compute].agent)

    def _probe(self, specs: list[InstanceSpec]) -> set[str]:
        """The ids among ``specs`` that their agents already run (a restarted controller, a chain
        applied again), asked in parallel and briefly, so they are steered into at once."""
        if not specs:
            return set()
        pool = ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="probe")
        futures = {pool.submit(self._agent(spec).get, spec.id): spec.id for spec in specs}
        done, _ = wait(futures, timeout=PROBE_TIMEOUT_S)
        pool.shutdown(wait=False)     # an agent that is slow to answer is asked again by the boot
        return {futures[f] for f in done if f.exception() is None and (f.result() or {}).get("state") == RUNNING}

    def _boot_all(self, batch: list[tuple[InstanceSpec, str, bool]]) -> None:
        """Ask the agents for a commit's new instances in parallel; steer as they come up.

        Instances that come up together are steered into with one reconcile,
        not one each: fewer barrier round trips before the chain is active.
        """
        with ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="boot") as pool:
            pending = {pool.submit(self._boot, *item): item for item in batch}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                with self._lock:
                    changed = False
                    for future in done:
                        spec, config, _ = pending.pop(future)
                        state, reason = future.result()
                        inst = self.instances.get(spec.id)
                        if inst is None and state == RUNNING:
                            # Its chain went away while it booted, and the release may have come
                            # first: release it again now that it runs.
                            self._retire(spec)
                        if inst is None or inst.config != config:
                            continue     # gone, or a newer boot of this id (with its own config) follows
                        inst.state = RUNNING if state == RUNNING else FAILED
                        inst.reason = "" if state == RUNNING else (reason or f"the agent reports {state}")
                        log.info("instance %s: %s %s", spec.id, inst.state, inst.reason)
                        hop = self.scaled.pop(spec.id, None)
                        if hop is not None:
                            self._event(hop[0], hop[1], "instance-" + inst.state, instance=spec.id,
                                        reason=inst.reason)
                        changed = True
                    if changed:
                        self._reconcile()

    def _boot(self, spec: InstanceSpec, config: str, replacing: bool) -> tuple[str, str]:
        """One instance from its agent: (state, reason)."""
        body = {"id": spec.id, "chain": spec.chain, "hop": spec.hop_index, "function": spec.function,
                "config": config, "interfaces": 1, "macs": [spec.mac]}
        try:
            agent = self._agent(spec)
            if replacing:
                agent.delete(spec.id)   # its old config must go before the new one boots under the same id
            answer = agent.create(body, wait=True)
            return answer.get("state", FAILED), answer.get("reason") or ""
        except AgentError as exc:
            return FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - a thread must report, never die silently
            log.exception("booting %s failed", spec.id)
            return FAILED, f"internal error: {exc}"

    def _sweep(self, names: set[str]) -> None:
        """Delete the instances of chains ``names`` that agents run but this controller does not know.

        A controller that restarts adopts the instances its placement names
        again (``_probe``); those a scale-out had added before it stopped, or
        that a release left behind, no flow reaches any more: they would run
        for ever.  Checked and deleted with the lock held, so that a plan made
        meanwhile cannot adopt one while it goes.
        """
        for address in sorted({c.agent for c in self.topology.computes}):
            agent = self.agents(address)
            try:
                running = agent.list_instances()
            except AgentError as exc:
                log.warning("sweep: %s", exc)
                continue
            for found in running:
                with self._lock:
                    known = found["id"] in self.instances or any(s.id == found["id"] for s in self.releasing)
                    if found.get("chain") not in names or known:
                        continue
                    log.info("instance %s of chain %s: not planned, deleted", found["id"], found["chain"])
                    try:
                        agent.delete(found["id"])
                    except AgentError as exc:
                        log.warning("sweep: %s", exc)

    def _retire(self, spec: InstanceSpec) -> None:
        """Release, in a thread and once drained, an instance that no flow hands packets to any
        more: called with the lock held, after the switches confirmed those flows."""
        self.releasing.append(spec)
        self.draining.pop(spec.id, None)
        self._spawn(self._release, spec)

    def _release(self, spec: InstanceSpec) -> None:
        try:
            self._drain(spec)
            self._agent(spec).delete(spec.id)
        except AgentError as exc:
            log.warning("releasing %s: %s", spec.id, exc)
        except Exception:  # noqa: BLE001 - a thread must report, never die silently
            log.exception("releasing %s failed", spec.id)
        finally:
            with self._lock:
                self.releasing.remove(spec)

    def _drain(self, spec: InstanceSpec) -> None:
        """Return once the instance holds no packet and receives none, without the lock.

        A barrier reply confirms a switch's flow table, not Open vSwitch's
        datapath flow cache, which its revalidators update tens of ms later:
        packets may still arrive, and some may wait inside the instance.  It is
        drained when two reads DRAIN_POLL_S apart agree and every packet that
        came in went out or was dropped.
        """
        before = None
        for _ in range(DRAIN_READS):
            counts = self._packets(spec)
            if counts is None:
                self.sleep(DRAIN_GRACE_S)
                return
            packets_in, packets_out, dropped = counts
            if counts == before and packets_in == packets_out + dropped:
                return
            before = counts
            self.sleep(DRAIN_POLL_S)
        log.warning("instance %s kept counting packets while it drained: released anyway", spec.id)

    def _packets(self, spec: InstanceSpec) -> tuple[int, int, int] | None:
        """(in, out, dropped) packets of an instance; None when they cannot be read."""
        agent = self._agent(spec)
        try:
            packets_in = int(agent.read_handler(spec.id, "count_in", "count"))
            packets_out = int(agent.read_handler(spec.id, "count_out", "count"))
        except (AgentError, ValueError):
            return None
        try:
            dropped = int(agent.read_handler(spec.id, "count_drop", "count"))
        except (AgentError, ValueError):
            dropped = 0    # count_drop exists only in functions that drop
        return packets_in, packets_out, dropped

    # ---- automatic scaling (called by the statistics poller's thread) ------------------------

    def observe(self, rates: Rates) -> None:
        """One round of statistics: keep the rates for the views, finish drains, scale hops."""
        with self._lock:
            self.rates = rates
            now = self.now()
            for iid in list(self.draining):
                self._check_drain(iid, now)
            for name, chain in list(self.chains.items()):
                if name in self.previous:
                    continue    # a new version is booting: the scaler waits for it
                for k in range(len(chain.hops)):
                    if is_autoscaled(chain, k):
                        self._autoscale(chain, k, now)

    def _instance_rates(self, spec: InstanceSpec) -> InstanceRates | None:
        """The last rates of one instance (None: unknown)."""
        chain_id = self.installed.chain_ids.get(spec.chain)
        if self.rates is None or chain_id is None:
            return None
        return self.rates.instances.get((chain_id, spec.hop_index, spec.index))

    def _load(self, spec: InstanceSpec, unit: str) -> float | None:
        """An instance's load in ``unit`` ("pps" or "bps"): what the fabric handed to it when that
        is counted (by the hand-over flows of a stage with a choice of instances), else what it
        sent back (its return flows: a stage with one instance steers into it directly)."""
        found = self._instance_rates(spec)
        if found is None:
            return None
        handed = found.in_pps if unit == "pps" else found.in_bps
        return handed if handed is not None else (found.out_pps if unit == "pps" else found.out_bps)

    def _hop_rate(self, chain: Chain, k: int, unit: str) -> float | None:
        """The load of a hop in ``unit``, summed over its running instances (None: unknown)."""
        total = 0.0
        for spec in self.placement.get((chain.name, k), ()):
            if self.instances[spec.id].state != RUNNING:
                continue
            value = self._load(spec, unit)
            if value is None:
                return None
            total += value
        return total

    def _autoscale(self, chain: Chain, k: int, now: float) -> None:
        specs = self.placement.get((chain.name, k), ())
        taking = [s for s in specs if self.instances[s.id].state == RUNNING and s.id not in self.draining]
        policy = chain.hops[k].scaling
        failed_at = self.no_room.get((chain.name, k))
        busy = any(self.instances[s.id].state == BOOTING or s.id in self.draining for s in specs) or \
            (failed_at is not None and now < failed_at + OUT_RETRY_S)
        rate = self._hop_rate(chain, k, policy.metric)
        draining = [s for s in specs if s.id in self.draining]
        if draining and rate is not None and policy.out_above is not None and taking \
                and rate / len(taking) > policy.out_above:
            # The load came back while an instance drained: taking it back is faster than a boot.
            for spec in draining:
                del self.draining[spec.id]
                self._event(chain.name, k, "scale-in-cancelled", instance=spec.id,
                            reason=f"{rate / len(taking):.0f} {policy.metric} per instance > out_above "
                                   f"{policy.out_above:g}")
            self._reconcile()
            return
        decision = self.scaler.decide(now, chain.name, k, policy, len(taking), rate, busy)
        if decision is None:
            return
        if decision.action == "out":
            self._scale_out(decision, len(specs))
        else:
            self._scale_in(decision, specs, now)

    def _scale_out(self, decision: Decision, placed: int) -> None:
        """One more instance for the hop: it boots, then new flows may pick it."""
        key = (decision.chain, decision.hop)
        before = self.counts.get(key)
        self.counts[key] = placed + 1
        try:
            plan = self._plan(self.chains, self.functions, ChainSet(), "<autoscale>")
        except ConfigError as exc:
            if before is None:
                del self.counts[key]
            else:
                self.counts[key] = before
            self.no_room[key] = self.now()
            self._event(decision.chain, decision.hop, "scale-out-failed", decision,
                        reason=f"{decision.reason}; {exc.problems[0].message}; next try in {OUT_RETRY_S:g} s")
            return
        new = [s for s in plan.placement[key] if s.id not in self.instances]
        self.scaled.update((s.id, key) for s in new)
        self._event(decision.chain, decision.hop, "scale-out", decision, instance=",".join(s.id for s in new))
        self._commit(plan)

    def _scale_in(self, decision: Decision, specs: tuple[InstanceSpec, ...], now: float) -> None:
        """Drain the hop's last instance (placement drops the highest index): no new flows from now on."""
        victim = max(specs, key=lambda s: s.index)
        self.draining[victim.id] = _Drain(now)
        self._event(decision.chain, decision.hop, "scale-in", decision, instance=victim.id)
        self._reconcile()

    def _check_drain(self, iid: str, now: float) -> None:
        """Release a draining instance once its flows are gone (no packet for DRAIN_QUIET_S) or timed out."""
        drain = self.draining[iid]
        inst = self.instances.get(iid)
        if inst is None:
            del self.draining[iid]
            return
        packets = self._load(inst.spec, "pps")
        if packets == 0:
            drain.quiet_since = drain.quiet_since if drain.quiet_since is not None else now
        else:
            drain.quiet_since = None
        if drain.quiet_since is not None and now - drain.quiet_since >= DRAIN_QUIET_S:
            reason = f"no packet for {now - drain.quiet_since:.1f} s"
        elif now - drain.since >= self.drain_timeout:
            reason = f"drain timeout ({self.drain_timeout:g} s): its remaining flows pick another instance"
        else:
            return
        spec = inst.spec
        key = (spec.chain, spec.hop_index)
        self.counts[key] = len(self.placement[key]) - 1
        self._event(spec.chain, spec.hop_index, "instance-released", instance=iid, reason=reason)
        self._commit(self._plan(self.chains, self.functions, ChainSet(), "<autoscale>"))

    def _event(self, chain: str, hop: int, action: str, decision: Decision | None = None, *,
               instance: str = "", reason: str = "") -> None:
        """Record (and log) one scaling event of a chain's hop."""
        hops = self.chains[chain].hops if chain in self.chains else ()
        event: dict[str, Any] = {"time": self.now(), "chain": chain, "hop": hops[hop].name if hop < len(hops)
                                 else str(hop), "action": action, "instance": instance,
                                 "reason": reason or (decision.reason if decision else "")}
        if decision is not None:
            event.update({"instances": decision.instances, "target": decision.target, "rate": decision.rate,
                          "per_instance": decision.per_instance})
        self.events.setdefault(chain, deque(maxlen=MAX_EVENTS)).append(event)
        self.event_counts[chain, event["hop"], action] += 1
        log.info("chain %s hop %s: %s %s %s", chain, event["hop"], action, instance, event["reason"])

    def _forget_scaling(self, name: str) -> None:
        """A chain replaced or deleted: its hops start again from their policy (placement keeps min)."""
        self.scaler.forget(name)
        for key in [key for key in self.counts if key[0] == name]:
            del self.counts[key]
        for key in [key for key in self.no_room if key[0] == name]:
            del self.no_room[key]

    # ---- flows ------------------------------------------------------------------------------

    def _ready(self) -> set[str]:
        return {iid for iid, inst in self.instances.items() if inst.state == RUNNING}

    def _serving(self) -> tuple[list[Chain], Placement, set[str]]:
        """The chains and placement traffic follows, and which chains still follow their old
        version: a replaced chain keeps it until every instance of its new one runs."""
        chains, placement = dict(self.chains), Placement(self.placement)
        old = set()
        for name, version in self.previous.items():
            new = [s.id for k in range(len(chains[name].hops)) for s in placement[name, k]]
            if all(self.instances[i].state == RUNNING for i in new):
                continue
            for k in range(len(chains[name].hops)):
                del placement[name, k]
            chains[name] = version.chain
            placement.update(version.slots)
            old.add(name)
        return list(chains.values()), placement, old

    def _reconcile(self) -> None:
        """Compile with the instances that are ready, send the diff, update the chains' states."""
        chains, placement, old = self._serving()
        desired = compile_fabric(self.topology, chains, placement, self._ready(), self.draining)
        messages = diff(self.installed, desired)
        result = self._send(messages)
        self.installed = desired
        self._update_status(result)
        # Old versions no traffic follows any more: release their instances the new ones do not use.
        wanted = self.placement.by_id()
        for name, version in list(self.previous.items()):
            if name not in old:
                del self.previous[name]
                for iid in version.ids() - set(wanted):
                    inst = self.instances.pop(iid, None)
                    if inst is not None:
                        self._retire(inst.spec)

    def _send(self, messages: list[Message]) -> SendResult:
        if not messages:
            return SendResult()
        if self.southbound is None:
            return SendResult(unconfirmed={dpid_of(m) for m in messages})
        return self.southbound.send(messages)

    def _chain_names(self) -> Callable[[int], str | None]:
        """Cookie -> the name of the installed chain it tags (None for no chain's)."""
        names = {cid: name for name, cid in self.installed.chain_ids.items()}

        def chain(cookie: int) -> str | None:
            fields_ = cookies.decode(cookie)
            return names.get(fields_.chain_id) if fields_ else None
        return chain

    def _chain_of(self, message: Message | None) -> str | None:
        """The chain whose flow (or group) a switch refused, from the cookie."""
        chain = self._chain_names()
        if isinstance(message, FlowMod):
            return chain(message.flow.cookie)
        if isinstance(message, GroupMod):
            # A group has no cookie: blame the chain whose flows point at it.
            group = message.group
            for flow in self.installed.flows.values():
                if flow.dpid == group.dpid and any(getattr(a, "group_id", None) == group.group_id
                                                   for a in flow.actions):
                    return chain(flow.cookie)
        return None

    def _update_status(self, result: SendResult) -> None:
        for error in result.errors:
            name = self._chain_of(error.message)
            if name is not None and name in self.status:
                self._switch_error(name, error.dpid, f"switch {error.dpid:#x} refused a flow: {error.reason}")
            else:
                log.error("switch %#x: %s (no chain)", error.dpid, error.reason)
        silent = result.unconfirmed & set(self.connected)
        if silent:
            # A connected switch that does not answer its barriers may not hold its flows.
            chain = self._chain_names()
            for flow in self.installed.flows.values():
                name = chain(flow.cookie) if flow.dpid in silent else None
                if name in self.status:
                    self._switch_error(name, flow.dpid, f"switch {flow.dpid:#x} did not confirm its flows")
        missing = {s.name for s in self.topology.switches if s.dpid not in self.connected}
        for name, chain in self.chains.items():
            status = self.status[name]
            specs = [s for k in range(len(chain.hops)) for s in self.placement.get((name, k), ())]
            failed = [f"instance {s.id}: {self.instances[s.id].reason}" for s in specs
                      if self.instances[s.id].state == FAILED]
            booting = [s.id for s in specs if self.instances[s.id].state == BOOTING]
            if status.switch_error:
                state, reason = ERROR, status.switch_error
            elif failed:
                state, reason = ERROR, "; ".join(failed)
            elif booting:
                state, reason = BOOTING, "waiting for instances " + ", ".join(booting)
            elif missing:
                state, reason = PENDING, "waiting for switches " + ", ".join(sorted(missing))
            else:
                state, reason = ACTIVE, ""
            if (state, reason) != (status.state, status.reason):
                status.state, status.reason, status.since = state, reason, self.now()
        self._changed.notify_all()

    def _switch_error(self, name: str, dpid: int, reason: str) -> None:
        status = self.status[name]
        status.switch_error, status.switch_error_dpid = reason, dpid

    # ---- southbound hooks (called by the os-ken application's threads) ----------------------

    def switch_up(self, dpid: int, ports: Mapping[int, str]) -> None:
        """A switch connected (or reconnected): check it against the topology, then resync it."""
        problems = self._check_switch(dpid, ports)
        for problem in problems:
            log.warning("switch %#x: %s", dpid, problem)
        with self._lock:
            self.connected[dpid] = dict(ports)
            self.port_problems[dpid] = problems
            if self.southbound is None:
                return
            result = self._send(resync(self.installed, dpid))
            if not result.errors and dpid not in result.unconfirmed:
                # The switch now holds exactly what is installed: its earlier refusals are moot.
                for status in self.status.values():
                    if status.switch_error_dpid == dpid:
                        status.switch_error, status.switch_error_dpid = "", None
            self._update_status(result)

    def switch_down(self, dpid: int) -> None:
        with self._lock:
            self.connected.pop(dpid, None)
            for end, far in list(self.links_seen.items()):
                if dpid in (end[0], far[0]):
                    del self.links_seen[end]
            self._update_status(SendResult())

    def link_seen(self, dpid: int, port: int, far_dpid: int, far_port: int) -> None:
        """An LLDP probe sent out of (dpid, port) came back in at (far_dpid, far_port)."""
        with self._lock:
            self.links_seen[dpid, port] = (far_dpid, far_port)
            expected = self.link_ends.get((dpid, port))
            names = {s.dpid: s.name for s in self.topology.switches}
            if expected == (far_dpid, far_port):
                self.link_problems.pop((dpid, port), None)
                return
            here = f"{names.get(dpid, hex(dpid))} port {port}"
            there = f"{names.get(far_dpid, hex(far_dpid))} port {far_port}"
            wanted = f"{names[expected[0]]} port {expected[1]}" if expected else "no switch"
            problem = f"{here} leads to {there}; the topology says {wanted}"
            if self.link_problems.get((dpid, port)) != problem:
                log.warning("link: %s", problem)
            self.link_problems[dpid, port] = problem

    def _link_confirmed(self, link: Link) -> bool:
        by_name = self.topology.switch_by_name
        a, b = (by_name[link.a].dpid, link.a_port), (by_name[link.b].dpid, link.b_port)
        return self.links_seen.get(a) == b or self.links_seen.get(b) == a

    def _check_switch(self, dpid: int, ports: Mapping[int, str]) -> list[str]:
        switch = next((s for s in self.topology.switches if s.dpid == dpid), None)
        if switch is None:
            return [f"dpid {dpid:#x} is not in topology {self.topology.name}"]
        expected = {link.a_port for link in self.topology.links if link.a == switch.name}
        expected |= {link.b_port for link in self.topology.links if link.b == switch.name}
        expected |= {h.port for h in self.topology.hosts if h.switch == switch.name}
        expected |= {c.port for c in self.topology.computes if c.switch == switch.name}
        missing = sorted(expected - set(ports))
        return [f"{switch.name}: port {port} is in the topology but not on the switch" for port in missing]

    # ---- views (JSON-ready) ------------------------------------------------------------------

    def chain_names(self) -> list[str]:
        with self._lock:
            return sorted(self.chains)

    def chain_view(self, name: str, counters: bool = False) -> dict[str, Any]:
        with self._lock:
            chain = self.chains.get(name)
            if chain is None:
                raise NotFound(name)
            status = self.status[name]
            hops = []
            for k, hop in enumerate(chain.hops):
                specs = self.placement.get((name, k), ())
                hops.append({"name": hop.name, "function": hop.function,
                             "scaling": {**to_json(hop.scaling), "autoscaled": is_autoscaled(chain, k)},
                             "load": {unit: self._hop_rate(chain, k, unit) for unit in ("pps", "bps")},
                             "instances": [
                                 {"id": s.id, "compute": s.compute, "mac": s.mac, "label": s.label,
                                  "state": self.instances[s.id].state, "reason": self.instances[s.id].reason,
                                  "draining": s.id in self.draining, "rates": to_json(self._instance_rates(s))}
                                 for s in specs]})
            view = {"name": name, "state": status.state, "reason": status.reason, "since": status.since,
                    "priority": chain.priority, "on_failure": chain.on_failure, "symmetric": chain.symmetric,
                    "classifier": to_json(chain.classifier), "hops": hops,
                    "path": list(self.installed.paths.get(name, ())),
                    "steering": self.installed.status.get(name, "")}
            specs = [s for k in range(len(chain.hops)) for s in self.placement.get((name, k), ())]
        if counters:
            # Outside the lock, and from every instance's agent at once: agents answer at their own pace.
            by_id = {s.id: s for s in specs}
            instances = [inst for hop in view["hops"] for inst in hop["instances"]]
            with ThreadPoolExecutor(max_workers=max(1, len(instances)), thread_name_prefix="counters") as pool:
                found = pool.map(lambda inst: self._counters(by_id[inst["id"]]) if inst["state"] == RUNNING
                                 else {}, instances)
                for inst, values in zip(instances, found):
                    inst["counters"] = values
        return view

    def _counters(self, spec: InstanceSpec) -> dict[str, Any]:
        out: dict[str, Any] = {}
        agent = self._agent(spec)
        for element in COUNTER_ELEMENTS:
            try:
                out[element] = {"packets": int(agent.read_handler(spec.id, element, "count")),
                                "bytes": int(agent.read_handler(spec.id, element, "byte_count"))}
            except (AgentError, ValueError):
                continue   # count_drop exists only in functions that drop
        return out

    def events_view(self, name: str) -> list[dict[str, Any]]:
        """The chain's scaling events, oldest first."""
        with self._lock:
            if name not in self.chains:
                raise NotFound(name)
            return list(self.events.get(name, ()))

    def metrics_text(self) -> str:
        """Rates, instance counts, scaling events and switch port counters, in Prometheus text format."""
        rate_families = (("in_pps", "in_packets", "Packets per second the fabric handed to the instance"),
                         ("in_bps", "in_bits", "Bits per second the fabric handed to the instance"),
                         ("out_pps", "out_packets", "Packets per second the instance sent back"),
                         ("out_bps", "out_bits", "Bits per second the instance sent back"))
        port_counters = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")
        with self._lock:
            rates: dict[str, list[tuple[dict[str, str], float | None]]] = {f: [] for f, _, _ in rate_families}
            counts = []
            for name, chain in sorted(self.chains.items()):
                for k, hop in enumerate(chain.hops):
                    specs = self.placement.get((name, k), ())
                    counts.append(({"chain": name, "hop": hop.name},
                                   sum(self.instances[s.id].state == RUNNING for s in specs)))
                    for spec in specs:
                        found = self._instance_rates(spec)
                        labels = {"chain": name, "hop": hop.name, "instance": spec.id}
                        for f, samples in rates.items():
                            samples.append((labels, getattr(found, f, None)))
            events = [({"chain": c, "hop": h, "action": a}, n) for (c, h, a), n in sorted(self.event_counts.items())]
            switch = {s.dpid: s.name for s in self.topology.switches}
            ports: dict[str, list[tuple[dict[str, str], float | None]]] = {f: [] for f in port_counters}
            for (dpid, port), found in sorted((self.rates.ports if self.rates else {}).items()):
                labels = {"switch": switch.get(dpid, f"{dpid:#x}"), "port": str(port)}
                for f, samples in ports.items():
                    samples.append((labels, getattr(found, f)))
        return render([
            *(Family(f"clicksteer_instance_{family}_per_second", "gauge", f"{text} (last poll)", rates[f])
              for f, family, text in rate_families),
            Family("clicksteer_hop_instances", "gauge", "Running instances per hop", counts),
            Family("clicksteer_scaling_events_total", "counter", "Scaling events per hop and action", events),
            *(Family(f"clicksteer_port_{f}_total", "counter", f"Switch port counter {f}", ports[f])
              for f in port_counters)])

    def chains_summary(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"name": n, "state": self.status[n].state, "reason": self.status[n].reason,
                     "hops": [h.name for h in c.hops], "priority": c.priority,
                     "instances": sum(len(self.placement.get((n, k), ())) for k in range(len(c.hops)))}
                    for n, c in sorted(self.chains.items())]

    def instances_view(self) -> list[dict[str, Any]]:
        with self._lock:
            retiring = {i for version in self.previous.values() for i in version.ids()} - set(self.placement.by_id())
            return [{"id": iid, "chain": i.spec.chain, "hop": i.spec.hop, "hop_index": i.spec.hop_index,
                     "index": i.spec.index, "compute": i.spec.compute, "function": i.spec.function,
                     "mac": i.spec.mac, "label": i.spec.label, "state": i.state, "reason": i.reason,
                     "retiring": iid in retiring}
                    for iid, i in sorted(self.instances.items())]

    def topology_view(self) -> dict[str, Any]:
        with self._lock:
            topo = self.topology
            return {
                "name": topo.name,
                "switches": [{"name": s.name, "dpid": f"{s.dpid:#x}", "connected": s.dpid in self.connected,
                              "problems": self.port_problems.get(s.dpid, [])} for s in topo.switches],
                "hosts": [{"name": h.name, "ip": str(h.ip), "mac": h.mac, "switch": h.switch, "port": h.port}
                          for h in topo.hosts],
                "computes": [{"name": c.name, "switch": c.switch, "port": c.port, "agent": c.agent,
                              "uplink_mac": c.uplink_mac, "capacity": c.capacity} for c in topo.computes],
                "links": [{"a": link.a, "a_port": link.a_port, "b": link.b, "b_port": link.b_port,
                           "confirmed": self._link_confirmed(link)} for link in topo.links],
                "link_problems": sorted(self.link_problems.values()),
                "unexpected_switches": [f"{d:#x}" for d in sorted(self.connected)
                                        if d not in {s.dpid for s in topo.switches}],
            }

    def health(self) -> dict[str, Any]:
        with self._lock:
            expected = {s.dpid: s.name for s in self.topology.switches}
            connected = [expected[d] for d in sorted(self.connected) if d in expected]
            problems = {f"{d:#x}": p for d, p in sorted(self.port_problems.items()) if p}
            states: dict[str, int] = {}
            for status in self.status.values():
                states[status.state] = states.get(status.state, 0) + 1
            ready = len(connected) == len(expected) and not problems and not self.link_problems
            return {"status": "ok" if ready else "degraded",
                    "switches": {"expected": len(expected), "connected": len(connected),
                                 "missing": sorted(set(expected.values()) - set(connected)),
                                 "unexpected": [f"{d:#x}" for d in sorted(self.connected) if d not in expected],
                                 "problems": problems},
                    "links": {"expected": len(self.topology.links),
                              "confirmed": sum(self._link_confirmed(link) for link in self.topology.links),
                              "problems": sorted(self.link_problems.values())},
                    "chains": states}


def to_json(value: Any) -> Any:
    """Plain JSON data from dataclasses, tuples, networks and the like."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
