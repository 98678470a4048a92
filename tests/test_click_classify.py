"""Classifier, IPClassifier and IPFilter: Click's verdicts and outputs.

Expected results come from Click's source and its own test suite
(test/ip/IPFilter-0*.clicktest, test/standard/Classifier-0*.clicktest).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ICMP, IP, TCP, UDP, Ether, raw

from clickos_agent.click.element import ArgError, Element, HandlerError
from clickos_agent.click.elements.classify import Classifier, IPClassifier, IPFilter
from clickos_agent.click.packet import Packet


def ip_packet(layers: object, truncate: int | None = None) -> Packet:
    """An Ethernet frame with the IP header annotation set, like CheckIPHeader."""
    data = raw(layers)
    if truncate is not None:
        data = data[:14 + truncate]
    p = Packet(data)
    p.ip_off = p.off + 14
    p.mac_off = p.off
    return p


def classify(cls: type[Element], conf: list[str], noutputs: int, packet: Packet) -> int | None:
    """Configure an element, push one packet, return the output it left on (None: dropped)."""
    el = cls("e", 1, noutputs)
    el.configure(conf)
    got: list[int] = []
    el.out = [lambda _p, k=k: got.append(k) for k in range(noutputs)]
    el.push(0, packet)
    push = el.push_callable(0)
    push(packet)   # the fast path must agree with push()
    assert len(got) in (0, 2) and (not got or got[0] == got[1])
    return got[0] if got else None


TCP_SYN = Ether() / IP(src="10.0.0.1", dst="1.2.3.4", ttl=5) / TCP(sport=1234, dport=80, flags="S")
TCP_ACK = Ether() / IP(src="10.0.0.1", dst="1.2.3.4", tos=0x03) / TCP(sport=1234, dport=8080, flags="A")
UDP_DNS = Ether() / IP(src="10.0.0.2", dst="1.2.3.4") / UDP(sport=53, dport=5353)
ICMP_ECHO = Ether() / IP(src="192.168.1.7", dst="1.2.3.4") / ICMP(type=8)
FRAGMENT = Ether() / IP(src="10.0.0.1", dst="1.2.3.4", frag=100, proto=6) / (b"\0" * 20)
ARP_LIKE = Ether(type=0x0806) / (b"\x00\x01\x08\x00\x06\x04\x00\x02" + b"\0" * 20)


# ---------------------------------------------------------------- Classifier

@pytest.mark.parametrize(("conf", "frame", "expected"), [
    (["12/0806 20/0001", "12/0806 20/0002", "12/0800", "-"], ARP_LIKE, 1),
    (["12/0806 20/0001", "12/0806 20/0002", "12/0800", "-"], TCP_SYN, 2),
    (["12/0806 20/0001", "12/0806 20/0002", "12/0800", "-"], Ether(type=0x86DD), 3),
    (["!12/0800", "-"], TCP_SYN, 1),
    (["12/08??", "-"], ARP_LIKE, 0),
    (["12/0800%f000", "-"], ARP_LIKE, 0),        # only the masked nibble counts
    (["12/08 23/06", "-"], TCP_SYN, 0),
    (["12/08 23/11", "12/08!23/11"], TCP_SYN, 1),  # no space needed before '!'
    (["23/06", "23/11"], UDP_DNS, 1),
    (["12/0800"], Ether(type=0x86DD), None),       # no match: dropped
    (["", "-"], TCP_SYN, 0),                       # an empty pattern matches everything
    (["12/0800%????", "-"], Ether(type=0x86DD), 0),
])
def test_classifier_outputs(conf: list[str], frame: object, expected: int | None) -> None:
    p = Packet(raw(frame))
    assert classify(Classifier, conf, len(conf), p) == expected


def test_classifier_short_packets_fail_tests_and_pass_negations() -> None:
    short = Packet(b"\0" * 12)
    assert classify(Classifier, ["12/00", "-"], 2, short) == 1
    assert classify(Classifier, ["!12/00", "-"], 2, short) == 0
    # offsets count from the data start, after Strip
    p = Packet(raw(TCP_SYN))
    p.off += 14
    assert classify(Classifier, ["9/06", "-"], 2, p) == 0


@pytest.mark.parametrize(("conf", "noutputs", "message"), [
    (["12/0800", "-"], 3, "need 3 arguments, one per output port"),
    (["12/080"], 1, "pattern 0: value has odd number of hex digits"),
    (["12/8"], 1, "pattern 0: value has less than 2 hex digits"),
    (["12/0800%ff"], 1, "pattern 0: mask has too few hex digits"),
    (["12/08%ffff"], 1, "pattern 0: mask has too many hex digits"),
    (["12"], 1, "pattern 0: expected '/'"),
    (["x12/08"], 1, "pattern 0: expected a digit"),
    (["-", "12/08x"], 2, "pattern 1: expected a digit"),
    (["- 12/08"], 1, "pattern 0: expected a digit"),
    (["!"], 1, "pattern 0: expected a digit"),
    (["12/080%ff"], 1, "pattern 0: value has odd number of hex digits; pattern 0: mask has too few hex digits"),
    (["12/0%f 14/00"], 1, "pattern 0: value has less than 2 hex digits"),
])
def test_classifier_rejects(conf: list[str], noutputs: int, message: str) -> None:
    el = Classifier("c", 1, noutputs)
    with pytest.raises(ArgError, match=message.replace("(", r"\(")):
        el.configure(conf)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="0123456789abcdefxX?%!/- ", max_size=14), min_size=1, max_size=3),
       st.binary(max_size=40))
def test_classifier_random_patterns_never_crash(conf: list[str], data: bytes) -> None:
    el = Classifier("c", 1, len(conf))
    try:
        el.configure(conf)
    except ArgError:
        return
    el.out = [lambda _p: None] * len(conf)
    el.push(0, Packet(data))


# ---------------------------------------------------------------- IPClassifier / IPFilter

PACKETS = {"syn": TCP_SYN, "ack": TCP_ACK, "dns": UDP_DNS, "ping": ICMP_ECHO, "frag": FRAGMENT}


@pytest.mark.parametrize(("conf", "expected"), [
    (["tcp", "udp", "-"], {"syn": 0, "ack": 0, "dns": 1, "ping": 2, "frag": 0}),
    (["dst tcp port 8000 or 8080", "dst tcp port > 1023", "tcp"],
     {"syn": 2, "ack": 0, "dns": None, "ping": None, "frag": 2}),
    (["10.0.0.0/24 and syn", "10.0.0.0/24 and ack", "10.0.0.0/24 and tcp", "-"],
     {"syn": 0, "ack": 1, "dns": 3, "ping": 3, "frag": 2}),
    (["src port 53 or 1234", "-"], {"syn": 0, "ack": 0, "dns": 0, "ping": 1, "frag": 1}),
    (["icmp type echo", "icmp type echo-reply", "-"],
     {"syn": 2, "ack": 2, "dns": 2, "ping": 0, "frag": 2}),
    (["ip ttl < 6", "ip ttl >= 6"], {"syn": 0, "ack": 1, "dns": 1, "ping": 1, "frag": 1}),
    (["tcp[13] & 2 != 0", "tcp opt ack", "-"], {"syn": 0, "ack": 1, "dns": 2, "ping": 2, "frag": 2}),
    (["ip[9] = 17", "ip[9:1] == 1", "-"], {"syn": 2, "ack": 2, "dns": 0, "ping": 1, "frag": 2}),
    (["ip frag", "ip unfrag"], {"syn": 1, "ack": 1, "dns": 1, "ping": 1, "frag": 0}),
    (["src host 10.0.0.2 && ! udp", "src host 10.0.0.2", "src net 10.0.0.0 mask 255.255.255.0", "-"],
     {"syn": 2, "ack": 2, "dns": 1, "ping": 3, "frag": 2}),
    (["udp ? src port 53 : icmp", "-"], {"syn": 1, "ack": 1, "dns": 0, "ping": 0, "frag": 1}),
    (["ip tos 3", "ip ce", "ip ect", "-"], {"syn": 3, "ack": 0, "dns": 3, "ping": 3, "frag": 3}),
    (["src host != 10.0.0.1", "-"], {"syn": 1, "ack": 1, "dns": 0, "ping": 0, "frag": 1}),
    (["src tcp port != 1234", "-"], {"syn": 1, "ack": 1, "dns": 1, "ping": 1, "frag": 1}),
    (["!(src tcp port == 1234)", "-"], {"syn": 1, "ack": 1, "dns": 0, "ping": 0, "frag": 0}),
    (["dst port www", "-"], {"syn": 0, "ack": 1, "dns": 1, "ping": 1, "frag": 1}),
    (["ip vers 4 and ip hl 5 and ip len < 40", "-"], {"syn": 1, "ack": 1, "dns": 0, "ping": 0, "frag": 1}),
    (["tcpudp port >= 1024", "-"], {"syn": 0, "ack": 0, "dns": 0, "ping": 1, "frag": 1}),
    (["(tcp and !(syn and !ack)) or udp", "-"], {"syn": 1, "ack": 0, "dns": 0, "ping": 1, "frag": 0}),
    (["not not tcp", "true"], {"syn": 0, "ack": 0, "dns": 1, "ping": 1, "frag": 0}),
    (["false", "all"], {"syn": 1, "ack": 1, "dns": 1, "ping": 1, "frag": 1}),
    (["src 10.0.0.1 & 8.0.0.0 = 8.0.0.0", "-"], {"syn": 0, "ack": 0, "dns": 1, "ping": 1, "frag": 0}),
    (["ip proto 300", "-"], {"syn": 0, "ack": 0, "dns": 0, "ping": 0, "frag": 0}),  # Click ignores it
    ([""], {"syn": 0, "ack": 0, "dns": 0, "ping": 0, "frag": 0}),
])
def test_ipclassifier_outputs(conf: list[str], expected: dict[str, int | None]) -> None:
    got = {name: classify(IPClassifier, conf, len(conf), ip_packet(frame))
           for name, frame in PACKETS.items()}
    assert got == expected


@pytest.mark.parametrize(("conf", "noutputs", "expected"), [
    (["deny src 10.0.0.1", "allow all"], 1, {"syn": None, "ack": None, "dns": 0, "ping": 0, "frag": None}),
    (["1 tcp", "drop udp", "0 -"], 2, {"syn": 1, "ack": 1, "dns": None, "ping": 0, "frag": 1}),
    (["allow icmp"], 1, {"syn": None, "ack": None, "dns": None, "ping": 0, "frag": None}),
    (["allow"], 1, {"syn": 0, "ack": 0, "dns": 0, "ping": 0, "frag": 0}),
    ([], 1, {"syn": None, "ack": None, "dns": None, "ping": None, "frag": None}),
])
def test_ipfilter_actions(conf: list[str], noutputs: int, expected: dict[str, int | None]) -> None:
    got = {name: classify(IPFilter, conf, noutputs, ip_packet(frame)) for name, frame in PACKETS.items()}
    assert got == expected


def test_ipfilter_ether_host() -> None:
    frame = Ether(src="00:01:02:03:04:05", dst="10:20:30:40:50:60") / IP() / UDP()
    conf = ["allow src 0:1:2:3:4:5", "1 dst 10:20:30:40:50:60", "2 host 9:A:B:C:D:E", "deny all"]
    assert classify(IPFilter, conf, 3, ip_packet(frame)) == 0
    assert classify(IPFilter, conf[1:], 3, ip_packet(frame)) == 1
    assert classify(IPFilter, conf[2:], 3, ip_packet(frame)) is None


def test_ether_host_needs_the_mac_header_annotation() -> None:
    frame = raw(Ether(src="00:01:02:03:04:05") / IP() / UDP())
    p = Packet(frame, headroom=0)
    p.ip_off, p.mac_off = 14, 0
    assert classify(IPFilter, ["allow src 0:1:2:3:4:5"], 1, p) == 0
    p.mac_off = None
    assert classify(IPFilter, ["allow src 0:1:2:3:4:5"], 1, p) is None


def test_short_packets_like_click_ipfilter_01_to_03() -> None:
    """Click's IPFilter-01..03: a test on missing bytes fails; '!=' fails too; 'not' succeeds."""
    full = Ether() / IP(proto=17) / UDP(sport=0)
    high = Ether() / IP(proto=17) / UDP(sport=128)
    assert classify(IPFilter, ["0 ip[19]&128==0"], 1, ip_packet(full)) == 0
    assert classify(IPFilter, ["0 ip[19]&128==0"], 1, ip_packet(full, truncate=19)) is None
    assert classify(IPFilter, ["0 transp[1]&128==0"], 1, ip_packet(full)) == 0
    assert classify(IPFilter, ["0 transp[1]&128==0"], 1, ip_packet(full, truncate=21)) is None
    either = ["0 transp[1]&128==0 || transp[1]&128==128"]
    assert classify(IPFilter, either, 1, ip_packet(high)) == 0
    assert classify(IPFilter, either, 1, ip_packet(high, truncate=21)) is None
    assert classify(IPFilter, ["0 transp[1]&128!=0", "1 -"], 2, ip_packet(high)) == 0
    assert classify(IPFilter, ["0 transp[1]&128!=0", "1 -"], 2, ip_packet(full, truncate=21)) == 1
    negated = ["0 not (transp[1]&128==0)"]
    assert classify(IPFilter, negated, 1, ip_packet(full, truncate=21)) == 0
    assert classify(IPFilter, negated, 1, ip_packet(high)) == 0
    assert classify(IPFilter, negated, 1, ip_packet(full)) is None


