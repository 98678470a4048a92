"""IPRewriter: input specs, the flow table, reply direction and checksums.

Scenarios follow Click's own tests (test/IPRewriter/IPRewriter-0*.clicktest).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ICMP, IP, TCP, UDP, Ether, raw

from clickos_agent.click.element import ArgError, HandlerError
from clickos_agent.click.elements.rewriter import IPRewriter, IPRewriterPatterns
from clickos_agent.click.packet import Packet
from clickos_agent.click.pcap import read_pcap, write_pcap
from clickos_agent.click.runtime import Router, RouterError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rewriter(conf: list[str], ninputs: int = 2, noutputs: int = 2) -> tuple[IPRewriter, list[tuple[int, Packet]]]:
    rw = IPRewriter("rw", ninputs, noutputs)
    rw.clock = Clock()
    rw.configure(conf)
    got: list[tuple[int, Packet]] = []
    rw.out = [lambda p, k=k: got.append((k, p)) for k in range(noutputs)]
    return rw, got


def packet(src: str, sport: int, dst: str, dport: int, proto: str = "T", **ip: object) -> Packet:
    l4 = TCP(sport=sport, dport=dport, seq=7) if proto == "T" else UDP(sport=sport, dport=dport)
    p = Packet(raw(Ether() / IP(src=src, dst=dst, **ip) / l4 / b"payload"))
    p.ip_off = p.off + 14
    return p


def summary(p: Packet) -> tuple[str, int, str, int]:
    ip = Ether(p.data)[IP]
    return ip.src, ip.payload.sport, ip.dst, ip.payload.dport


def checksums_ok(p: Packet) -> bool:
    """Incremental updates must give what a full recomputation gives."""
    ip = Ether(p.data)[IP]
    fresh = IP(raw(ip))
    del fresh.chksum
    del fresh.payload.chksum
    fresh = IP(raw(fresh))
    return fresh.chksum == ip.chksum and fresh.payload.chksum == ip.payload.chksum


def test_click_iprewriter_01_forward_and_reply() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 1024-65535# - - 0 1", "drop"])
    for args in [("18.26.4.44", 30, "10.0.0.4", 40), ("18.26.4.44", 30, "10.0.0.4", 40),
                 ("18.26.4.44", 20, "10.0.0.8", 80)]:
        rw.push(0, packet(*args))
    assert [(k, summary(p)) for k, p in got] == [
        (0, ("1.0.0.1", 1024, "10.0.0.4", 40)),
        (0, ("1.0.0.1", 1024, "10.0.0.4", 40)),
        (0, ("1.0.0.1", 1025, "10.0.0.8", 80)),
    ]
    got.clear()
    # replies arrive on the 'drop' input but match the table
    for args in [("10.0.0.4", 40, "1.0.0.1", 1024), ("10.0.0.8", 80, "1.0.0.1", 1025),
                 ("10.0.0.8", 80, "1.0.0.1", 1026)]:
        rw.push(1, packet(*args))
    assert [(k, summary(p)) for k, p in got] == [
        (1, ("10.0.0.4", 40, "18.26.4.44", 30)),
        (1, ("10.0.0.8", 80, "18.26.4.44", 20)),
    ]
    assert all(checksums_ok(p) for _, p in got)
    assert rw.read_handlers["nmappings"]() == "2"
    lookup = rw.param_read_handlers["tcp_lookup"]
    assert lookup("18.26.4.44 30 10.0.0.4 40") == "1.0.0.1 1024 10.0.0.4 40"
    assert lookup("10.0.0.4 40 1.0.0.1 1024") == "10.0.0.4 40 18.26.4.44 30"
    assert lookup("10.0.0.4 40 1.0.0.1 1025") == ""
    with pytest.raises(ArgError, match="SPORT: parse error"):
        lookup("10.0.0.4 x 1.0.0.1 1025")
    assert rw.read_handlers["patterns"]() == "1.0.0.1 1024-65535 - - [2]\n<drop>\n"


def test_click_iprewriter_03_sequential_ports_wrap() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 1024-1026# - - 0 1", "drop"])
    flows = [(1, "10.0.0.4", 1), (2, "10.0.0.8", 2), (3, "10.0.0.4", 3), (4, "10.0.0.8", 2),
             (5, "10.0.0.8", 2), (6, "10.0.0.8", 2), (1, "10.0.0.4", 1)]
    for sport, dst, dport in flows:
        rw.push(0, packet("18.26.4.44", sport, dst, dport))
    ports = [summary(p)[1] for _, p in got]
    # the 6th flow finds all three ports taken towards 10.0.0.8:2 and is dropped
    assert ports == [1024, 1025, 1026, 1024, 1026, 1024]
    assert rw.read_handlers["mapping_failures"]() == "1"


def test_same_port_kept_when_free_without_hash() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 1024-65535 - - 0 1", "drop"])
    rw.push(0, packet("10.0.0.1", 40000, "8.8.8.8", 53, "U"))
    rw.push(0, packet("10.0.0.2", 40000, "8.8.8.8", 53, "U"))
    first, second = (summary(p) for _, p in got)
    assert first == ("1.0.0.1", 40000, "8.8.8.8", 53)
    assert second[0] == "1.0.0.1" and second[1] != 40000 and 1024 <= second[1] <= 65535
    assert all(checksums_ok(p) for _, p in got)


def test_keep_pass_and_destination_rewrite() -> None:
    rw, got = rewriter(["keep 0 1", "pattern - - 192.168.0.9 8080 1 0", "pass 1"], ninputs=3)
    rw.push(0, packet("10.0.0.1", 1000, "10.0.0.2", 80))
    rw.push(1, packet("10.0.0.3", 1001, "10.0.0.2", 80))
    rw.push(2, packet("10.0.0.3", 1002, "10.0.0.2", 80))
    rw.push(1, packet("192.168.0.9", 8080, "10.0.0.3", 1001))   # a reply on another input
    assert [(k, summary(p)) for k, p in got] == [
        (0, ("10.0.0.1", 1000, "10.0.0.2", 80)),
        (1, ("10.0.0.3", 1001, "192.168.0.9", 8080)),
        (1, ("10.0.0.3", 1002, "10.0.0.2", 80)),
        (0, ("10.0.0.2", 80, "10.0.0.3", 1001)),
    ]
    assert got[1][1].dst_ip == bytes([192, 168, 0, 9])
    assert all(checksums_ok(p) for _, p in got)


def test_tcp_and_udp_tables_are_separate() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 5000-5001# - - 0 1", "drop"])
    rw.push(0, packet("10.0.0.1", 1, "10.0.0.2", 2, "T"))
    rw.push(0, packet("10.0.0.1", 1, "10.0.0.2", 2, "U"))
    assert [summary(p)[1] for _, p in got] == [5000, 5001]
    assert "=> (1.0.0.1, 5000, 10.0.0.2, 2) [*0 1] i0 exp300" in rw.read_handlers["tcp_table"]()
    assert "(10.0.0.2, 2, 1.0.0.1, 5001) => (10.0.0.2, 2, 10.0.0.1, 1) [0 *1] i0 exp300" \
        in rw.read_handlers["udp_table"]()


def test_non_tcp_udp_and_fragments_only_pass_on_nochange_inputs() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 - - - 0 1", "pass 1"])
    icmp = Packet(raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()))
    icmp.ip_off = icmp.off + 14
    rw.push(0, icmp)
    rw.push(1, icmp)
    frag = packet("10.0.0.1", 1, "10.0.0.2", 2, frag=3)
    rw.push(0, frag)
    rw.push(1, frag)
    assert [k for k, _ in got] == [1, 1]


def test_zero_udp_checksum_stays_zero() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 - - - 0 1", "drop"])
    p = Packet(raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2, chksum=0)))
    p.ip_off = p.off + 14
    rw.push(0, p)
    ip = Ether(got[0][1].data)[IP]
    assert ip.src == "1.0.0.1" and ip[UDP].chksum == 0


def test_address_range_and_prefix() -> None:
    rw, got = rewriter(["pattern 1.0.0.0/30# - 0 1", "drop"])
    for sport in (1, 2, 3):
        rw.push(0, packet("10.0.0.1", sport, "10.0.0.2", 2))
    assert [summary(p)[0] for _, p in got] == ["1.0.0.1", "1.0.0.2", "1.0.0.1"]


def test_capacity_admission_control_and_expiry() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 1024-2000# - - 0 1", "drop", "MAPPING_CAPACITY 2",
                        "REAP_INTERVAL 10"])
    for sport in (1, 2, 3):
        rw.push(0, packet("10.0.0.1", sport, "10.0.0.2", 2))
    assert len(got) == 2     # the third flow would evict a guaranteed one: refused
    rw.clock.now += 6        # guarantees (5 s) over: best-effort flows can be evicted
    rw.push(0, packet("10.0.0.1", 4, "10.0.0.2", 2))
    assert len(got) == 3 and rw.read_handlers["size"]() == "2"
    rw.clock.now += 400      # past the TCP no-data timeout: the next reap empties the table
    rw.push(0, packet("10.0.0.1", 5, "10.0.0.2", 2))
    assert rw.read_handlers["nmappings"]() == "1"
    rw.write_handlers["clear"]("")
    assert rw.read_handlers["tcp_table"]() == ""


@pytest.mark.parametrize(("conf", "ninputs", "noutputs", "message"), [
    (["pattern 1.0.0.1 - - - 0 1"], 2, 2, "need 2 arguments, one per input port"),
    (["pattern 1.0.0.1 1x - - 0 1"], 1, 2, "input spec 0: bad source port"),
    (["pattern 1.0.0.0 456-19 - - 0 1"], 1, 2, "input spec 0: bad source port"),
    (["pattern 1.0.0.0 456-65536 - - 0 1"], 1, 2, "input spec 0: bad source port"),
    (["pattern 1.0.0 - - - 0 1"], 1, 2, "input spec 0: bad source address"),
    (["pattern - - 1.2.3 - 0 1"], 1, 2, "input spec 0: bad destination address"),
    (["pattern - - - 0 0 1"], 1, 2, "input spec 0: bad destination port"),
    (["pattern - - - - 0 2"], 1, 2, "input spec 0: output port out of range"),
    (["pattern - - - - x 1"], 1, 2, "input spec 0: bad forward port"),
    (["pattern - - - - 0 y"], 1, 2, "input spec 0: bad reply port"),
    (["pattern 0 1"], 1, 2, "input spec 0: syntax error"),
    (["pattern a b c d e 0 1"], 1, 2, "input spec 0: syntax error"),
    (["keep 0"], 1, 2, "bad forward port"),
    (["pass 2"], 1, 2, "output port out of range"),
    (["pass x"], 1, 2, "syntax error, expected 'nochange [OUTPUT]'"),
    (["drop 1"], 1, 2, "syntax error, expected 'drop'"),
    (["rewrite"], 1, 2, "input spec 0: unknown specification"),
    (["", "drop"], 2, 2, "input spec 0: empty argument"),
    (["drop", "MAPPING_CAPACITY lots"], 1, 1, "bad MAPPING_CAPACITY"),
    (["drop", "TCP_TIMEOUT soon"], 1, 1, "TCP_TIMEOUT: parse error"),
    (["drop", "REPLY_ANNO 99"], 1, 1, "REPLY_ANNO: parse error"),
    (["drop", "FOO 1"], 1, 1, "need 1 arguments, one per input port"),
])
def test_rejects(conf: list[str], ninputs: int, noutputs: int, message: str) -> None:
    rw = IPRewriter("rw", ninputs, noutputs)
    with pytest.raises(ArgError, match=message.replace("[", r"\[")):
        rw.configure(conf)


def test_accepts_click_pattern_forms() -> None:
    rw = IPRewriter("rw", 5, 2)
    rw.configure(["pattern 1.0.0.1 1 - - 0 1", "pattern 1.0.0.1 1-65535 - - 0 1",
                  "pattern 1.0.0.1 - - - 0 1", "pattern 1.0.0.1-1.0.0.9 2.0.0.1 0 1",
                  "xpattern - 1024-2048? - - 1 0", "TIMEOUT 1h", "DST_ANNO false"])
    assert rw.read_handlers["patterns"]() == (
        "1.0.0.1 1 - -\n1.0.0.1 1-65535 - -\n1.0.0.1 - - -\n1.0.0.1-1.0.0.9 2.0.0.1\n- 1024-2048 - -\n")


def test_click_iprewriter_11_capacity_reserves_room_for_new_flows() -> None:
    """Click's IPRewriter-11: guarantees, admission control and best-effort eviction."""
    rw, got = rewriter(["pattern 2.0.0.1 1024-65535# - - 0 1", "drop", "MAPPING_CAPACITY 8"])
    trace = [(0, "T", 0.1 * k, f"1.0.0.{k}", 10 + k, "2.0.0.2", 20 + k) for k in range(1, 10)]
    trace += [(1, "T", 1 + 0.1 * k, "2.0.0.2", 20 + k, "2.0.0.1", 1023 + k) for k in range(1, 10)]
    trace += [(0, "U", 7.0, "1.0.0.10", 20, "2.0.0.2", 30)]
    trace += [(1, "T", 7 + 0.1 * k, "2.0.0.2", 20 + k, "2.0.0.1", 1023 + k) for k in range(1, 10)]
    trace += [(1, "U", 8.0, "2.0.0.2", 30, "2.0.0.1", 1033),
              (0, "T", 14.0, "1.0.0.11", 21, "2.0.0.2", 31), (1, "U", 14.1, "2.0.0.2", 30, "2.0.0.1", 1033),
              (0, "T", 14.2, "1.0.0.11", 21, "2.0.0.2", 31), (0, "U", 20.0, "1.0.0.12", 22, "2.0.0.2", 32),
              (1, "T", 20.1, "2.0.0.2", 31, "2.0.0.1", 1034), (1, "U", 20.2, "2.0.0.2", 32, "2.0.0.1", 1035)]
    start = rw.clock.now
    for port, proto, when, src, sport, dst, dport in trace:
        rw.clock.now = start + when
        l4 = TCP(sport=sport, dport=dport) if proto == "T" else UDP(sport=sport, dport=dport)
        p = Packet(raw(Ether() / IP(src=src, dst=dst) / l4 / b"XXX"))
        p.ip_off = p.off + 14
        rw.push(port, p)
    expected = [("2.0.0.1", 1023 + k, "2.0.0.2", 20 + k) for k in range(1, 9)]
    expected += [("2.0.0.2", 20 + k, f"1.0.0.{k}", 10 + k) for k in range(1, 9)]
    expected += [("2.0.0.1", 1033, "2.0.0.2", 30)]
    expected += [("2.0.0.2", 20 + k, f"1.0.0.{k}", 10 + k) for k in range(2, 9)]
    expected += [("2.0.0.2", 30, "1.0.0.10", 20), ("2.0.0.1", 1034, "2.0.0.2", 31),
                 ("2.0.0.1", 1034, "2.0.0.2", 31), ("2.0.0.1", 1035, "2.0.0.2", 32),
                 ("2.0.0.2", 32, "1.0.0.12", 22)]
    assert [summary(p) for _, p in got] == expected


