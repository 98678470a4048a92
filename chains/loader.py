"""Load and validate a chain document: YAML text or already-parsed JSON data -> ChainSet.

The whole document is checked before anything is returned; every problem is
collected and raised at once in one ConfigError.  Validation works on key
paths (``("chains", 1, "hops", 0, "params")``); a path is turned into a
line and column only when a problem is reported, by walking the positions
that chains.yamlsrc recorded.  Plain JSON data has no positions: its
problems are reported at 1:1 with their key path.
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import functools
import gc
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from chains import fields
from chains.catalog import CATALOG, check_custom_click, validate_params
from chains.errors import ConfigError, Problem
from chains.fields import Issue, check_keys, format_path
from chains.model import Chain, ChainSet, Classifier, CustomFunction, Hop, Scaling
from chains.yamlsrc import YDict, YList, load_yaml_keep_going, read_text

Path = tuple[str | int, ...]

TOP_KEYS = ("chains", "functions")
CHAIN_KEYS = ("name", "description", "classifier", "hops", "symmetric", "priority", "on_failure")
HOP_KEYS = ("name", "function", "params", "scaling")
SCALING_KEYS = ("min", "max", "metric", "out_above", "in_below", "cooldown")
FUNCTION_KEYS = ("click", "description")
ON_FAILURE = ("open", "closed")
METRICS = ("pps", "bps")
MAX_PRIORITY = 65535          # an OpenFlow priority is 16 bits
MAX_INSTANCES = 1000
_NO_SCALING = Scaling()      # immutable: one serves every hop that has no scaling


def load_chains(text: str, filename: str) -> ChainSet:
    """Parse and validate a YAML chain document; ConfigError with every problem otherwise."""
    with _no_gc():
        data, problems = load_yaml_keep_going(text, filename)
        try:
            return _validate(data, filename, problems)
        finally:
            # Drop the positional tree while the collector is still paused: alive when it
            # resumes, the tree (millions of objects) would be walked once for nothing.
            del data


def load_chain_file(path: str) -> ChainSet:
    """Read, parse and validate a chain file."""
    return load_chains(read_text(path), path)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cycle collector while loading: a document makes millions of small objects
    and no cycles, and collections triggered by the allocations alone halve the speed."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def chainset_from_data(data: Any, filename: str = "<request>") -> ChainSet:
    """Validate parsed data (from chains.yamlsrc, or plain JSON) and build the ChainSet."""
    return _validate(data, filename, [])


def _validate(data: Any, filename: str, problems: list[Problem]) -> ChainSet:
    """The ChainSet, or ConfigError with ``problems`` (found while reading) and the checker's."""
    checker = _Checker(data, filename)
    chainset = checker.document()
    if problems or checker.problems:
        raise ConfigError([*problems, *checker.problems])
    assert chainset is not None
    return chainset


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (params travel on as JSON)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class _Checker:
    def __init__(self, root: Any, filename: str) -> None:
        self.root = root
        self.filename = filename
        self.problems: list[Problem] = []
        self.broken_functions: set[str] = set()     # custom functions declared with problems

    # ---- reporting -----------------------------------------------------------------

    def position(self, path: Path, on_key: bool = False) -> tuple[int, int]:
        """Where ``path`` is in the file: the deepest part of it that has a position."""
        node = self.root
        pos = getattr(node, "pos", (1, 1))
        for depth, part in enumerate(path):
            if isinstance(node, YDict) and part in node:
                last = depth == len(path) - 1
                pos = node.key_pos[part] if on_key and last else node.value_pos[part]
            elif isinstance(node, YList) and isinstance(part, int) and 0 <= part < len(node):
                pos = node.item_pos[part]
            else:
                break
            node = node[part]
        return pos

    def error(self, path: Path, message: str, on_key: bool = False) -> None:
        line, col = self.position(path, on_key)
        self.problems.append(Problem(self.filename, line, col, message, format_path(path)))

    def report(self, prefix: Path, issues: Iterable[Issue]) -> None:
        for issue in issues:
            self.error(prefix + issue.path, issue.message, issue.on_key)

    def parse(self, data: Mapping[str, Any], key: str, path: Path, parser: Any, default: Any) -> Any:
        """``parser(data[key])``, reporting a ValueError at the key's value; ``default`` if absent."""
        if key not in data:
            return default
        try:
            return parser(data[key])
        except ValueError as exc:
            self.error((*path, key), str(exc))
            return default

    def mapping(self, value: Any, path: Path, what: str) -> bool:
        if isinstance(value, dict):
            return True
        self.error(path, f"{what} must be a mapping, got {fields.type_name(value)}")
        return False

    # ---- the document --------------------------------------------------------------

    def document(self) -> ChainSet | None:
        data = self.root
        if data is None:
            self.error((), "empty document: expected a mapping with a 'chains' list")
            return None
        if not self.mapping(data, (), "the document"):
            return None
        self.report((), check_keys(data, TOP_KEYS, ("chains",)))
        functions = self.functions(data.get("functions", {}))
        chains: list[Chain] = []
        if "chains" in data:
            items = data["chains"]
            if not isinstance(items, list):
                self.error(("chains",), f"chains must be a list, got {fields.type_name(items)}")
                items = []
            first_at: dict[str, int] = {}
            numbered: list[tuple[int, Chain]] = []
            for index, item in enumerate(items):
                chain = self.chain(item, ("chains", index), functions)
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and name in first_at:
                    self.error(("chains", index, "name"),
                               f"duplicate chain name {name!r} (first defined at chains[{first_at[name]}])")
                    chain = None
                elif isinstance(name, str):
                    first_at[name] = index
                if chain is not None:
                    numbered.append((index, chain))
            for index, _, message in find_overlaps(numbered):
                self.error(("chains", index, "classifier"), message)
            chains = [chain for _, chain in numbered]
        return ChainSet(tuple(chains), MappingProxyType(functions))

    def functions(self, data: Any) -> dict[str, CustomFunction]:
        path: Path = ("functions",)
        if not self.mapping(data, path, "functions"):
            return {}
        out = {}
        for name, spec in data.items():
            here = (*path, name)
            before = len(self.problems)
            try:
                fields.name(name)
                if name in CATALOG:
                    raise ValueError(f"{name!r} is a catalog function; give the custom function another name")
            except ValueError as exc:
                self.error(here, str(exc), on_key=True)
            if not self.mapping(spec, here, f"function {name!r}"):
                if name not in CATALOG:
                    self.broken_functions.add(name)
                continue
            self.report(here, check_keys(spec, FUNCTION_KEYS, ("click",)))
            description = self.parse(spec, "description", here, fields.text, "")
            click = self.parse(spec, "click", here, fields.text, None)
            if click is not None:
                for message in check_custom_click(click):
                    self.error((*here, "click"), message)
            if len(self.problems) == before:
                out[name] = CustomFunction(name, click, description)
            elif name not in CATALOG:
                self.broken_functions.add(name)
        return out

    def chain(self, data: Any, path: Path, functions: Mapping[str, CustomFunction]) -> Chain | None:
        if not self.mapping(data, path, "a chain"):
            return None
        before = len(self.problems)
        self.report(path, check_keys(data, CHAIN_KEYS, ("name", "classifier", "hops")))
        name = self.parse(data, "name", path, fields.name, None)
        description = self.parse(data, "description", path, fields.text, "")
        classifier = self.classifier(data["classifier"], (*path, "classifier")) if "classifier" in data else None
        hops = self.hops(data["hops"], (*path, "hops"), functions) if "hops" in data else ()
        symmetric = self.parse(data, "symmetric", path, fields.boolean, False)
        priority = self.parse(data, "priority", path, lambda v: fields.integer(v, 0, MAX_PRIORITY), 100)
        on_failure = self.parse(data, "on_failure", path, lambda v: fields.choice(v, ON_FAILURE), "open")
        if len(self.problems) > before or classifier is None:
            return None
        return Chain(name, classifier, hops, description, symmetric, priority, on_failure)

    def classifier(self, data: Any, path: Path) -> Classifier | None:
        if not self.mapping(data, path, "classifier"):
            return None
        self.report(path, check_keys(data, fields.MATCH_KEYS))
        match, issues = fields.match(data)
        self.report(path, issues)
        if match is None:
            return None
        return Classifier(match.src, match.dst, match.protocol, match.src_port, match.dst_port)

    def hops(self, data: Any, path: Path, functions: Mapping[str, CustomFunction]) -> tuple[Hop, ...]:
        if not isinstance(data, list):
            self.error(path, f"hops must be a list, got {fields.type_name(data)}")
            return ()
        if not data:
            self.error(path, "a chain needs at least one hop")
            return ()
        hops = []
        first_at: dict[str, int] = {}
        for index, item in enumerate(data):
            hop = self.hop(item, (*path, index), functions)
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in first_at:
                self.error((*path, index, "name"),
                           f"duplicate hop name {name!r} (first defined at hops[{first_at[name]}])")
            elif isinstance(name, str):
                first_at[name] = index
            if hop is not None:
                hops.append(hop)
        return tuple(hops)

    def hop(self, data: Any, path: Path, functions: Mapping[str, CustomFunction]) -> Hop | None:
        if not self.mapping(data, path, "a hop"):
            return None
        before = len(self.problems)
        self.report(path, check_keys(data, HOP_KEYS, ("name", "function")))
        name = self.parse(data, "name", path, fields.name, None)
        function = self.parse(data, "function", path, fields.text, None)
        params = data.get("params", {})
        if params is None:      # "params:" with nothing after it
            params = {}
        if function in self.broken_functions:
            pass                    # its own problems are reported under functions:
        elif function is not None and function not in CATALOG and function not in functions:
            known = [*CATALOG, *functions]
            hint = difflib.get_close_matches(function, known, n=1, cutoff=0.6)
            more = f" (did you mean {hint[0]!r}?)" if hint else f"; known functions: {', '.join(sorted(known))}"
            self.error((*path, "function"), f"unknown function {function!r}{more}")
        elif function is not None:
            self.report((*path, "params"), validate_params(function, params, functions))
        scaling = self.scaling(data["scaling"], (*path, "scaling")) if "scaling" in data else _NO_SCALING
        if len(self.problems) > before or scaling is None:
            return None
        return Hop(name, function, MappingProxyType(_plain(params)), scaling)

    def scaling(self, data: Any, path: Path) -> Scaling | None:
        if not self.mapping(data, path, "scaling"):
            return None
        before = len(self.problems)
        self.report(path, check_keys(data, SCALING_KEYS))
        count = functools.partial(fields.integer, lo=1, hi=MAX_INSTANCES)
        low = self.parse(data, "min", path, count, None)
        high = self.parse(data, "max", path, count, None)
        metric = self.parse(data, "metric", path, lambda v: fields.choice(v, METRICS), "pps")
        out_above = self.parse(data, "out_above", path, _finite(fields.number), None)
        in_below = self.parse(data, "in_below", path, _finite(fields.number), None)
        cooldown = self.parse(data, "cooldown", path, _finite(fields.duration), 30.0)
        if low is not None and high is not None and low > high:
            self.error((*path, "min"), f"min ({low}) is greater than max ({high})")
        if out_above is not None and in_below is not None and in_below >= out_above:
            self.error((*path, "in_below"),
                       f"in_below ({in_below:g}) must be less than out_above ({out_above:g}), or instances flap")
        if len(self.problems) > before:
            return None
        low = low if low is not None else 1
        high = high if high is not None else max(low, 1)
        return Scaling(low, high, metric, out_above, in_below, cooldown)