def test_ip_options_move_the_transport_header() -> None:
    frame = Ether() / IP(options=b"\x01\x01\x01\x00") / TCP(dport=22)
    assert classify(IPClassifier, ["dst port 22", "-"], 2, ip_packet(frame)) == 0
    assert classify(IPClassifier, ["ip hl 6", "-"], 2, ip_packet(frame)) == 0


@pytest.mark.parametrize(("conf", "message"), [
    (["tcp port"], "'port': value missing"),
    (["echo"], "'<none>  echo' is ambiguous; try 'port  echo', 'port  echo', 'icmp type  echo'"),
    (["80"], "specify header field or 'port'"),
    (["ip[2:4] = 1"], "field [2:4] does not fit in a single word"),
    (["ip[0:5] = 1"], "LEN in"),
    (["ip[1"], "missing ']'"),
    (["src host"], "address missing"),
    (["net 10.0.0.1"], "address missing"),
    (["(tcp"], "missing ')'"),
    (["tcp )"], "garbage after expression at ')'"),
    (["tcp and"], "missing expression"),
    (["not"], "missing expression after 'not'"),
    (["tcp ? udp"], "missing ':' in ternary expression"),
    (["tcp & 0 = 1"], "zero mask ignored"),
    (["tcp opt != syn"], "operator or mask not supported"),
    (["ip ttl 256"], "out of range, bound 255"),
    (["ip ttl & 0x1ff = 1"], "mask out of range"),
    (["tcp icmp"], "transport protocol specified twice"),
    (["host 1.2.3.4 > 1.2.3.5"], "operator not supported"),
    (["src src host 1.2.3.4"], "'src' or 'dst' specified twice"),
    (["ip ect 7"], "out of range"),
    (["ip frag 1"], "value not supported"),
    (["tcp ="], "empty term near"),
    (["icmp port 80"], "bad protocol 1"),
    (["bogus"], "empty term near 'bogus'"),
    (["ip ttl > foo"], "dangling operator near 'foo'"),
])
def test_ipclassifier_rejects(conf: list[str], message: str) -> None:
    el = IPClassifier("c", 1, len(conf))
    with pytest.raises(ArgError, match=re.escape(message)):
        el.configure(conf)


