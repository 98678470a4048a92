"""The catalog: params validation, the frame every rendered config shares, and what the configs do to packets."""

from __future__ import annotations

import os
import re
import struct

import pytest

from chains.catalog import CATALOG, click_pattern, render, validate_params
from chains.errors import ConfigError
from chains.fields import Issue, match
from chains.loader import load_chain_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "chains", "examples")
MAC = "02:00:00:00:00:01"
UPLINK = "02:00:00:00:00:fe"

# Params that exercise each function's Click output.
SAMPLES = {
    "passthrough": {},
    "monitor": {"by_protocol": True},
    "firewall": {"rules": [{"action": "deny", "src": "10.0.1.2/32", "protocol": "tcp", "dst_port": 8081},
                           {"action": "allow", "protocol": "tcp", "dst_port": "8000-8099"},
                           {"action": "allow", "protocol": 47}],
                 "default": "deny"},
    "rate-limiter": {"bps": "10M"},
    "nat": {"address": "10.0.1.200", "ports": "20000-29999"},
    "ids": {"signatures": [{"name": "tftp", "protocol": "udp", "dst_port": 69},
                           {"name": "bad-host", "src": "10.0.1.66"}]},
}
ALLOWED_ELEMENTS = {"FromDevice", "ToDevice", "Counter", "Classifier", "IPClassifier", "IPFilter",
                    "CheckIPHeader", "Strip", "Unstrip", "EtherRewrite", "Queue", "Discard", "Tee",
                    "RatedSplitter", "BandwidthRatedSplitter", "IPRewriter", "DecIPTTL", "Null"}
DROPS = {"firewall", "rate-limiter", "nat", "ids"}


def rendered(function: str) -> str:
    return render(function, SAMPLES[function], instance_mac=MAC, uplink_mac=UPLINK)


def test_every_catalog_function_has_a_sample():
    assert set(SAMPLES) == set(CATALOG)


@pytest.mark.parametrize("function", sorted(SAMPLES))
def test_rendered_configs_share_the_frame(function):
    config = rendered(function)
    code = "\n".join(line for line in config.splitlines() if not line.startswith("//"))
    classes = set(re.findall(r"::\s*([A-Z]\w*)|->\s*([A-Z]\w*)", code))
    assert {name for pair in classes for name in pair if name} <= ALLOWED_ELEMENTS
    assert "from_dev :: FromDevice(0);" in code
    assert "accept :: Classifier(0/020000000001 12/0800, -);" in code
    assert "accept[1] -> Discard;" in code                      # frames for other MACs
    assert "accept[0] -> count_in -> Strip(14) -> ip_in;" in code
    assert "ip_in :: CheckIPHeader;" in code and "ip_out :: Unstrip(14);" in code
    assert (f"ip_out -> count_out -> EtherRewrite(SRC {MAC}, DST {UPLINK}) -> Queue -> ToDevice(0);"
            in code)
    assert ("count_drop :: Counter;" in code) == (function in DROPS)


def test_render_normalises_and_checks_macs():
    config = render("passthrough", {}, instance_mac="02:00:00:00:00:AB", uplink_mac=UPLINK)
    assert "0/0200000000ab 12/0800" in config and "SRC 02:00:00:00:00:ab" in config
    with pytest.raises(ConfigError) as caught:
        render("passthrough", {}, instance_mac="02:00:00:00:00", uplink_mac=UPLINK)
    assert str(caught.value) == "<instance_mac>:1:1: invalid MAC address '02:00:00:00:00'"


def test_render_rejects_bad_params_with_their_path():
    with pytest.raises(ConfigError) as caught:
        render("firewall", {"rules": [{"action": "drop"}]}, instance_mac=MAC, uplink_mac=UPLINK)
    assert str(caught.value) == ("<firewall params>:1:1: params.rules[0].action: "
                                 "expected one of allow, deny, got 'drop'")


def test_firewall_rules_become_an_ipfilter():
    assert ("filter :: IPFilter(1 src host 10.0.1.2 and tcp and dst tcp port 8081,\n"
            "                   0 tcp and (dst tcp port >= 8000 and dst tcp port <= 8099),\n"
            "                   0 ip proto 47,\n"
            "                   1 all);") in rendered("firewall")


def test_rate_limiter_units():
    assert "limit :: BandwidthRatedSplitter(10000000bps);" in rendered("rate-limiter")
    config = render("rate-limiter", {"pps": "2.5k"}, instance_mac=MAC, uplink_mac=UPLINK)
    assert "limit :: RatedSplitter(2500);" in config


