"""Exports of a Topology: a networkx graph (for the controller) and a Mininet Topo.

This is the one module of ClickSteer that imports networkx: the controller's
core computes its paths through the functions here.  Mininet is imported only
when a Mininet Topo is asked for, so nothing else needs it installed.
"""

from __future__ import annotations

from typing import Any

import networkx

from topologies.model import Topology


def to_networkx(topo: Topology) -> networkx.Graph:
    """Nodes: every switch (``kind="switch"``, ``dpid``), host and compute host.

    Edges carry ``ports={node: port}``: the OpenFlow port on each switch end,
    None on a host's or compute host's end (the loader allows no parallel links).
    """
    graph = networkx.Graph(name=topo.name)
    for s in topo.switches:
        graph.add_node(s.name, kind="switch", dpid=s.dpid)
    for h in topo.hosts:
        graph.add_node(h.name, kind="host", ip=h.ip, mac=h.mac)
        graph.add_edge(h.name, h.switch, ports={h.switch: h.port, h.name: None})
    for c in topo.computes:
        graph.add_node(c.name, kind="compute", agent=c.agent, uplink_mac=c.uplink_mac, capacity=c.capacity)
        graph.add_edge(c.name, c.switch, ports={c.switch: c.port, c.name: None})
    for link in topo.links:
        graph.add_edge(link.a, link.b, ports={link.a: link.a_port, link.b: link.b_port})
    return graph


def switch_graph(topo: Topology) -> networkx.Graph:
    """The switches and the links between them: the graph paths are computed on."""
    graph = networkx.Graph(name=topo.name)
    graph.add_nodes_from(sorted(s.name for s in topo.switches))
    graph.add_edges_from((link.a, link.b) for link in topo.links)
    return graph


def hop_counts(graph: networkx.Graph, source: str) -> dict[str, int]:
    """Hop counts (breadth-first) from ``source`` to every node it reaches."""
    return networkx.single_source_shortest_path_length(graph, source)


def shortest_path(graph: networkx.Graph, source: str, target: str) -> list[str]:
    """One shortest path, as networkx picks it (no tie-breaking rule of ours)."""
    return networkx.shortest_path(graph, source, target)


def to_mininet(topo: Topology) -> Any:
    """A ``mininet.topo.Topo`` with the same switches (dpid), hosts (ip, mac) and port numbers.

    Compute hosts become plain Mininet hosts on their switch port.  Imports
    Mininet, so call it only where Mininet is installed.
    """
    from mininet.topo import Topo  # only when asked: Mininet is not a dependency

    mn = Topo()
    for s in topo.switches:
        mn.addSwitch(s.name, dpid=f"{s.dpid:016x}", protocols="OpenFlow13")
    for h in topo.hosts:
        mn.addHost(h.name, ip=h.ip.with_prefixlen, mac=h.mac)
        mn.addLink(h.name, h.switch, port2=h.port)
    for c in topo.computes:
        mn.addHost(c.name, mac=c.uplink_mac)
        mn.addLink(c.name, c.switch, port2=c.port)
    for link in topo.links:
        mn.addLink(link.a, link.b, port1=link.a_port, port2=link.b_port)
    return mn
