"""End to end: a NAT built from IPRewriter, driven by pcaps through the runtime.

The expected outputs were checked against a user-level Click build running
the same configuration on the same traces.
"""

from __future__ import annotations

from pathlib import Path

from scapy.all import IP, TCP, UDP, Ether, raw

from clickos_agent.click.pcap import read_pcap, write_pcap
from clickos_agent.click.runtime import Router


def frame(src: str, sport: int, dst: str, dport: int, lan: bool, udp: bool = False) -> bytes:
    l4 = UDP(sport=sport, dport=dport) if udp else TCP(sport=sport, dport=dport, flags="A")
    mac = "00:00:00:00:00:01" if lan else "00:00:00:00:00:02"
    return raw(Ether(src=mac) / IP(src=src, dst=dst) / l4 / b"data")


def headers(data: bytes) -> tuple[str, int, str, int, bool]:
    """Addresses and ports of an IP packet, and whether its checksums verify."""
    ip = IP(data)
    fresh = IP(raw(ip))
    del fresh.chksum
    del fresh.payload.chksum
    fresh = IP(raw(fresh))
    ok = fresh.chksum == ip.chksum and fresh.payload.chksum == ip.payload.chksum
    return ip.src, ip.payload.sport, ip.dst, ip.payload.dport, ok


def test_nat_forward_and_reply(tmp_path: Path) -> None:
    trace = [
        frame("10.0.0.4", 40, "8.8.8.8", 53, lan=True, udp=True),
        frame("10.0.0.4", 41, "9.9.9.9", 80, lan=True),
        frame("8.8.8.8", 53, "1.0.0.1", 1024, lan=False, udp=True),
        frame("9.9.9.9", 80, "1.0.0.1", 1025, lan=False),
        frame("9.9.9.9", 80, "1.0.0.1", 1026, lan=False),     # no mapping: dropped
        frame("10.0.0.4", 40, "8.8.8.8", 53, lan=True, udp=True),
    ]
    write_pcap(str(tmp_path / "in.pcap"), trace)
    config = f"""
        FromDump({tmp_path / "in.pcap"}, STOP true) -> side :: Classifier(6/000000000001, -);
        rw :: IPRewriter(pattern 1.0.0.1 1024-65535# - - 0 1, drop);
        side[0] -> Strip(14) -> CheckIPHeader -> [0]rw;
        side[1] -> Strip(14) -> CheckIPHeader -> [1]rw;
        rw[0] -> ToDump({tmp_path / "out.pcap"});
        rw[1] -> ToDump({tmp_path / "back.pcap"});
    """
    router = Router.from_text(config)
    router.run(until_done=True)
    udp_table = router.read_handler("rw.udp_table")
    tcp_table = router.read_handler("rw.tcp_table")
    router.cleanup()
    out = [headers(d) for _, d in read_pcap(str(tmp_path / "out.pcap"))]
    back = [headers(d) for _, d in read_pcap(str(tmp_path / "back.pcap"))]
    assert out == [("1.0.0.1", 1024, "8.8.8.8", 53, True), ("1.0.0.1", 1025, "9.9.9.9", 80, True),
                   ("1.0.0.1", 1024, "8.8.8.8", 53, True)]
    assert back == [("8.8.8.8", 53, "10.0.0.4", 40, True), ("9.9.9.9", 80, "10.0.0.4", 41, True)]
    # the table lines as Click prints them (data both ways: TCP's 24-hour timeout)
    assert sorted(udp_table.splitlines()) == [
        "(10.0.0.4, 40, 8.8.8.8, 53) => (1.0.0.1, 1024, 8.8.8.8, 53) [*0 1] i0 exp300",
        "(8.8.8.8, 53, 1.0.0.1, 1024) => (8.8.8.8, 53, 10.0.0.4, 40) [0 *1] i0 exp300"]
    assert sorted(tcp_table.splitlines()) == [
        "(10.0.0.4, 41, 9.9.9.9, 80) => (1.0.0.1, 1025, 9.9.9.9, 80) [*0 1] i0 exp86400",
        "(9.9.9.9, 80, 1.0.0.1, 1025) => (9.9.9.9, 80, 10.0.0.4, 41) [0 *1] i0 exp86400"]
