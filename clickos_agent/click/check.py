"""The generic validator: what Click checks before a router runs.

It follows the order of Click 2.1's ``Router::initialize`` (lib/router.cc),
stopping after a stage with errors as Click does:

1. parse and flatten (parser.py): syntax, unknown classes, undeclared elements;
2. port counts: each element's inputs/outputs are the highest port used + 1,
   clamped to its ``port_count``; a connection to a port beyond is an error
   ("'e' has no input 2");
3. push/pull: agnostic ports take the processing of what they connect to,
   through the element's flow code; a push output connected to a pull input
   (or an agnostic element caught between both) is an error;
4. completeness: every port an element has must be connected ("'e' input 0
   unused"), a push output connects to exactly one input and a pull input to
   exactly one output ("illegal reuse of 'e' push output 0");
5. configuration: each element's ``configure`` gets its arguments, split as
   Click's cp_argvec does; an ``ArgError`` names the element and its class.

Only errors make a configuration fail; warnings are reported beside them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from chains.errors import ConfigError, Problem
from clickos_agent.click.args import split_config
from clickos_agent.click.element import ArgError, Element, NameScope, configure_order
from clickos_agent.click.graph import ElementDecl, RouterGraph
from clickos_agent.click.parser import default_registry, parse_collect

PUSH, PULL, AGNOSTIC = "h", "l", "a"
_MANY = 1 << 30         # "no upper bound" in a port count


@dataclass
class CheckResult:
    """What ``check`` found.  ``graph`` is the flattened graph (partial when the
    text has syntax errors); ``ok`` is what Click's verdict would be."""

    graph: RouterGraph
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # element name -> (input modes, output modes), "h"/"l" per port, once resolved
    modes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


# ---------------------------------------------------------------- port counts

_PAIR = re.compile(r"(\d*)(-?)(\d*)")


def parse_port_count(spec: str) -> tuple[int, int, int, int, int] | None:
    """Click's PORT_COUNT: ``(in_lo, in_hi, out_lo, out_hi, equal)`` or None if malformed.

    ``equal`` > 0 means outputs = inputs + equal - 1 (``"1-/="``, ``"1-/=+"``).
    """
    def pair(text: str) -> tuple[int, int] | None:
        m = _PAIR.fullmatch(text)
        if m is None or (m.group(1) == "" and m.group(2) == "" and text != ""):
            return None
        low = int(m.group(1)) if m.group(1) else 0
        if not m.group(2):
            if m.group(3):
                return None
            return low, low
        return low, int(m.group(3)) if m.group(3) else _MANY

    inside, slash, outside = spec.partition("/")
    if not slash:
        outside = inside
    ins = pair(inside)
    if ins is None:
        return None
    if outside.startswith("=") and set(outside[1:]) <= {"+"}:
        return ins[0], ins[1], 0, 0, len(outside)
    outs = pair(outside)
    if outs is None:
        return None
    return ins[0], ins[1], outs[0], outs[1], 0


def clamp_ports(spec: tuple[int, int, int, int, int], nin: int, nout: int) -> tuple[int, int]:
    """The port counts an element gets from the ports used (Click's notify_nports)."""
    in_lo, in_hi, out_lo, out_hi, equal = spec
    nin = min(max(nin, in_lo), in_hi)
    if equal:
        return nin, nin + equal - 1
    return nin, min(max(nout, out_lo), out_hi)


# ---------------------------------------------------------------- processing and flow

def processing_codes(spec: str, nin: int, nout: int) -> tuple[list[str], list[str]] | None:
    """Expand a PROCESSING string to one code per port (the last code repeats)."""
    inside, slash, outside = spec.partition("/")
    if not slash:
        outside = inside
    result = []
    for codes, n in ((inside, nin), (outside, nout)):
        codes = codes.lower()
        if any(c not in "hla" for c in codes):
            return None
        ports = []
        last = AGNOSTIC
        for i in range(n):
            if i < len(codes):
                last = codes[i]
            ports.append(last)
        result.append(ports)
    return result[0], result[1]


def _flow_tokens(side: str) -> list[str]:
    tokens = re.findall(r"\[[^\]]*\]|.", side)
    return tokens or ["x"]


def _flow_set(token: str, port: int) -> set[str]:
    negate = token.startswith("[^")
    body = token[2:-1] if negate else token[1:-1] if token.startswith("[") else token
    codes = {f"#{port}" if c == "#" else c for c in body}
    if negate:
        letters = {chr(c) for c in range(65, 91)} | {chr(c) for c in range(97, 123)}
        return (letters - codes) | {f"#{p}" for p in range(256) if f"#{p}" not in codes}
    return codes


