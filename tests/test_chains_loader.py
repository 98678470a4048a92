"""The chain loader: what valid documents mean, and every error class with its exact position."""

from __future__ import annotations

import ipaddress
import json
import pytest

from chains.errors import ConfigError
from chains.loader import chainset_from_data, load_chain_file, load_chains
from chains.model import Scaling
from chains.yamlsrc import plain_load

WEB = """\
chains:
  - name: web
    description: web traffic
    classifier: {src: 10.0.1.0/24, dst: 10.0.2.0/24, protocol: tcp, dst_port: 80}
    hops:
      - name: fw
        function: firewall
        params:
          rules:
            - {action: allow, protocol: tcp, dst_port: 80}
"""


def problems(text: str) -> list[tuple[int, int, str, str]]:
    """(line, col, key path, message) of every problem in ``text``; the load must fail."""
    with pytest.raises(ConfigError) as caught:
        load_chains(text, "t.yaml")
    return [(p.line, p.col, p.path, p.message) for p in caught.value.problems]


def where(text: str) -> list[tuple[int, int, str]]:
    return [(line, col, path) for line, col, path, _ in problems(text)]


# ---- valid documents ---------------------------------------------------------------------

def test_valid_document_builds_the_model():
    chain = load_chains(WEB, "t.yaml").chains[0]
    assert chain.name == "web" and chain.description == "web traffic"
    assert chain.classifier.src == ipaddress.IPv4Network("10.0.1.0/24")
    assert chain.classifier.protocol == 6
    assert chain.classifier.dst_port == (80, 80) and chain.classifier.src_port is None
    assert (chain.symmetric, chain.priority, chain.on_failure) == (False, 100, "open")
    hop = chain.hops[0]
    assert (hop.name, hop.function) == ("fw", "firewall")
    assert hop.params == {"rules": [{"action": "allow", "protocol": "tcp", "dst_port": 80}]}
    assert type(hop.params["rules"][0]) is dict      # plain data, ready for JSON
    assert hop.scaling == Scaling()


def test_values_are_normalised():
    chainset = load_chains("""\
chains:
  - name: dns
    classifier: {src: 10.0.1.1, protocol: udp, src_port: any, dst_port: "1000-2000"}
    symmetric: true
    priority: 7
    on_failure: closed
    hops:
      - name: limit
        function: rate-limiter
        params: {bps: 2.5M}
        scaling: {min: 2, max: 5, metric: bps, out_above: 1000, in_below: 10, cooldown: 500ms}
      - {name: pass, function: passthrough, params: }
""", "t.yaml")
    chain = chainset.chains[0]
    assert chain.classifier.src == ipaddress.IPv4Network("10.0.1.1/32")
    assert chain.classifier.dst == ipaddress.IPv4Network("0.0.0.0/0")
    assert (chain.classifier.protocol, chain.classifier.src_port) == (17, None)
    assert chain.classifier.dst_port == (1000, 2000)
    assert (chain.symmetric, chain.priority, chain.on_failure) == (True, 7, "closed")
    assert chain.hops[0].scaling == Scaling(2, 5, "bps", 1000.0, 10.0, 0.5)
    assert chain.hops[1].params == {}


def test_scaling_max_defaults_to_min():
    text = WEB.replace("        function: firewall\n", "        function: firewall\n        scaling: {min: 3}\n")
    assert load_chains(text, "t.yaml").chains[0].hops[0].scaling.max == 3


def test_full_port_range_means_any_and_protocol_any_is_none():
    text = WEB.replace("protocol: tcp, dst_port: 80}\n    hops", 'protocol: tcp, dst_port: "0-65535"}\n    hops')
    assert load_chains(text, "t.yaml").chains[0].classifier.dst_port is None
    text = WEB.replace("protocol: tcp, dst_port: 80}\n    hops", "protocol: any}\n    hops")
    assert load_chains(text, "t.yaml").chains[0].classifier.protocol is None


def test_empty_chain_list_is_valid():
    assert load_chains("chains: []\n", "t.yaml").chains == ()


