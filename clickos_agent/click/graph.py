"""A flattened Click router graph, as ``click-flatten`` would print it.

The parser (parser.py) produces it; the validator and the runtime consume it.
Compound elements and element groups are already expanded: names of their
inner elements are ``outer/inner`` as in Click, anonymous elements are
``Class@N``, and configurations have their ``$variables`` substituted.
Elements are in declaration order, each compound's inner elements after the
top-level ones; duplicate connections are merged, as Click's router does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ElementDecl:
    name: str          # e.g. "c", "Classifier@3", "fw/filter"
    cls: str           # element class, e.g. "Classifier"
    config: str        # the raw configuration string, without the outer parentheses
    line: int          # where it was declared (1-based); inside a compound, in its body
    col: int
    file: str = "<config>"


@dataclass(frozen=True)
class Connection:
    src: str           # element name
    src_port: int
    dst: str
    dst_port: int
    line: int          # where the connection (its arrow) was written
    col: int


@dataclass
class RouterGraph:
    elements: dict[str, ElementDecl] = field(default_factory=dict)   # in declaration order
    connections: list[Connection] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)     # from require(...)
    file: str = "<config>"
