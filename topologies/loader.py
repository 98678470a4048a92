"""Topology files: load, validate, resolve ports, dump.

A topology file is YAML::

    name: leaf-spine                      # optional: the file's stem
    switches:
      - {name: leaf1, dpid: 0x101}
    hosts:
      - {name: client1, switch: leaf1, ip: 10.0.1.1/16, mac: "02:00:0a:00:01:01", port: 3}
    computes:
      - {name: compute1, switch: leaf1, agent: "127.0.0.1:7101", port: 5, uplink_mac: ..., capacity: 64}
    links:
      - {a: leaf1, b: spine1, a_port: 1, b_port: 1}

``port``/``a_port``/``b_port`` (the OpenFlow port on the switch side),
``mac`` and ``uplink_mac`` are optional: ports left out get the lowest free
numbers on their switch in file order (links, then hosts, then compute hosts);
MACs are derived from the address (hosts) or the position (compute hosts).

The whole document is checked before a Topology is built, and every problem
is reported at once as ``FILE:LINE:COL: message`` (one ConfigError).
Generators build the same plain document and go through the same checks.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any


from chains.errors import ConfigError, Problem
from chains.yamlsrc import flow_scalar, read_yaml
from topologies.model import ComputeHost, Host, Link, Switch, Topology

# The emulator names a switch's or compute host's bridge RUNTAG-NAME, RUNTAG
# being "cs" and 4 hex digits (topologies/emulator.py); Linux allows 15.
RUN_TAG_LEN = 6
MAX_BRIDGE_NAME = 15 - RUN_TAG_LEN - 1
MAX_OFPORT = 0xFEFF  # highest number ofport_request accepts
MAX_DPID = 2**64 - 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*\Z")
MAC_RE = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}\Z")

TOP_KEYS = {"name", "switches", "hosts", "computes", "links"}
FIELDS = {  # kind -> (required keys, optional keys)
    "switches": ({"name", "dpid"}, set()),
    "hosts": ({"name", "switch", "ip"}, {"mac", "port"}),
    "computes": ({"name", "switch", "agent"}, {"port", "uplink_mac", "capacity"}),
    "links": ({"a", "b"}, {"a_port", "b_port"}),
}


def host_mac(ip: ipaddress.IPv4Interface) -> str:
    """The MAC a host gets when the file gives none: locally administered, from its address."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ip.ip.packed)


def compute_uplink_mac(index: int) -> str:
    """The uplink MAC of the ``index``-th compute host (0-based) when the file gives none."""
    return "02:cc:" + ":".join(f"{b:02x}" for b in index.to_bytes(4, "big"))


