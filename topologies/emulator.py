"""The emulator: a Topology realised with Open vSwitch bridges, veth pairs and network namespaces.

Every object carries the run's tag, ``cs`` plus a 4-hex-digit run id:

- switch S and compute host C: bridge ``TAG-S`` / ``TAG-C`` (the loader keeps
  these within Linux's 15 characters);
- host H: namespace ``TAG-H`` holding ``eth0``;
- root-namespace veth ends: ``TAG.lNa``/``TAG.lNb`` for the N-th link,
  ``TAG.hN`` for the N-th host, ``TAG.cNs`` (switch side) and ``TAG.cNu``
  (compute bridge side) for the N-th compute host.  Node names hold no dot,
  so these never clash with bridge names.

Before anything is created, the whole plan (every name) is written to the
state file, so ``down`` removes exactly those objects, and nothing else, even
after ``up`` died halfway; a failing ``up`` rolls itself back the same way.
The Open vSwitch instance is the shared private one (topologies/ovs.py); a
fabric stops it on ``down`` when nothing else uses it any more.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from topologies import netns
from topologies.model import Topology
from topologies.ovs import OVS, add_port_args

STATE_FILE = "fabric.json"
MAX_BACKOFF_MS = 1000  # OVS waits 8-12 s to reconnect to a restarted controller by default
HOST_IFACE = "eth0"
COMPUTE_UPLINK_OFPORT = 1  # the uplink's port on a compute host's bridge; instances get others


class FabricError(RuntimeError):
    """The fabric cannot be brought up, down or changed; the message says why."""


def default_run_dir() -> Path:
    return Path(os.environ.get("CLICKSTEER_RUN_DIR", "/run/clicksteer"))


@dataclass
class FabricState:
    """What one ``up`` created (or was about to create); the JSON state file's content.

    ``switches``: name -> {bridge, dpid}.  ``hosts``: name -> {namespace,
    interface, ip, mac, switch, port, veth}.  ``computes``: name -> {bridge,
    uplink_mac, switch, port, agent, veth (on the fabric switch), uplink (on
    the compute bridge), uplink_ofport}.  ``links``: [{a, b, a_port, b_port,
    veths, up}] for switch-to-switch links.
    """

    run_id: str
    topology: str
    run_dir: str = ""
    status: str = "creating"         # "creating" until every object exists, then "up"
    controller: str | None = None
    ovs_root: str = ""
    ovs_pids: dict[str, int] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)     # one root-namespace end of each veth pair
    switches: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    computes: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"cs{self.run_id}"

    def ovs(self) -> OVS:
        return OVS(self.ovs_root)

    def host_namespace(self, host: str) -> str:
        return self.hosts[host]["namespace"]

    def switch_bridge(self, switch: str) -> str:
        return self.switches[switch]["bridge"]

    def compute_bridge(self, compute: str) -> str:
        """The learning bridge standing in for compute host ``compute``'s VALE switch."""
        return self.computes[compute]["bridge"]

    def switch_ports(self) -> dict[str, list[tuple[str, int]]]:
        """Switch name -> its ports as (interface name, OpenFlow port number)."""
        ports: dict[str, list[tuple[str, int]]] = {name: [] for name in self.switches}
        for link in self.links:
            ports[link["a"]].append((link["veths"][0], link["a_port"]))
            ports[link["b"]].append((link["veths"][1], link["b_port"]))
        for entry in [*self.hosts.values(), *self.computes.values()]:
            ports[entry["switch"]].append((entry["veth"], entry["port"]))
        return ports

    def find_link(self, a: str, b: str) -> dict[str, Any]:
        for link in self.links:
            if {link["a"], link["b"]} == {a, b}:
                return link
        raise FabricError(f"no link between {a!r} and {b!r} in fabric {self.topology} (run {self.run_id})")


def _state_path(run_dir: Path) -> Path:
    return run_dir / STATE_FILE


def save_state(state: FabricState) -> None:
    """Replace the state file in ``state.run_dir`` atomically, so a crash never leaves half a record."""
    run_dir = Path(state.run_dir)
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1, sort_keys=True))
    tmp.replace(_state_path(run_dir))


def load_state(run_dir: str | os.PathLike[str] | None = None) -> FabricState:
    """The state of the fabric that is up in ``run_dir``; FabricError when none is."""
    path = _state_path(Path(run_dir) if run_dir else default_run_dir())
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FabricError(f"no fabric is up (no state file {path})") from None
    except (OSError, ValueError) as exc:  # an up that is just starting has not written it yet
        raise FabricError(f"cannot read the fabric's state file {path}: {exc}") from None
    return FabricState(**data)


def new_run_id() -> str:
    """A run id whose tag no interface or namespace of this machine carries yet."""
    taken = set(netns.list_netns()) | {p.name for p in Path("/sys/class/net").iterdir()}
    while True:
        run_id = secrets.token_hex(2)
        tag = f"cs{run_id}"
        if not any(name.startswith((f"{tag}-", f"{tag}.")) for name in taken):
            return run_id