def test_pattern_write_handler_replaces_spec_and_its_flows() -> None:
    rw, got = rewriter(["pattern 1.0.0.2 1024-65534# - - 0 1", "drop"])
    rw.push(0, packet("53.1.1.1", 1, "2.115.2.2", 2))
    rw.write_handlers["pattern0"]("pattern 1.0.0.4 1024-65534# - - 0 1")
    assert rw.read_handlers["pattern0"]() == "1.0.0.4 1024-65534 - -\n"
    assert rw.read_handlers["nmappings"]() == "0"
    rw.push(0, packet("53.1.1.1", 1, "2.115.2.2", 2))
    assert [summary(p)[0:2] for _, p in got] == [("1.0.0.2", 1024), ("1.0.0.4", 1024)]
    with pytest.raises(HandlerError, match="input spec 0: bad source address"):
        rw.write_handlers["pattern0"]("pattern x - - - 0 1")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=70), max_size=8), st.integers(min_value=0, max_value=1))
def test_random_packets_never_crash(payloads: list[bytes], port: int) -> None:
    rw, got = rewriter(["pattern 1.0.0.1 1024-1030# - - 0 1", "keep 1 0"])
    for data in payloads:
        p = Packet(data)
        p.ip_off = p.off
        rw.push(port, p)
        rw.push(1 - port, p)
    assert len(got) <= 2 * len(payloads)


