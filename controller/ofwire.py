"""The core's messages as OpenFlow 1.3 wire bytes: a small, fast encoder (no os-ken).

os-ken builds a Python object per match field and action and normalises
every value through netaddr; at ~100 us a flow-mod that is four times slower
than Open vSwitch takes them (bench/flow_install.py).  This encoder packs the
same bytes with ``struct`` and caches the encoding of every match field and
action it has seen (a fabric repeats them a lot).  The tests check it byte
for byte against os-ken's own serialisation (controller/osken_app.to_osken).

Layouts are those of the OpenFlow 1.3.5 specification (sections 7.2-7.3);
the Open vSwitch extensions (registers, ``resubmit``, ``multipath``,
``learn``) are Nicira experimenter actions and NXM_NX fields as Open vSwitch
defines them (nicira-ext.h, learn.c).
"""

from __future__ import annotations

import socket
import struct
from functools import lru_cache

from controller.core.ofmsg import (
    Action,
    Barrier,
    DeleteFlows,
    DeleteGroups,
    Flow,
    FlowMod,
    GroupAction,
    GroupMod,
    Learn,
    MatchValue,
    Message,
    Multipath,
    Output,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
)

VERSION = 0x04
OFPT_PACKET_OUT, OFPT_FLOW_MOD, OFPT_GROUP_MOD, OFPT_BARRIER_REQUEST = 13, 14, 15, 20
OFPP_CONTROLLER = 0xFFFFFFFD
FLOW_COMMANDS = {"add": 0, "modify_strict": 2, "delete_strict": 4}
OFPFC_DELETE = 3
GROUP_COMMANDS = {"add": 0, "modify": 1, "delete": 2}
GROUP_TYPES = {"all": 0, "select": 1, "indirect": 2, "ff": 3}
OFPGT_ALL = 0
ANY = 0xFFFFFFFF                 # OFPP_ANY, OFPG_ANY, OFP_NO_BUFFER
OFPCML_NO_BUFFER = 0xFFFF
OFP_DEFAULT_PRIORITY = 0x8000    # what os-ken puts in a non-strict delete (which ignores it)
OFPXMC_OPENFLOW_BASIC = 0x8000
OFPXMC_NXM_1 = 0x0001            # Open vSwitch's registers
OFPIT_GOTO_TABLE, OFPIT_APPLY_ACTIONS = 1, 4
OFPAT_OUTPUT, OFPAT_PUSH_MPLS, OFPAT_POP_MPLS, OFPAT_GROUP, OFPAT_SET_FIELD = 0, 19, 20, 22, 25
OFPAT_EXPERIMENTER, NX_EXPERIMENTER_ID = 0xFFFF, 0x00002320
NXAST_MULTIPATH, NXAST_RESUBMIT_TABLE, NXAST_LEARN = 10, 14, 16
NX_OFPP_IN_PORT = 0xFFF8                      # resubmit's in_port: keep the packet's
NX_HASH_FIELDS_SYMMETRIC_L3L4_UDP, NX_MP_ALG_HRW = 3, 2        # nx_hash_fields counts from 0 (4 is nw_src)
MULTIPATH_OFS_NBITS = 15                      # bits 0..15 of the register: (ofs 0) << 6 | (16 - 1)
NX_LEARN_SRC_IMMEDIATE, NX_LEARN_DST_LOAD = 1 << 13, 1 << 11   # 0 is "from a field", "match"