def plan(topo: Topology, run_id: str, controller: str | None, ovs_root: str, run_dir: str = "") -> FabricState:
    """Every name and number ``up`` will create for ``topo``, as a state record (pure)."""
    state = FabricState(run_id=run_id, topology=topo.name, run_dir=run_dir, controller=controller,
                        ovs_root=ovs_root)
    tag = state.tag
    for s in topo.switches:
        state.switches[s.name] = {"bridge": f"{tag}-{s.name}", "dpid": s.dpid}
    for i, link in enumerate(topo.links, 1):
        veths = [f"{tag}.l{i}a", f"{tag}.l{i}b"]
        state.links.append({"a": link.a, "b": link.b, "a_port": link.a_port, "b_port": link.b_port,
                            "veths": veths, "up": True})
        state.veths.append(veths[0])
    for i, h in enumerate(topo.hosts, 1):
        state.hosts[h.name] = {"namespace": f"{tag}-{h.name}", "interface": HOST_IFACE, "ip": str(h.ip),
                               "mac": h.mac, "switch": h.switch, "port": h.port, "veth": f"{tag}.h{i}"}
        state.veths.append(f"{tag}.h{i}")
    for i, c in enumerate(topo.computes, 1):
        state.computes[c.name] = {"bridge": f"{tag}-{c.name}", "uplink_mac": c.uplink_mac, "switch": c.switch,
                                  "port": c.port, "agent": c.agent, "veth": f"{tag}.c{i}s",
                                  "uplink": f"{tag}.c{i}u", "uplink_ofport": COMPUTE_UPLINK_OFPORT}
        state.veths.append(f"{tag}.c{i}s")
    state.namespaces = [h["namespace"] for h in state.hosts.values()]
    state.bridges = [s["bridge"] for s in state.switches.values()] + [c["bridge"] for c in state.computes.values()]
    return state


