"""``clicksteer check`` and ``clicksteer schema``, and the example chain files."""

from __future__ import annotations

import ipaddress
import json
import os

import jsonschema
import pytest

from chains.export import chainset_to_data
from chains.loader import chainset_from_data, find_overlaps, load_chain_file, load_chains
from chains.schema import json_schema
from chains.yamlsrc import plain_load
from controller.cli import main as clicksteer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(os.path.join(ROOT, "chains", "examples", name)
                  for name in os.listdir(os.path.join(ROOT, "chains", "examples")))
BAD = """\
chains:
  - name: web
    classifier: {protocol: icmp, dst_port: 80}
    hops: [{name: a, function: monitr}]
"""


def test_check_valid_files_prints_one_summary_line_each(capsys):
    assert clicksteer(["check", *EXAMPLES]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.splitlines()
    assert len(lines) == len(EXAMPLES)
    web = EXAMPLES.index(os.path.join(ROOT, "chains", "examples", "web.yaml"))
    assert lines[web].endswith("web.yaml: ok, 1 chain, 3 hops, 0 custom functions")


def test_check_reports_every_error_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert clicksteer(["check", EXAMPLES[0], str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out.count(": ok,") == 1
    assert out.err.splitlines() == [
        f"{bad}:3:44: chains[0].classifier.dst_port: ports need protocol tcp or udp (this matches icmp)",
        f"{bad}:4:32: chains[0].hops[0].function: unknown function 'monitr' (did you mean 'monitor'?)",
    ]


@pytest.mark.parametrize("text", ["chains: [\n", "\tchains: []\n", "- a\n", ""])
def test_check_malformed_yaml_is_one_clean_line(tmp_path, capsys, text):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert clicksteer(["check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{bad}:")
    assert "Traceback" not in err[0]


def test_check_missing_file(tmp_path, capsys):
    assert clicksteer(["check", str(tmp_path / "none.yaml")]) == 1
    assert "cannot read file" in capsys.readouterr().err


def test_schema_command_prints_the_schema(capsys):
    assert clicksteer(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_schema_is_valid_and_accepts_the_examples():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in EXAMPLES:
        with open(path, encoding="utf-8") as handle:
            errors = [error.message for error in validator.iter_errors(plain_load(handle.read()))]
        assert errors == [], path


@pytest.mark.parametrize(("text", "fragment"), [
    (BAD.replace("classifier:", "clasifier:"), "Additional properties"),
    (BAD.replace("name: web", "name: Web"), "does not match"),
    ("chains:\n  - {name: a, classifier: {}, hops: [{name: x, function: nat, params: {}}]}\n",
     "is not valid under any of the given schemas"),
    ("chains:\n  - {name: a, classifier: {}, hops: []}\n", "should be non-empty"),
])
def test_schema_rejects_what_the_loader_rejects(text, fragment):
    validator = jsonschema.Draft202012Validator(json_schema())
    messages = [error.message for error in validator.iter_errors(plain_load(text))]
    assert any(fragment in message for message in messages), messages


# ---- the examples: realistic, on the demo's address plan, applicable together -----------------------

def test_there_are_at_least_three_examples():
    assert len(EXAMPLES) >= 3


def test_examples_do_not_overlap_when_applied_together():
    chains = [chain for path in EXAMPLES for chain in load_chain_file(path).chains]
    assert len({chain.name for chain in chains}) == len(chains)
    assert find_overlaps(list(enumerate(chains))) == []


def test_examples_use_the_demo_address_plan():
    hosts = ipaddress.IPv4Network("10.0.0.0/16")
    for path in EXAMPLES:
        for chain in load_chain_file(path).chains:
            assert chain.classifier.src.subnet_of(hosts) and chain.classifier.dst.subnet_of(hosts), path


def test_examples_cover_the_catalog_and_the_options():
    chains = [chain for path in EXAMPLES for chain in load_chain_file(path).chains]
    functions = {hop.function for chain in chains for hop in chain.hops}
    assert {"firewall", "monitor", "rate-limiter", "nat", "ids"} <= functions
    assert any(chain.symmetric for chain in chains)
    assert {chain.classifier.protocol for chain in chains} >= {1, 6, 17}
    web = next(chain for chain in chains if chain.name == "web")
    assert [hop.function for hop in web.hops] == ["firewall", "monitor", "rate-limiter"]


def test_examples_round_trip_through_json():
    for path in EXAMPLES:
        chainset = load_chain_file(path)
        data = json.loads(json.dumps(chainset_to_data(chainset)))
        assert chainset_from_data(data) == chainset, path
        jsonschema.validate(data, json_schema())


def test_the_readme_example_is_valid():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert [chain.name for chain in load_chains(example, "README.md").chains] == ["web"]
