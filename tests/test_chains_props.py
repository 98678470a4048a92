"""Properties of the chain language: the indexed overlap check against brute force, and no input
ever ends in a traceback."""

from __future__ import annotations

import ipaddress
from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from chains.errors import ConfigError
from chains.loader import chainset_from_data, find_overlaps, load_chains
from chains.model import Chain, Classifier, Hop

NETWORKS = [ipaddress.IPv4Network(text) for text in (
    "0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/16", "10.0.1.0/24", "10.0.2.0/24", "10.0.1.0/25", "10.0.1.128/25",
    "10.0.1.1/32", "10.0.2.1/32", "10.1.0.0/16", "192.168.0.0/16")]
PORTS = [None, (80, 80), (1, 1024), (1000, 2000), (443, 443), (8000, 8099)]


@st.composite
def chain_lists(draw) -> list[tuple[int, Chain]]:
    chains = []
    for index in range(draw(st.integers(0, 12))):
        protocol = draw(st.sampled_from([None, 1, 6, 17, 47]))
        ports = protocol in (6, 17)
        classifier = Classifier(draw(st.sampled_from(NETWORKS)), draw(st.sampled_from(NETWORKS)), protocol,
                                draw(st.sampled_from(PORTS)) if ports else None,
                                draw(st.sampled_from(PORTS)) if ports else None)
        chains.append((index, Chain(f"c{index}", classifier, (Hop("a", "monitor"),),
                                    symmetric=draw(st.booleans()), priority=draw(st.sampled_from([100, 200])))))
    return chains


def directions(chain: Chain) -> list[tuple]:
    c = chain.classifier
    out = [(c.src, c.dst, c.protocol, c.src_port, c.dst_port)]
    if chain.symmetric:
        out.append((c.dst, c.src, c.protocol, c.dst_port, c.src_port))
    return out


def meet(a, b) -> bool:
    return a is None or b is None or (a[0] <= b[1] and b[0] <= a[1])


def brute_force(chains: list[tuple[int, Chain]]) -> set[tuple[int, int]]:
    pairs = set()
    for (i, a), (j, b) in combinations(chains, 2):
        if a.priority != b.priority:
            continue
        for x in directions(a):
            for y in directions(b):
                if (x[0].overlaps(y[0]) and x[1].overlaps(y[1])
                        and (x[2] is None or y[2] is None or x[2] == y[2])
                        and meet(x[3], y[3]) and meet(x[4], y[4])):
                    pairs.add((j, i))
    return pairs


@settings(max_examples=300, deadline=None)
@given(chain_lists())
def test_indexed_overlap_check_equals_brute_force(chains):
    assert {(index, other) for index, other, _ in find_overlaps(chains)} == brute_force(chains)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-70000, 70000) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["chains", "functions", "name", "classifier", "hops", "function", "params", "src",
                         "dst", "protocol", "dst_port", "scaling", "min", "max", "rules", "x"]), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_any_json_data_gives_a_chainset_or_a_config_error(data):
    try:
        chainset_from_data(data)
    except ConfigError as exc:
        assert exc.problems and all(p.line == 1 and p.col == 1 for p in exc.problems)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="chains:- {}[],'\"\t\n #&*!|>name0.1/", max_size=60))
def test_any_text_gives_a_chainset_or_a_config_error(text):
    try:
        load_chains(text, "t.yaml")
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line >= 1 and problem.col >= 1 and problem.file == "t.yaml"