class _Checker:
    """Collects problems while reading a plain document (positions when it came from YAML)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []

    def report(self, where: tuple[int, int], path: str, message: str) -> None:
        self.problems.append(Problem(self.filename, where[0], where[1], message, path))


def _pos_of(container: Any, key: Any = None, value: bool = True) -> tuple[int, int]:
    """Where ``container[key]`` (or the container itself) is; (1, 1) for plain Python data."""
    if key is None:
        return getattr(container, "pos", (1, 1))
    if isinstance(container, list):
        positions = getattr(container, "item_pos", None)
        return positions[key] if positions else getattr(container, "pos", (1, 1))
    table = getattr(container, "value_pos" if value else "key_pos", None)
    return table.get(key, container.pos) if table is not None else (1, 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def build(doc: Any, filename: str, default_name: str = "topology") -> Topology:
    """Check a plain document (from YAML or a generator) and build its Topology, or raise ConfigError.

    Entries are normalised in place (addresses parsed, defaults filled in).
    """
    ck = _Checker(filename)
    if not isinstance(doc, dict):
        raise ConfigError([Problem(filename, *_pos_of(doc), "a topology is a mapping with a 'switches' list")])
    for key in doc:
        if key not in TOP_KEYS:
            ck.report(_pos_of(doc, key, value=False), str(key),
                      f"unknown key {key!r} (expected one of {', '.join(sorted(TOP_KEYS))})")
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name:
        ck.report(_pos_of(doc, "name"), "name", "the topology's name must be a non-empty string")
    if "switches" not in doc:
        ck.report(_pos_of(doc), "", "missing key 'switches'")
    sections = {kind: _entries(ck, doc, kind) for kind in FIELDS}

    nodes: dict[str, str] = {}  # name -> kind, over every kind: names are one namespace
    for kind in ("switches", "hosts", "computes"):
        for path, entry in sections[kind]:
            _check_name(ck, path, entry, kind, nodes)
    switches = _switches(ck, sections["switches"])
    ports = _Ports(ck)
    links = _links(ck, sections["links"], nodes, ports)
    hosts = _hosts(ck, sections["hosts"], nodes, ports)
    computes = _computes(ck, sections["computes"], nodes, ports)
    _check_unique_macs(ck, hosts, computes)
    if ck.problems:
        raise ConfigError(ck.problems)
    assigned = ports.resolve()
    return Topology(
        name=name,
        switches=tuple(Switch(e["name"], e["dpid"]) for _, e in switches),
        hosts=tuple(Host(e["name"], e["ip"], e["mac"], e["switch"], assigned[id(e)])
                    for _, e in hosts),
        computes=tuple(ComputeHost(e["name"], e["switch"], assigned[id(e)], e["agent"], e["uplink_mac"],
                                   e.get("capacity", 64)) for _, e in computes),
        links=tuple(Link(e["a"], e["b"], assigned[(id(e), "a")], assigned[(id(e), "b")])
                    for _, e in links),
    )


def _entries(ck: _Checker, doc: dict, kind: str) -> list[tuple[str, dict]]:
    """The well-formed mappings of one section, with their key paths; reports the rest."""
    items = doc.get(kind, [])
    if items is None:
        return []
    if not isinstance(items, list):
        ck.report(_pos_of(doc, kind), kind, f"'{kind}' must be a list")
        return []
    required, optional = FIELDS[kind]
    out = []
    for i, entry in enumerate(items):
        path = f"{kind}[{i}]"
        if not isinstance(entry, dict):
            ck.report(_pos_of(items, i), path, "each entry must be a mapping")
            continue
        ok = True
        for key in entry:
            if key not in required | optional:
                ck.report(_pos_of(entry, key, value=False), f"{path}.{key}",
                          f"unknown key {key!r} (expected {', '.join(sorted(required | optional))})")
        for key in sorted(required - entry.keys()):
            ck.report(_pos_of(entry), path, f"missing key {key!r}")
            ok = False
        if ok:
            out.append((path, entry))
    return out


def _check_name(ck: _Checker, path: str, entry: dict, kind: str, nodes: dict[str, str]) -> None:
    name = entry["name"]
    where = _pos_of(entry, "name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        ck.report(where, f"{path}.name",
                  f"bad name {name!r}: letters, digits and '_' only, starting with a letter or digit")
        return
    if kind in ("switches", "computes") and len(name) > MAX_BRIDGE_NAME:
        ck.report(where, f"{path}.name",
                  f"name {name!r} is too long: its bridge would be named 'csXXXX-{name}', "
                  f"{RUN_TAG_LEN + 1 + len(name)} characters, and Linux interface names have at most 15 "
                  f"(use at most {MAX_BRIDGE_NAME} characters)")
    if name in nodes:
        ck.report(where, f"{path}.name", f"duplicate name {name!r}")
    else:
        nodes[name] = kind


def _switches(ck: _Checker, entries: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    seen: dict[int, str] = {}
    for path, e in entries:
        dpid = e["dpid"]
        if isinstance(dpid, str):  # "00:00:00:00:00:00:01:01" as ovs-ofctl prints it, or hex
            try:
                dpid = int(dpid.replace(":", ""), 16)
            except ValueError:
                pass
        if not _is_int(dpid) or not 1 <= dpid <= MAX_DPID:
            ck.report(_pos_of(e, "dpid"), f"{path}.dpid", f"bad datapath id {e['dpid']!r}: "
                      "an integer from 1 to 2**64-1 (hex like 0x101 or 00:00:00:00:00:00:01:01)")
            continue
        if dpid in seen:
            ck.report(_pos_of(e, "dpid"), f"{path}.dpid", f"duplicate datapath id {dpid:#x} (also {seen[dpid]})")
        seen.setdefault(dpid, e["name"])
        e["dpid"] = dpid
    return entries


class _Ports:
    """OpenFlow port numbers on each switch: fixed ones first, then the lowest free ones."""

    def __init__(self, ck: _Checker) -> None:
        self.ck = ck
        self.wanted: list[tuple[str, Any, int | None]] = []  # (switch, key, fixed port or None)
        self.taken: dict[str, dict[int, str]] = {}

    def want(self, switch: str, key: Any, container: dict, port_key: str, path: str, what: str) -> None:
        port = container.get(port_key)
        if port is not None:
            if not _is_int(port) or not 1 <= port <= MAX_OFPORT:
                self.ck.report(_pos_of(container, port_key), f"{path}.{port_key}",
                               f"bad port {port!r}: an integer from 1 to {MAX_OFPORT}")
                return
            taken = self.taken.setdefault(switch, {})
            if port in taken:
                self.ck.report(_pos_of(container, port_key), f"{path}.{port_key}",
                               f"duplicate port {port} on switch {switch!r} (also {taken[port]})")
                return
            taken[port] = what
        self.wanted.append((switch, key, port))

    def resolve(self) -> dict[Any, int]:
        out: dict[Any, int] = {}
        next_free: dict[str, int] = {}
        for switch, key, port in self.wanted:
            if port is None:
                taken = self.taken.setdefault(switch, {})
                port = next_free.get(switch, 1)
                while port in taken:
                    port += 1
                taken[port] = str(key)
                next_free[switch] = port + 1
            out[key] = port
        return out


def _node_ref(ck: _Checker, entry: dict, key: str, path: str, nodes: dict[str, str]) -> bool:
    """Whether ``entry[key]`` names a switch; reports it otherwise."""
    ref = entry[key]
    if nodes.get(ref) == "switches":
        return True
    kind = {"hosts": "a host", "computes": "a compute host"}.get(nodes.get(ref, ""))
    ck.report(_pos_of(entry, key), f"{path}.{key}",
              f"{ref!r} is {kind}, not a switch" if kind else f"unknown switch {ref!r}")
    return False


def _links(ck: _Checker, entries: list[tuple[str, dict]], nodes: dict[str, str],
           ports: _Ports) -> list[tuple[str, dict]]:
    out = []
    pairs: dict[frozenset[str], str] = {}
    for path, e in entries:
        ok = _node_ref(ck, e, "a", path, nodes) & _node_ref(ck, e, "b", path, nodes)
        if ok and e["a"] == e["b"]:
            ck.report(_pos_of(e, "b"), f"{path}.b", f"a link from {e['a']!r} to itself")
            ok = False
        pair = frozenset((e["a"], e["b"]))
        if ok and pair in pairs:  # the fabric graph has one edge per pair of switches
            ck.report(_pos_of(e), path, f"duplicate link between {e['a']!r} and {e['b']!r} (also {pairs[pair]})")
            ok = False
        pairs.setdefault(pair, path)
        if ok:
            ports.want(e["a"], (id(e), "a"), e, "a_port", path, f"{path} to {e['b']}")
            ports.want(e["b"], (id(e), "b"), e, "b_port", path, f"{path} to {e['a']}")
            out.append((path, e))
    return out


def _hosts(ck: _Checker, entries: list[tuple[str, dict]], nodes: dict[str, str],
           ports: _Ports) -> list[tuple[str, dict]]:
    out = []
    seen: dict[ipaddress.IPv4Address, str] = {}
    for path, e in entries:
        ok = _node_ref(ck, e, "switch", path, nodes)
        ip = e["ip"]
        try:
            if not isinstance(ip, str) or "/" not in ip:
                raise ValueError("needs a prefix length")
            e["ip"] = ipaddress.IPv4Interface(ip)
        except ValueError as exc:
            ck.report(_pos_of(e, "ip"), f"{path}.ip", f"bad IPv4 address {ip!r} ({exc}); e.g. 10.0.1.1/16")
            ok = False
        else:
            if e["ip"].ip in seen:
                ck.report(_pos_of(e, "ip"), f"{path}.ip", f"duplicate address {e['ip'].ip} (also {seen[e['ip'].ip]})")
                ok = False
            seen.setdefault(e["ip"].ip, e["name"])
        if "mac" in e:
            ok &= _check_mac(ck, e, "mac", path)
        elif ok:
            e["mac"] = host_mac(e["ip"])
        if ok:
            ports.want(e["switch"], id(e), e, "port", path, f"host {e['name']}")
            out.append((path, e))
    return out


def _computes(ck: _Checker, entries: list[tuple[str, dict]], nodes: dict[str, str],
              ports: _Ports) -> list[tuple[str, dict]]:
    out = []
    seen: dict[str, str] = {}
    for index, (path, e) in enumerate(entries):
        ok = _node_ref(ck, e, "switch", path, nodes)
        agent = e["agent"]
        address, _, port = str(agent).rpartition(":")
        try:
            ipaddress.ip_address(address)
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError
        except ValueError:
            ck.report(_pos_of(e, "agent"), f"{path}.agent", f"bad agent address {agent!r}: ADDRESS:PORT, "
                      "e.g. 127.0.0.1:7101")
            ok = False
        else:
            if agent in seen:
                ck.report(_pos_of(e, "agent"), f"{path}.agent", f"duplicate agent address {agent} (also {seen[agent]})")
                ok = False
            seen.setdefault(agent, e["name"])
        capacity = e.get("capacity", 64)
        if not _is_int(capacity) or capacity < 1:
            ck.report(_pos_of(e, "capacity"), f"{path}.capacity", f"bad capacity {capacity!r}: a positive integer")
            ok = False
        if "uplink_mac" in e:
            ok &= _check_mac(ck, e, "uplink_mac", path)
        else:
            e["uplink_mac"] = compute_uplink_mac(index)
        if ok:
            ports.want(e["switch"], id(e), e, "port", path, f"compute host {e['name']}")
            out.append((path, e))
    return out


def _check_mac(ck: _Checker, entry: dict, key: str, path: str) -> bool:
    mac = entry[key]
    if isinstance(mac, str) and MAC_RE.match(mac.lower()):
        if int(mac[:2], 16) & 1:
            ck.report(_pos_of(entry, key), f"{path}.{key}", f"{mac!r} is a multicast address")
            return False
        entry[key] = mac.lower()
        return True
    ck.report(_pos_of(entry, key), f"{path}.{key}", f"bad MAC address {mac!r}; e.g. 02:00:0a:00:01:01")
    return False


def _check_unique_macs(ck: _Checker, hosts: list[tuple[str, dict]], computes: list[tuple[str, dict]]) -> None:
    seen: dict[str, str] = {}
    for path, e, key in [(p, e, "mac") for p, e in hosts] + [(p, e, "uplink_mac") for p, e in computes]:
        mac = e[key]
        if mac in seen:
            ck.report(_pos_of(e, key), f"{path}.{key}", f"duplicate MAC address {mac} (also {seen[mac]})")
        seen.setdefault(mac, e["name"])


def load_topology(path: str | Path) -> Topology:
    """Read, check and build a topology file; ConfigError lists every problem."""
    path = str(path)
    return build(read_yaml(path), path, default_name=Path(path).stem)


def to_document(topo: Topology) -> dict[str, Any]:
    """The plain document of a Topology, every port and address explicit (loads back equal)."""
    return {
        "name": topo.name,
        "switches": [{"name": s.name, "dpid": s.dpid} for s in topo.switches],
        "hosts": [{"name": h.name, "switch": h.switch, "port": h.port, "ip": str(h.ip), "mac": h.mac}
                  for h in topo.hosts],
        "computes": [{"name": c.name, "switch": c.switch, "port": c.port, "agent": c.agent,
                      "uplink_mac": c.uplink_mac, "capacity": c.capacity} for c in topo.computes],
        "links": [{"a": lk.a, "a_port": lk.a_port, "b": lk.b, "b_port": lk.b_port} for lk in topo.links],
    }


def dump_topology(topo: Topology) -> str:
    """YAML text for a Topology: one flow mapping per entry, datapath ids in hex."""
    doc = to_document(topo)
    lines = [f"name: {_scalar('name', doc['name'])}"]
    for section in ("switches", "links", "hosts", "computes"):
        lines.append(f"{section}:" + ("" if doc[section] else " []"))
        for entry in doc[section]:
            fields = ", ".join(f"{k}: {_scalar(k, v)}" for k, v in entry.items())
            lines.append(f"  - {{{fields}}}")
    return "\n".join(lines) + "\n"


def _scalar(key: str, value: Any) -> str:
    if key == "dpid":
        return f"{value:#x}"
    return flow_scalar(value)


def write_topology(topo: Topology, path: str | Path) -> None:
    Path(path).write_text(dump_topology(topo), encoding="utf-8")
