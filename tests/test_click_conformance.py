"""Regressions from differential testing against Click 2.1: each verdict here is Click's.

The configurations were run through a Click 2.1 user-level build (``click -q``);
the expected verdicts and messages are hard-coded, so no binary is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clickos_agent.click.check import check
from clickos_agent.click.pcap import read_pcap, write_pcap
from clickos_agent.click.runtime import Router


def _errors(text: str) -> list[str]:
    return [p.message for p in check(text, "c.click").errors]


@pytest.mark.parametrize("text, message", [
    # user-level ToDevice pulls (l/h): a push source needs a Queue in between
    ("FromDevice(0) -> Tee -> ToDevice(0)", "push output 0 connected to 'ToDevice@3 :: ToDevice' pull input 0"),
    ("FromDevice(0) -> ToDevice(0)", "pull input 0"),
    # string arguments: an unquoted space is a parse error (Click's StringArg / FilenameArg)
    ("Idle -> Print(0 1) -> Discard", "LABEL: parse error"),
    ("Idle -> Print(a b) -> Discard", "a: unknown argument"),
    ("Idle -> ToDump(a b)", "FILENAME: parse error"),
    ("Idle -> ToDump(\"\")", "FILENAME: parse error"),
    ("FromDump(a b) -> Discard", "FILENAME: parse error"),
    ("FromDevice(a b) -> Discard", "DEVNAME: parse error"),
    ("Idle -> Queue -> ToDevice(lo lo)", "DEVNAME: parse error"),
    # CheckIPHeader's only positional form is an unsigned OFFSET
    ("Idle -> CheckIPHeader(-1) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(10.0.0.1) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(1.0.0.1 2.0.0.1) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(1.0.0.1, 14) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(4294967296) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(, 14) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(OFFSET -1) -> Discard", "OFFSET:"),
    # AverageCounter's IGNORE is a whole number of seconds
    ("Idle -> AverageCounter(IGNORE 1.5) -> Discard", "IGNORE:"),
    ("Idle -> AverageCounter(IGNORE 10ms) -> Discard", "IGNORE:"),
    # IPRewriter's named patterns resolve at configure time, within compound scope
    ("Idle -> IPRewriter(pattern foo 0 0) -> Discard", "input spec 0: no such pattern 'foo'"),
    ("p :: IPRewriterPatterns(foo 1.0.0.1 - - -); Idle -> IPRewriter(pattern bar 0 0) -> Discard",
     "no such pattern 'bar'"),
    ("p :: IPRewriterPatterns(foo 1.0.0.1 - - -); q :: IPRewriterPatterns(foo 1.0.0.2 - - -)",
     "pattern 'foo' already defined"),
    ("p :: IPRewriterPatterns(foo 1.0.0.1 - - -, foo 1.0.0.2 - - -)", "pattern 'foo' already defined"),
    ("elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
     "Idle -> C -> IPRewriter(pattern foo 0 0) -> Discard", "no such pattern 'foo'"),
    ("elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
     "q :: IPRewriterPatterns(foo 1.0.0.1 - - -); Idle -> C -> Discard", "pattern 'foo' already defined"),
    # a compound's elements come after the top level's, so the top-level q defines foo first
    ("elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
     "Idle -> C -> Discard; q :: IPRewriterPatterns(foo 1.0.0.1 - - -)", "pattern 'foo' already defined"),
    # empty positional arguments are still arguments
    ("Idle -> CheckIPHeader(,) -> Discard", "too many arguments"),
    ("Idle -> CheckIPHeader(VERBOSE true, , ) -> Discard", "too many arguments"),
    # user-level FromDevice/ToDevice: ranges, keywords and METHODs of a Linux build
    ("FromDevice(eth0, SNAPLEN 13) -> Discard", "SNAPLEN out of range"),
    ("FromDevice(eth0, SNAPLEN 65536) -> Discard", "SNAPLEN out of range"),
    ("FromDevice(eth0, HEADROOM 8191) -> Discard", "HEADROOM out of range"),
    ("FromDevice(eth0, BURST 0) -> Discard", "BURST out of range"),
    ("FromDevice(eth0, METHOD PCAP) -> Discard", "bad METHOD"),
    ("FromDevice(eth0, CAPTURE linux) -> Discard", "bad METHOD"),
    ("FromDevice(eth0, ACTIVE true) -> Discard", "ACTIVE: unknown argument"),
    ("FromDevice(\"\") -> Discard", "interface not set"),
    ("Idle -> Queue -> ToDevice(eth0, METHOD PCAP)", "bad METHOD"),
    ("Idle -> Queue -> ToDevice(eth0, METHOD a b)", "METHOD: parse error"),
    ("Idle -> Queue -> ToDevice(eth0, BURST 4294967295)", "BURST: out of range"),
    ("Idle -> Queue -> ToDevice(eth0, QUEUE 1)", "QUEUE: unknown argument"),
    ("Idle -> Queue -> ToDevice(eth0, ALLOW_NONEXISTENT true)", "ALLOW_NONEXISTENT: unknown argument"),
    # annotations: a name must have the element's size; a number is size << 16 | offset
    ("Idle -> SetIPAddress(1.0.0.1, ANNO PAINT) -> Discard", "ANNO: parse error"),
    ("Idle -> SetIPAddress(1.0.0.1, ANNO 65536) -> Discard", "ANNO: parse error"),
    ("Idle -> Paint(1, ANNO DST_IP) -> Discard", "ANNO: parse error"),
    ("Idle -> Paint(1, ANNO paint) -> Discard", "ANNO: parse error"),
    ("Idle -> Paint(1, ANNO 48) -> Discard", "ANNO: parse error"),
    ("Idle -> Paint(1, ANNO 65584) -> Discard", "ANNO: parse error"),
    ("Idle -> StoreEtherAddress(OFFSET src, ANNO 44) -> Discard", "ANNO: parse error"),
    # C ints and Click's fixed-point SAMPLE
    ("Idle -> MarkIPHeader(4294967295) -> Discard", "OFFSET: out of range"),
    ("Idle -> Print(x, 4294967295) -> Discard", "MAXLENGTH: out of range"),
    ("FromDump(in.pcap, SAMPLE 16) -> Discard", "SAMPLE:"),
    ("FromDump(in.pcap, SAMPLE -0.5) -> Discard", "SAMPLE:"),
    ("FromDump(in.pcap, SAMPLE 0x1) -> Discard", "SAMPLE:"),
    # Meter: whole bytes per second, rounded half up, at most 2^32 >> 10
    ("Idle -> m :: Meter(1.5Bps, 1.6Bps); m[0] -> Discard; m[1] -> Discard; m[2] -> Discard",
     "rate 2 must be > rate 1"),
    ("Idle -> m :: Meter(4194303, 4194304); m[0] -> Discard; m[1] -> Discard; m[2] -> Discard",
     "rate 2 too large (max 4194303)"),
    # ToDump: ENCAP names are Click's, case-sensitive; USE_ENCAP_FROM names elements with 'encap'
    ("Idle -> ToDump(out.pcap, ENCAP ip)", "bad encapsulation type"),
    ("Idle -> ToDump(out.pcap, ENCAP RAW)", "bad encapsulation type"),
    ("Idle -> ToDump(out.pcap, USE_ENCAP_FROM foo)", "no element named 'foo'"),
    ("Idle -> c :: Counter -> ToDump(out.pcap, USE_ENCAP_FROM c)", "'c :: Counter' has no 'encap' read handler"),
    # handler calls are checked as Click's initialize does
    ("Idle -> Counter(COUNT_CALL 20) -> Discard", "syntax error"),
    ("Idle -> Counter(COUNT_CALL 3 4) -> Discard", "no '4' write handler"),
    ("Idle -> Counter(BYTE_COUNT_CALL 3 nope.reset) -> Discard", "no element named 'nope'"),
    ("Idle -> Counter(COUNT_CALL 3 c.count) -> c :: Counter -> Discard", "no 'c.count' write handler"),
    ("FromDump(in.pcap, END_CALL dst) -> Discard", "no 'dst' write handler"),
])
def test_click_rejects(text: str, message: str) -> None:
    errors = _errors(text)
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("text", [
    "FromDevice(0) -> Queue -> ToDevice(0)",
    "FromDevice(0) -> Queue -> Unqueue -> Queue -> ToDevice(0)",
    "Idle -> Print(\"a b\") -> Print(a\"b c\") -> Discard",
    "Idle -> CheckIPHeader(14) -> CheckIPHeader(0x10) -> CheckIPHeader(BADSRC 1.0.0.1, OFFSET 2) -> Discard",
    "Idle -> AverageCounter(IGNORE 2) -> AverageCounter(IGNORE 0x10) -> Discard",
    # patterns configure before rewriters, wherever they are declared
    "Idle -> IPRewriter(pattern foo 0 0) -> Discard; p :: IPRewriterPatterns(foo 1.0.0.1 - - -)",
    "elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> IPRewriter(pattern foo 0 0) -> output }\n"
    "Idle -> C -> Discard",
    "elementclass C { input -> IPRewriter(pattern foo 0 0) -> output }\n"
    "p :: IPRewriterPatterns(foo 1.0.0.1 - - -); Idle -> C -> Discard",
    # a sibling compound's definition is out of scope, so this is no redefinition
    "elementclass C { p :: IPRewriterPatterns(foo 1.0.0.1 - - -); input -> output }\n"
    "c1 :: C; c2 :: C; Idle -> c1 -> c2 -> Discard",
    "Idle -> CheckIPHeader(VERBOSE true, ) -> Discard",
    "FromDevice(eth0, SNAPLEN 65535, HEADROOM 8190, METHOD LINUX, ENCAP FOO, BPF_FILTER x) -> Discard",
    "Idle -> Queue -> ToDevice(eth0, METHOD LINUX, BURST 2, DEBUG true)",
    # an empty mandatory argument is given, unparsed
    "Idle -> RatedSplitter(, ) -> Discard",
    "Idle -> EtherRewrite(, DST 0:1:2:3:4:5) -> Discard",
    "Idle -> StoreEtherAddress(, OFFSET 2) -> Discard",
    "Idle -> SetIPAddress(1.0.0.1, ANNO 262144) -> Paint(1, ANNO 65583) -> Paint(1, ANNO FIX_IP_SRC) -> Discard",
    "Idle -> Paint(0x10, 010, ANNO 65536) -> Discard",
    "Idle -> m :: Meter(1.4Bps, 1.6Bps); m[0] -> Discard; m[1] -> Discard; m[2] -> Discard",
    "FromDump(in.pcap, SAMPLE 15.9999999968) -> Discard; FromDump(in.pcap, SAMPLE 1_0) -> Discard",
    "Idle -> ToDump(out.pcap, ENCAP \"IP\") -> ToDump(o2.pcap, ENCAP 802.11) -> ToDump(o3.pcap, ENCAP #5)",
    "f :: FromDump(in.pcap) -> ToDump(out.pcap, USE_ENCAP_FROM f f)",
    # handler calls: element handlers, the caller's own, global ones, live reconfiguration
    "Idle -> c :: Counter(COUNT_CALL 3 c.reset, BYTE_COUNT_CALL 10 reset) -> Discard",
    "Idle -> Counter(COUNT_CALL 3 stop) -> q :: Queue -> Counter(COUNT_CALL 1 q.config 5) -> Discard",
    "FromDump(in.pcap, END_CALL .stop) -> Discard",
])
def test_click_accepts(text: str) -> None:
    assert _errors(text) == []


# ---------------------------------------------------------------- handler values at exit

def _router(text: str) -> Router:
    return Router.from_text(text)


def test_ports_handler_lists_modes_and_connections_as_click() -> None:
    router = _router("a :: Idle; b :: Idle; q :: Queue; a -> q; b -> q; q -> u :: Unqueue -> t :: Tee(2); "
                     "t[1] -> Discard; t[0] -> Discard; Idle -> [0]t")
    assert router.read_handler("q.ports") == "1 input\npush\t-\ta [0], b [0]\n1 output\npull\t-\t[0] u\n"
    assert router.read_handler("t.ports") == ("1 input\npush\t-\tu [0], Idle@8 [0]\n2 outputs\n"
                                              "push\t-\t[0] Discard@7\npush\t-\t[0] Discard@6\n")
    assert router.read_handler("a.ports") == "0 inputs\n1 output\npush~\t-\t[0] q\n"
    router.cleanup()


@pytest.mark.parametrize("element, rate", [
    ("BandwidthRatedSplitter(1MBps)", "8.004Mbps"), ("BandwidthRatedSplitter(100Bps)", "0.8kbps"),
    ("BandwidthRatedSplitter(10Mbps)", "10.005Mbps"), ("BandwidthRatedSplitter(1GBps)", "1000.5MBps"),
    ("RatedSplitter(123456)", "123517"), ("RatedSplitter(4000000000)", "4002000000"), ("RatedSplitter(7)", "7"),
])
def test_rate_handler_reports_the_token_bucket_rate(element: str, rate: str) -> None:
    router = _router(f"Idle -> x :: {element} -> Discard; x[1] -> Discard")
    assert router.read_handler("x.rate") == rate
    router.cleanup()


def test_arpresponder_table_always_shows_the_mask() -> None:
    router = _router("Idle -> a :: ARPResponder(10.0.0.9 02:00:00:00:00:99, 10.0.1.0/24 02:00:00:00:00:98) "
                     "-> Discard")
    assert router.read_handler("a.table") == ("10.0.0.9/32 02-00-00-00-00-99\n"
                                              "10.0.1.0/24 02-00-00-00-00-98\n")
    router.cleanup()


@pytest.mark.parametrize("rates, meters", [
    ("7", "6.836"), ("999", "998.047"), ("1000003", "1000002.93"), ("4194303", "4194302.734"),
    ("8kbps", "1000"), ("1000, 2000", "10002000"), ("1, 2, 3", "0.9771.9532.93"),
])
def test_meter_meters_handler_prints_the_fixed_point_rates(rates: str, meters: str) -> None:
    outputs = " ".join(f"m[{k}] -> Discard;" for k in range(rates.count(",") + 2))
    router = _router(f"Idle -> m :: Meter({rates}); {outputs}")
    assert router.read_handler("m.meters") == meters
    router.cleanup()


def test_hashswitch_takes_c_ints() -> None:
    assert _errors("Idle -> HashSwitch(-1, 1) -> Discard") == []
    assert _errors("Idle -> HashSwitch(0, -1) -> Discard") == []
    assert any("LENGTH: out of range" in e for e in _errors("Idle -> HashSwitch(0, 2147483648) -> Discard"))
    assert any("OFFSET: out of range" in e for e in _errors("Idle -> HashSwitch(2147483648, 1) -> Discard"))


def test_ethermirror_swaps_through_the_tailroom_on_short_packets(tmp_path: Path) -> None:
    # Click swaps 12 bytes whatever the length: a short packet shows zeros from its tailroom
    frames = [bytes(range(1, n + 1)) for n in (1, 3, 6, 8, 11, 12, 13)]
    src, dst = tmp_path / "in.pcap", tmp_path / "out.pcap"
    write_pcap(str(src), [(1_700_000_000_000_000_000 + i, d) for i, d in enumerate(frames)])
    router = _router(f"FromDump({src}, STOP true) -> EtherMirror -> ToDump({dst})")
    router.run(until_done=True)
    router.cleanup()
    assert [d.hex() for _, d in read_pcap(str(dst))] == [
        "00", "000000", "000000000000", "0708000000000102", "0708090a0b000102030405",
        "0708090a0b0c010203040506", "0708090a0b0c0102030405060d"]


def test_etherrewrite_keeps_a_short_packets_length(tmp_path: Path) -> None:
    # Click writes all 12 bytes at the MAC header; past the end they land in the tailroom
    frames = [bytes(range(1, n + 1)) for n in (1, 3, 11, 12, 13)]
    src, dst = tmp_path / "in.pcap", tmp_path / "out.pcap"
    write_pcap(str(src), [(1_700_000_000_000_000_000 + i, d) for i, d in enumerate(frames)])
    router = _router(f"FromDump({src}, STOP true) -> EtherRewrite(SRC 0:1:2:3:4:5, DST 6:7:8:9:a:b) "
                     f"-> ToDump({dst})")
    router.run(until_done=True)
    router.cleanup()
    assert [d.hex() for _, d in read_pcap(str(dst))] == [
        "06", "060708", "060708090a0b0001020304", "060708090a0b000102030405",
        "060708090a0b0001020304050d"]
