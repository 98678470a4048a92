"""A flattened Click router graph, as ``click-flatten`` would print it.

The parser (parser.py) produces it; the validator and the runtime consume it.
Compound elements are already expanded: names of their inner elements are
``outer/inner`` as in Click.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ElementDecl:
    name: str          # e.g. "c", "Classifier@3", "fw/filter"
    cls: str           # element class, e.g. "Classifier"
    config: str        # the raw configuration string, without the outer parentheses
    line: int          # where it was declared (1-based)
    col: int
    file: str = "<config>"


@dataclass(frozen=True)
class Connection:
    src: str           # element name
    src_port: int
    dst: str
    dst_port: int
    line: int
    col: int


@dataclass
class RouterGraph:
    elements: dict[str, ElementDecl] = field(default_factory=dict)   # in declaration order
    connections: list[Connection] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    file: str = "<config>"