def test_nat_feeds_replies_to_the_rewriters_second_input():
    config = rendered("nat")
    assert "rewrite :: IPRewriter(pattern 10.0.1.200 20000-29999 - - 0 1, drop);" in config
    assert "nat_in :: IPClassifier(dst host 10.0.1.200 and (tcp or udp), tcp or udp, -);" in config
    assert "nat_in[0] -> [1]rewrite;" in config and "nat_in[1] -> [0]rewrite;" in config


def test_ids_counts_each_signature():
    config = rendered("ids")
    assert "sigs[1] -> sig_bad_host :: Counter -> count_drop;" in config
    assert "sigs[2] -> ip_out;" in config


@pytest.mark.parametrize(("fields", "pattern"), [
    ({}, "all"),
    ({"src": "10.0.0.0/8", "dst": "10.0.2.1"}, "src net 10.0.0.0/8 and dst host 10.0.2.1"),
    ({"protocol": "udp", "src_port": "1-2", "dst_port": 53},
     "udp and (src udp port >= 1 and src udp port <= 2) and dst udp port 53"),
    ({"protocol": "icmp"}, "icmp"),
])
def test_click_patterns(fields, pattern):
    parsed, issues = match(fields)
    assert issues == [] and parsed is not None
    assert click_pattern(parsed) == pattern


@pytest.mark.parametrize(("function", "params", "issues"), [
    ("passthrough", {"x": 1}, [Issue(("x",), "unknown key 'x' (nothing is allowed here)", True)]),
    ("monitor", None, [Issue((), "params must be a mapping, got null")]),
    ("rate-limiter", {}, [Issue((), "give exactly one of pps (packets per second) or bps (bits per second)")]),
    ("nat", {"address": "10.0.0.1", "ports": "0-100"},
     [Issue(("ports",), "NAT ports must be a range within 1-65535, such as \"1024-65535\"")]),
    ("rate-limiter", {"bps": "40G"},
     [Issue(("bps",), "40000000000 bps is more than Click's rate splitters take (at most 34,359,738,360 bps)")]),
    ("ids", {"signatures": []}, [Issue(("signatures",), "give at least one signature")]),
    ("ids", {"signatures": [5]}, [Issue(("signatures", 0), "expected a signature (a mapping), got an integer")]),
    ("firewall", {"rules": {}}, [Issue(("rules",), "expected a list of rules, got a mapping")]),
    ("nope", {}, [Issue((), "unknown function 'nope'")]),
])
def test_validate_params(function, params, issues):
    assert validate_params(function, params) == issues


def test_custom_functions_get_their_variables_filled_in():
    chainset = load_chain_file(os.path.join(EXAMPLES, "icmp-custom.yaml"))
    config = render("ttl-hop", {}, instance_mac=MAC, uplink_mac=UPLINK, functions=chainset.functions)
    assert "Classifier(0/020000000001 12/0800, -)" in config
    assert f"EtherRewrite(SRC {MAC}, DST {UPLINK})" in config
    assert "$" not in config


def example_configs() -> list[tuple[str, str]]:
    out = []
    for name in sorted(os.listdir(EXAMPLES)):
        chainset = load_chain_file(os.path.join(EXAMPLES, name))
        for chain in chainset.chains:
            for hop in chain.hops:
                out.append((f"{chain.name}/{hop.name}",
                            render(hop.function, hop.params, instance_mac=MAC, uplink_mac=UPLINK,
                                   functions=chainset.functions)))
    return out


def test_every_rendered_config_passes_the_click_checker():
    check = pytest.importorskip("clickos_agent.click.check",
                                reason="the Click toolkit (clickos_agent.click) is not there yet").check
    configs = [(function, rendered(function)) for function in sorted(SAMPLES)] + example_configs()
    for name, config in configs:
        result = check(config, name)
        assert result.errors == [], name
        assert result.warnings == [], name


# ---- behaviour: packets through the rendered configs, on the Click runtime ------------------------

def ipv4_frame(src: str, dst: str, proto: int, sport: int = 0, dport: int = 0, dst_mac: str = MAC) -> bytes:
    """An Ethernet frame with a valid IPv4 header (CheckIPHeader verifies the checksum)."""
    payload = bytes(8)
    if proto == 17:
        payload = struct.pack("!HHHH", sport, dport, 8 + 12, 0) + bytes(12)
    elif proto == 6:
        payload = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 1024, 0, 0)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                         bytes(int(x) for x in src.split(".")), bytes(int(x) for x in dst.split(".")))
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
    ethernet = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000000099") + b"\x08\x00"
    return ethernet + header + payload