# OXM name -> (field number, payload size, kind): "int", "mac" or "ip".  Class OpenFlow basic,
# except the registers (NXM_NX).
FIELDS: dict[str, tuple[int, int, str]] = {
    "in_port": (0, 4, "int"), "in_phy_port": (1, 4, "int"), "metadata": (2, 8, "int"),
    "eth_dst": (3, 6, "mac"), "eth_src": (4, 6, "mac"), "eth_type": (5, 2, "int"),
    "vlan_pcp": (7, 1, "int"), "ip_dscp": (8, 1, "int"), "ip_ecn": (9, 1, "int"),
    "ip_proto": (10, 1, "int"), "ipv4_src": (11, 4, "ip"), "ipv4_dst": (12, 4, "ip"),
    "tcp_src": (13, 2, "int"), "tcp_dst": (14, 2, "int"), "udp_src": (15, 2, "int"),
    "udp_dst": (16, 2, "int"), "sctp_src": (17, 2, "int"), "sctp_dst": (18, 2, "int"),
    "icmpv4_type": (19, 1, "int"), "icmpv4_code": (20, 1, "int"), "arp_op": (21, 2, "int"),
    "arp_spa": (22, 4, "ip"), "arp_tpa": (23, 4, "ip"), "arp_sha": (24, 6, "mac"),
    "arp_tha": (25, 6, "mac"), "mpls_label": (34, 4, "int"), "mpls_tc": (35, 1, "int"),
    "mpls_bos": (36, 1, "int"),
    **{f"reg{i}": (i, 4, "int") for i in range(8)},
}
# Class and field number as one number: os-ken orders a match by it.
_OXM_TYPE = {name: (OFPXMC_NXM_1 if name.startswith("reg") else OFPXMC_OPENFLOW_BASIC) << 7 | number
             for name, (number, _, _) in FIELDS.items()}
# Fields narrower than their payload (learn's specs count bits).
_BITS = {"vlan_pcp": 3, "ip_dscp": 6, "ip_ecn": 2, "mpls_label": 20, "mpls_tc": 3, "mpls_bos": 1}

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")
_GROUP_MOD = struct.Struct("!BBHIHBxI")
_BUCKET = struct.Struct("!HHII4x")
_PACKET_OUT = struct.Struct("!BBHIIIH6x")


def _pad8(length: int) -> int:
    return (length + 7) // 8 * 8


def _value_bytes(kind: str, size: int, value: int | str) -> bytes:
    if kind == "mac":
        return bytes.fromhex(str(value).replace(":", ""))
    if kind == "ip":
        return socket.inet_aton(str(value))
    return int(value).to_bytes(size, "big")


def _oxm_header(name: str, masked: bool = False) -> int:
    size = FIELDS[name][1]
    return _OXM_TYPE[name] << 9 | masked << 8 | (2 * size if masked else size)


def field_bits(name: str) -> int:
    """The width of a field in bits."""
    return _BITS.get(name, 8 * FIELDS[name][1])


def field_int(name: str, value: int | str) -> int:
    """A field value (addresses as text) as an integer."""
    _, size, kind = FIELDS[name]
    return int.from_bytes(_value_bytes(kind, size, value), "big")


@lru_cache(maxsize=65536)
def oxm(name: str, value: MatchValue) -> bytes:
    """One OXM TLV; a masked value is (value, mask), stored as value & mask (as os-ken does)."""
    _, size, kind = FIELDS[name]
    if isinstance(value, tuple):
        raw, mask = _value_bytes(kind, size, value[0]), _value_bytes(kind, size, value[1])
        raw = bytes(a & b for a, b in zip(raw, mask))
        return struct.pack("!I", _oxm_header(name, masked=True)) + raw + mask
    return struct.pack("!I", _oxm_header(name)) + _value_bytes(kind, size, value)


def match_bytes(fields: tuple[tuple[str, MatchValue], ...]) -> bytes:
    """An ofp_match of type OXM; fields in OXM type order (prerequisites come first), as os-ken sorts them."""
    body = b"".join(oxm(name, value) for name, value in sorted(fields, key=lambda f: _OXM_TYPE[f[0]]))
    length = 4 + len(body)
    return struct.pack("!HH", 1, length) + body + bytes(_pad8(length) - length)


Pins = tuple[tuple[str, MatchValue], ...]


