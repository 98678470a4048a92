"""Regressions from differential testing against Click 2.1: each verdict here is Click's.

The configurations were run through a Click 2.1 user-level build (``click -q``);
the expected verdicts and messages are hard-coded, so no binary is needed.
"""

from __future__ import annotations

import pytest

from clickos_agent.click.check import check


def _errors(text: str) -> list[str]:
    return [p.message for p in check(text, "c.click").errors]


@pytest.mark.parametrize("text, message", [
    # user-level ToDevice pulls (l/h): a push source needs a Queue in between
    ("FromDevice(0) -> Tee -> ToDevice(0)", "push output 0 connected to 'ToDevice@3 :: ToDevice' pull input 0"),
    ("FromDevice(0) -> ToDevice(0)", "pull input 0"),
    # string arguments: an unquoted space is a parse error (Click's StringArg / FilenameArg)
    ("Idle -> Print(0 1) -> Discard", "LABEL: parse error"),
    ("Idle -> Print(a b) -> Discard", "a: unknown argument"),
    ("Idle -> ToDump(a b)", "FILENAME: parse error"),
    ("Idle -> ToDump(\"\")", "FILENAME: parse error"),
    ("FromDump(a b) -> Discard", "FILENAME: parse error"),
    ("FromDevice(a b) -> Discard", "DEVNAME: parse error"),
    ("Idle -> Queue -> ToDevice(lo lo)", "DEVNAME: parse error"),
    # CheckIPHeader's only positional form is an unsigned OFFSET
    ("Idle -> CheckIPHeader(-1) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(10.0.0.1) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(1.0.0.1 2.0.0.1) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(1.0.0.1, 14) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(4294967296) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(, 14) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(OFFSET -1) -> Discard", "OFFSET:"),
    # AverageCounter's IGNORE is a whole number of seconds
    ("Idle -> AverageCounter(IGNORE 1.5) -> Discard", "IGNORE:"),
    ("Idle -> AverageCounter(IGNORE 10ms) -> Discard", "IGNORE:"),
    # IPRewriter's named patterns resolve at configure time, within compound scope
    ("Idle -> IPRewriter(pattern foo 0 0) -> Discard", "input spec 0: no such pattern 'foo'"),
    ("p :: IPRewriterPatterns(foo 1.0.0.1 - - -); Idle -> IPRewriter(pattern bar 0 0) -> Discard",
     "no such pattern 'bar'"),
    ("p :: IPRewriterPatterns(foo 1.0.0.1 - - -); q :: IPRewriterPatterns(foo 1.0.0.2 - - -)",
     "pattern 'foo' already defined"),
    ("p :: IPRewriterPatterns(foo 1.0.0.1 - - -, foo 1.0.0.2 - - -)", "pattern 'foo' already defined"),
    ("elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
     "Idle -> C -> IPRewriter(pattern foo 0 0) -> Discard", "no such pattern 'foo'"),
    ("elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
     "q :: IPRewriterPatterns(foo 1.0.0.1 - - -); Idle -> C -> Discard", "pattern 'foo' already defined"),
    # a compound's elements come after the top level's, so the top-level q defines foo first
    ("elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
     "Idle -> C -> Discard; q :: IPRewriterPatterns(foo 1.0.0.1 - - -)", "pattern 'foo' already defined"),
])
def test_click_rejects(text: str, message: str) -> None:
    errors = _errors(text)
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("text", [
    "FromDevice(0) -> Queue -> ToDevice(0)",
    "FromDevice(0) -> Queue -> Unqueue -> Queue -> ToDevice(0)",
    "Idle -> Print(\"a b\") -> Print(a\"b c\") -> Discard",
    "Idle -> CheckIPHeader(14) -> CheckIPHeader(0x10) -> CheckIPHeader(BADSRC 1.0.0.1, OFFSET 2) -> Discard",
    "Idle -> AverageCounter(IGNORE 2) -> AverageCounter(IGNORE 0x10) -> Discard",
    # patterns configure before rewriters, wherever they are declared
    "Idle -> IPRewriter(pattern foo 0 0) -> Discard; p :: IPRewriterPatterns(foo 1.0.0.1 - - -)",
    "elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> IPRewriter(pattern foo 0 0) -> output }\n"
    "Idle -> C -> Discard",
    "elementclass C { input -> IPRewriter(pattern foo 0 0) -> output }\n"
    "p :: IPRewriterPatterns(foo 1.0.0.1 - - -); Idle -> C -> Discard",
    # a sibling compound's definition is out of scope, so this is no redefinition
    "elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
    "c1 :: C; c2 :: C; Idle -> c1 -> c2 -> Discard",
])
def test_click_accepts(text: str) -> None:
    assert _errors(text) == []
