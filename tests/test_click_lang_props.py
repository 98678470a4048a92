"""Property tests: no input, valid or not, crashes the parser or the validator."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chains.errors import ConfigError
from clickos_agent.click.args import split_config
from clickos_agent.click.check import check
from clickos_agent.click.parser import parse, parse_collect
from tests.test_click_check import REGISTRY

CLASSES = {"Idle", "Discard", "Queue", "Tee", "Null", "Counter", "Classifier", "Unqueue"}

# fragments of the language, so random inputs reach deep into the grammar
FRAGMENTS = ["Idle", "Discard", "Queue", "Tee(2)", "Null", "Counter", "a", "b", "c", "x/y",
             "::", "->", "=>", ",", ";", "[", "]", "[0]", "[1]", "[0-2]", "[]", "(", ")", "{", "}",
             "|", "||", "...", "$a", "$b", "input", "output", "elementclass", "E", "define",
             "require", "provide", "(5)", "('a)", '"b)"', "/*", "*/", "//", "\n", " ", "#",
             "#1 \"f\"\n", "12", "-", "@", "__REST__", "KEY", "\\<0a>"]

source = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(" ".join),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(source)
def test_parser_never_crashes(text: str) -> None:
    graph, errors, warnings = parse_collect(text, "p.click", CLASSES)
    try:
        assert parse(text, "p.click", CLASSES) == graph
        assert not errors
    except ConfigError as e:
        assert e.problems and errors
    for problem in errors + warnings:
        assert problem.line >= 1 and problem.col >= 1 and problem.message
    for c in graph.connections:
        assert c.src in graph.elements and c.dst in graph.elements
        assert c.src_port >= 0 and c.dst_port >= 0


@SETTINGS
@given(source)
def test_validator_never_crashes(text: str) -> None:
    result = check(text, "p.click")
    assert result.ok == (not result.errors)
    for problem in result.errors:
        assert problem.line >= 1 and problem.message


@SETTINGS
@given(st.text(max_size=60))
def test_split_config_never_crashes(text: str) -> None:
    space = " \t\n\r\f\v"
    for arg in split_config(text):
        # outer space is stripped, except what an unterminated quote swallows (as in Click)
        assert arg == arg.lstrip(space)
        assert arg == arg.rstrip(space) or "'" in arg or '"' in arg


# ---------------------------------------------------------------- valid configurations and corruptions

@st.composite
def chains(draw: st.DrawFn) -> list[list[str]]:
    """Chains Source -> (Pass | C | named pass)* -> Sink, as lists of element words."""
    result = []
    for n in range(draw(st.integers(1, 4))):
        middle = draw(st.lists(st.sampled_from(["Pass", "C", "Pass()", "{ input -> Pass -> output }"]),
                               max_size=4))
        named = [f"p{n}_{i} :: {m}" if draw(st.booleans()) else m for i, m in enumerate(middle)]
        result.append(["Source", *named, "Sink"])
    return result


def render(chain_list: list[list[str]], sep: str) -> str:
    header = "elementclass C { input -> Pass -> output }\n"
    return header + "\n".join(f" ->{sep}".join(chain) + ";" for chain in chain_list)


SEPARATORS = st.sampled_from([" ", "\n", " /* c */ ", " // c\n", "\t"])


@SETTINGS
@given(chains(), SEPARATORS)
def test_valid_configurations_pass(chain_list: list[list[str]], sep: str) -> None:
    result = check(render(chain_list, sep), "v.click", REGISTRY)
    assert result.ok, result.errors


@SETTINGS
@given(chains(), SEPARATORS, st.data())
def test_every_corruption_is_reported(chain_list: list[list[str]], sep: str, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, len(chain_list) - 1))
    kind = data.draw(st.sampled_from(["undeclared", "unused", "push-to-pull", "bad-arg", "syntax"]))
    chain = list(chain_list[n])
    if kind == "undeclared":
        chain.insert(1, "nowhere")
    elif kind == "unused":
        chain.pop()
    elif kind == "push-to-pull":
        chain[-1] = "PullSink"
    elif kind == "bad-arg":
        chain.insert(1, "Pass(1)")
    else:
        chain.insert(1, "->")
    text = render(chain_list[:n] + [chain] + chain_list[n + 1:], sep)
    result = check(text, "v.click", REGISTRY)
    assert not result.ok
    lines = text.count("\n") + 1
    assert all(1 <= e.line <= lines for e in result.errors)