def learn_pins(match: tuple[tuple[str, MatchValue], ...], actions: tuple[Action, ...]) -> tuple[Pins, ...]:
    """Per action, for a Learn: the fields it copies whose value the flow's match fixes.

    Open vSwitch accepts a learn action only when every field of the learned
    flow has its prerequisites among the *constant* fields before it
    (``learn(eth_type=0x800,ip_src[])``, not ``learn(eth_type[],ip_src[])``).
    A field that the flow matches exactly, and that no earlier action of the
    flow changed, holds the matched value in every packet that runs the
    Learn, so the encoders send it as that constant: the same learned flow,
    in a form Open vSwitch takes.  (A Learn in a group bucket has no match to
    take constants from.)
    """
    if Learn not in map(type, actions):
        return ((),) * len(actions)
    known = {name: value for name, value in match if not isinstance(value, tuple)}
    out: list[Pins] = []
    for action in actions:
        out.append(tuple((f, known[f]) for f in action.copy if f in known) if isinstance(action, Learn) else ())
        if isinstance(action, SetField):
            known.pop(action.field, None)
        elif isinstance(action, Multipath):
            known.pop(action.dst, None)
        elif isinstance(action, (PushMpls, PopMpls)):
            for name in ("eth_type", "mpls_label", "mpls_tc", "mpls_bos"):
                known.pop(name, None)
        elif isinstance(action, Resubmit):
            known.clear()   # the resubmitted flow's actions may change anything
    return tuple(out)


def _nx_action(body: bytes) -> bytes:
    """A Nicira experimenter action around ``body`` (subtype first), zero-padded to 8 bytes."""
    length = _pad8(8 + len(body))
    return struct.pack("!HHI", OFPAT_EXPERIMENTER, length, NX_EXPERIMENTER_ID) + body + bytes(length - 8 - len(body))


def _subfield(name: str) -> bytes:
    """A whole field as an NXM subfield: its header and bit offset 0."""
    return struct.pack("!IH", _oxm_header(name), 0)


def _immediate(name: str, value: int | str) -> bytes:
    """A constant in a learn spec: the field's bits rounded up to 16-bit units."""
    return field_int(name, value).to_bytes((field_bits(name) + 15) // 16 * 2, "big")


def _learn(learn: Learn, pins: Pins) -> bytes:
    pinned = dict(pins)
    specs = b""
    for name in learn.copy:   # match specs: this packet's value, or the constant the flow pins it to
        if name in pinned:
            specs += struct.pack("!H", NX_LEARN_SRC_IMMEDIATE | field_bits(name)) + _immediate(name, pinned[name])
        else:
            specs += struct.pack("!H", field_bits(name)) + _subfield(name)
        specs += _subfield(name)
    for name, value in learn.load:
        specs += struct.pack("!H", NX_LEARN_SRC_IMMEDIATE | NX_LEARN_DST_LOAD | field_bits(name))
        specs += _immediate(name, value) + _subfield(name)
    head = struct.pack("!HHHHQHBxHH", NXAST_LEARN, learn.idle_timeout, 0, learn.priority, learn.cookie, 0,
                       learn.table_id, learn.fin_idle_timeout, 0)
    return _nx_action(head + specs)


@lru_cache(maxsize=65536)
def action_bytes(action: Action, pins: Pins = ()) -> bytes:
    """One action; ``pins`` (from learn_pins) only matter to a Learn."""
    if isinstance(action, Output):
        return struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, action.port, OFPCML_NO_BUFFER)
    if isinstance(action, GroupAction):
        return struct.pack("!HHI", OFPAT_GROUP, 8, action.group_id)
    if isinstance(action, SetField):
        tlv = oxm(action.field, action.value)
        length = _pad8(4 + len(tlv))
        return struct.pack("!HH", OFPAT_SET_FIELD, length) + tlv + bytes(length - 4 - len(tlv))
    if isinstance(action, PushMpls):
        return struct.pack("!HHH2x", OFPAT_PUSH_MPLS, 8, action.ethertype)
    if isinstance(action, PopMpls):
        return struct.pack("!HHH2x", OFPAT_POP_MPLS, 8, action.ethertype)
    if isinstance(action, Resubmit):
        return _nx_action(struct.pack("!HHB3x", NXAST_RESUBMIT_TABLE, NX_OFPP_IN_PORT, action.table_id))
    if isinstance(action, Multipath):
        return _nx_action(struct.pack("!HHH2xHHI2xHI", NXAST_MULTIPATH, NX_HASH_FIELDS_SYMMETRIC_L3L4_UDP,
                                      action.basis, NX_MP_ALG_HRW, action.n_links - 1, 0, MULTIPATH_OFS_NBITS,
                                      _oxm_header(action.dst)))
    if isinstance(action, Learn):
        return _learn(action, pins)
    raise TypeError(f"not an action: {action!r}")


