"""OpenFlow 1.3 messages as plain data: what the pure core returns.

The core (planner, compiler, diff) speaks only these; the os-ken shell
(controller/osken_app.py) turns them into os-ken messages, the benchmarks
into ``ovs-ofctl`` lines, and the tests feed them to a fake flow table.

Match fields and set-field names are the OXM names os-ken uses (``in_port``,
``eth_src``, ``eth_dst``, ``eth_type``, ``ipv4_src``, ``ipv4_dst``,
``ip_proto``, ``tcp_src``, ``tcp_dst``, ``udp_src``, ``udp_dst``,
``mpls_label``, ``arp_tpa``, ...), plus Open vSwitch's registers ``reg0`` to
``reg7`` (32 bits each).  A masked value is a ``(value, mask)`` tuple;
addresses are strings ("10.0.0.1", "02:00:00:00:00:01").

Three actions are Open vSwitch (Nicira) extensions, used only to spread an
autoscaled hop's flows over its instances and pin each flow to the one it
started on (see controller/core/compiler.py): ``Resubmit``, ``Multipath``
and ``Learn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

MatchValue = Union[int, str, tuple[int, int], tuple[str, str]]

OFPP_IN_PORT = 0xFFFFFFF8          # output back where the packet came in (plain Output(in_port) drops it)
OFPG_ALL = 0xFFFFFFFC              # every group, for DeleteGroups
OFPTT_ALL = 0xFF                   # every table, for DeleteFlows


@dataclass(frozen=True)
class Output:
    port: int                      # an OpenFlow port number, or OFPP_IN_PORT (0xfffffff8)


@dataclass(frozen=True)
class GroupAction:
    group_id: int


@dataclass(frozen=True)
class SetField:
    field: str
    value: int | str


@dataclass(frozen=True)
class PushMpls:
    ethertype: int = 0x8847


@dataclass(frozen=True)
class PopMpls:
    ethertype: int = 0x0800        # the ethertype of what the label carried


@dataclass(frozen=True)
class Resubmit:
    """OVS extension: look the packet up in ``table_id``, run that flow's actions, then go on here."""

    table_id: int


@dataclass(frozen=True)
class Multipath:
    """OVS extension: register ``dst`` := a link in 0..n_links-1, chosen per flow.

    The hash covers the IPv4 addresses, the IP protocol and the TCP or UDP
    ports, symmetrically (OVS fields ``symmetric_l3l4+udp``), so both
    directions of a flow choose the same link; the algorithm is highest
    random weight (``hrw``), so adding a link moves as few flows as possible.
    The link number goes in the register's low 16 bits.
    """

    n_links: int
    dst: str                       # a register: "reg0" .. "reg7"
    basis: int = 0


@dataclass(frozen=True)
class Learn:
    """OVS extension: add (or refresh) a flow in ``table_id`` for packets like this one.

    The learned flow matches each field of ``copy`` with this packet's value
    of it (register values included), and its actions load each constant of
    ``load`` into its field (the whole field).  It expires after
    ``idle_timeout`` seconds without packets, or ``fin_idle_timeout`` once a
    TCP FIN or RST was seen (0: no such rule).

    Open vSwitch's conditions: the flow holding the Learn must match the
    prerequisites of every copied field (``ipv4_src``: eth_type 0x0800), and
    each field of the learned flow needs its prerequisites among the
    *constant* fields before it.  The encoders send a copied field that the
    flow matches exactly as that constant (controller/ofwire.learn_pins), so
    copying ``eth_type`` and ``ip_proto`` first, from a flow that matches
    them exactly, meets both.
    """

    table_id: int
    priority: int
    cookie: int
    idle_timeout: int
    copy: tuple[str, ...]                      # match field names, prerequisites first
    load: tuple[tuple[str, int], ...]          # (field, constant) per action of the learned flow
    fin_idle_timeout: int = 0


Action = Union[Output, GroupAction, SetField, PushMpls, PopMpls, Resubmit, Multipath, Learn]


@dataclass(frozen=True)
class Flow:
    """A flow entry.  Its identity in a table is (dpid, table_id, priority, match)."""

    dpid: int
    table_id: int
    priority: int
    match: tuple[tuple[str, MatchValue], ...]   # sorted by field name
    actions: tuple[Action, ...] = ()            # apply-actions; empty with goto None means drop
    goto_table: int | None = None
    cookie: int = 0

    @property
    def key(self) -> tuple[int, int, int, tuple[tuple[str, MatchValue], ...]]:
        return self.dpid, self.table_id, self.priority, self.match


@dataclass(frozen=True)
class Bucket:
    actions: tuple[Action, ...]
    weight: int = 1


@dataclass(frozen=True)
class Group:
    dpid: int
    group_id: int
    type: str                                  # "select", "all", "indirect", "ff"
    buckets: tuple[Bucket, ...]

    @property
    def key(self) -> tuple[int, int]:
        return self.dpid, self.group_id


@dataclass(frozen=True)
class FlowMod:
    # "add" (also overwrites an entry with the same table, priority and match, cookie included),
    # "modify_strict" (new instructions, keeps cookie and counters), "delete_strict".
    command: str
    flow: Flow


@dataclass(frozen=True)
class GroupMod:
    command: str                               # "add", "modify", "delete"
    group: Group


@dataclass(frozen=True)
class Barrier:
    """Everything before it on this switch is applied before anything after it."""

    dpid: int


@dataclass(frozen=True)
class DeleteFlows:
    """Delete (non-strict) every flow whose cookie matches: ``flow.cookie & cookie_mask == cookie``."""

    dpid: int
    cookie: int
    cookie_mask: int
    table_id: int = OFPTT_ALL


@dataclass(frozen=True)
class DeleteGroups:
    """Delete a group, or all of them (``OFPG_ALL``)."""

    dpid: int
    group_id: int = OFPG_ALL


Message = Union[FlowMod, GroupMod, Barrier, DeleteFlows, DeleteGroups]


def dpid_of(message: Message) -> int:
    """The switch a message goes to."""
    if isinstance(message, FlowMod):
        return message.flow.dpid
    if isinstance(message, GroupMod):
        return message.group.dpid
    return message.dpid


def match(**fields: MatchValue) -> tuple[tuple[str, MatchValue], ...]:
    """A match in canonical form (sorted), so equal matches compare equal."""
    return tuple(sorted(fields.items()))