def test_load_chain_file_reads_a_file(tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text(WEB)
    assert load_chain_file(str(path)).chains[0].name == "web"


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_chain_file(str(tmp_path / "missing.yaml"))
    assert caught.value.problems[0].message.startswith("cannot read file")


# ---- every error class, with its position ---------------------------------------------------

def test_unknown_keys_with_did_you_mean():
    assert problems("""\
chains:
  - name: web
    clasifier: {src: 10.0.1.0/24}
    hops: [{name: a, function: passthrough, scailing: {min: 1}}]
    colour: blue
""") == [
        (2, 5, "chains[0]", "missing required key 'classifier'"),
        (3, 5, "chains[0].clasifier", "unknown key 'clasifier' (did you mean 'classifier'?)"),
        (4, 45, "chains[0].hops[0].scailing", "unknown key 'scailing' (did you mean 'scaling'?)"),
        (5, 5, "chains[0].colour",
         "unknown key 'colour'; expected one of: name, description, classifier, hops, symmetric, "
         "priority, on_failure"),
    ]


def test_unknown_top_level_key():
    assert problems("chains: []\nchain: []\n") == [
        (2, 1, "chain", "unknown key 'chain' (did you mean 'chains'?)")]


def test_duplicate_yaml_keys():
    assert problems("""\
chains:
  - name: web
    name: web2
""") == [
        (2, 5, "chains[0]", "missing required key 'classifier'"),
        (2, 5, "chains[0]", "missing required key 'hops'"),
        (3, 5, "", "duplicate key 'name' (first at line 2, column 5)"),
    ]


def test_duplicate_yaml_keys_are_reported_with_the_other_problems():
    text = WEB.replace("    hops:", "    priority: 5\n    priority: 6\n    hops:").replace("tcp, dst_port: 80}\n    p",
                                                                               "tcp, dst_port: 99999}\n    p")
    assert where(text) == [(4, 79, "chains[0].classifier.dst_port"), (6, 5, "")]
    # the first of two duplicates is the one that counts
    with pytest.raises(ConfigError) as caught:
        load_chains(text.replace("99999", "80") + "  - {name: x, classifier: {}, hops: [{name: a, function: nat}]}\n",
                    "t.yaml")
    assert [p.path for p in caught.value.problems] == ["", "chains[1].hops[0].params"]


def test_duplicate_chain_names():
    text = WEB + WEB.split("\n", 1)[1].replace("10.0.1.0/24", "10.0.3.0/24")
    assert problems(text) == [
        (11, 11, "chains[1].name", "duplicate chain name 'web' (first defined at chains[0])")]


def test_duplicate_hop_names():
    assert where("""\
chains:
  - name: web
    classifier: {}
    hops:
      - {name: a, function: monitor}
      - {name: b, function: monitor}
      - {name: a, function: passthrough}
""") == [(7, 16, "chains[0].hops[2].name")]


@pytest.mark.parametrize(("cidr", "message"), [
    ("10.0.1.1/24", "invalid IPv4 CIDR '10.0.1.1/24': host bits set (did you mean 10.0.1.0/24?)"),
    ("10.0.300.0/24", "invalid IPv4 CIDR '10.0.300.0/24'"),
    ("10.0.0.0/33", "invalid IPv4 CIDR '10.0.0.0/33': bad prefix length"),
    ("fe80::/64", "invalid IPv4 CIDR 'fe80::/64'"),
])
def test_bad_cidrs(cidr, message):
    text = WEB.replace("dst: 10.0.2.0/24", f'dst: "{cidr}"')
    assert problems(text) == [(4, 41, "chains[0].classifier.dst", message)]


def test_cidr_must_be_a_string():
    assert problems(WEB.replace("src: 10.0.1.0/24", "src: 10")) == [
        (4, 23, "chains[0].classifier.src", "expected an IPv4 CIDR such as 10.0.0.0/16, got an integer")]


@pytest.mark.parametrize(("ports", "message"), [
    ("70000", "port 70000 is out of range (0-65535)"),
    ("-1", "port -1 is out of range (0-65535)"),
    ('"2000-1000"', "empty port range 2000-1000 (the first port must not exceed the second)"),
    ('"80-99999"', "port 99999 is out of range (0-65535)"),
    ("http", "expected a port, a range such as \"1000-2000\" or any, got 'http'"),
])
def test_bad_ports(ports, message):
    text = WEB.replace("protocol: tcp, dst_port: 80}\n    hops", f"protocol: tcp, dst_port: {ports}}}\n    hops")
    #    classifier: {src: 10.0.1.0/24, dst: 10.0.2.0/24, protocol: tcp, dst_port: <here, column 79>
    assert problems(text) == [(4, 79, "chains[0].classifier.dst_port", message)]


@pytest.mark.parametrize(("protocol", "name"), [("icmp", "icmp"), ("any", "any protocol"), ("47", "protocol 47")])
def test_ports_need_tcp_or_udp(protocol, name):
    text = WEB.replace("protocol: tcp, dst_port: 80}\n    hops", f"protocol: {protocol}, dst_port: 80}}\n    hops")
    assert problems(text) == [
        (4, 79 + len(protocol) - len("tcp"), "chains[0].classifier.dst_port",
         f"ports need protocol tcp or udp (this matches {name})")]


def test_ports_without_protocol_key():
    text = WEB.replace("protocol: tcp, dst_port: 80}\n    hops", "src_port: 53}\n    hops")
    assert problems(text) == [(4, 64, "chains[0].classifier.src_port",
                               "ports need protocol tcp or udp (this matches any protocol)")]


@pytest.mark.parametrize(("protocol", "message"), [
    ("300", "protocol 300 is out of range (0-255)"),
    ("sctp", "unknown protocol 'sctp': use tcp, udp, icmp, any or a number 0-255"),
])
def test_bad_protocols(protocol, message):
    text = WEB.replace("protocol: tcp, dst_port: 80}\n    hops", f"protocol: {protocol}}}\n    hops")
    assert problems(text) == [(4, 64, "chains[0].classifier.protocol", message)]


def test_min_greater_than_max_and_flapping_thresholds():
    text = WEB.replace("        function: firewall\n", "        function: firewall\n"
                       "        scaling: {min: 4, max: 2, out_above: 100, in_below: 100, metric: pps}\n")
    assert problems(text) == [
        (8, 24, "chains[0].hops[0].scaling.min", "min (4) is greater than max (2)"),
        (8, 61, "chains[0].hops[0].scaling.in_below",
         "in_below (100) must be less than out_above (100), or instances flap"),
    ]


@pytest.mark.parametrize(("scaling", "col", "path", "message"), [
    ("{min: 0}", 24, "min", "0 is out of range (1-1000)"),
    ("{max: true}", 24, "max", "expected an integer, got a boolean"),
    ("{metric: cpu}", 27, "metric", "expected one of pps, bps, got 'cpu'"),
    ("{cooldown: 5 s}", 29, "cooldown", None),
    ("{cooldown: soon}", 29, "cooldown", "expected a duration such as \"5s\", \"500ms\" or \"2m\", got 'soon'"),
    ("{out_above: -3}", 30, "out_above", "-3 is out of range (at least 0)"),
    ("{out_above: .nan}", 30, "out_above", "expected a finite number, got nan"),
    ("{in_below: .inf}", 29, "in_below", "expected a finite number, got inf"),
    ("{cooldown: .inf}", 29, "cooldown", "expected a finite number, got inf"),
    ("5", 18, "", "scaling must be a mapping, got an integer"),
])
def test_bad_scaling(scaling, col, path, message):
    text = WEB.replace("        function: firewall\n", f"        function: firewall\n        scaling: {scaling}\n")
    if message is None:      # "5 s" is fine: spaces are allowed
        assert load_chains(text, "t.yaml").chains[0].hops[0].scaling.cooldown == 5.0
        return
    full_path = "chains[0].hops[0].scaling" + (f".{path}" if path else "")
    assert problems(text) == [(8, col, full_path, message)]


def test_unknown_function_with_did_you_mean():
    text = WEB.replace("function: firewall", "function: firewal")
    assert problems(text) == [
        (7, 19, "chains[0].hops[0].function", "unknown function 'firewal' (did you mean 'firewall'?)")]


def test_unknown_function_lists_the_known_ones():
    message = problems(WEB.replace("function: firewall", "function: toaster"))[0][3]
    assert message.startswith("unknown function 'toaster'; known functions: firewall, ids, monitor, nat,")


def test_bad_params_point_into_the_params():
    assert problems("""\
chains:
  - name: web
    classifier: {}
    hops:
      - name: fw
        function: firewall
        params:
          default: reject
          rules:
            - {action: allow}
            - {action: deny, dst: 10.0.0.0/8}
            - {action: block, src_prt: 1}
""") == [
        (8, 20, "chains[0].hops[0].params.default", "expected one of allow, deny, got 'reject'"),
        (12, 24, "chains[0].hops[0].params.rules[2].action", "expected one of allow, deny, got 'block'"),
        (12, 31, "chains[0].hops[0].params.rules[2].src_prt", "unknown key 'src_prt' (did you mean 'src_port'?)"),
    ]


@pytest.mark.parametrize(("params", "expected"), [
    ("{pps: 10, bps: 10}", [(8, 17, "params", "give exactly one of pps (packets per second) or bps (bits per second)")]),
    ("{pps: 0.5}", [(8, 23, "params.pps", "a rate must be at least 1, got 0.5")]),
    ("{pps: lots}", [(8, 23, "params.pps", "expected a rate such as 1000, \"10k\" or \"2.5M\", got 'lots'")]),
    ("[1000]", [(8, 17, "params", "params must be a mapping, got a list")]),
])
def test_bad_rate_limiter_params(params, expected):
    text = f"""\
chains:
  - name: web
    classifier: {{}}
    hops:
      - name: limit
        function: rate-limiter
        scaling: {{}}
        params: {params}
"""
    assert [(line, col, path.removeprefix("chains[0].hops[0]."), message)
            for line, col, path, message in problems(text)] == expected


def test_bad_nat_and_ids_params():
    assert problems("""\
chains:
  - name: egress
    classifier: {}
    hops:
      - {name: nat, function: nat, params: {address: 10.0.0.256, ports: any}}
      - {name: nat2, function: nat, params: {}}
      - name: ids
        function: ids
        params:
          signatures:
            - {name: a, protocol: tcp}
            - {name: a}
            - {name: Bad, dst_port: 22}
""") == [
        (5, 54, "chains[0].hops[0].params.address", "invalid IPv4 address '10.0.0.256'"),
        (5, 73, "chains[0].hops[0].params.ports",
         "NAT ports must be a range within 1-65535, such as \"1024-65535\""),
        (6, 45, "chains[0].hops[1].params", "missing required key 'address'"),
        (12, 15, "chains[0].hops[2].params.signatures[1]",
         "a signature needs at least one of: src, dst, protocol, src_port, dst_port"),
        (12, 22, "chains[0].hops[2].params.signatures[1].name",
         "duplicate signature name 'a' (also signatures[0])"),
        (13, 22, "chains[0].hops[2].params.signatures[2].name",
         "invalid name 'Bad': use a lowercase DNS label (a-z, 0-9 and '-', not at either end, "
         "at most 63 characters)"),
        (13, 37, "chains[0].hops[2].params.signatures[2].dst_port",
         "ports need protocol tcp or udp (this matches any protocol)"),
    ]


@pytest.mark.parametrize(("name", "ok"), [
    ("web", True), ("a", True), ("web-2", True), ("x" * 63, True),
    ("x" * 64, False), ("Web", False), ("-web", False), ("web-", False), ("web_1", False), ("", False),
])
def test_chain_names_are_dns_labels(name, ok):
    text = WEB.replace("name: web", f'name: "{name}"')
    if ok:
        assert load_chains(text, "t.yaml").chains[0].name == name
    else:
        assert where(text) == [(2, 11, "chains[0].name")]


def test_wrong_types_for_chain_fields():
    assert problems("""\
chains:
  - name: web
    description: 5
    classifier: [10.0.0.0/8]
    hops: {}
    symmetric: "yes"
    priority: true
    on_failure: maybe
""") == [
        (3, 18, "chains[0].description", "expected a string, got an integer"),
        (4, 17, "chains[0].classifier", "classifier must be a mapping, got a list"),
        (5, 11, "chains[0].hops", "hops must be a list, got a mapping"),
        (6, 16, "chains[0].symmetric", "expected true or false, got a string"),
        (7, 15, "chains[0].priority", "expected an integer, got a boolean"),
        (8, 17, "chains[0].on_failure", "expected one of open, closed, got 'maybe'"),
    ]


def test_priority_range_and_empty_hops():
    assert problems("""\
chains:
  - name: web
    classifier: {}
    priority: 70000
    hops: []
""") == [
        (4, 15, "chains[0].priority", "70000 is out of range (0-65535)"),
        (5, 11, "chains[0].hops", "a chain needs at least one hop"),
    ]


def test_missing_required_keys_are_reported_at_the_mapping():
    # problems at one place are sorted by message
    assert problems("chains:\n  - description: nothing else\n") == [
        (2, 5, "chains[0]", "missing required key 'classifier'"),
        (2, 5, "chains[0]", "missing required key 'hops'"),
        (2, 5, "chains[0]", "missing required key 'name'"),
    ]
    assert problems("functions: {}\n") == [(1, 1, "", "missing required key 'chains'")]


def test_every_problem_is_reported_at_once():
    found = problems("""\
chains:
  - name: Web
    classifier: {src: 10.0.0.1/8, protocol: udp, dst_port: 99999}
    hops:
      - {name: a, function: nope}
      - {name: a, function: monitor, params: {by_protocol: maybe}}
  - name: dns
    classifier: {}
    hops: [{name: x, function: passthrough, params: {x: 1}}]
""")
    assert [(line, col, path) for line, col, path, _ in found] == [
        (2, 11, "chains[0].name"),
        (3, 23, "chains[0].classifier.src"),
        (3, 60, "chains[0].classifier.dst_port"),
        (5, 29, "chains[0].hops[0].function"),
        (6, 16, "chains[0].hops[1].name"),
        (6, 60, "chains[0].hops[1].params.by_protocol"),
        (9, 54, "chains[1].hops[0].params.x"),
    ]
    assert found[-1][3] == "unknown key 'x' (nothing is allowed here)"


# ---- overlapping classifiers ------------------------------------------------------------------

def two_chains(first: str, second: str, extra_first: str = "", extra_second: str = "") -> str:
    return f"""\
chains:
  - name: one
    classifier: {first}
    hops: [{{name: a, function: monitor}}]{extra_first}
  - name: two
    classifier: {second}
    hops: [{{name: a, function: monitor}}]{extra_second}
"""


@pytest.mark.parametrize(("first", "second"), [
    ("{}", "{}"),
    ("{src: 10.0.0.0/16}", "{src: 10.0.1.0/24, dst: 10.0.2.1/32}"),
    ("{src: 10.0.1.0/24, dst: 10.0.2.1}", "{src: 10.0.0.0/8}"),
    ("{src: 10.0.0.0/16, dst: 10.0.2.0/24}", "{src: 10.0.1.0/24, dst: 10.0.0.0/16}"),   # crosswise nesting
    ("{protocol: tcp, dst_port: 80}", "{protocol: tcp, dst_port: 1-1024}"),
    ("{protocol: tcp, dst_port: 80}", "{protocol: any}"),
    ("{protocol: udp, src_port: 53}", "{protocol: udp, dst_port: 53}"),
])
def test_overlapping_classifiers_at_the_same_priority(first, second):
    assert problems(two_chains(first, second)) == [
        (6, 17, "chains[1].classifier",
         "classifier overlaps that of chain 'one' (chains[0]) at the same priority 100: "
         "give one of them another priority or narrow a classifier")]


@pytest.mark.parametrize(("first", "second"), [
    ("{src: 10.0.1.0/24}", "{src: 10.0.2.0/24}"),
    ("{src: 10.0.0.0/16, dst: 10.0.2.0/24}", "{src: 10.0.1.0/24, dst: 10.0.3.0/24}"),
    ("{protocol: tcp}", "{protocol: udp}"),
    ("{protocol: tcp, dst_port: 80}", "{protocol: tcp, dst_port: 81-90}"),
    ("{protocol: tcp, dst_port: 80}", "{protocol: icmp}"),
])
def test_disjoint_classifiers_do_not_overlap(first, second):
    assert len(load_chains(two_chains(first, second), "t.yaml").chains) == 2


def test_overlap_at_another_priority_is_fine():
    text = two_chains("{}", "{}", extra_second="\n    priority: 200")
    assert len(load_chains(text, "t.yaml").chains) == 2


def test_symmetric_chain_overlaps_in_its_reverse_direction():
    text = two_chains("{src: 10.0.2.0/24, dst: 10.0.1.0/24, protocol: tcp, src_port: 80}",
                      "{src: 10.0.1.0/24, dst: 10.0.2.0/24, protocol: tcp, dst_port: 80}",
                      extra_second="\n    symmetric: true")
    assert problems(text) == [
        (6, 17, "chains[1].classifier",
         "classifier (in its reverse direction) overlaps that of chain 'one' (chains[0]) at the same "
         "priority 100: give one of them another priority or narrow a classifier")]


def test_a_symmetric_chain_does_not_overlap_itself():
    text = WEB.replace("    hops:", "    symmetric: true\n    hops:").replace("10.0.2.0/24", "10.0.1.0/24")
    assert load_chains(text, "t.yaml").chains[0].symmetric


def test_overlaps_are_found_among_many_chains():
    lines = ["chains:"]
    for i in range(300):
        lines.append(f"  - {{name: c{i}, classifier: {{src: 10.{i // 256}.{i % 256}.0/24}}, "
                     "hops: [{name: a, function: monitor}]}")
    lines.append("  - {name: wide, classifier: {src: 10.1.0.0/16, dst: 10.9.9.9}, "
                 "hops: [{name: a, function: monitor}]}")
    found = problems("\n".join(lines) + "\n")
    # 10.1.0.0/16 contains 10.1.0.0/24 .. 10.1.43.0/24 (chains 256-299)
    assert len(found) == 44
    assert {message.split("'")[1] for _, _, _, message in found} == {f"c{i}" for i in range(256, 300)}


# ---- custom functions ------------------------------------------------------------------------

CUSTOM = """\
functions:
  tagger:
    description: marks packets
    click: |
      from_dev :: FromDevice(0);
      from_dev -> Classifier(0/$INSTANCE_MAC_HEX 12/0800) -> count_in :: Counter
        -> count_out :: Counter -> EtherRewrite(SRC $INSTANCE_MAC, DST $UPLINK_MAC) -> Queue -> ToDevice(0);
chains:
  - name: tag
    classifier: {}
    hops: [{name: t, function: tagger}]
"""


def test_custom_function_is_loaded():
    chainset = load_chains(CUSTOM, "t.yaml")
    assert chainset.functions["tagger"].description == "marks packets"
    assert chainset.chains[0].hops[0].function == "tagger"


def test_bad_custom_functions():
    text = (CUSTOM.replace("  tagger:", "  monitor:").replace("count_out :: Counter", "Counter")
            .replace("$UPLINK_MAC", "$UPLINK"))
    assert problems(text) == [
        (2, 3, "functions.monitor", "'monitor' is a catalog function; give the custom function another name"),
        (4, 12, "functions.monitor.click", "the Click config must contain count_out"),
        (4, 12, "functions.monitor.click",
         "unknown variable $UPLINK: only $INSTANCE_MAC, $INSTANCE_MAC_HEX, $UPLINK_MAC are filled in"),
        (11, 32, "chains[0].hops[0].function",
         "unknown function 'tagger'; known functions: firewall, ids, monitor, nat, passthrough, rate-limiter"),
    ]


def test_a_broken_custom_function_is_reported_once():
    text = CUSTOM.replace("count_out :: Counter", "Counter")
    assert where(text) == [(4, 12, "functions.tagger.click")]


def test_custom_function_takes_no_params():
    text = CUSTOM.replace("function: tagger", "function: tagger, params: {a: 1}")
    assert problems(text) == [(11, 48, "chains[0].hops[0].params", "custom function 'tagger' takes no params")]


# ---- malformed YAML: clean errors, never a traceback --------------------------------------------

@pytest.mark.parametrize(("text", "line", "col", "message"), [
    ("chains:\n\t- name: web\n", 2, 1,
     "invalid YAML: found character that cannot start any token (a tab: YAML indents with spaces only)"),
    ("chains: [{name: web\n", 2, 1,
     "invalid YAML: did not find expected ',' or '}' (while parsing a flow mapping at line 1, column 10)"),
    ("chains:\n  - name: 'web\n", 3, 1,
     "invalid YAML: found unexpected end of stream (while scanning a quoted scalar at line 2, column 11)"),
    ("chains:\n  - name: web\n  bad\n", 4, 1,
     "invalid YAML: could not find expected ':' (while scanning a simple key at line 3, column 3)"),
    ("chains: *nowhere\n", 1, 9, "invalid YAML: found undefined alias"),
])
def test_malformed_yaml(text, line, col, message):
    found = problems(text)
    assert len(found) == 1
    assert found[0][:2] == (line, col)
    assert found[0][3] == message


def test_tab_indentation_is_named():
    assert problems("chains:\n  - name: web\n\tclassifier: {}\n")[0][3].endswith(
        "(a tab: YAML indents with spaces only)")


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty document: expected a mapping with a 'chains' list"),
    ("# nothing\n", "empty document: expected a mapping with a 'chains' list"),
    ("- web\n", "the document must be a mapping, got a list"),
    ("just text\n", "the document must be a mapping, got a string"),
    ("chains: web\n", "chains must be a list, got a string"),
    ("chains:\n  - web\n", "a chain must be a mapping, got a string"),
])
def test_documents_of_the_wrong_shape(text, message):
    found = problems(text)
    assert [m for _, _, _, m in found] == [message]


