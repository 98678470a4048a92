"""The generic validator (clickos_agent.click.check) and ``clicksteer click check``.

Expected verdicts follow Click 2.1's Router::initialize (lib/router.cc).
Most tests use small element classes defined here, so they do not depend on
the catalog; the last ones run real catalog configurations.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chains.errors import ConfigError
from clickos_agent.click.args import Spec, parse_keywords, parse_uint
from clickos_agent.click.check import (
    check, check_or_raise, clamp_ports, flows, parse_port_count, processing_codes,
)
from clickos_agent.click.element import ArgError, Element
from controller.cli import main


class Source(Element):
    class_name = "Source"
    port_count = "0/1"
    processing = "h/h"


class PullSource(Element):
    class_name = "PullSource"
    port_count = "0/1"
    processing = "l/l"


class Sink(Element):
    class_name = "Sink"
    port_count = "1/0"
    processing = "a/a"


class PullSink(Element):
    class_name = "PullSink"
    port_count = "1/0"
    processing = "l/l"


class Pass(Element):
    class_name = "Pass"             # 1/1 agnostic, complete flow


class Q(Element):
    class_name = "Q"
    port_count = "1/1"
    processing = "h/l"

    def configure(self, args: list[str]) -> None:
        self.capacity = parse_keywords(args, [Spec("CAPACITY", parse_uint, positional=True,
                                                   default=1000)])["CAPACITY"]


class Fan(Element):
    """Like Tee(N): N must equal the number of outputs."""

    class_name = "Fan"
    port_count = "1/1-"
    processing = "h/h"

    def configure(self, args: list[str]) -> None:
        n = parse_keywords(args, [Spec("N", parse_uint, positional=True)])["N"]
        if n is not None and n != self.noutputs:
            raise ArgError(f"{n} arguments implies {n} outputs, have {self.noutputs}")


class Mixed(Element):
    """Two agnostic inputs and outputs, input i flows only to output i."""

    class_name = "Mixed"
    port_count = "2/2"
    processing = "a/a"
    flow_code = "#/#"


class Crashy(Element):
    class_name = "Crashy"

    def configure(self, args: list[str]) -> None:
        raise ZeroDivisionError("boom")


REGISTRY: dict[str, type[Element]] = {
    c.class_name: c for c in (Source, PullSource, Sink, PullSink, Pass, Q, Fan, Mixed, Crashy)}


def messages(text: str) -> list[str]:
    return [p.message for p in check(text, "t.click", REGISTRY).errors]


# ---------------------------------------------------------------- helpers

def test_port_count_syntax() -> None:
    assert parse_port_count("1/1") == (1, 1, 1, 1, 0)
    assert parse_port_count("2") == (2, 2, 2, 2, 0)
    assert parse_port_count("1-/=") == (1, 1 << 30, 0, 0, 1)
    assert parse_port_count("1/1-2")[2:4] == (1, 2)
    assert parse_port_count("-/-")[:2] == (0, 1 << 30)
    assert parse_port_count("x/1") is None
    assert clamp_ports(parse_port_count("1/1-2"), 0, 5) == (1, 2)
    assert clamp_ports(parse_port_count("1-/=+"), 3, 0) == (3, 4)


def test_processing_codes_repeat_last() -> None:
    assert processing_codes("a/ah", 1, 3) == (["a"], ["a", "h", "h"])
    assert processing_codes("h", 2, 1) == (["h", "h"], ["h"])
    assert processing_codes("q/h", 1, 1) is None


def test_flow_codes() -> None:
    assert flows(None, 0, 3) == [0, 1, 2]
    assert flows("x/y", 0, 2) == []
    assert flows("#/#", 1, 3) == [1]
    assert flows("xy/x", 1, 1) == []
    assert flows("[^x]/x", 0, 1) == []


# ---------------------------------------------------------------- accepted configurations

def test_valid_push_to_pull_chain() -> None:
    result = check("Source -> q :: Q(5) -> PullSink", "t.click", REGISTRY)
    assert result.ok and not result.warnings
    assert result.modes["q"] == ("h", "l")
    assert result.graph.elements["q"].config == "5"


def test_agnostic_resolves_through_chain() -> None:
    result = check("Source -> Q -> Pass -> Pass -> PullSink", "t.click", REGISTRY)
    assert result.ok
    assert result.modes["Pass@3"] == ("l", "l")


def test_flow_code_keeps_agnostic_paths_apart() -> None:
    text = "m :: Mixed; Source -> [0]m[0] -> Sink; PullSource -> [1]m[1] -> PullSink"
    assert messages(text) == []


def test_empty_configuration_is_accepted_with_warning() -> None:
    result = check("// nothing\n", "t.click", REGISTRY)
    assert result.ok and [w.message for w in result.warnings] == ["configuration has no elements"]


def test_check_or_raise_returns_graph() -> None:
    assert set(check_or_raise("Source -> Sink", "t", REGISTRY).elements) == {"Source@1", "Sink@2"}
    with pytest.raises(ConfigError):
        check_or_raise("Source -> Nope -> Sink", "t", REGISTRY)


# ---------------------------------------------------------------- each error class

@pytest.mark.parametrize("text, message", [
    ("Source -> Nope -> Sink", "undeclared element 'Nope'"),
    ("s :: Spring; Source -> s", "unknown element class 'Spring'"),
    ("Source -> [1]Sink", "'Sink@2 :: Sink' has no input 1"),
    ("s :: Source; s[1] -> Sink; s -> Sink", "'s :: Source' has no output 1"),
    ("Source; Source -> Sink", "'Source@1 :: Source' output 0 unused"),
    ("Sink", "'Sink@1 :: Sink' input 0 unused"),
    ("f :: Fan; Source -> f; f[1] -> Sink", "'f :: Fan' output 0 unused"),
    ("Source -> PullSink", "'Source@1 :: Source' push output 0 connected to "
                           "'PullSink@2 :: PullSink' pull input 0"),
    ("PullSource -> Q", "'PullSource@1 :: PullSource' pull output 0 connected to 'Q@2 :: Q' push input 0"),
    ("p :: Pass; Source -> p -> PullSink",
     "agnostic 'p :: Pass' in mixed context: push input 0, pull output 0"),
    ("s :: Source; s -> Sink; s -> Sink", "illegal reuse of 's :: Source' push output 0"),
    ("Source -> q :: Q(lots) -> PullSink", "While configuring 'q :: Q': CAPACITY: expected unsigned integer"),
    ("Source -> Q(1, 2) -> PullSink", "While configuring 'Q@2 :: Q': too many arguments"),
    ("Source -> Pass(x) -> Sink", "While configuring 'Pass@2 :: Pass': too many arguments"),
    ("Source -> f :: Fan(2) -> Sink", "While configuring 'f :: Fan': 2 arguments implies 2 outputs, have 1"),
    ("Source -> Crashy -> Sink",
     "While configuring 'Crashy@2 :: Crashy': internal error: ZeroDivisionError: boom"),
])
def test_error_classes(text: str, message: str) -> None:
    assert message in messages(text)


def test_pull_input_reuse() -> None:
    text = "a :: PullSource; b :: PullSource; s :: PullSink; a -> s; b -> s"
    assert "illegal reuse of 's :: PullSink' pull input 0" in messages(text)


def test_push_input_and_pull_output_accept_many_connections() -> None:
    assert messages("a :: Source; b :: Source; s :: Sink; a -> s; b -> s") == []
    assert messages("q :: Q; Source -> q; q -> PullSink; q -> PullSink") == []


def test_stages_stop_like_click() -> None:
    # a port-range error hides push/pull, completeness and configuration problems
    assert messages("Source -> [1]q :: Q(lots)") == ["'q :: Q' has no input 1"]


def test_errors_name_element_and_line() -> None:
    result = check("Source\n  -> q :: Q(x)\n  -> PullSink", "t.click", REGISTRY)
    [error] = result.errors
    assert (error.file, error.line, error.col, error.path) == ("t.click", 2, 6, "q")


# ---------------------------------------------------------------- with the real catalog

@pytest.mark.parametrize("text", [
    "Idle -> Queue(10) -> Discard;",
    "Idle -> c :: Classifier(12/0800, -); c[0] -> Discard; c[1] -> Counter -> Discard;",
    "Idle -> t :: Tee(2); t[0] -> Discard; t[1] -> Discard;",
    "elementclass Q2 { $n | input -> Queue($n) -> output } Idle -> Q2(5) -> Discard",
])
def test_real_catalog_accepts(text: str) -> None:
    result = check(text, "real.click")
    assert result.ok, result.errors


@pytest.mark.parametrize("text", [
    "Idle -> Queue(-1) -> Discard;",
    "Idle -> Queue -> Counter -> Queue -> Discard;",      # pull output into a push input
    "Idle -> c :: Classifier(12/0800, -); c[0] -> Discard;",   # output 1 unused
    "Discard",
])
def test_real_catalog_rejects(text: str) -> None:
    assert not check(text, "real.click").ok


# ---------------------------------------------------------------- the command

def test_cli_prints_compiler_style(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.click"
    good.write_text("Idle -> Discard;\n")
    bad = tmp_path / "bad.click"
    bad.write_text("Idle\n -> x -> Discard;\n")
    assert main(["click", "check", str(good)]) == 0
    assert main(["click", "check", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:5: error: undeclared element 'x'" in err


def test_cli_warnings_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.click"
    empty.write_text("")
    assert main(["click", "check", str(empty)]) == 0
    assert "warning: configuration has no elements" in capsys.readouterr().err


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["click", "check", str(tmp_path / "none.click")]) == 1


def test_click_lexer03_port_reuse_and_missing_ports() -> None:
    # test/tools/lexer-03.clicktest in Click's repository, with this file's classes
    assert messages("i::Source -> Pass -> d::Sink;\nSource -> Pass -> d;") == []
    result = check("i::Source -> Pass -> d::Sink;\ni -> Pass -> d;", "Y", REGISTRY)
    assert [(e.line, e.message) for e in result.errors] == [
        (1, "illegal reuse of 'i :: Source' push output 0")]
    result = check("i::Source -> Pass -> d::Sink;\nSource -> p::Pass;", "Z", REGISTRY)
    assert [(e.line, e.message) for e in result.errors] == [(2, "'p :: Pass' output 0 unused")]
