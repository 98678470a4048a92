"""Every catalog function's rendered ClickOS config runs on the runtime.

The device elements are swapped for dump files, so each config sees a crafted
trace and its output is checked for what the function promises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, raw

from chains.catalog import render
from clickos_agent.click.pcap import read_pcap, write_pcap
from clickos_agent.click.runtime import Router

INSTANCE = "02:00:00:00:00:01"
UPLINK = "02:00:00:00:00:fe"
CLIENT = "02:00:00:00:00:aa"


def frame(l4: Any, src: str = "10.0.1.2", dst: str = "10.0.2.2", to: str = INSTANCE) -> bytes:
    return raw(Ether(src=CLIENT, dst=to) / IP(src=src, dst=dst) / l4 / Raw(b"x" * 20))


TRACE = [
    frame(TCP(sport=4000, dport=80)),
    frame(TCP(sport=4001, dport=23)),
    frame(UDP(sport=5000, dport=69)),
    frame(ICMP()),
    frame(UDP(sport=5001, dport=53), to="02:00:00:00:00:02"),   # for another instance
]


def run_function(tmp_path: Path, function: str, params: dict[str, Any]) -> tuple[list[bytes], Router]:
    config = render(function, params, instance_mac=INSTANCE, uplink_mac=UPLINK)
    write_pcap(str(tmp_path / "in.pcap"), TRACE)
    config = config.replace("FromDevice(0)", f"FromDump({tmp_path}/in.pcap, STOP true)")
    config = config.replace("ToDevice(0)", f"ToDump({tmp_path}/out.pcap)")
    router = Router.from_text(config, f"<{function}>")
    router.run()
    router.cleanup()
    return [d for _, d in read_pcap(str(tmp_path / "out.pcap"))], router


def test_passthrough_returns_own_traffic_to_the_uplink(tmp_path: Path) -> None:
    out, router = run_function(tmp_path, "passthrough", {})
    assert len(out) == 4
    for sent, got in zip(TRACE, out):
        assert got[:12] == bytes.fromhex(UPLINK.replace(":", "") + INSTANCE.replace(":", ""))
        assert got[12:] == sent[12:]
    assert router.read_handler("count_in.count") == "4"
    assert router.read_handler("count_out.count") == "4"


def test_monitor_counts_per_protocol(tmp_path: Path) -> None:
    out, router = run_function(tmp_path, "monitor", {"by_protocol": True})
    assert len(out) == 4
    assert router.read_handler("count_tcp.count") == "2"
    assert router.read_handler("count_udp.count") == "1"
    assert router.read_handler("count_icmp.count") == "1"


def test_firewall_drops_what_its_rules_deny(tmp_path: Path) -> None:
    out, router = run_function(tmp_path, "firewall", {
        "default": "allow", "rules": [{"action": "deny", "protocol": "tcp", "dst_port": 23}]})
    assert [IP(p[14:]).payload.dport if not IP(p[14:]).haslayer(ICMP) else "icmp" for p in out] == \
        [80, 69, "icmp"]
    assert router.read_handler("count_drop.count") == "1"


def test_ids_drops_signature_matches(tmp_path: Path) -> None:
    out, router = run_function(tmp_path, "ids", {"signatures": [
        {"name": "tftp", "protocol": "udp", "dst_port": 69}]})
    assert len(out) == 3
    assert router.read_handler("sig_tftp.count") == "1"


def test_rate_limiter_passes_a_short_burst(tmp_path: Path) -> None:
    out, _ = run_function(tmp_path, "rate-limiter", {"pps": 20000})
    assert len(out) == 4


@pytest.mark.parametrize("ports", ["20000-29999"])
def test_nat_rewrites_sources(tmp_path: Path, ports: str) -> None:
    out, _ = run_function(tmp_path, "nat", {"address": "10.0.1.200", "ports": ports})
    assert out
    for packet in out:
        ip = IP(packet[14:])
        assert ip.src == "10.0.1.200"
        assert 20000 <= ip.payload.sport <= 29999