def test_non_mapping_document_position():
    assert problems("\n\n  - web\n") == [(3, 3, "", "the document must be a mapping, got a list")]


# ---- plain JSON data (the REST API) ----------------------------------------------------------------

def test_json_data_is_validated_with_paths_at_1_1():
    data = {"chains": [{"name": "web", "classifier": {"dst": "10.0.0.1/8"},
                        "hops": [{"name": "a", "function": "monitor", "params": {"by_protocl": True}}]}]}
    with pytest.raises(ConfigError) as caught:
        chainset_from_data(data)
    assert [str(p) for p in caught.value.problems] == [
        "<request>:1:1: chains[0].classifier.dst: invalid IPv4 CIDR '10.0.0.1/8': host bits set "
        "(did you mean 10.0.0.0/8?)",
        "<request>:1:1: chains[0].hops[0].params.by_protocl: unknown key 'by_protocl' "
        "(did you mean 'by_protocol'?)",
    ]


def test_json_nan_and_infinity_are_refused():
    data = json.loads('{"chains": [{"name": "web", "classifier": {}, "hops": [{"name": "a", "function": "monitor",'
                      ' "scaling": {"in_below": NaN, "cooldown": -Infinity}}]}]}')
    with pytest.raises(ConfigError) as caught:
        chainset_from_data(data)
    assert [str(p) for p in caught.value.problems] == [
        "<request>:1:1: chains[0].hops[0].scaling.cooldown: a duration cannot be negative, got -inf",
        "<request>:1:1: chains[0].hops[0].scaling.in_below: expected a finite number, got nan",
    ]


def test_json_data_builds_the_same_model_as_yaml():
    data = plain_load(WEB)
    assert type(data) is dict
    assert chainset_from_data(data) == load_chains(WEB, "t.yaml")