def _instructions(flow: Flow) -> bytes:
    out = b""
    if flow.actions:
        if Learn in map(type, flow.actions):
            pins = learn_pins(flow.match, flow.actions)
            actions = b"".join(action_bytes(a, p) for a, p in zip(flow.actions, pins))
        else:   # the common case, kept as fast as it was
            actions = b"".join(action_bytes(a) for a in flow.actions)
        out += struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions
    if flow.goto_table is not None:
        out += struct.pack("!HHB3x", OFPIT_GOTO_TABLE, 8, flow.goto_table)
    return out


def _flow_mod(xid: int, command: int, table_id: int, priority: int, cookie: int, cookie_mask: int,
              match: bytes, instructions: bytes) -> bytes:
    length = _FLOW_MOD.size + len(match) + len(instructions)
    head = _FLOW_MOD.pack(VERSION, OFPT_FLOW_MOD, length, xid, cookie, cookie_mask, table_id, command,
                          0, 0, priority, ANY, ANY, ANY, 0)
    return head + match + instructions


def encode(message: Message, xid: int) -> bytes:
    """The wire bytes of one message."""
    if isinstance(message, FlowMod):
        flow = message.flow
        command = FLOW_COMMANDS[message.command]
        instructions = b"" if command == FLOW_COMMANDS["delete_strict"] else _instructions(flow)
        return _flow_mod(xid, command, flow.table_id, flow.priority, flow.cookie, 0, match_bytes(flow.match),
                         instructions)
    if isinstance(message, GroupMod):
        group = message.group
        buckets = b""
        if message.command != "delete":
            for bucket in group.buckets:
                actions = b"".join(action_bytes(a) for a in bucket.actions)
                weight = bucket.weight if group.type == "select" else 0
                buckets += _BUCKET.pack(_BUCKET.size + len(actions), weight, ANY, ANY) + actions
        return _GROUP_MOD.pack(VERSION, OFPT_GROUP_MOD, _GROUP_MOD.size + len(buckets), xid,
                               GROUP_COMMANDS[message.command], GROUP_TYPES[group.type], group.group_id) + buckets
    if isinstance(message, DeleteFlows):
        return _flow_mod(xid, OFPFC_DELETE, message.table_id, OFP_DEFAULT_PRIORITY, message.cookie, message.cookie_mask,
                         match_bytes(()), b"")
    if isinstance(message, DeleteGroups):
        return _GROUP_MOD.pack(VERSION, OFPT_GROUP_MOD, _GROUP_MOD.size, xid, GROUP_COMMANDS["delete"],
                               OFPGT_ALL, message.group_id)
    if isinstance(message, Barrier):
        return _HEADER.pack(VERSION, OFPT_BARRIER_REQUEST, _HEADER.size, xid)
    raise TypeError(f"not a message: {message!r}")


def packet_out(xid: int, port: int, data: bytes) -> bytes:
    """An OFPT_PACKET_OUT sending ``data`` (a whole frame) out of ``port``."""
    action = action_bytes(Output(port))
    length = _PACKET_OUT.size + len(action) + len(data)
    return _PACKET_OUT.pack(VERSION, OFPT_PACKET_OUT, length, xid, ANY, OFPP_CONTROLLER, len(action)) + action + data
