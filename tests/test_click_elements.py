"""Each runtime element on crafted pcaps, with the outputs Click 2.1 gives.

Every test writes an input trace, runs a configuration with FromDump/ToDump
through the runtime and compares output packets byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.all import ARP, ICMP, IP, UDP, Ether, Raw, raw

from clickos_agent.click.element import ArgError
from clickos_agent.click.pcap import read_pcap, write_pcap
from clickos_agent.click.runtime import Router, RouterError

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def udp(src: str = "10.0.0.1", dst: str = "10.0.0.2", ttl: int = 64, sport: int = 1000,
        dport: int = 2000, payload: bytes = b"payload", **ip: object) -> bytes:
    return raw(Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst, ttl=ttl, **ip)
               / UDP(sport=sport, dport=dport) / Raw(payload))


def run(tmp_path: Path, config: str, packets: list[bytes], outputs: tuple[str, ...] = ("out",),
        handlers: tuple[str, ...] = ()) -> tuple[dict[str, list[bytes]], dict[str, str]]:
    """Run ``config`` (``%IN%`` and ``%OUT_<name>%`` stand for pcap paths) on ``packets``."""
    src = tmp_path / "in.pcap"
    write_pcap(str(src), packets)
    text = config.replace("%IN%", str(src))
    for name in outputs:
        text = text.replace(f"%OUT_{name}%", str(tmp_path / f"{name}.pcap"))
    router = Router.from_text(text)
    router.run(until_done=True)
    values = {h: router.read_handler(h) for h in handlers}
    router.cleanup()
    return ({name: [d for _, d in read_pcap(str(tmp_path / f"{name}.pcap"))] for name in outputs},
            values)


def ip_checksum_valid(frame: bytes, offset: int = 14) -> bool:
    ip = IP(frame[offset:])
    stored = ip.chksum
    del ip.chksum
    return IP(raw(ip)).chksum == stored


# ---------------------------------------------------------------- sources and sinks

def test_fromdump_todump_copies_packets_and_timestamps(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i]) * i) for i in range(1, 6)]
    src = tmp_path / "in.pcap"
    write_pcap(str(src), [(1_000_000_123_000 * (i + 1), p) for i, p in enumerate(packets)],
               nanosecond=True)
    router = Router.from_text(f"FromDump({src}, STOP true) -> ToDump({tmp_path}/out.pcap)")
    router.run()
    router.cleanup()
    records = read_pcap(str(tmp_path / "out.pcap"))
    assert [d for _, d in records] == packets
    assert [t for t, _ in records] == [1_000_000_123_000 * (i + 1) for i in range(5)]


def test_todump_writes_microsecond_pcap_like_click_2_1_and_truncates_to_snaplen(
        tmp_path: Path) -> None:
    big = udp(payload=bytes(3000))
    out, _ = run(tmp_path, "FromDump(%IN%) -> ToDump(%OUT_out%)", [big])
    assert out["out"] == [big[:2000]]
    header = (tmp_path / "out.pcap").read_bytes()[:4]
    assert int.from_bytes(header, "little") == 0xA1B2C3D4
    # the original length survives in the record header
    assert int.from_bytes((tmp_path / "out.pcap").read_bytes()[24 + 12:24 + 16], "little") == len(big)


def test_fromdump_force_ip_sends_non_ip_to_output_1(tmp_path: Path) -> None:
    arp = raw(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2"))
    ip = udp()
    out, _ = run(tmp_path, "f :: FromDump(%IN%, FORCE_IP true) -> ToDump(%OUT_ip%); f[1] -> ToDump(%OUT_other%)",
                 [arp, ip, arp], outputs=("ip", "other"))
    assert out["ip"] == [ip]
    assert out["other"] == [arp, arp]


def test_fromdump_pull_output_feeds_pull_consumers(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(4)]
    out, values = run(tmp_path, "FromDump(%IN%, STOP true) -> q :: Queue(2) -> ToDump(%OUT_out%)",
                      packets, handlers=("q.drops", "q.highwater_length"))
    # the source and the pulling sink alternate, so a small queue never overflows
    assert out["out"] == packets
    assert values == {"q.drops": "0", "q.highwater_length": "1"}


# ---------------------------------------------------------------- counters

def test_counter_counts_packets_and_bytes(tmp_path: Path) -> None:
    packets = [udp(payload=bytes(i)) for i in range(3)]
    out, values = run(tmp_path, "FromDump(%IN%) -> c :: Counter -> ToDump(%OUT_out%)", packets,
                      handlers=("c.count", "c.byte_count"))
    assert out["out"] == packets
    assert values == {"c.count": "3", "c.byte_count": str(sum(map(len, packets)))}


def test_counter_reset_and_count_call(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    write_pcap(str(src), [udp()] * 5)
    router = Router.from_text(
        f"FromDump({src}) -> c :: Counter(COUNT_CALL 3 c2.reset) -> c2 :: Counter -> Discard")
    router.run()
    # c fires on its third packet before passing it on: c2 then counts packets 3 to 5
    assert router.read_handler("c.count") == "5"
    assert router.read_handler("c2.count") == "3"
    router.write_handler("c.reset")
    assert router.read_handler("c.count") == "0"
    assert router.read_handler("c.byte_count") == "0"
    router.cleanup()


def test_average_counter(tmp_path: Path) -> None:
    packets = [udp()] * 4
    _, values = run(tmp_path, "FromDump(%IN%) -> a :: AverageCounter -> Discard", packets,
                    outputs=(), handlers=("a.count", "a.byte_count", "a.rate"))
    assert values["a.count"] == "4"
    assert values["a.byte_count"] == str(4 * len(packets[0]))
    assert float(values["a.rate"]) > 0


# ---------------------------------------------------------------- IP

def test_checkipheader_drops_bad_checksum_and_bad_lengths(tmp_path: Path) -> None:
    good = udp()
    bad_sum = bytearray(good)
    bad_sum[24] ^= 0xFF
    bad_version = bytearray(good)
    bad_version[14] = 0x65
    short = good[:30]
    too_long = bytearray(good)
    too_long[16:18] = (len(good)).to_bytes(2, "big")   # IP length beyond the frame
    out, values = run(
        tmp_path, "FromDump(%IN%) -> c :: CheckIPHeader(14) -> ToDump(%OUT_good%); c[1] -> ToDump(%OUT_bad%)",
        [good, bytes(bad_sum), bytes(bad_version), short, bytes(too_long)],
        outputs=("good", "bad"), handlers=("c.drops",))
    assert out["good"] == [good]
    assert out["bad"] == [bytes(bad_sum), bytes(bad_version), short, bytes(too_long)]
    assert values["c.drops"] == "4"


def test_checkipheader_without_second_output_drops_and_trims_padding(tmp_path: Path) -> None:
    small = raw(Ether(src=MAC_A, dst=MAC_B) / IP(src="1.1.1.1", dst="2.2.2.2") / UDP())
    padded = small + bytes(60 - len(small))
    bad = bytearray(small)
    bad[24] ^= 1
    out, _ = run(tmp_path, "FromDump(%IN%) -> CheckIPHeader(OFFSET 14) -> ToDump(%OUT_out%)",
                 [padded, bytes(bad)])
    # Click trims the packet to the IP length, dropping the Ethernet padding
    assert out["out"] == [small]


def test_checkipheader_badsrc_and_interfaces(tmp_path: Path) -> None:
    from_bcast = udp(src="10.0.0.255")
    from_zero = udp(src="0.0.0.0")
    normal = udp(src="10.0.0.7")
    out, _ = run(tmp_path, "FromDump(%IN%) -> CheckIPHeader(INTERFACES 10.0.0.1/24, OFFSET 14) "
                           "-> ToDump(%OUT_out%)", [from_bcast, from_zero, normal])
    assert out["out"] == [normal]
    out, _ = run(tmp_path, "FromDump(%IN%) -> CheckIPHeader(OFFSET 14) -> ToDump(%OUT_out%)",
                 [from_zero, normal])
    assert out["out"] == [from_zero, normal]     # no bad sources by default in Click 2.1


def test_decipttl_decrements_with_valid_checksum_and_drops_expiring(tmp_path: Path) -> None:
    packets = [udp(ttl=64), udp(ttl=1), udp(ttl=0), udp(ttl=2)]
    out, values = run(
        tmp_path, "FromDump(%IN%) -> CheckIPHeader(14) -> t :: DecIPTTL -> ToDump(%OUT_out%); "
                  "t[1] -> ToDump(%OUT_expired%)",
        packets, outputs=("out", "expired"), handlers=("t.drops",))
    assert [IP(p[14:]).ttl for p in out["out"]] == [63, 1]
    assert all(ip_checksum_valid(p) for p in out["out"])
    assert out["expired"] == [packets[1], packets[2]]
    assert values["t.drops"] == "2"


def test_decipttl_multicast_false_leaves_multicast_alone(tmp_path: Path) -> None:
    packets = [udp(dst="224.0.0.5", ttl=1), udp(ttl=5)]
    out, _ = run(tmp_path, "FromDump(%IN%) -> CheckIPHeader(14) -> DecIPTTL(MULTICAST false) "
                           "-> ToDump(%OUT_out%)", packets)
    assert out["out"][0] == packets[0]
    assert IP(out["out"][1][14:]).ttl == 4


def test_decipttl_checksum_matches_full_recomputation_for_many_headers() -> None:
    from clickos_agent.click.elements.ip import DecIPTTL
    from clickos_agent.click.packet import Packet
    elem = DecIPTTL("t", 1, 1)
    elem.configure([])
    for ttl in (2, 17, 255):
        for ident in (0, 1, 0xFFFF, 0x1234):
            frame = udp(ttl=ttl, id=ident)
            packet = Packet(frame)
            packet.ip_off = packet.off + 14
            result = elem.simple_action(packet)
            assert result is not None and ip_checksum_valid(result.data)


def test_setipaddress_and_markipheader(tmp_path: Path) -> None:
    from clickos_agent.click.packet import Packet
    r = Router.from_text("Idle -> m :: MarkIPHeader(14) -> s :: SetIPAddress(1.2.3.4) -> Discard")
    packet = Packet(udp())
    r.elements["m"].push_callable(0)(packet)
    assert packet.ip_off == packet.off + 14
    assert packet.dst_ip == bytes([1, 2, 3, 4])
    assert r.read_handler("s.addr") == "1.2.3.4"
    r.write_handler("s.addr", "5.6.7.8")
    assert r.read_handler("s.addr") == "5.6.7.8"
    r.cleanup()


def test_icmppingresponder_answers_echo_requests(tmp_path: Path) -> None:
    request = raw(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2", ttl=3, flags="DF")
                  / ICMP(type=8, id=7, seq=9) / Raw(b"ping data"))
    other = udp()
    out, _ = run(tmp_path, "FromDump(%IN%) -> CheckIPHeader(14) -> p :: ICMPPingResponder -> "
                           "ToDump(%OUT_reply%); p[1] -> ToDump(%OUT_other%)",
                 [request, other], outputs=("reply", "other"))
    assert out["other"] == [other]
    [reply] = out["reply"]
    ip = IP(reply[14:])
    assert (ip.src, ip.dst, ip.ttl, ip.flags, ip.frag) == ("10.0.0.2", "10.0.0.1", 255, 0, 0)
    assert ip_checksum_valid(reply)
    icmp = ip[ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, 7, 9)
    stored = icmp.chksum
    del icmp.chksum
    assert ICMP(raw(icmp)).chksum == stored
    assert reply[:14] == request[:14]      # Ethernet header untouched, as in Click


# ---------------------------------------------------------------- Ethernet

def test_etherrewrite_ethermirror_storeetheraddress(tmp_path: Path) -> None:
    p = udp()
    out, _ = run(tmp_path, "FromDump(%IN%) -> EtherRewrite(SRC 02:11:11:11:11:11, DST 02:22:22:22:22:22) "
                           "-> ToDump(%OUT_out%)", [p])
    assert out["out"] == [bytes.fromhex("022222222222" "021111111111") + p[12:]]
    out, _ = run(tmp_path, "FromDump(%IN%) -> EtherMirror -> ToDump(%OUT_out%)", [p])
    assert out["out"] == [p[6:12] + p[0:6] + p[12:]]
    out, _ = run(tmp_path, "FromDump(%IN%) -> StoreEtherAddress(02:33:33:33:33:33, src) "
                           "-> StoreEtherAddress(02:44:44:44:44:44, OFFSET 0) -> ToDump(%OUT_out%)", [p])
    assert out["out"] == [bytes.fromhex("024444444444" "023333333333") + p[12:]]


def test_etherrewrite_after_strip_writes_at_the_mac_header(tmp_path: Path) -> None:
    p = udp()
    out, _ = run(tmp_path, "FromDump(%IN%) -> Strip(14) -> EtherRewrite(02:11:11:11:11:11, "
                           "02:22:22:22:22:22) -> Unstrip(14) -> ToDump(%OUT_out%)", [p])
    assert out["out"] == [bytes.fromhex("022222222222" "021111111111") + p[12:]]


def test_etherrewrite_handlers() -> None:
    r = Router.from_text("Idle -> e :: EtherRewrite(02:00:00:00:00:01, 02:00:00:00:00:02) -> Discard")
    assert r.read_handler("e.src") == "02-00-00-00-00-01"
    r.write_handler("e.dst", "02:00:00:00:00:99")
    assert r.read_handler("e.dst") == "02-00-00-00-00-99"
    r.cleanup()


def test_arpresponder_replies_for_configured_prefixes(tmp_path: Path) -> None:
    asked = raw(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff")
                / ARP(op=1, hwsrc=MAC_A, psrc="10.0.0.1", pdst="10.0.0.9"))
    unknown = raw(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=MAC_A, psrc="10.0.0.1", pdst="192.168.1.1"))
    out, _ = run(tmp_path, "FromDump(%IN%) -> a :: ARPResponder(10.0.0.0/24 02:00:00:00:00:99, "
                           "10.0.0.9 02:00:00:00:00:77) -> ToDump(%OUT_reply%); a[1] -> ToDump(%OUT_other%)",
                 [asked, unknown, udp()], outputs=("reply", "other"))
    [reply] = out["reply"]
    assert len(reply) == 42
    eth = Ether(reply)
    assert (eth.dst, eth.src, eth.type) == (MAC_A, "02:00:00:00:00:77", 0x0806)
    arp = eth[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (
        2, "02:00:00:00:00:77", "10.0.0.9", MAC_A, "10.0.0.1")
    assert len(out["other"]) == 2


# ---------------------------------------------------------------- standard

def test_strip_unstrip(tmp_path: Path) -> None:
    p = udp()
    out, _ = run(tmp_path, "FromDump(%IN%) -> Strip(14) -> ToDump(%OUT_out%)", [p])
    assert out["out"] == [p[14:]]
    out, _ = run(tmp_path, "FromDump(%IN%) -> Strip(14) -> Unstrip(14) -> ToDump(%OUT_out%)", [p])
    assert out["out"] == [p]


def test_queue_drops_when_full_and_reports(tmp_path: Path) -> None:
    src = tmp_path / "in.pcap"
    write_pcap(str(src), [udp()] * 5)
    router = Router.from_text(f"FromDump({src}) -> q :: Queue(3) -> Idle")
    router.run()
    assert router.read_handler("q.length") == "3"
    assert router.read_handler("q.drops") == "2"
    assert router.read_handler("q.capacity") == "3"
    router.write_handler("q.capacity", "10")
    assert router.read_handler("q.capacity") == "10"
    router.write_handler("q.reset")
    assert router.read_handler("q.length") == "0"
    router.cleanup()


def test_queue_overflow_goes_to_output_1(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(4)]
    out, _ = run(tmp_path, "FromDump(%IN%) -> q :: Queue(1) -> Idle; q[1] -> ToDump(%OUT_out%)", packets)
    assert out["out"] == packets[1:]


def test_discard_push_and_pull(tmp_path: Path) -> None:
    _, values = run(tmp_path, "FromDump(%IN%) -> d :: Discard", [udp()] * 3, outputs=(),
                    handlers=("d.count",))
    assert values == {"d.count": "3"}
    _, values = run(tmp_path, "FromDump(%IN%, STOP true) -> Queue -> d :: Discard", [udp()] * 3,
                    outputs=(), handlers=("d.count",))
    assert values == {"d.count": "3"}


def test_tee_copies_to_every_output_in_order(tmp_path: Path) -> None:
    p = udp()
    out, _ = run(tmp_path, "FromDump(%IN%) -> t :: Tee(3); t[0] -> Strip(14) -> ToDump(%OUT_a%); "
                           "t[1] -> ToDump(%OUT_b%); t[2] -> ToDump(%OUT_c%)", [p],
                 outputs=("a", "b", "c"))
    # each branch got its own copy: stripping one does not touch the others
    assert out == {"a": [p[14:]], "b": [p], "c": [p]}


def test_tee_argument_must_match_outputs() -> None:
    with pytest.raises(RouterError, match="2 outputs implies 2 arms"):
        Router.from_text("Idle -> t :: Tee(3); t[0] -> Discard; t[1] -> Discard")


def test_paint_and_paintswitch(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(3)]
    out, _ = run(tmp_path, "FromDump(%IN%) -> rr :: RoundRobinSwitch; "
                           "rr[0] -> Paint(0) -> ps :: PaintSwitch; rr[1] -> Paint(1) -> ps; "
                           "rr[2] -> Paint(7) -> ps; ps[0] -> ToDump(%OUT_a%); ps[1] -> ToDump(%OUT_b%)",
                 packets, outputs=("a", "b"))
    # paint 7 names no output: dropped
    assert out == {"a": [packets[0]], "b": [packets[1]]}


def test_paintswitch_255_goes_everywhere(tmp_path: Path) -> None:
    p = udp()
    out, _ = run(tmp_path, "FromDump(%IN%) -> Paint(255) -> ps :: PaintSwitch; "
                           "ps[0] -> ToDump(%OUT_a%); ps[1] -> ToDump(%OUT_b%)", [p], outputs=("a", "b"))
    assert out == {"a": [p], "b": [p]}


def test_roundrobinswitch_cycles(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(5)]
    out, _ = run(tmp_path, "FromDump(%IN%) -> rr :: RoundRobinSwitch; rr[0] -> ToDump(%OUT_a%); "
                           "rr[1] -> ToDump(%OUT_b%)", packets, outputs=("a", "b"))
    assert out == {"a": packets[0::2], "b": packets[1::2]}


def test_hashswitch_uses_clicks_byte_sum_hash(tmp_path: Path) -> None:
    packets = [udp(dst=f"10.0.0.{i}") for i in range(1, 9)]

    def expected(n: int) -> list[list[bytes]]:
        outs: list[list[bytes]] = [[] for _ in range(n)]
        for p in packets:
            d = sum(p[30:34])
            outs[(d ^ (d >> 4)) & (n - 1) if n in (2, 4, 8) else d % n].append(p)
        return outs

    for n in (2, 3):
        names = tuple("abc"[:n])
        conns = "; ".join(f"h[{i}] -> ToDump(%OUT_{name}%)" for i, name in enumerate(names))
        out, _ = run(tmp_path, f"FromDump(%IN%) -> h :: HashSwitch(30, 4); {conns}", packets,
                     outputs=names)
        assert [out[name] for name in names] == expected(n)


def test_null_idle_print(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    p = udp()
    out, _ = run(tmp_path, "FromDump(%IN%) -> Null -> Print(hello, 8) -> ToDump(%OUT_out%); "
                           "Idle -> Discard", [p])
    assert out["out"] == [p]
    assert f"hello: {len(p):4d} | {p[:4].hex()} {p[4:8].hex()}" in capfd.readouterr().err


def test_ratedsplitter_and_meter_split_a_fast_burst(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i % 256])) for i in range(200)]
    out, _ = run(tmp_path, "FromDump(%IN%) -> r :: RatedSplitter(1000) -> ToDump(%OUT_a%); "
                           "r[1] -> ToDump(%OUT_b%)", packets, outputs=("a", "b"))
    # the bucket holds 20 ms of tokens: 20 packets pass at once, more only as time goes by
    assert 20 <= len(out["a"]) < 200 and len(out["a"]) + len(out["b"]) == 200
    out, _ = run(tmp_path, "FromDump(%IN%) -> b :: BandwidthRatedSplitter(1kBps) -> ToDump(%OUT_a%); "
                           "b[1] -> ToDump(%OUT_b%)", packets, outputs=("a", "b"))
    assert len(out["a"]) + len(out["b"]) == 200
    out, _ = run(tmp_path, "FromDump(%IN%) -> m :: Meter(4194303) -> ToDump(%OUT_a%); "
                           "m[1] -> ToDump(%OUT_b%)", packets, outputs=("a", "b"))
    assert out["a"] == packets and out["b"] == []


def test_meter_needs_one_rate_per_extra_output() -> None:
    with pytest.raises(RouterError, match="need 2 arguments"):
        Router.from_text("Idle -> m :: Meter(10); m[0] -> Discard; m[1] -> Discard; m[2] -> Discard")


@pytest.mark.parametrize("config, message", [
    ("Idle -> Strip -> Discard", "LENGTH: required argument missing"),
    ("Idle -> EtherRewrite(1, 2) -> Discard", "expected Ethernet address"),
    ("Idle -> CheckIPHeader(BADSRC nope) -> Discard", "BADSRC"),
    ("Idle -> Paint(300) -> Discard", "COLOR"),
    ("Idle -> HashSwitch(0, 0) -> Discard", "length must be > 0"),
    ("Idle -> StoreEtherAddress(OFFSET src) -> Discard", "exactly one of ADDR/ANNO"),
])
def test_bad_arguments_are_reported_like_click(config: str, message: str) -> None:
    with pytest.raises(RouterError, match=message):
        Router.from_text(config)


def test_arg_error_type_is_shared() -> None:
    from clickos_agent.click.elements.standard import Strip
    elem = Strip("s", 1, 1)
    with pytest.raises(ArgError):
        elem.configure(["nope"])


def test_unqueue_pulls_from_a_queue_and_pushes_on(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(5)]
    out, values = run(tmp_path, "FromDump(%IN%, STOP true) -> Queue -> u :: Unqueue(LIMIT 3) "
                                "-> ToDump(%OUT_out%)", packets, handlers=("u.count",))
    assert out["out"] == packets[:3]
    assert values == {"u.count": "3"}


def test_two_sources_interleave_one_packet_each_as_clicks_scheduler_does(tmp_path: Path) -> None:
    a = [udp(payload=b"a" + bytes([i])) for i in range(3)]
    b = [udp(payload=b"b" + bytes([i])) for i in range(2)]
    write_pcap(str(tmp_path / "a.pcap"), a)
    write_pcap(str(tmp_path / "b.pcap"), b)
    router = Router.from_text(f"FromDump({tmp_path}/a.pcap) -> out :: ToDump({tmp_path}/out.pcap); "
                              f"FromDump({tmp_path}/b.pcap) -> out")
    router.run()
    router.cleanup()
    assert [d for _, d in read_pcap(str(tmp_path / "out.pcap"))] == [a[0], b[0], a[1], b[1], a[2]]


def test_arpresponder_lookup_handler_takes_an_address() -> None:
    router = Router.from_text("Idle -> a :: ARPResponder(10.0.0.0/8 02:00:00:00:00:01) -> Discard")
    assert router.read_handler("a.lookup", "10.9.9.9") == "02-00-00-00-00-01"
    assert router.read_handler("a.lookup", "11.0.0.1") == ""
    router.write_handler("a.add", "11.0.0.1 02:00:00:00:00:02")
    assert router.read_handler("a.lookup", "11.0.0.1") == "02-00-00-00-00-02"
    router.write_handler("a.remove", "10.0.0.0/8")
    assert router.read_handler("a.table") == "11.0.0.1/32 02-00-00-00-00-02\n"
    router.cleanup()


def test_pulltee_returns_the_packet_and_pushes_copies(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(3)]
    out, _ = run(tmp_path, "FromDump(%IN%, STOP true) -> Queue -> t :: PullTee -> PullNull "
                           "-> ToDump(%OUT_a%); t[1] -> PushNull -> ToDump(%OUT_b%)", packets,
                 outputs=("a", "b"))
    assert out == {"a": packets, "b": packets}


def test_fromdump_cuts_a_capture_length_beyond_the_wire_length(tmp_path: Path) -> None:
    import struct
    src = tmp_path / "in.pcap"
    src.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                    + struct.pack("<IIII", 1, 0, 20, 18) + bytes(range(20)))
    router = Router.from_text(f"FromDump({src}) -> ToDump({tmp_path}/out.pcap)")
    router.run()
    router.cleanup()
    assert read_pcap(str(tmp_path / "out.pcap")) == [(1_000_000_000, bytes(range(18)))]


def test_ratedsplitter_refills_per_millisecond_like_clicks_jiffies() -> None:
    from clickos_agent.click.elements.common import CLOCK
    from clickos_agent.click.packet import Packet
    router = Router.from_text("Idle -> r :: RatedSplitter(1000) -> a :: Counter -> Discard; "
                              "r[1] -> b :: Counter -> Discard")
    push = router.elements["r"].push_callable(0)
    saved = CLOCK.epoch_ms
    try:
        for _ in range(50):     # all within one millisecond: only the 20 ms burst passes
            push(Packet(udp()))
        assert (router.read_handler("a.count"), router.read_handler("b.count")) == ("20", "30")
        CLOCK.epoch_ms += 5     # five milliseconds at 1000/s: five more tokens
        for _ in range(10):
            push(Packet(udp()))
        assert (router.read_handler("a.count"), router.read_handler("b.count")) == ("25", "35")
    finally:
        CLOCK.epoch_ms = saved
        router.cleanup()


def test_average_counter_uses_jiffies_like_click() -> None:
    from clickos_agent.click.elements.common import CLOCK
    from clickos_agent.click.packet import Packet
    router = Router.from_text("Idle -> a :: AverageCounter -> Discard")
    push = router.elements["a"].push_callable(0)
    saved = CLOCK.epoch_ms
    try:
        for _ in range(3):
            push(Packet(bytes(100)))
        assert router.read_handler("a.rate") == "3000"       # within one jiffy: divided by 1
        CLOCK.epoch_ms += 1000
        push(Packet(bytes(100)))
        assert router.read_handler("a.rate") == "4"
        assert router.read_handler("a.byte_rate") == "400"
    finally:
        CLOCK.epoch_ms = saved
        router.cleanup()


def test_fromdump_timing_emits_every_packet_in_order(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(4)]
    src = tmp_path / "in.pcap"
    write_pcap(str(src), [(1_000_000_000 + i * 2_000_000, p) for i, p in enumerate(packets)])
    router = Router.from_text(f"FromDump({src}, TIMING true, STOP true) -> ToDump({tmp_path}/o.pcap)")
    router.run()
    router.cleanup()
    assert [d for _, d in read_pcap(str(tmp_path / "o.pcap"))] == packets


def test_fromdump_start_after_and_end_after_select_a_window(tmp_path: Path) -> None:
    packets = [udp(payload=bytes([i])) for i in range(6)]
    src = tmp_path / "in.pcap"
    write_pcap(str(src), [(10_000_000_000 + i * 1_000_000_000, p) for i, p in enumerate(packets)])
    router = Router.from_text(f"FromDump({src}, START_AFTER 1s, END_AFTER 4s) "
                              f"-> ToDump({tmp_path}/o.pcap)")
    router.run()
    router.cleanup()
    # packets at +1 s, +2 s and +3 s: END is exclusive, as in Click
    assert [d for _, d in read_pcap(str(tmp_path / "o.pcap"))] == packets[1:4]