def _finite(parser: Callable[[Any], float]) -> Callable[[Any], float]:
    """``parser`` refusing NaN and infinity (YAML .nan/.inf, JSON NaN/Infinity): every comparison
    with NaN is false, so a NaN threshold or cooldown would switch scaling off without a word."""
    def parse(value: Any) -> float:
        number = parser(value)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {number}")
        return number
    return parse


# ---- overlapping classifiers ---------------------------------------------------------

@dataclass(frozen=True)
class _Flow:
    """One direction of a chain's classifier, as integer ranges."""

    chain: int
    reverse: bool
    src: tuple[int, int, int]       # (first address, last address, prefix length)
    dst: tuple[int, int, int]
    protocol: int | None
    src_port: tuple[int, int] | None
    dst_port: tuple[int, int] | None


def _span(net: Any) -> tuple[int, int, int]:
    first = int(net.network_address)
    return first, first | (0xFFFFFFFF >> net.prefixlen), net.prefixlen


def _flows(index: int, chain: Chain) -> list[_Flow]:
    c = chain.classifier
    flows = [_Flow(index, False, _span(c.src), _span(c.dst), c.protocol, c.src_port, c.dst_port)]
    if chain.symmetric:
        flows.append(_Flow(index, True, _span(c.dst), _span(c.src), c.protocol, c.dst_port, c.src_port))
    return flows