def test_udp_streaming_timeout_after_three_packets_both_ways() -> None:
    rw, got = rewriter(["pattern 1.0.0.1 - - - 0 1", "drop", "UDP_STREAMING_TIMEOUT 1000"])
    rw.push(0, packet("10.0.0.1", 5, "10.0.0.2", 6, "U"))
    rw.push(1, packet("10.0.0.2", 6, "1.0.0.1", 5, "U"))
    assert "exp300" in rw.read_handlers["udp_table"]()
    rw.push(0, packet("10.0.0.1", 5, "10.0.0.2", 6, "U"))
    assert "exp1000" in rw.read_handlers["udp_table"]()


def test_udp_table_in_clicks_order() -> None:
    """The lines and their order as Click 2.1 printed them for this trace."""
    rw, _ = rewriter(["pattern 1.0.0.1 - - - 0 1", "drop", "UDP_STREAMING_TIMEOUT 1000"])
    rw.push(0, packet("10.0.0.1", 5, "10.0.0.2", 6, "U"))
    rw.push(1, packet("10.0.0.2", 6, "1.0.0.1", 5, "U"))
    rw.push(0, packet("10.0.0.1", 5, "10.0.0.2", 6, "U"))
    rw.push(0, packet("10.0.0.1", 7, "10.0.0.2", 6, "U"))
    assert rw.read_handlers["udp_table"]() == (
        "(10.0.0.2, 6, 1.0.0.1, 7) => (10.0.0.2, 6, 10.0.0.1, 7) [0 *1] i0 exp300\n"
        "(10.0.0.1, 5, 10.0.0.2, 6) => (1.0.0.1, 5, 10.0.0.2, 6) [*0 1] i0 exp1000\n"
        "(10.0.0.2, 6, 1.0.0.1, 5) => (10.0.0.2, 6, 10.0.0.1, 5) [0 *1] i0 exp1000\n"
        "(10.0.0.1, 7, 10.0.0.2, 6) => (1.0.0.1, 7, 10.0.0.2, 6) [*0 1] i0 exp300\n")


