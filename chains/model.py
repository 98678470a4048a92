"""The chain model: what a validated chain file means, as frozen dataclasses.

Everything downstream (planner, flow compiler, agents) reads these; only the
loader (chains/loader.py) builds them, after validating the whole document.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17}

PortRange = tuple[int, int]  # inclusive; (0, 65535) is never stored: "any" is None


@dataclass(frozen=True)
class Classifier:
    """Which packets enter a chain.  ``protocol`` None and ports None mean any."""

    src: ipaddress.IPv4Network
    dst: ipaddress.IPv4Network
    protocol: int | None = None
    src_port: PortRange | None = None
    dst_port: PortRange | None = None


@dataclass(frozen=True)
class Scaling:
    """When to add (``out_above``) or remove (``in_below``) instances of a hop."""

    min: int = 1
    max: int = 1
    metric: str = "pps"          # "pps" or "bps"
    out_above: float | None = None
    in_below: float | None = None
    cooldown: float = 30.0       # seconds


@dataclass(frozen=True)
class Hop:
    name: str
    function: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    scaling: Scaling = field(default_factory=Scaling)


@dataclass(frozen=True)
class Chain:
    name: str
    classifier: Classifier
    hops: tuple[Hop, ...]
    description: str = ""
    symmetric: bool = False
    priority: int = 100
    on_failure: str = "open"     # "open": bypass a hop that is not ready; "closed": drop


@dataclass(frozen=True)
class CustomFunction:
    """A middlebox function given as a raw Click config in the document's ``functions:``.

    The config may use ``$INSTANCE_MAC`` and ``$UPLINK_MAC``; the renderer fills them in.
    """

    name: str
    click: str
    description: str = ""


@dataclass(frozen=True)
class ChainSet:
    """One validated document: its chains in order, and its custom functions."""

    chains: tuple[Chain, ...] = ()
    functions: Mapping[str, CustomFunction] = field(default_factory=lambda: MappingProxyType({}))