def flows(flow_code: str | None, in_port: int, nout: int) -> list[int]:
    """Outputs that packets arriving on ``in_port`` may leave by (Click's port_flow)."""
    if not flow_code or flow_code == "x/x":
        return list(range(nout))
    inside, _, outside = flow_code.partition("/")
    in_tokens, out_tokens = _flow_tokens(inside), _flow_tokens(outside or inside)
    code = _flow_set(in_tokens[min(in_port, len(in_tokens) - 1)], in_port)
    return [o for o in range(nout)
            if code & _flow_set(out_tokens[min(o, len(out_tokens) - 1)], o)]


# ---------------------------------------------------------------- the checker

class _Checker:
    def __init__(self, graph: RouterGraph, registry: Mapping[str, type[Element]]) -> None:
        self.graph = graph
        self.registry = registry
        self.errors: list[Problem] = []
        self.decls = list(graph.elements.values())
        self.nin: dict[str, int] = {}
        self.nout: dict[str, int] = {}
        self.inputs: dict[str, list[str]] = {}
        self.outputs: dict[str, list[str]] = {}

    def error(self, decl: ElementDecl, message: str) -> None:
        self.errors.append(Problem(decl.file, decl.line, decl.col, message, decl.name))

    def desc(self, name: str) -> str:
        """How Click names an element in hookup errors: ``'name :: Class'``."""
        return f"'{name} :: {self.graph.elements[name].cls}'"

    def port_counts(self) -> bool:
        used_in = {d.name: 0 for d in self.decls}
        used_out = {d.name: 0 for d in self.decls}
        for c in self.graph.connections:
            used_out[c.src] = max(used_out[c.src], c.src_port + 1)
            used_in[c.dst] = max(used_in[c.dst], c.dst_port + 1)
        for d in self.decls:
            spec = parse_port_count(self.registry[d.cls].port_count)
            if spec is None:
                self.error(d, f"{d.name} :: {d.cls}: bad port count")
                continue
            self.nin[d.name], self.nout[d.name] = clamp_ports(spec, used_in[d.name], used_out[d.name])
        if self.errors:
            return False
        for c in self.graph.connections:
            if c.src_port >= self.nout[c.src]:
                self.error(self.graph.elements[c.src], f"{self.desc(c.src)} has no output {c.src_port}")
            if c.dst_port >= self.nin[c.dst]:
                self.error(self.graph.elements[c.dst], f"{self.desc(c.dst)} has no input {c.dst_port}")
        return not self.errors

    def push_pull(self) -> bool:
        for d in self.decls:
            cls = self.registry[d.cls]
            codes = processing_codes(cls.processing, self.nin[d.name], self.nout[d.name])
            if codes is None:
                self.error(d, "bad processing code")
                continue
            self.inputs[d.name], self.outputs[d.name] = codes
        if self.errors:
            return False
        # (src, out port, dst, in port, agnostic pass-through?) as in Click's check_push_and_pull
        links = [(c.src, c.src_port, c.dst, c.dst_port, False) for c in self.graph.connections]
        for d in self.decls:
            flow_code = getattr(self.registry[d.cls], "flow_code", None)
            for i, mode in enumerate(self.inputs[d.name]):
                if mode != AGNOSTIC:
                    continue
                for o in flows(flow_code, i, self.nout[d.name]):
                    if self.outputs[d.name][o] == AGNOSTIC:
                        links.append((d.name, o, d.name, i, True))
        dead: set[int] = set()
        changed = True
        while changed:
            changed = False
            for n, (src, sport, dst, dport, internal) in enumerate(links):
                if n in dead:
                    continue
                pf = self.outputs[src][sport]
                pt = self.inputs[dst][dport]
                if pt == AGNOSTIC:
                    if pf != AGNOSTIC:
                        self.inputs[dst][dport] = pf
                        changed = True
                elif pf == AGNOSTIC:
                    self.outputs[src][sport] = pt
                    changed = True
                elif pf != pt:
                    kind, other = ("push", "pull") if pf == PUSH else ("pull", "push")
                    decl = self.graph.elements[src]
                    if internal:
                        self.error(decl, f"agnostic {self.desc(src)} in mixed context: {other} input "
                                         f"{dport}, {kind} output {sport}")
                    else:
                        self.error(decl, f"{self.desc(src)} {kind} output {sport} connected to "
                                         f"{self.desc(dst)} {other} input {dport}")
                    dead.add(n)
        return not self.errors

    def completeness(self) -> bool:
        by_output: dict[tuple[str, int], int] = {}
        by_input: dict[tuple[str, int], int] = {}
        for c in self.graph.connections:
            by_output[(c.src, c.src_port)] = by_output.get((c.src, c.src_port), 0) + 1
            by_input[(c.dst, c.dst_port)] = by_input.get((c.dst, c.dst_port), 0) + 1
        for d in self.decls:
            # unresolved agnostic outputs act as push, inputs as push (Click's initialize_ports)
            for i, mode in enumerate(self.inputs[d.name]):
                if mode == PULL and by_input.get((d.name, i), 0) > 1:
                    self.error(d, f"illegal reuse of {self.desc(d.name)} pull input {i}")
            for o, mode in enumerate(self.outputs[d.name]):
                if mode != PULL and by_output.get((d.name, o), 0) > 1:
                    self.error(d, f"illegal reuse of {self.desc(d.name)} push output {o}")
        for d in self.decls:
            for i in range(self.nin[d.name]):
                if (d.name, i) not in by_input:
                    self.error(d, f"{self.desc(d.name)} input {i} unused")
            for o in range(self.nout[d.name]):
                if (d.name, o) not in by_output:
                    self.error(d, f"{self.desc(d.name)} output {o} unused")
        return not self.errors

    def configure(self) -> None:
        names = NameScope()
        elements: list[Element] = []
        for d in self.decls:
            element = self.registry[d.cls](d.name, self.nin[d.name], self.nout[d.name])
            element.config = d.config
            element.names = names
            names.elements[d.name] = element
            # the resolved processing, as the runtime sets it before configure
            element.input_modes = [m if m == PULL else PUSH for m in self.inputs[d.name]]
            element.output_modes = [PULL if m == PULL else PUSH for m in self.outputs[d.name]]
            elements.append(element)
        failures: dict[str, str] = {}
        for element in configure_order(elements):
            try:
                element.configure(split_config(element.config))
            except ArgError as e:
                failures[element.name] = str(e)
            except Exception as e:  # an element's bug must not crash the checker
                failures[element.name] = f"internal error: {type(e).__name__}: {e}"
        # reported in declaration order, whatever the configure order
        for d in self.decls:
            if d.name in failures:
                self.error(d, f"While configuring '{d.name} :: {d.cls}': {failures[d.name]}")
        if failures:
            return
        # what Click's initialize checks regardless of the host (handler calls, names)
        for d, element in zip(self.decls, elements):
            try:
                element.resolve()
            except ArgError as e:
                self.error(d, f"While initializing '{d.name} :: {d.cls}': {e}")
            except Exception as e:  # an element's bug must not crash the checker
                self.error(d, f"While initializing '{d.name} :: {d.cls}': "
                              f"internal error: {type(e).__name__}: {e}")

    def modes(self) -> dict[str, tuple[str, str]]:
        return {d.name: ("".join(PULL if m == PULL else PUSH for m in self.inputs[d.name]),
                         "".join(PULL if m == PULL else PUSH for m in self.outputs[d.name]))
                for d in self.decls}


def check(text: str, filename: str = "<config>",
          registry: Mapping[str, type[Element]] | None = None) -> CheckResult:
    """Parse and validate a Click configuration as Click 2.1 would before running it.

    ``registry`` maps class names to element classes (default: the catalog).
    """
    registry = default_registry() if registry is None else registry
    graph, errors, warnings = parse_collect(text, filename, registry.keys())
    result = CheckResult(graph, errors, warnings)
    if errors:
        return result
    if not graph.elements:
        result.warnings.append(Problem(filename, 1, 1, "configuration has no elements"))
    checker = _Checker(graph, registry)
    if checker.port_counts() and checker.push_pull() and checker.completeness():
        checker.configure()
        result.modes = checker.modes()
    result.errors = checker.errors
    return result


def check_or_raise(text: str, filename: str = "<config>",
                   registry: Mapping[str, type[Element]] | None = None) -> RouterGraph:
    """The flat graph of a valid configuration; raises ConfigError listing every error."""
    result = check(text, filename, registry)
    if result.errors:
        raise ConfigError(result.errors)
    return result.graph
