"""Property tests: no input, valid or not, crashes the parser or the validator."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chains.errors import ConfigError
from clickos_agent.click.args import split_config
from clickos_agent.click.check import check
from clickos_agent.click.parser import parse, parse_collect

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
    args = split_config(text)
    assert all(a == a.strip(" \t\n\r\f\v") for a in args)