def up(topo: Topology, controller: str | None = None, run_dir: str | os.PathLike[str] | None = None,
       ovs_root: str | os.PathLike[str] | None = None) -> FabricState:
    """Build ``topo``; return its state.  On any failure everything built so far is removed.

    ``controller`` (e.g. ``tcp:127.0.0.1:6653``) is where every fabric switch
    connects; without one the switches only do what flows a test installs.
    """
    run_dir = Path(run_dir) if run_dir else default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    ovs = OVS(ovs_root)
    state = plan(topo, new_run_id(), controller, str(ovs.root), str(run_dir))
    state_path = _state_path(run_dir)
    # O_EXCL makes "a fabric is already up" race-free between two concurrent ups.
    try:
        fd = os.open(state_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        try:
            old = load_state(run_dir)
            which = f" (topology {old.topology}, run {old.run_id}, {old.status})"
        except FabricError:
            which = ""
        raise FabricError(f"a fabric is already up in {run_dir}{which}; run 'clicksteer fabric down' first") from None
    os.close(fd)
    save_state(state)
    try:
        with ovs.lock():
            ovs.start()
            state.ovs_pids = ovs.pids()
            save_state(state)
            _create_links(state)
            _create_bridges(ovs, state)
        _check_ports(ovs, state)
        state.status = "up"
        save_state(state)
    except BaseException as exc:
        try:
            _teardown(state)
        except Exception as cleanup:  # keep the state file: 'down' can finish the job
            exc.add_note(f"rolling back failed too ({cleanup}); run 'clicksteer fabric down --run-dir {run_dir}'")
        else:
            state_path.unlink(missing_ok=True)
        raise
    return state


def _create_links(state: FabricState) -> None:
    """Namespaces and veth pairs in one ``ip -batch``; then each namespace's side, all at once."""
    lines = [netns.add_netns_cmd(ns) for ns in state.namespaces]
    for link in state.links:
        lines.append(netns.add_veth_cmd(*link["veths"]))
    for h in state.hosts.values():
        lines.append(netns.add_veth_cmd(h["veth"], h["interface"], peer_mac=h["mac"], peer_netns=h["namespace"]))
    for c in state.computes.values():
        lines.append(netns.add_veth_cmd(c["veth"], c["uplink"]))
    ends = state.veths + [link["veths"][1] for link in state.links] + [c["uplink"] for c in state.computes.values()]
    # No IPv6 link-local addresses: an idle fabric must not send anything to the controller.
    lines += [netns.no_ipv6_cmd(end) for end in ends]
    lines += [netns.set_up_cmd(end) for end in ends]
    netns.batch(lines)
    inside = {h["namespace"]: [netns.set_up_cmd("lo"), netns.no_ipv6_cmd(h["interface"]),
                               netns.set_address_cmd(h["interface"], h["ip"]), netns.set_up_cmd(h["interface"])]
              for h in state.hosts.values()}
    netns.batch_parallel(inside)
    netns.run_parallel((netns.offload_off_argv(h["interface"], h["namespace"]), None) for h in state.hosts.values())


def _create_bridges(ovs: OVS, state: FabricState) -> None:
    """Every bridge and port in one ovs-vsctl transaction (one database round trip, one reconfiguration)."""
    args: list[str] = []
    ports = state.switch_ports()
    for i, (name, s) in enumerate(state.switches.items()):
        br = s["bridge"]
        args += ["--", "add-br", br, "--", "set", "Bridge", br, "datapath_type=netdev", "protocols=OpenFlow13",
                 "fail_mode=secure", f"other_config:datapath-id={s['dpid']:016x}",
                 "other_config:disable-in-band=true"]
        if state.controller:
            args += ["--", f"--id=@c{i}", "create", "Controller", f"target=\"{state.controller}\"",
                     f"max_backoff={MAX_BACKOFF_MS}", "connection_mode=out-of-band",
                     "--", "set", "Bridge", br, f"controller=@c{i}"]
        for port, number in ports[name]:
            args += add_port_args(br, port, number)
    for c in state.computes.values():
        # The VALE stand-in: a plain learning switch (NORMAL), never under a controller.
        args += ["--", "add-br", c["bridge"], "--", "set", "Bridge", c["bridge"], "datapath_type=netdev",
                 "fail_mode=standalone", "other_config:disable-in-band=true"]
        args += add_port_args(c["bridge"], c["uplink"], c["uplink_ofport"])
    ovs.vsctl(*args)


def _check_ports(ovs: OVS, state: FabricState) -> None:
    """Every port got its requested OpenFlow number (-1 would mean OVS could not open it)."""
    want = {port: number for ports in state.switch_ports().values() for port, number in ports}
    want |= {c["uplink"]: c["uplink_ofport"] for c in state.computes.values()}
    got = {}
    for line in ovs.vsctl("--bare", "--columns=name,ofport", "list", "Interface").split("\n\n"):
        fields = line.split()
        if len(fields) == 2:
            got[fields[0]] = int(fields[1])
    wrong = [f"{port} has {got.get(port)}, not {number}" for port, number in want.items()
             if got.get(port) != number]
    if wrong:
        raise FabricError("OpenFlow port numbers not as planned: " + "; ".join(sorted(wrong)))


def _teardown(state: FabricState) -> None:
    """Remove every recorded object that exists; stop the shared OVS if nothing uses it any more."""
    ovs = state.ovs()
    with ovs.lock():
        present = set(ovs.bridges()) if ovs.alive() else set()
        if present - set(state.bridges) or ovs.held():
            # Someone else uses the instance: take out only our bridges (slow: port by port).
            dels = [arg for br in state.bridges if br in present for arg in ("--", "--if-exists", "del-br", br)]
            if dels:
                ovs.vsctl(*dels)
        else:
            ovs.stop()  # ours alone: stopping it removes every bridge at once
    # Bridges whose OVS died keep their (persistent) tap devices: they go with the veths.
    netns.delete_links(state.veths + state.bridges)
    netns.batch([netns.del_netns_cmd(ns) for ns in state.namespaces if netns.netns_exists(ns)], force=True)
    left = [name for name in state.veths + state.bridges if netns.link_exists(name)]
    left += [ns for ns in state.namespaces if netns.netns_exists(ns)]
    if left:
        raise FabricError(f"could not remove {', '.join(left)} (run {state.run_id}); try again")


def down(run_dir: str | os.PathLike[str] | None = None) -> FabricState:
    """Remove the fabric that is up in ``run_dir`` (exactly what its state records); return that state."""
    run_dir = Path(run_dir) if run_dir else default_run_dir()
    state = load_state(run_dir)
    _teardown(state)
    _state_path(run_dir).unlink()
    return state


def set_link(a: str, b: str, is_up: bool, run_dir: str | os.PathLike[str] | None = None) -> None:
    """Cut (``is_up=False``) or restore the link between switches ``a`` and ``b``.

    Both veth ends change state, so both switches report the port down (or up)
    to the controller; the ports and their numbers stay.
    """
    run_dir = Path(run_dir) if run_dir else default_run_dir()
    state = load_state(run_dir)
    link = state.find_link(a, b)
    netns.batch([netns.set_up_cmd(veth, is_up) for veth in link["veths"]])
    link["up"] = is_up
    save_state(state)


def status(run_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What is up and whether each recorded object still exists (for ``clicksteer fabric status``)."""
    run_dir = Path(run_dir) if run_dir else default_run_dir()
    state = load_state(run_dir)
    ovs = state.ovs()
    alive = ovs.alive()
    bridges = set(ovs.bridges()) if alive else set()
    return {
        "run_id": state.run_id, "topology": state.topology, "status": state.status,
        "controller": state.controller, "run_dir": str(run_dir),
        "ovs": {"root": state.ovs_root, "alive": alive, "pids": ovs.pids()},
        "bridges": {br: br in bridges for br in state.bridges},
        "namespaces": {ns: netns.netns_exists(ns) for ns in state.namespaces},
        "veths": {v: netns.link_exists(v) for v in state.veths},
        "links": [{"a": lk["a"], "b": lk["b"], "up": lk["up"]} for lk in state.links],
    }