def run_config(config: str, frames: list[bytes], tmp_path) -> tuple[dict[str, str], list[bytes]]:
    """Run ``config`` with FromDevice/ToDevice swapped for pcap files; counters and output frames."""
    runtime = pytest.importorskip("clickos_agent.click.runtime",
                                  reason="the Click runtime (clickos_agent.click) is not there yet")
    pcap = pytest.importorskip("clickos_agent.click.pcap")
    source, sink = tmp_path / "in.pcap", tmp_path / "out.pcap"
    pcap.write_pcap(str(source), frames)
    config = config.replace("FromDevice(0)", f"FromDump({source})")
    config = config.replace("ToDevice(0)", f"ToDump({sink})")
    router = runtime.Router.from_text(config)
    router.run()                     # until the source is done and the queue drained
    counters = {}
    for line in router.read_handler("list").split()[1:]:
        if router.read_handler(f"{line}.class") == "Counter":
            counters[line] = router.read_handler(f"{line}.count")
    router.cleanup()
    return counters, [data for _, data in pcap.read_pcap(str(sink))]


def example_hop(file: str, hop: str) -> str:
    chainset = load_chain_file(os.path.join(EXAMPLES, file))
    found = next(h for c in chainset.chains for h in c.hops if h.name == hop)
    return render(found.function, found.params, instance_mac=MAC, uplink_mac=UPLINK)


def test_web_firewall_blocks_client2_on_8081(tmp_path):
    frames = [
        ipv4_frame("10.0.1.1", "10.0.2.1", 6, 40000, 8081),     # client1 -> 8081: allowed
        ipv4_frame("10.0.1.2", "10.0.2.1", 6, 40001, 8081),     # client2 -> 8081: denied
        ipv4_frame("10.0.1.2", "10.0.2.1", 6, 40002, 80),       # client2 -> 80: allowed
        ipv4_frame("10.0.1.1", "10.0.2.1", 6, 40003, 22),       # ssh: default deny
        ipv4_frame("10.0.1.1", "10.0.2.1", 6, 40004, 80, dst_mac="02:00:00:00:00:02"),  # not ours
    ]
    counters, out = run_config(example_hop("web.yaml", "fw"), frames, tmp_path)
    assert counters == {"count_in": "4", "count_out": "2", "count_drop": "2"}
    assert [frame[14:] for frame in out] == [frames[0][14:], frames[2][14:]]
    # sent back to the uplink, from the instance
    assert all(frame[:12] == bytes.fromhex("0200000000fe" "020000000001") for frame in out)


def test_ids_drops_and_counts_matching_signatures(tmp_path):
    frames = [
        ipv4_frame("10.0.1.1", "10.0.2.2", 17, 5000, 69),       # tftp: dropped
        ipv4_frame("10.0.1.1", "10.0.2.2", 17, 5000, 5201),     # iperf3: passes
        ipv4_frame("10.0.1.66", "10.0.2.2", 17, 5000, 5201),    # quarantined host: dropped
    ]
    counters, out = run_config(example_hop("udp-ids.yaml", "ids"), frames, tmp_path)
    assert counters["sig_tftp"] == "1" and counters["sig_quarantined"] == "1"
    assert counters["count_drop"] == "2" and counters["count_out"] == "1"
    assert len(out) == 1 and struct.unpack("!H", out[0][36:38]) == (5201,)


def test_monitor_counts_per_protocol(tmp_path):
    frames = [ipv4_frame("10.0.1.1", "10.0.2.2", 1), ipv4_frame("10.0.1.1", "10.0.2.2", 17, 1, 2),
              ipv4_frame("10.0.1.1", "10.0.2.2", 17, 1, 3), ipv4_frame("10.0.1.1", "10.0.2.2", 47)]
    counters, out = run_config(rendered("monitor"), frames, tmp_path)
    assert counters == {"count_in": "4", "count_tcp": "0", "count_udp": "2", "count_icmp": "1",
                        "count_other": "1", "count_out": "4"}
    assert len(out) == 4


def test_nat_rewrites_the_source_and_drops_what_it_cannot_translate(tmp_path):
    frames = [
        ipv4_frame("10.0.1.1", "10.0.2.2", 6, 40000, 80),       # outbound: translated
        ipv4_frame("10.0.2.2", "10.0.1.200", 6, 80, 1),         # a "reply" with no mapping: dropped
        ipv4_frame("10.0.1.1", "10.0.2.2", 1),                  # ICMP cannot be translated: dropped
    ]
    counters, out = run_config(example_hop("nat.yaml", "nat"), frames, tmp_path)
    assert (counters["count_in"], counters["count_out"], counters["count_drop"]) == ("3", "1", "1")
    src, sport = out[0][26:30], struct.unpack("!H", out[0][34:36])[0]
    assert src == bytes([10, 0, 1, 200]) and 20000 <= sport <= 29999
    assert out[0][30:34] == bytes([10, 0, 2, 2])
