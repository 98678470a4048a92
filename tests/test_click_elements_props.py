"""Properties of the runtime's packet code, checked on generated inputs."""

from __future__ import annotations

import struct
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from clickos_agent.click.elements.ip import CheckIPHeader, DecIPTTL
from clickos_agent.click.packet import Packet
from clickos_agent.click.pcap import PcapReader, PcapWriter


def checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_header(ttl: int, ident: int, tos: int, payload: int, options: bytes = b"") -> bytes:
    hlen = 20 + len(options)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | hlen // 4, tos, hlen + payload, ident, 0, ttl, 17,
                         0, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02") + options
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:]


headers = st.builds(ip_header, ttl=st.integers(0, 255), ident=st.integers(0, 0xFFFF),
                    tos=st.integers(0, 255), payload=st.integers(0, 64),
                    options=st.sampled_from([b"", b"\x01" * 4, b"\x00" * 8]))


@given(headers)
def test_decipttl_keeps_the_checksum_valid(header: bytes) -> None:
    elem = DecIPTTL("t", 1, 1)
    elem.configure([])
    packet = Packet(header + bytes((header[2] << 8 | header[3]) - len(header)))
    packet.ip_off = packet.off
    result = elem.simple_action(packet)
    hlen = (header[0] & 0xF) * 4
    if header[8] <= 1:
        assert result is None
    else:
        assert result is not None
        out = result.data
        assert out[8] == header[8] - 1
        assert checksum(out[:hlen]) == 0


@given(headers, st.integers(0, 19), st.integers(0, 255))
def test_checkipheader_passes_exactly_the_valid_headers(header: bytes, flip: int, value: int) -> None:
    elem = CheckIPHeader("c", 1, 1)
    elem.configure([])
    frame = bytearray(header + bytes((header[2] << 8 | header[3]) - len(header)))
    frame[flip] = value
    hlen = (frame[0] & 0xF) * 4
    length = frame[2] << 8 | frame[3]
    valid = (frame[0] >> 4 == 4 and 20 <= hlen <= len(frame) and hlen <= length <= len(frame)
             and checksum(bytes(frame[:hlen])) == 0)
    assert (elem.simple_action(Packet(bytes(frame))) is not None) == valid


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999),
                          st.binary(max_size=100)), max_size=20),
       st.booleans())
def test_pcap_round_trip(records: list[tuple[int, int, bytes]], nano: bool) -> None:
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        with PcapWriter(f.name, nanosecond=nano) as writer:
            for sec, usec, data in records:
                writer.write(sec * 1_000_000_000 + usec * 1000, data)
        with PcapReader(f.name) as reader:
            assert list(reader) == [(sec * 1_000_000_000 + usec * 1000, data, len(data))
                                    for sec, usec, data in records]
