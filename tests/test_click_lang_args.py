"""Configuration-argument splitting and typed parsers (clickos_agent.click.args)."""

from __future__ import annotations

import pytest

from clickos_agent.click.args import (
    Spec, parse_bandwidth, parse_bool, parse_int, parse_ip, parse_ip_prefix, parse_keywords,
    parse_mac, parse_string, parse_time, parse_uint, parse_word, split_config, split_words, unquote,
)
from clickos_agent.click.element import ArgError


@pytest.mark.parametrize("config, expected", [
    ("", []),
    ("   ", []),
    ("/* only a comment */", []),
    ("a, b, c", ["a", "b", "c"]),
    ("  a /*?*/ b,  c, ", ["a b", "c"]),       # Click's own cp_argvec examples
    ('"x, y" // ?', ['"x, y"']),
    ("a,,b", ["a", "", "b"]),
    (",", [""]),
    ("a(b, c)", ["a(b", "c)"]),                # parentheses do not protect commas in Click
    ("'a, b', c", ["'a, b'", "c"]),
    ("a   b", ["a   b"]),                       # inner space kept
    ("x // c1\n , y", ["x", "y"]),
    ("12/0800,\n -", ["12/0800", "-"]),
])
def test_split_config_matches_cp_argvec(config: str, expected: list[str]) -> None:
    assert split_config(config) == expected


def test_split_words_and_unquote() -> None:
    assert split_words("a  b, c /* x */ 'd e'") == ["a", "b,", "c", "'d e'"]
    assert unquote('"a\\nb" c') == "a\nb c"
    # cp_unquote's own example, and the byte escapes
    assert unquote('"\\n" abc /* 123 */ \'/* def */\'') == "\n abc /* def */"
    assert unquote('"\\x41\\101\\q" \\<0a 0B> \'\\n\'') == "AAq \n\x0b \\n"


def test_keywords_positional_and_keyword() -> None:
    specs = [Spec("N", parse_uint, mandatory=True, positional=True), Spec("STOP", parse_bool)]
    assert parse_keywords(["5", "STOP true"], specs) == {"N": 5, "STOP": True}
    assert parse_keywords(["N 7"], specs) == {"N": 7, "STOP": None}
    assert parse_keywords(["N 1", "N 2"], specs)["N"] == 2          # last one wins
    assert parse_keywords(["5", "N 10"], specs)["N"] == 10           # a later keyword wins
    # an empty argument is no argument, even a mandatory one (Click accepts Queue(,))
    assert parse_keywords([""], specs) == {"N": None, "STOP": None}
    assert parse_keywords(["", "STOP 1"], specs)["STOP"] is True


@pytest.mark.parametrize("args, message", [
    (["5", "6"], "too many arguments"),
    ([], "N: required argument missing"),
    (["5", "FOO 1"], "FOO: unknown argument"),
    (["x"], "N: expected unsigned integer"),
    (["5", "STOP maybe"], "STOP: expected boolean"),
])
def test_keyword_errors(args: list[str], message: str) -> None:
    specs = [Spec("N", parse_uint, mandatory=True, positional=True), Spec("STOP", parse_bool)]
    with pytest.raises(ArgError, match=message):
        parse_keywords(args, specs)


def test_strings_and_words() -> None:
    assert parse_string('"a b"') == "a b" and parse_string('x"y z"') == "xy z"
    assert parse_string("abc") == "abc"
    assert parse_word("eth0") == "eth0"
    for bad in ("a b", "", "*/x y"):
        with pytest.raises(ArgError):
            parse_string(bad)
    for bad in ('"a b"', '"a,b"', '""'):
        with pytest.raises(ArgError):
            parse_word(bad)


def test_typed_parsers() -> None:
    assert parse_bool("yes") and not parse_bool("0")
    assert parse_int("0x1F") == 31 and parse_int("017") == 15 and parse_int("-3") == -3
    assert parse_int("1_000") == 1000
    assert parse_mac("00:1:02:03:04:ff") == bytes([0, 1, 2, 3, 4, 255])
    assert parse_mac("00-01-02-03-04-05") == bytes(range(6))
    assert parse_ip("10.0.0.1") == "10.0.0.1"
    assert parse_ip_prefix("10/8") == ("10.0.0.0", 8)
    assert parse_ip_prefix("1.2.3.4/255.255.0.0") == ("1.2.3.4", 16)
    assert parse_ip_prefix("1.2.3.4", allow_bare_address=True) == ("1.2.3.4", 32)
    assert parse_time("10ms") == pytest.approx(0.01)
    assert parse_time("2m") == 120 and parse_time("1.5") == 1.5
    assert parse_time("10 ms") == pytest.approx(0.01) and parse_time("3msec") == pytest.approx(0.003)
    assert parse_time("1day") == 86400 and parse_time(".5s") == 0.5
    assert parse_bandwidth("1Mbps") == 125000 and parse_bandwidth("2KBps") == 2000
    assert parse_bandwidth("10") == 10


@pytest.mark.parametrize("parser, text", [
    (parse_bool, "maybe"), (parse_int, "12x"), (parse_int, "08"), (parse_uint, "-1"),
    (parse_mac, "00:01:02:03:04"), (parse_mac, "00:01-02:03:04:05"), (parse_ip, "1.2.3"),
    (parse_ip, "1.2.3.256"), (parse_ip_prefix, "1.2.3.4"), (parse_ip_prefix, "10/16"),
    (parse_time, "5 parsecs"), (parse_bandwidth, "fast"), (parse_bandwidth, "100Gbps"),
])
def test_typed_parsers_reject(parser, text: str) -> None:
    with pytest.raises(ArgError):
        parser(text)
