"""LLDP probes that confirm the topology's links: build one frame per switch port, read it back.

The controller sends a probe out of every port of a switch that connects
(and of the switches already connected); the switch at the other end hands
it back (a flow sends LLDP to the controller), and the pair (sender's dpid
and port, receiver's dpid and port) is a link seen.  Pure functions over
bytes (IEEE 802.1AB TLVs); nothing here talks to a switch.
"""

from __future__ import annotations

import struct

ETH_TYPE = 0x88CC
NEAREST_BRIDGE = bytes.fromhex("0180c200000e")   # not forwarded by 802.1D bridges
SOURCE = bytes.fromhex("02c5000011d9")           # locally administered: ClickSteer's probes
TLV_END, TLV_CHASSIS, TLV_PORT, TLV_TTL = 0, 1, 2, 3
SUBTYPE_LOCAL = 7                                 # chassis and port ids "locally assigned"
PREFIX = "clicksteer:"


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", kind << 9 | len(value)) + value


def probe(dpid: int, port: int) -> bytes:
    """The Ethernet frame that says "sent by switch ``dpid`` out of ``port``"."""
    body = (_tlv(TLV_CHASSIS, bytes([SUBTYPE_LOCAL]) + f"{PREFIX}{dpid:016x}".encode())
            + _tlv(TLV_PORT, bytes([SUBTYPE_LOCAL]) + str(port).encode())
            + _tlv(TLV_TTL, struct.pack("!H", 120))
            + _tlv(TLV_END, b""))
    return NEAREST_BRIDGE + SOURCE + struct.pack("!H", ETH_TYPE) + body


def parse(frame: bytes) -> tuple[int, int] | None:
    """(dpid, port) of one of our probes; None for anything else."""
    if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_TYPE:
        return None
    values: dict[int, bytes] = {}
    at = 14
    while at + 2 <= len(frame):
        header, = struct.unpack_from("!H", frame, at)
        kind, length = header >> 9, header & 0x1FF
        if kind == TLV_END:
            break
        values[kind] = frame[at + 2:at + 2 + length]
        at += 2 + length
    chassis, port = values.get(TLV_CHASSIS, b""), values.get(TLV_PORT, b"")
    if chassis[:1] != bytes([SUBTYPE_LOCAL]) or port[:1] != bytes([SUBTYPE_LOCAL]):
        return None
    chassis_text, port_text = chassis[1:].decode("ascii", "replace"), port[1:].decode("ascii", "replace")
    if not chassis_text.startswith(PREFIX) or not port_text.isdigit():
        return None
    try:
        return int(chassis_text[len(PREFIX):], 16), int(port_text)
    except ValueError:
        return None
