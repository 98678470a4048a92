"""The Prometheus text format: exact output, and a round trip through a small parser of the format."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from controller.core.metrics import Family, render

SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(text: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: UNESCAPE[m.group()], text)


def parse(text: str) -> dict[str, dict[str, Any]]:
    """name -> {help, type, samples: {sorted label items: value}}; asserts the format's rules on the way."""
    families: dict[str, dict[str, Any]] = {}
    assert text.endswith("\n")
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP "):].partition(" ")
            assert name not in families
            families[name] = {"help": re.sub(r"\\[\\n]", lambda m: UNESCAPE[m.group()], help_text),
                              "samples": {}}
        elif line.startswith("# TYPE "):
            name, kind = line[len("# TYPE "):].split(" ")
            assert "type" not in families[name] and not families[name]["samples"]   # TYPE before samples
            families[name]["type"] = kind
        else:
            m = SAMPLE.fullmatch(line)
            assert m, line
            labels_text = m["labels"] or ""
            labels = LABEL.findall(labels_text)
            assert "".join(f'{k}="{v}",' for k, v in labels).rstrip(",") == labels_text, line
            key = tuple((k, _unescape(v)) for k, v in labels)
            assert key not in families[m["name"]]["samples"]
            families[m["name"]]["samples"][key] = float(m["value"])
    return families


FAMILIES = [
    Family("clicksteer_instance_in_pps", "gauge", "Packets per second into an instance.", [
        ({"chain": "web", "hop": "1", "instance": "0"}, 1250.5),
        ({"chain": "web", "hop": "0", "instance": "0"}, None),
    ]),
    Family("clicksteer_port_rx_packets_total", "counter", "Packets received by a switch port.", [
        ({"dpid": "0x1", "port": "2"}, 2**64 - 2),
    ]),
    Family("clicksteer_up", "untyped", "Back\\slash and\nnewline in help.", [({}, 1)]),
    Family("clicksteer_odd_labels", "gauge", "Label values that need escaping.", [
        ({"name": 'say "hi"\\now\nthen'}, math.inf),
        ({"name": "minus"}, -math.inf),
        ({"name": "nan"}, math.nan),
        ({"name": "tiny"}, 1e-300),
    ]),
]

EXPECTED = r"""# HELP clicksteer_instance_in_pps Packets per second into an instance.
# TYPE clicksteer_instance_in_pps gauge
clicksteer_instance_in_pps{chain="web",hop="0",instance="0"} NaN
clicksteer_instance_in_pps{chain="web",hop="1",instance="0"} 1250.5
# HELP clicksteer_odd_labels Label values that need escaping.
# TYPE clicksteer_odd_labels gauge
clicksteer_odd_labels{name="minus"} -Inf
clicksteer_odd_labels{name="nan"} NaN
clicksteer_odd_labels{name="say \"hi\"\\now\nthen"} +Inf
clicksteer_odd_labels{name="tiny"} 1e-300
# HELP clicksteer_port_rx_packets_total Packets received by a switch port.
# TYPE clicksteer_port_rx_packets_total counter
clicksteer_port_rx_packets_total{dpid="0x1",port="2"} 18446744073709551614
# HELP clicksteer_up Back\\slash and\nnewline in help.
# TYPE clicksteer_up untyped
clicksteer_up 1
"""


def test_exact_output_sorted_and_escaped() -> None:
    assert render(FAMILIES) == EXPECTED


def test_order_of_input_does_not_matter() -> None:
    shuffled = [Family(f.name, f.type, f.help, list(reversed(f.samples))) for f in reversed(FAMILIES)]
    assert render(shuffled) == EXPECTED


def test_round_trip() -> None:
    parsed = parse(render(FAMILIES))
    assert set(parsed) == {f.name for f in FAMILIES}
    for family in FAMILIES:
        got = parsed[family.name]
        assert (got["help"], got["type"]) == (family.help, family.type)
        want = {tuple(sorted(labels.items())): value for labels, value in family.samples}
        assert set(got["samples"]) == set(want)
        for key, value in want.items():
            if value is None or math.isnan(value):
                assert math.isnan(got["samples"][key])
            else:
                assert got["samples"][key] == float(value)


def test_label_order_is_by_name() -> None:
    text = render([Family("m", "gauge", "h", [({"b": "2", "a": "1"}, 0.25)])])
    assert text.splitlines()[-1] == 'm{a="1",b="2"} 0.25'


def test_a_family_without_samples_still_declares_itself() -> None:
    assert render([Family("m", "counter", "h", [])]) == "# HELP m h\n# TYPE m counter\n"


def test_nothing_renders_to_nothing() -> None:
    assert render([]) == ""


@pytest.mark.parametrize("family", [
    Family("2bad", "gauge", "h", []),
    Family("bad-name", "gauge", "h", []),
    Family("m", "histogram", "h", []),                     # its samples would need _bucket, _sum, _count
    Family("m", "gauge", "h", [({"bad-label": "x"}, 1)]),
    Family("m", "gauge", "h", [({"__reserved": "x"}, 1)]),
    Family("m", "gauge", "h", [({"a": "x"}, 1), ({"a": "x"}, 2)]),
])
def test_invalid_families_are_refused(family: Family) -> None:
    with pytest.raises(ValueError):
        render([family])


def test_a_name_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        render([Family("m", "gauge", "h", []), Family("m", "gauge", "other", [])])
