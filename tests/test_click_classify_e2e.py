"""End to end: configuration text + input pcap -> output pcaps through the runtime.

The expected outputs were checked against a user-level Click build running
the same configurations on the same traces.
"""

from __future__ import annotations

from pathlib import Path

from scapy.all import ICMP, IP, TCP, UDP, Ether, raw

from clickos_agent.click.pcap import read_pcap, write_pcap
from clickos_agent.click.runtime import Router

FRAMES = [
    raw(Ether() / IP(src="10.0.0.1", dst="1.2.3.4") / TCP(sport=1234, dport=80, flags="S")),
    raw(Ether() / IP(src="10.0.0.2", dst="1.2.3.4") / UDP(sport=5353, dport=53)),
    raw(Ether() / IP(src="192.168.1.1", dst="1.2.3.4") / ICMP(type=8)),
    raw(Ether() / IP(src="10.0.0.1", dst="1.2.3.4") / TCP(sport=1234, dport=22, flags="A")),
    raw(Ether() / IP(src="10.0.0.1", dst="1.2.3.4", frag=10, proto=6) / (b"\0" * 20)),
    raw(Ether(type=0x86DD) / (b"\x60" + b"\0" * 39)),
]


def run(tmp_path: Path, config: str, frames: list[bytes], outputs: int) -> list[list[bytes]]:
    write_pcap(str(tmp_path / "in.pcap"), frames)
    text = config.replace("IN", str(tmp_path / "in.pcap"))
    for k in range(outputs):
        text = text.replace(f"OUT{k}", str(tmp_path / f"out{k}.pcap"))
    router = Router.from_text(text)
    router.run(until_done=True)
    router.cleanup()
    return [[data for _, data in read_pcap(str(tmp_path / f"out{k}.pcap"))] for k in range(outputs)]


def test_classifier_then_ipclassifier(tmp_path: Path) -> None:
    config = """
        FromDump(IN, STOP true) -> c :: Classifier(12/0800, -);
        c[0] -> Strip(14) -> CheckIPHeader -> ic :: IPClassifier(tcp dst port 80 or 443, udp || icmp type echo, -);
        ic[0] -> Unstrip(14) -> ToDump(OUT0);
        ic[1] -> Unstrip(14) -> ToDump(OUT1);
        ic[2] -> Unstrip(14) -> ToDump(OUT2);
        c[1] -> ToDump(OUT3);
    """
    out = run(tmp_path, config, FRAMES, 4)
    assert out == [[FRAMES[0]], [FRAMES[1], FRAMES[2]], [FRAMES[3], FRAMES[4]], [FRAMES[5]]]


def test_ipfilter_firewall(tmp_path: Path) -> None:
    config = """
        FromDump(IN, STOP true) -> Strip(14) -> CheckIPHeader
            -> f :: IPFilter(deny src 192.168.0.0/16, allow tcp && dst port 22, 1 unfrag, deny all);
        f[0] -> ToDump(OUT0);
        f[1] -> ToDump(OUT1);
    """
    out = run(tmp_path, config, FRAMES[:5], 2)
    assert out == [[FRAMES[3][14:]], [FRAMES[0][14:], FRAMES[1][14:]]]


def test_ipfilter_bad_pattern_names_the_element(tmp_path: Path) -> None:
    config = "FromDump(IN, STOP true) -> f :: IPFilter(allow tcp port) -> ToDump(OUT0);"
    try:
        run(tmp_path, config, FRAMES, 1)
    except Exception as e:  # noqa: BLE001 - the router reports configure errors
        assert "While configuring 'f :: IPFilter': pattern 0: 'port': value missing" in str(e)
    else:
        raise AssertionError("the configuration should be refused")
