"""The topology model: a fabric as plain data (as Mininet's Topo is).

Built only by the loader or the generators (topologies/loader.py,
topologies/generators.py), after validation; every port number is resolved
here, so the emulator, the controller and the tests agree on them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Switch:
    name: str
    dpid: int


@dataclass(frozen=True)
class Host:
    """An end host (a network namespace in the emulation) on one switch port."""

    name: str
    ip: ipaddress.IPv4Interface      # address with its prefix, e.g. 10.0.0.1/16
    mac: str                          # lowercase, colon separated
    switch: str
    port: int                         # OpenFlow port on ``switch``


@dataclass(frozen=True)
class ComputeHost:
    """A host that runs middlebox instances behind its host switch (VALE or its stand-in).

    ``uplink_mac`` is the address instances send their packets back to; the
    fabric switch sets it as source when handing packets in, so the learning
    host switch knows where it lives.
    """

    name: str
    switch: str
    port: int                         # OpenFlow port on ``switch`` towards the host switch
    agent: str                        # "ADDRESS:PORT" where the host's agent listens
    uplink_mac: str
    capacity: int = 64                # instances the host can run


@dataclass(frozen=True)
class Link:
    """A switch-to-switch link with its OpenFlow port number on each side."""

    a: str
    b: str
    a_port: int
    b_port: int


@dataclass(frozen=True)
class Topology:
    name: str
    switches: tuple[Switch, ...]
    hosts: tuple[Host, ...] = ()
    computes: tuple[ComputeHost, ...] = ()
    links: tuple[Link, ...] = ()

    @cached_property
    def switch_by_name(self) -> dict[str, Switch]:
        return {s.name: s for s in self.switches}

    @cached_property
    def host_by_name(self) -> dict[str, Host]:
        return {h.name: h for h in self.hosts}

    @cached_property
    def compute_by_name(self) -> dict[str, ComputeHost]:
        return {c.name: c for c in self.computes}
