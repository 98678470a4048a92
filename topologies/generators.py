"""Generators for the usual fabric shapes.

Each builds the same plain document a topology file holds and runs it through
the loader's checks (``loader.build``), so a generated Topology obeys every
rule a file does (names fit Linux interface names, nothing is duplicated).
Ports are left to the loader: on every switch, links come first (in the order
below: upward links before downward ones), then hosts, then compute hosts.
Compute hosts' agents listen on 127.0.0.1, ports 7101, 7102, ...
"""

from __future__ import annotations

import ipaddress
from typing import Any

from topologies.loader import build
from topologies.model import Topology

AGENT_BASE_PORT = 7100


def _ip(number: int, prefix: int = 8) -> str:
    """The ``number``-th address of 10.0.0.0/8 with the given prefix length."""
    return f"{ipaddress.IPv4Address('10.0.0.0') + number}/{prefix}"


def _agent(number: int) -> str:
    return f"127.0.0.1:{AGENT_BASE_PORT + number}"


def _link(a: str, b: str) -> dict[str, Any]:
    return {"a": a, "b": b}


def linear(n: int) -> Topology:
    """Switches s1..sN in a row, host hI (10.0.0.I/8) on switch sI."""
    if n < 1:
        raise ValueError("linear(n) needs n >= 1")
    doc = {
        "name": f"linear-{n}",
        "switches": [{"name": f"s{i}", "dpid": i} for i in range(1, n + 1)],
        "links": [_link(f"s{i}", f"s{i + 1}") for i in range(1, n)],
        "hosts": [{"name": f"h{i}", "switch": f"s{i}", "ip": _ip(i)} for i in range(1, n + 1)],
    }
    return build(doc, f"<linear({n})>")


def tree(depth: int, fanout: int) -> Topology:
    """A tree of switches (as Mininet's TreeTopo): FANOUT children each, hosts under the bottom level."""
    if depth < 1 or fanout < 1:
        raise ValueError("tree(depth, fanout) needs depth >= 1 and fanout >= 1")
    switches: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    hosts: list[dict[str, Any]] = []
    level = [None]  # parents of the next level; the root has none
    for _ in range(depth):
        below = []
        for parent in level:
            for _ in range(1 if parent is None else fanout):
                name = f"s{len(switches) + 1}"
                switches.append({"name": name, "dpid": len(switches) + 1})
                if parent is not None:
                    links.append(_link(name, parent))  # upward link first: port 1 faces the root
                below.append(name)
        level = below
    for parent in level:
        for _ in range(fanout):
            n = len(hosts) + 1
            hosts.append({"name": f"h{n}", "switch": parent, "ip": _ip(n)})
    doc = {"name": f"tree-{depth}-{fanout}", "switches": switches, "links": links, "hosts": hosts}
    return build(doc, f"<tree({depth}, {fanout})>")


def leaf_spine(spines: int, leaves: int, hosts_per_leaf: int, computes_per_leaf: int) -> Topology:
    """Every leaf linked to every spine; on leaf J: hosts hJ_K (10.0.J.K/16) and compute hosts cJ_K.

    Leaf J's ports: 1..SPINES to the spines, then its hosts, then its compute hosts.
    """
    if spines < 1 or leaves < 1 or hosts_per_leaf < 0 or computes_per_leaf < 0:
        raise ValueError("leaf_spine needs at least one spine and one leaf")
    switches = [{"name": f"spine{i}", "dpid": (1 << 16) | i} for i in range(1, spines + 1)]
    switches += [{"name": f"leaf{j}", "dpid": (2 << 16) | j} for j in range(1, leaves + 1)]
    links = [_link(f"leaf{j}", f"spine{i}") for j in range(1, leaves + 1) for i in range(1, spines + 1)]
    hosts = [{"name": f"h{j}_{k}", "switch": f"leaf{j}", "ip": f"10.0.{j}.{k}/16"}
             for j in range(1, leaves + 1) for k in range(1, hosts_per_leaf + 1)]
    computes = [{"name": f"c{j}_{k}", "switch": f"leaf{j}",
                 "agent": _agent((j - 1) * computes_per_leaf + k)}
                for j in range(1, leaves + 1) for k in range(1, computes_per_leaf + 1)]
    doc = {"name": f"leaf-spine-{spines}-{leaves}", "switches": switches, "links": links,
           "hosts": hosts, "computes": computes}
    return build(doc, f"<leaf_spine({spines}, {leaves}, {hosts_per_leaf}, {computes_per_leaf})>")


def fat_tree(k: int, hosts_per_edge: int | None = None, computes_per_edge: int = 1) -> Topology:
    """The k-ary fat tree: (k/2)^2 cores, K pods of k/2 aggregation and k/2 edge switches.

    Aggregation switch I of a pod links to cores (I-1)*k/2+1 .. I*k/2; every edge
    switch links to every aggregation switch of its pod.  Edge switch E of pod P
    has hosts hP_E_H at 10.P.E.H/8 (k/2 of them unless told) and compute hosts cP_E
    (cP_E_N when more than one).
    """
    if k < 2 or k % 2:
        raise ValueError("fat_tree(k) needs an even k >= 2")
    half = k // 2
    hosts_per_edge = half if hosts_per_edge is None else hosts_per_edge
    switches = [{"name": f"core{i}", "dpid": (1 << 16) | i} for i in range(1, half * half + 1)]
    links = []
    hosts = []
    computes = []
    for p in range(1, k + 1):
        for i in range(1, half + 1):
            switches.append({"name": f"agg{p}_{i}", "dpid": (2 << 16) | (p << 8) | i})
            links += [_link(f"agg{p}_{i}", f"core{(i - 1) * half + c}") for c in range(1, half + 1)]
    for p in range(1, k + 1):
        for e in range(1, half + 1):
            edge = f"edge{p}_{e}"
            switches.append({"name": edge, "dpid": (3 << 16) | (p << 8) | e})
            links += [_link(edge, f"agg{p}_{i}") for i in range(1, half + 1)]
            hosts += [{"name": f"h{p}_{e}_{h}", "switch": edge, "ip": f"10.{p}.{e}.{h}/8"}
                      for h in range(1, hosts_per_edge + 1)]
            for n in range(1, computes_per_edge + 1):
                computes.append({"name": f"c{p}_{e}" + (f"_{n}" if computes_per_edge > 1 else ""),
                                 "switch": edge, "agent": _agent(len(computes) + 1)})
    doc = {"name": f"fat-tree-k{k}", "switches": switches, "links": links, "hosts": hosts,
           "computes": computes}
    return build(doc, f"<fat_tree({k})>")