def _ranges_meet(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    return a is None or b is None or (a[0] <= b[1] and b[0] <= a[1])


def _flows_meet(a: _Flow, b: _Flow) -> bool:
    """Whether some packet matches both (the caller knows the addresses overlap)."""
    return ((a.protocol is None or b.protocol is None or a.protocol == b.protocol)
            and _ranges_meet(a.src_port, b.src_port) and _ranges_meet(a.dst_port, b.dst_port))


def _mask(length: int) -> int:
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF


def find_overlaps(chains: Sequence[tuple[int, Chain]]) -> list[tuple[int, int, str]]:
    """For (document index, chain) pairs: (index, earlier index, message) for each pair of chains
    whose classifiers overlap at the same priority, reported at the later chain.

    CIDR blocks are either nested or disjoint, so a flow B overlaps A only if
    A's source contains B's or the other way round.  Flows are indexed by
    source prefix, then by destination: for each flow we look up the sources
    that contain it (one dictionary probe per prefix length in use) and, among
    those, the destinations that contain it or lie inside it (probes, and a
    bisect over sorted starts).  Sources inside it are found when the inner
    flow itself is visited.  This keeps 10,000 chains well under a second.
    """
    by_index = dict(chains)
    by_priority: dict[int, list[_Flow]] = defaultdict(list)
    for index, chain in chains:
        by_priority[chain.priority].extend(_flows(index, chain))
    found: dict[tuple[int, int], tuple[bool, bool]] = {}
    for flows in by_priority.values():
        src_lengths = sorted({flow.src[2] for flow in flows})
        dst_lengths = sorted({flow.dst[2] for flow in flows})
        # src (first, length) -> dst (first, length) -> flows
        index: dict[tuple[int, int], dict[tuple[int, int], list[_Flow]]] = defaultdict(lambda: defaultdict(list))
        for flow in flows:
            index[flow.src[0], flow.src[2]][flow.dst[0], flow.dst[2]].append(flow)
        starts = {key: sorted(inner) for key, inner in index.items()}
        for flow in flows:
            for length in src_lengths:
                if length > flow.src[2]:
                    break
                key = (flow.src[0] & _mask(length), length)
                inner = index.get(key)
                if inner is None:
                    continue
                for other in _dst_overlapping(flow, inner, starts[key], dst_lengths):
                    if other.chain == flow.chain:
                        continue
                    first, second = sorted((other, flow), key=lambda f: f.chain)
                    found.setdefault((first.chain, second.chain), (first.reverse, second.reverse))
    out = []
    for (first, second), (first_reverse, second_reverse) in sorted(found.items(), key=lambda kv: kv[0][::-1]):
        which = " (in its reverse direction)" if second_reverse else ""
        theirs = " (reverse direction)" if first_reverse else ""
        out.append((second, first, f"classifier{which} overlaps that of chain {by_index[first].name!r}{theirs} "
                            f"(chains[{first}]) at the same priority {by_index[second].priority}: "
                            "give one of them another priority or narrow a classifier"))
    return out


def _dst_overlapping(flow: _Flow, inner: dict[tuple[int, int], list[_Flow]],
                     starts: list[tuple[int, int]], dst_lengths: list[int]) -> Iterable[_Flow]:
    first, last, length = flow.dst
    for shorter in dst_lengths:            # destinations containing this one (or equal)
        if shorter > length:
            break
        for other in inner.get((first & _mask(shorter), shorter), ()):
            if _flows_meet(flow, other):
                yield other
    at = bisect.bisect_left(starts, (first, length + 1))
    while at < len(starts) and starts[at][0] <= last:   # destinations strictly inside this one
        for other in inner[starts[at]]:
            if _flows_meet(flow, other):
                yield other
        at += 1