@pytest.mark.parametrize(("conf", "noutputs", "message"), [
    (["allow tcp", "3 udp"], 2, "pattern 1: slot '3' out of range"),
    (["permit tcp"], 1, "unknown slot ID 'permit'"),
    (["allow tcp"], 0, "'allow' is meaningless"),
    (["allow tcp", ""], 1, "empty pattern 1"),
])
def test_ipfilter_rejects(conf: list[str], noutputs: int, message: str) -> None:
    el = IPFilter("f", 1, noutputs)
    with pytest.raises(ArgError, match=message):
        el.configure(conf)


def test_ipclassifier_pattern_handlers_reconfigure_live() -> None:
    el = IPClassifier("c", 1, 2)
    el.configure(["tcp", "-"])
    got: list[int] = []
    el.out = [lambda _p: got.append(0), lambda _p: got.append(1)]
    push = el.push_callable(0)
    push(ip_packet(UDP_DNS))
    assert el.read_handlers["pattern0"]() == "tcp"
    el.write_handlers["pattern0"]("udp")
    push(ip_packet(UDP_DNS))
    with pytest.raises(HandlerError, match="pattern 0: 'port': value missing"):
        el.write_handlers["pattern0"]("port")
    push(ip_packet(UDP_DNS))
    assert got == [1, 0, 0] and el.read_handlers["pattern0"]() == "udp"


def test_ipclassifier_needs_one_pattern_per_output() -> None:
    with pytest.raises(ArgError, match="need 2 arguments, one per output port"):
        IPClassifier("c", 1, 2).configure(["tcp"])


_WORDS = ["tcp", "udp", "icmp", "src", "dst", "host", "net", "port", "and", "or", "not", "!",
          "(", ")", "?", ":", "ip", "[", "]", "&", "==", "!=", ">", "<=", "1.2.3.4", "10.0.0.0/8",
          "80", "0x1f", "syn", "ack", "echo", "ttl", "vers", "frag", "unfrag", "type", "opt",
          "proto", "mask", "255.0.0.0", "true", "false", "-", "ether", "0:1:2:3:4:5", "9:2", ","]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_WORDS), max_size=8).map(" ".join), min_size=1, max_size=3),
       st.integers(min_value=0, max_value=60))
def test_ipclassifier_random_expressions_never_crash(conf: list[str], cut: int) -> None:
    el = IPClassifier("c", 1, len(conf))
    try:
        el.configure(conf)
    except ArgError:
        return
    el.out = [lambda _p: None] * len(conf)
    for frame in PACKETS.values():
        el.push(0, ip_packet(frame, truncate=cut))