def test_named_patterns_from_iprewriterpatterns(tmp_path: Path) -> None:
    write_pcap(str(tmp_path / "in.pcap"), [raw(Ether() / IP(src="10.0.0.1", dst="8.8.8.8") / UDP(sport=k, dport=53))
                                           for k in (1, 2)])
    config = f"""
        IPRewriterPatterns(NAT 1.0.0.1 1024-65535# - -);
        FromDump({tmp_path / "in.pcap"}, STOP true) -> Strip(14) -> CheckIPHeader -> t :: Tee;
        t[0] -> rw1 :: IPRewriter(pattern NAT 0 1) -> ToDump({tmp_path / "out1.pcap"});
        t[1] -> rw2 :: IPRewriter(pattern NAT 0 1) -> ToDump({tmp_path / "out2.pcap"});
        rw1[1] -> Discard; rw2[1] -> Discard;
    """
    router = Router.from_text(config)
    router.run(until_done=True)
    assert router.read_handler("rw1.patterns") == "1.0.0.1 1024-65535 - - [2]\n"
    router.cleanup()
    ports = [[IP(d)[UDP].sport for _, d in read_pcap(str(tmp_path / f"out{k}.pcap"))] for k in (1, 2)]
    assert ports == [[1024, 1026], [1025, 1027]]    # one shared pattern, as in Click


def test_unknown_named_pattern_fails_at_initialize() -> None:
    with pytest.raises(RouterError, match="input spec 0: no such pattern 'NAT'"):
        Router.from_text("Idle -> rw :: IPRewriter(pattern NAT 0 0) -> Idle;")


def test_iprewriterpatterns_rejects() -> None:
    el = IPRewriterPatterns("p", 0, 0)
    with pytest.raises(ArgError, match="pattern 'A' already defined; bad source port"):
        el.configure(["A 1.0.0.1 - - -", "A 1.0.0.2 - - -", "B 1.0.0.1 x - -"])
