"""Click's IPFilter/IPClassifier expression language, compiled to Python.

The parser follows Click's ``IPFilter::parse_program`` closely, because the
accept/reject verdicts and the corner cases must match the real thing:
qualifier collection (``src``/``dst``/``ip``/protocol/type words), the
``prev_prim`` shorthand (``src port 80 or 81``), the relational operators and
bitmasks, the ternary ``?:`` and juxtaposition as ``and``.

A pattern becomes a boolean tree whose leaves are Click's word tests
(``Insn``): four bytes at an offset, masked, compared with a value.  Offsets
are Click's "virtual" ones: 0.. MAC header (minus 2), 256.. IP header,
512.. transport header.  A test on bytes the packet does not have takes its
``short_yes`` branch (false unless a comparison was negated with Click's
``flip_short``), which is how Click treats truncated packets.

The trees of all patterns are turned into the source of one Python function
``match(b, i, p) -> output`` (``b`` the packet buffer, ``i`` the IP header
offset, ``p`` the packet for its MAC header offset) and compiled once, so
classification costs a few byte comparisons.

Every behaviour here was compared with a user-level Click 2.1 build on
random expressions and packets: verdicts, error messages and outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clickos_agent.click.args import parse_int, parse_ip, parse_mac, unquote
from clickos_agent.click.element import ArgError

if TYPE_CHECKING:
    from clickos_agent.click.packet import Packet

OFFSET_MAC = 0
OFFSET_NET = 256
OFFSET_TRANSP = 512

# Primitive types (values as in Click, only their identity matters here).
TYPE_NONE, TYPE_TYPE, TYPE_SYNTAX, TYPE_INT = 0, 1, 2, 3
TYPE_HOST, TYPE_PROTO, TYPE_IPFRAG, TYPE_PORT, TYPE_TCPOPT, TYPE_ETHER = 10, 11, 12, 13, 14, 15
TYPE_NET, TYPE_IPUNFRAG, TYPE_IPECT, TYPE_IPCE = 30, 31, 32, 33
TYPE_FIELD = 0x40000000
FIELD_PROTO_SHIFT = 21
FIELD_PROTO_MASK = 0x1FF << FIELD_PROTO_SHIFT
FIELD_OFFSET_SHIFT = 5
FIELD_OFFSET_MASK = 0xFFFF << FIELD_OFFSET_SHIFT
FIELD_LENGTH_MASK = 0x1F

IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_DCCP = 1, 6, 17, 33
IP_PROTO_TCP_OR_UDP = 256
UNKNOWN = -1000


def _field(offset_bits: int, nbits: int, proto: int = 0) -> int:
    return (TYPE_FIELD | (proto << FIELD_PROTO_SHIFT)
            | (offset_bits << FIELD_OFFSET_SHIFT) | (nbits - 1))


FIELD_IPLEN = _field(16, 16)
FIELD_ID = _field(32, 16)
FIELD_VERSION = _field(0, 4)
FIELD_HL = _field(4, 4)
FIELD_TOS = _field(8, 8)
FIELD_DSCP = _field(8, 6)
FIELD_TTL = _field(64, 8)
FIELD_TCP_WIN = _field(112, 16, IP_PROTO_TCP)
FIELD_ICMP_TYPE = _field(0, 8, IP_PROTO_ICMP)

SD_SRC, SD_DST, SD_AND, SD_OR = 1, 2, 3, 4
OP_EQ, OP_GT, OP_LT = 0, 1, 2

# Click's name databases.  Its own tables come first; user-level Click then
# consults the host's /etc/protocols and /etc/services, and so do we (read
# once, on first use), so names like 'http' or 'esp' work as they do there.
TYPE_WORDS = {
    "ce": TYPE_IPCE, "dest": TYPE_SYNTAX, "dscp": FIELD_DSCP, "dst": TYPE_SYNTAX,
    "ect": TYPE_IPECT, "ether": TYPE_SYNTAX, "frag": TYPE_IPFRAG, "hl": FIELD_HL,
    "host": TYPE_HOST, "id": FIELD_ID, "ip": TYPE_SYNTAX, "len": FIELD_IPLEN,
    "net": TYPE_NET, "not": TYPE_SYNTAX, "opt": TYPE_TCPOPT, "port": TYPE_PORT,
    "proto": TYPE_PROTO, "src": TYPE_SYNTAX, "tos": FIELD_TOS, "ttl": FIELD_TTL,
    "type": FIELD_ICMP_TYPE, "unfrag": TYPE_IPUNFRAG, "vers": FIELD_VERSION,
    "win": FIELD_TCP_WIN,
}
IP_PROTOS = {
    "dccp": 33, "gre": 47, "icmp": 1, "igmp": 2, "ipip": 4, "payload": 259,
    "sctp": 132, "tcp": 6, "tcpudp": 256, "transp": 258, "udp": 17,
}
PORTS = {
    "auth": 113, "bootpc": 68, "bootps": 67, "chargen": 19, "daytime": 13,
    "discard": 9, "dns": 53, "domain": 53, "echo": 7, "finger": 79, "ftp": 21,
    "ftp-data": 20, "https": 443, "imap3": 220, "imaps": 993, "irc": 194,
    "netbios-dgm": 138, "netbios-ns": 137, "netbios-ssn": 139, "nntp": 119,
    "ntp": 123, "pop3": 110, "pop3s": 995, "pptp": 1723, "rip": 520, "route": 520,
    "smtp": 25, "snmp": 161, "snmp-trap": 162, "ssh": 22, "sunrpc": 111,
    "telnet": 23, "tftp": 69, "www": 80,
}
TCP_OPTS = {"ack": 0x10, "fin": 0x01, "psh": 0x08, "rst": 0x04, "syn": 0x02, "urg": 0x20}
ICMP_TYPES = {
    "echo": 8, "echo-reply": 0, "inforeq": 15, "inforeq-reply": 16, "maskreq": 17,
    "maskreq-reply": 18, "parameterproblem": 12, "redirect": 5, "routeradvert": 9,
    "routersolicit": 10, "sourcequench": 4, "timeexceeded": 11, "timestamp": 13,
    "timestamp-reply": 14, "unreachable": 3,
}




def _read_table(path: str) -> list[list[str]]:
    """The lines of an /etc/protocols-style file, as words, comments removed."""
    try:
        with open(path, encoding="latin-1") as f:
            return [line.split("#", 1)[0].split() for line in f]
    except OSError:
        return []


@functools.cache
def system_names() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(protocols, TCP ports, UDP ports) from the host files, as Click's ServicesNameDB reads them."""
    protos: dict[str, int] = {}
    for words in _read_table("/etc/protocols"):
        if len(words) >= 2 and words[1].isdigit() and int(words[1]) < 256:
            for name in words[:1] + words[2:]:
                protos.setdefault(name, int(words[1]))
    ports: dict[str, dict[str, int]] = {"tcp": {}, "udp": {}}
    for words in _read_table("/etc/services"):
        if len(words) >= 2:
            number, _, proto = words[1].replace(",", "/").partition("/")
            if number.isdigit() and int(number) < 65536 and proto in ports:
                for name in words[:1] + words[2:]:
                    ports[proto].setdefault(name, int(number))
    return protos, ports["tcp"], ports["udp"]


def _name(table: dict[str, int], system: dict[str, int], word: str) -> int | None:
    value = table.get(word)
    return system.get(word) if value is None else value


# ---------------------------------------------------------------- trees

@dataclass(frozen=True)
class Insn:
    """Click's word test: ``(word at off) & mask == value``; short packets -> short_yes."""

    off: int
    mask: int
    value: int
    short_yes: bool = False

    def required_length(self) -> int:
        """Virtual length the packet needs for this test (Click's required_length)."""
        if not self.mask:
            return 0
        last = max(k for k in range(4) if (self.mask >> (24 - 8 * k)) & 0xFF)
        return self.off + last + 1


Node = tuple  # ("insn", Insn) | ("and", [..]) | ("or", [..]) | ("not", n) | ("ternary", [..])
TRUE: Node = ("insn", Insn(0, 0, 0))


def flip_short(node: Node) -> Node:
    """Toggle what every test in ``node`` answers for short packets."""
    kind = node[0]
    if kind == "insn":
        i = node[1]
        return ("insn", Insn(i.off, i.mask, i.value, not i.short_yes))
    if kind == "not":
        return ("not", flip_short(node[1]))
    return (kind, [flip_short(c) for c in node[1]])


def negate(node: Node, flip: bool = False) -> Node:
    """Click's negate_subtree: swap success and failure (and short answers if ``flip``)."""
    return ("not", flip_short(node) if flip else node)


def _group(kind: str, children: list[Node]) -> Node:
    return children[0] if len(children) == 1 else (kind, children)


# ---------------------------------------------------------------- lexing

_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-./@_:")
_SPACES = " \t\n\r\f\v"


def separate_text(text: str) -> list[str]:
    """Split a pattern into words the way Click's separate_text does.

    As in Click, trailing whitespace yields a final empty word.
    """
    words: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        while pos < n and text[pos] in _SPACES:
            pos += 1
        c = text[pos] if pos < n else ""
        nxt = text[pos + 1] if pos + 1 < n else ""
        if c in ("&", "|") and nxt == c or c in ("<", ">", "!", "=") and nxt == "=":
            words.append(text[pos:pos + 2])
            pos += 2
        elif c != "" and c in "&|<>!=()[],;?":
            words.append(c)
            pos += 1
        else:
            first = pos
            while pos < n and text[pos] in _WORD_CHARS:
                pos += 1
            if pos == first:
                pos += 1
            words.append(text[first:pos])
    return words


# ---------------------------------------------------------------- scalar parsers

def int_arg(text: str, signed: bool = True) -> int | None:
    """Click's IntArg into an int32 (or uint32); None when Click would refuse."""
    try:
        value = parse_int(text, signed=signed)
    except ArgError:
        return None
    if signed and not -0x80000000 <= value <= 0x7FFFFFFF:
        return None
    if not signed and not 0 <= value <= 0xFFFFFFFF:
        return None
    return value


def ip_arg(text: str) -> int | None:
    """Click's IPAddressArg as a big-endian int (AddressInfo names unsupported)."""
    try:
        return int.from_bytes(bytes(int(x) for x in parse_ip(text).split(".")), "big")
    except ArgError:
        return None


def _short_ip(text: str) -> tuple[int, int] | None:
    """Click's basic_parse of 1-4 dotted parts: (big-endian value, number of parts)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    values = [int(p) for p in parts]
    if any(v > 255 for v in values):
        return None
    return int.from_bytes(bytes(values + [0] * (4 - len(values))), "big"), len(values)


def prefix_mask(length: int) -> int:
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF if length else 0


def ip_prefix_arg(text: str, allow_bare: bool = False) -> tuple[int, int] | None:
    """Click's IPPrefixArg: ``ADDR/LEN`` or ``ADDR/MASK`` -> (address, mask), big-endian."""
    slash = text.rfind("/")
    if slash > 0 and slash + 1 < len(text):
        addr = _short_ip(text[:slash])
        mask_text = text[slash + 1:]
        length = int(mask_text) if mask_text.isascii() and mask_text.isdigit() else None
        if length is not None and 0 <= length <= 32:
            mask: int | None = prefix_mask(length)
        else:
            mask = ip_arg(mask_text)
        if addr is not None and mask is not None:
            value, nbytes = addr
            if nbytes == 4 or mask & prefix_mask(nbytes * 8) == mask:
                return value, mask
    if allow_bare:
        value2 = ip_arg(text)
        if value2 is not None:
            return value2, 0xFFFFFFFF
    return None


def ether_arg(text: str) -> bytes | None:
    try:
        return parse_mac(text)
    except ArgError:
        return None


# ---------------------------------------------------------------- primitives

class Errors:
    """Collects error messages like Click's ErrorHandler (with a prefix)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.prefix = ""

    def error(self, message: str) -> int:
        self.messages.append(self.prefix + message)
        return -1


def _unparse_proto(proto: int) -> str:
    names = {UNKNOWN: "", 1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp",
             256: "tcpudp", 258: "transp"}
    return names.get(proto, f"ip proto {proto}")


def unparse_type(srcdst: int, type_: int) -> str:
    sd = {SD_SRC: "src ", SD_DST: "dst ", SD_OR: "src or dst ", SD_AND: "src and dst "}.get(srcdst, "")
    names = {
        TYPE_NONE: "<none>", TYPE_HOST: "ip host", TYPE_PROTO: "proto", TYPE_ETHER: "ether host",
        TYPE_IPFRAG: "ip frag", TYPE_PORT: "port", TYPE_TCPOPT: "tcp opt", TYPE_NET: "ip net",
        TYPE_IPUNFRAG: "ip unfrag", TYPE_IPECT: "ip ect", TYPE_IPCE: "ip ce",
        FIELD_IPLEN: "ip len", FIELD_ID: "ip id", FIELD_VERSION: "ip vers", FIELD_HL: "ip hl",
        FIELD_TOS: "ip tos", FIELD_DSCP: "ip dscp", FIELD_TTL: "ip ttl",
        FIELD_TCP_WIN: "tcp win", FIELD_ICMP_TYPE: "icmp type",
    }
    if type_ in names:
        return sd + names[type_]
    if type_ & TYPE_FIELD:
        proto = (type_ & FIELD_PROTO_MASK) >> FIELD_PROTO_SHIFT
        return sd + (_unparse_proto(proto) if proto else "ip") + "[...]"
    return f"{sd}<unknown type {type_}>"


def lookup(word: str, type_: int, proto: int, errs: Errors | None) -> tuple[int, int]:
    """Click's IPFilter::lookup: (kind, value); kind -1 unknown, -2 error reported."""
    if type_ in (0, TYPE_TYPE) and word in TYPE_WORDS:
        data = TYPE_WORDS[word]
        return (-1, 0) if data == TYPE_SYNTAX else (TYPE_TYPE, data)
    sys_protos, sys_tcp, sys_udp = system_names()
    found = [(_name(IP_PROTOS, sys_protos, word), TYPE_PROTO), (_name(PORTS, sys_tcp, word), TYPE_PORT),
             (_name(PORTS, sys_udp, word), TYPE_PORT), (TCP_OPTS.get(word), TYPE_TCPOPT),
             (ICMP_TYPES.get(word), FIELD_ICMP_TYPE)]
    got = [v is not None for v, _ in found]
    if not any(got):
        return -1, 0
    tcpish = proto in (UNKNOWN, IP_PROTO_TCP, IP_PROTO_TCP_OR_UDP)
    tgot = [
        got[0] and type_ in (0, TYPE_PROTO),
        got[1] and type_ in (0, TYPE_PORT) and tcpish,
        got[2] and type_ in (0, TYPE_PORT) and proto in (UNKNOWN, IP_PROTO_UDP, IP_PROTO_TCP_OR_UDP),
        got[3] and type_ in (0, TYPE_TCPOPT) and tcpish,
        got[4] and type_ in (0, FIELD_ICMP_TYPE) and proto in (UNKNOWN, IP_PROTO_ICMP),
    ]
    if tgot[1] and tgot[2] and found[1][0] == found[2][0]:
        tgot[2] = False
    if sum(tgot) == 1:
        k = tgot.index(True)
        value, kind = found[k]
        assert value is not None
        return kind, value
    if errs is not None:
        tries = ", ".join(f"'{_unparse_word(found[k][1], proto, word)}'" for k in range(5) if got[k])
        what = "ambiguous" if sum(tgot) > 1 else "meaningless"
        errs.error(f"'{_unparse_word(type_, proto, word)}' is {what}; try {tries}")
    return -2, 0


def _unparse_word(type_: int, proto: int, word: str) -> str:
    """How Click names a word in its lookup errors ('<none>  echo', 'tcp opt tcp fin')."""
    tn = unparse_type(0, type_)
    tr = _unparse_proto(proto)
    if tn:
        tn += " "
    if tr or (word and tn):
        tr += " "
    return tn + tr + word


@dataclass
class Primitive:
    """One test being parsed (Click's IPFilter::Primitive)."""

    type: int = 0
    data: int = 0
    op: int = OP_EQ
    op_negated: bool = False
    srcdst: int = 0
    transp: int = UNKNOWN
    u: int = 0              # value; hosts big-endian; ether addresses are 6 bytes in ``ether``
    mask: int = 0
    ether: bytes = b"\0" * 6
    ether_mask: bytes = b"\xff" * 6
    errs: Errors = field(default_factory=Errors, repr=False)

    def set_type(self, value: int) -> None:
        if self.type:
            self.errs.error("type specified twice")
        self.type = value

    def set_srcdst(self, value: int) -> None:
        if self.srcdst:
            self.errs.error("'src' or 'dst' specified twice")
        self.srcdst = value

    def set_transp(self, value: int) -> None:
        if self.transp not in (UNKNOWN, value):
            self.errs.error("transport protocol specified twice")
        self.transp = value

    def type_error(self, message: str) -> int:
        return self.errs.error(f"'{unparse_type(self.srcdst, self.type)}': {message}")

    def set_mask(self, full_mask: int, provided: int) -> int:
        data = self.u & 0xFFFFFFFF
        this_mask = provided or full_mask
        if this_mask & full_mask != this_mask:
            return self.errs.error(f"'{unparse_type(self.srcdst, self.type)}': mask out of range, "
                                   f"bound 0x{full_mask:X}")
        if self.op in (OP_GT, OP_LT):
            if (self.op == OP_LT and (data == 0 or data > this_mask)
                    or self.op == OP_GT and data >= this_mask):
                # always true or false: a zero-mask test, maybe negated (only a warning in Click)
                will_be = not self.op_negated if self.op == OP_LT and data > this_mask else self.op_negated
                self.u = self.mask = 0
                self.op_negated = not will_be
                self.op = OP_EQ
                return 0
            if self.op == OP_LT:  # value < X  ==  !(value > X-1)
                self.u = data - 1
                self.op_negated = not self.op_negated
                self.op = OP_GT
            self.mask = this_mask
            if self.u & self.mask != self.u:
                # 'tcp[0] & 5 > 2' is 'tcp[0] & 5 > 1': fill bits below the highest missing one
                missing = (self.u & self.mask) ^ (self.u & full_mask)
                add_mask = 0xFFFFFFFF >> (33 - missing.bit_length()) if missing else 0xFFFFFFFF
                self.u = (self.u | add_mask) & self.mask
            return 0
        if data > full_mask:
            return self.errs.error(f"'{unparse_type(self.srcdst, self.type)}': out of range, "
                                   f"bound {full_mask}")
        self.u = data
        self.mask = this_mask
        return 0

    def check(self, prev: Primitive, header: str, mask_dt: int, provided: int,
              provided_ether: bytes) -> int:
        """Click's Primitive::check: settle the type and validate data, operator and mask."""
        if self.type < 0:
            return -1
        if not self.type:
            while True:
                data = self.data
                if data in (TYPE_HOST, TYPE_NET, TYPE_TCPOPT, TYPE_ETHER):
                    self.type = data
                    if not self.srcdst:
                        self.srcdst = prev.srcdst
                elif data == TYPE_PROTO:
                    self.type = TYPE_PROTO
                elif data == TYPE_PORT:
                    self.type = TYPE_PORT
                    if not self.srcdst:
                        self.srcdst = prev.srcdst
                    if self.transp == UNKNOWN:
                        self.transp = prev.transp
                elif data == TYPE_INT:
                    if not (prev.type & TYPE_FIELD) and prev.type not in (TYPE_PROTO, TYPE_PORT):
                        return self.errs.error("specify header field or 'port'")
                    self.data = prev.type
                    continue
                elif data == TYPE_NONE:
                    if self.transp == UNKNOWN:
                        return self.errs.error("partial directive")
                    self.type = TYPE_PROTO
                elif data & TYPE_FIELD:
                    self.type = data
                    if data & FIELD_PROTO_MASK and self.transp == UNKNOWN:
                        self.transp = (data & FIELD_PROTO_MASK) >> FIELD_PROTO_SHIFT
                else:
                    return self.errs.error(f"unknown type '{unparse_type(0, data)}'")
                break

        if not header:
            header = "e" if self.data == TYPE_ETHER else "i"
        if header == "e" and self.type == TYPE_HOST:
            self.type = TYPE_ETHER

        t = self.type
        if t in (TYPE_HOST, TYPE_NET):
            if header != "i" or self.data != t:
                return self.type_error("address missing")
            if self.op != OP_EQ:
                return self.type_error("operator not supported")
            if t == TYPE_HOST:
                self.mask = 0xFFFFFFFF
            self.type = TYPE_HOST
            if mask_dt and mask_dt not in (TYPE_INT, TYPE_HOST):
                return self.type_error("bad mask")
            if mask_dt == TYPE_INT:
                # Click stores the host-order integer where a network-order
                # address belongs; on little-endian hosts its bytes reverse
                self.mask = int.from_bytes(provided.to_bytes(4, "little"), "big")
            elif mask_dt:
                self.mask = provided
        elif t == TYPE_ETHER:
            if header != "e" or self.data != TYPE_ETHER:
                return self.type_error("address missing")
            if self.op != OP_EQ:
                return self.type_error("operator not supported")
            if mask_dt and mask_dt != TYPE_ETHER:
                return self.type_error("bad mask")
            self.ether_mask = provided_ether if mask_dt else b"\xff" * 6
        elif t == TYPE_PROTO:
            if header != "i":
                return self.type_error("ip only")
            if self.data in (TYPE_INT, TYPE_PROTO):
                if self.transp not in (UNKNOWN, self.u):
                    return self.type_error("specified twice")
                self.data = TYPE_NONE
            else:
                self.u = self.transp
            self.transp = UNKNOWN
            if self.data != TYPE_NONE or self.u == UNKNOWN:
                return self.type_error("value missing")
            if self.u >= 256:
                if self.op != OP_EQ or mask_dt:
                    return self.errs.error(f"'{_unparse_proto(self.u)}': operator or mask not supported")
                self.mask = 0xFF
            elif mask_dt and mask_dt != TYPE_INT:
                return self.type_error("bad mask")
            elif self.set_mask(0xFF, provided if mask_dt else 0) < 0:
                return -1
            if self.op == OP_EQ and self.mask == 0xFF and not self.op_negated:
                self.transp = self.u
        elif t == TYPE_PORT:
            if header != "i":
                return self.type_error("ip only")
            if self.data == TYPE_INT:
                self.data = TYPE_PORT
            if self.data != TYPE_PORT:
                return self.type_error("value missing")
            if self.transp == UNKNOWN:
                self.transp = IP_PROTO_TCP_OR_UDP
            elif self.transp not in (IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_TCP_OR_UDP, IP_PROTO_DCCP):
                return self.errs.error(f"'port': bad protocol {self.transp}")
            elif mask_dt and mask_dt != TYPE_INT:
                return self.type_error("bad mask")
            if self.set_mask(0xFFFF, provided if mask_dt else 0) < 0:
                return -1
        elif t == TYPE_TCPOPT:
            if header != "i":
                return self.type_error("ip only")
            if self.data == TYPE_INT:
                self.data = TYPE_TCPOPT
            if self.data != TYPE_TCPOPT:
                return self.type_error("value missing")
            if self.transp == UNKNOWN:
                self.transp = IP_PROTO_TCP
            elif self.transp != IP_PROTO_TCP:
                return self.errs.error(f"'tcp opt': bad protocol {self.transp}")
            if self.op != OP_EQ or self.op_negated or mask_dt:
                return self.type_error("operator or mask not supported")
            if not 0 <= self.u <= 255:
                return self.errs.error(f"'tcp opt': value {self.u} out of range")
            self.mask = self.u
        elif t == TYPE_IPECT:
            if header != "i":
                return self.type_error("ip only")
            if self.data not in (TYPE_NONE, TYPE_INT):
                return self.type_error("value missing")
            if self.data == TYPE_NONE:
                self.mask, self.u, self.op_negated = 3, 0, True
            elif mask_dt and mask_dt != TYPE_INT:
                return self.type_error("bad mask")
            if self.set_mask(3, provided if mask_dt else 0) < 0:
                return -1
            self.type = FIELD_TOS
        elif t == TYPE_IPCE:
            if header != "i":
                return self.type_error("ip only")
            if self.data != TYPE_NONE or mask_dt:
                return self.type_error("value not supported")
            self.mask, self.u, self.type = 3, 3, FIELD_TOS
        elif t in (TYPE_IPFRAG, TYPE_IPUNFRAG):
            if header != "i":
                return self.type_error("ip only")
            if self.data != TYPE_NONE or mask_dt:
                return self.type_error("value not supported")
            if t == TYPE_IPUNFRAG:
                self.op_negated = True
                self.type = TYPE_IPFRAG
            self.mask = 1
        elif t & TYPE_FIELD:
            if header != "i":
                return self.type_error("ip only")
            if self.data not in (TYPE_INT, t):
                return self.type_error("value missing")
            if mask_dt and mask_dt not in (TYPE_INT, t):
                return self.type_error("bad mask")
            nbits = (t & FIELD_LENGTH_MASK) + 1
            if self.set_mask((1 << nbits) - 1, provided if mask_dt else 0) < 0:
                return -1

        if self.type in (TYPE_HOST, TYPE_PORT, TYPE_ETHER):
            if not self.srcdst:
                self.srcdst = SD_OR
        # otherwise a given src/dst is ignored (Click only warns)
        return 0

    # -------------------------------------------------------- compilation

    def _comparison(self, offset: int, shift: int, op_negate: bool,
                    u: int | None = None, mask: int | None = None) -> Node:
        """Click's add_comparison_exprs: ``field & mask (== | >) u`` at ``offset``."""
        mask = self.mask if mask is None else mask
        u = (self.u if u is None else u) & mask
        if self.op == OP_EQ:
            node: Node = ("insn", Insn(offset, (mask << shift) & 0xFFFFFFFF, (u << shift) & 0xFFFFFFFF))
            return negate(node, True) if self.op_negated and op_negate else node
        # greater-than: split on the top bits of the mask, as Click does
        chunks: list[tuple[Node, bool]] = []
        while u < mask:
            high_bit = u > (mask >> 1)
            x = (~(u + 1) & mask) if high_bit else u
            first_diff = x.bit_length() if x else 33
            upper_mask = mask if first_diff == 33 else mask & ~((1 << first_diff) - 1)
            upper_u = upper_mask if high_bit else 0
            test: Node = ("insn", Insn(offset, (upper_mask << shift) & 0xFFFFFFFF,
                                      (upper_u << shift) & 0xFFFFFFFF))
            chunks.append((test if high_bit else negate(test, True), high_bit))
            mask &= ~upper_mask
            u &= mask
        if not chunks:
            return negate(TRUE)
        node = chunks[-1][0]
        for test, high_bit in reversed(chunks[:-1]):
            node = ("and" if high_bit else "or", [test, node])
        return negate(node, True) if self.op_negated and op_negate else node

    def compile(self) -> Node:
        """Click's Primitive::compile: the tests for this primitive, ANDed."""
        parts: list[Node] = []
        if self.transp != UNKNOWN:
            if self.transp == IP_PROTO_TCP_OR_UDP:
                parts.append(("or", [("insn", Insn(OFFSET_NET + 8, 0x00FF0000, 6 << 16)),
                                     ("insn", Insn(OFFSET_NET + 8, 0x00FF0000, 17 << 16))]))
            elif self.transp < 256:
                parts.append(("insn", Insn(OFFSET_NET + 8, 0x00FF0000, self.transp << 16)))
        t = self.type
        if t in (TYPE_PORT, TYPE_TCPOPT) or (t & TYPE_FIELD and t & FIELD_PROTO_MASK):
            parts.append(("insn", Insn(OFFSET_NET + 4, 0x00001FFF, 0)))  # first fragment only
        sd = self.srcdst
        if t == TYPE_HOST:
            tests = []
            if sd in (SD_SRC, SD_AND, SD_OR):
                tests.append(self._comparison(OFFSET_NET + 12, 0, False))
            if sd in (SD_DST, SD_AND, SD_OR):
                tests.append(self._comparison(OFFSET_NET + 16, 0, False))
            parts.append(self._srcdst_group(tests))
        elif t == TYPE_ETHER:
            e, m = self.ether, self.ether_mask
            tests = []
            if sd in (SD_SRC, SD_AND, SD_OR):
                tests.append(_group("and", [
                    self._comparison(OFFSET_MAC + 8, 0, False, int.from_bytes(e[:4], "big"),
                                     int.from_bytes(m[:4], "big")),
                    self._comparison(OFFSET_MAC + 12, 0, False, int.from_bytes(e[4:] + b"\0\0", "big"),
                                     int.from_bytes(m[4:] + b"\0\0", "big"))]))
            if sd in (SD_DST, SD_AND, SD_OR):
                tests.append(_group("and", [
                    self._comparison(OFFSET_MAC, 0, False, int.from_bytes(e[:2], "big"),
                                     int.from_bytes(m[:2], "big")),
                    self._comparison(OFFSET_MAC + 4, 0, False, int.from_bytes(e[2:], "big"),
                                     int.from_bytes(m[2:], "big"))]))
            parts.append(self._srcdst_group(tests))
        elif t == TYPE_PROTO:
            if self.transp < 256:
                parts.append(self._comparison(OFFSET_NET + 8, 16, True))
        elif t == TYPE_IPFRAG:
            test: Node = ("insn", Insn(OFFSET_NET + 4, 0x00003FFF, 0))
            parts.append(test if self.op_negated else negate(test, True))
        elif t == TYPE_PORT:
            tests = []
            if sd in (SD_SRC, SD_AND, SD_OR):
                tests.append(self._comparison(OFFSET_TRANSP, 16, False))
            if sd in (SD_DST, SD_AND, SD_OR):
                tests.append(self._comparison(OFFSET_TRANSP, 0, False))
            parts.append(self._srcdst_group(tests))
        elif t == TYPE_TCPOPT:
            parts.append(("insn", Insn(OFFSET_TRANSP + 12, self.mask << 16, self.u << 16)))
        elif t & TYPE_FIELD:
            offset = (t & FIELD_OFFSET_MASK) >> FIELD_OFFSET_SHIFT
            length = (t & FIELD_LENGTH_MASK) + 1
            word_offset, bit_offset = (offset >> 3) & ~3, offset & 0x1F
            base = OFFSET_TRANSP if t & FIELD_PROTO_MASK else OFFSET_NET
            parts.append(self._comparison(base + word_offset, 32 - (bit_offset + length), True))
        return _group("and", parts) if parts else TRUE

    def _srcdst_group(self, tests: list[Node]) -> Node:
        node = _group("or" if self.srcdst == SD_OR else "and", tests)
        return negate(node, True) if self.op_negated else node


# ---------------------------------------------------------------- parser

class Parser:
    """Recursive descent over Click's grammar (IPFilter::Parser)::

        expr   ::= orexpr | orexpr ? expr : expr
        orexpr ::= term (('or' | '||') term)*
        term   ::= factor (['and' | '&&'] factor)*
        factor ::= ('not' | '!') factor | '(' expr ')' | test
    """

    def __init__(self, words: list[str], errs: Errors) -> None:
        self.words = words
        self.errs = errs
        self.prev = Primitive(errs=errs)

    def word(self, pos: int) -> str | None:
        return self.words[pos] if pos < len(self.words) else None

    def parse_expr(self, pos: int) -> tuple[list[Node], int]:
        parts: list[Node] = []
        sub, pos = self.parse_orexpr(pos)
        parts += sub
        while self.word(pos) == "?":
            pos += 1
            last = pos
            sub, pos = self.parse_expr(pos)
            parts += sub
            if pos == last or self.word(pos) != ":":
                self.errs.error("missing ':' in ternary expression")
                break
            pos += 1
            sub, pos = self.parse_orexpr(pos)
            parts += sub
        if len(parts) <= 1:
            return parts, pos
        return [("ternary", parts)], pos

    def parse_orexpr(self, pos: int) -> tuple[list[Node], int]:
        parts: list[Node] = []
        sub, pos = self.parse_term(pos)
        parts += sub
        while self.word(pos) in ("or", "||"):
            pos += 1
            sub, pos = self.parse_term(pos)
            parts += sub
        return ([_group("or", parts)] if parts else []), pos

    def parse_term(self, pos: int) -> tuple[list[Node], int]:
        parts: list[Node] = []
        required = True
        while True:
            last = pos
            sub, pos = self.parse_factor(pos, False)
            if pos == last:
                if required:
                    self.errs.error("missing expression")
                break
            parts += sub
            if self.word(pos) in ("and", "&&"):
                pos += 1
                required = True
            else:
                required = False
        return ([_group("and", parts)] if parts else []), pos

    def parse_factor(self, pos: int, negated: bool) -> tuple[list[Node], int]:
        w = self.word(pos)
        if w in ("not", "!"):
            pos += 1
            last = pos
            sub, pos = self.parse_factor(pos, not negated)
            if pos == last:
                self.errs.error(f"missing expression after '{w}'")
            return sub, pos
        if w == "(":
            pos += 1
            last = pos
            sub, pos = self.parse_expr(pos)
            if pos == last:
                self.errs.error("missing expression after '('")
            if self.word(pos) == ")":
                pos += 1
            elif pos != last:
                self.errs.error("missing ')'")
            if negated:
                sub = [negate(n) for n in sub]
            return sub, pos
        return self.parse_test(pos, negated)

    def parse_test(self, pos: int, negated: bool) -> tuple[list[Node], int]:
        words, errs = self.words, self.errs
        if pos >= len(words):
            return [], pos
        first = words[pos]
        if first in (")", "||", "or", "?", ":"):
            return [], pos
        if first in ("true", "false"):
            node = TRUE if (first == "true") != negated else negate(TRUE)
            return [node], pos + 1

        first_pos = pos
        prim = Primitive(errs=errs)
        header = ""
        while pos < len(words):
            wd = words[pos]
            kind, value = lookup(wd, 0, UNKNOWN, None)
            if kind == TYPE_TYPE:
                prim.set_type(value)
                if value & TYPE_FIELD and value & FIELD_PROTO_MASK:
                    prim.set_transp((value & FIELD_PROTO_MASK) >> FIELD_PROTO_SHIFT)
            elif kind == TYPE_PROTO:
                prim.set_transp(value)
            elif kind != -1:
                break
            elif wd == "src":
                if pos < len(words) - 2 and words[pos + 2] in ("dst", "dest"):
                    if words[pos + 1] in ("and", "&&"):
                        prim.set_srcdst(SD_AND)
                        pos += 2
                    elif words[pos + 1] in ("or", "||"):
                        prim.set_srcdst(SD_OR)
                        pos += 2
                    else:
                        prim.set_srcdst(SD_SRC)
                else:
                    prim.set_srcdst(SD_SRC)
            elif wd in ("dst", "dest"):
                prim.set_srcdst(SD_DST)
            elif wd in ("ip", "ether"):
                if header:
                    break
                header = wd[0]
            elif wd in ("not", "!"):
                negated = not negated
            else:
                break
            pos += 1

        if pos != first_pos:
            self.prev = Primitive(errs=errs)
        if self.prev.data == TYPE_ETHER:
            header = "e"

        def peek(p: int) -> str:
            # Click never treats the last word as a bracket, mask or operator
            return words[p] if p < len(words) - 1 else ""

        wd = peek(pos)
        if wd == "[" and pos > first_pos and prim.type == TYPE_NONE:
            pos = self.parse_brackets(prim, pos)
            wd = peek(pos)

        mask_dt, provided, provided_ether = 0, 0, b""
        if wd == "&" and pos < len(words) - 1:
            mword = words[pos + 1]
            as_int = int_arg(mword, signed=False)
            as_ip = ip_arg(mword) if header != "e" else None
            as_ether = ether_arg(mword) if header != "i" else None
            if as_int is not None:
                mask_dt, provided = TYPE_INT, as_int
            elif as_ip is not None:
                mask_dt, provided = TYPE_HOST, as_ip
            elif as_ether is not None:
                mask_dt, provided_ether = TYPE_ETHER, as_ether
            if mask_dt:
                pos += 2
            if mask_dt and mask_dt != TYPE_ETHER and not provided:
                errs.error("zero mask ignored")
                mask_dt = 0
            wd = peek(pos)

        pos += 1
        if wd in ("=", "=="):
            pass
        elif wd == "!=":
            prim.op_negated = True
        elif wd == ">":
            prim.op = OP_GT
        elif wd == "<":
            prim.op = OP_LT
        elif wd == ">=":
            prim.op, prim.op_negated = OP_LT, True
        elif wd == "<=":
            prim.op, prim.op_negated = OP_GT, True
        else:
            pos -= 1

        if pos < len(words):
            wd = words[pos]
            kind, value = lookup(wd, prim.type, prim.transp, errs)
            pos += 1
            ip = ip_arg(wd) if header != "e" else None
            if kind == -2:
                prim.type = -2
            elif kind not in (-1, TYPE_TYPE):
                prim.data, prim.u = kind, value
            elif (iv := int_arg(wd)) is not None:
                prim.data, prim.u = TYPE_INT, iv & 0xFFFFFFFF
            elif ip is not None:
                mask_ip = ip_arg(words[pos + 1]) if pos < len(words) - 1 and words[pos] == "mask" else None
                net = ip_prefix_arg(wd) if prim.type == TYPE_NET else None
                if mask_ip is not None:
                    pos += 2
                    prim.data, prim.u, prim.mask = TYPE_NET, ip, mask_ip
                elif net is not None:
                    prim.data, (prim.u, prim.mask) = TYPE_NET, net
                else:
                    prim.data, prim.u = TYPE_HOST, ip
            elif header != "e" and (net := ip_prefix_arg(wd)) is not None:
                prim.data, (prim.u, prim.mask) = TYPE_NET, net
            elif header != "i" and (eth := ether_arg(wd)) is not None:
                prim.data, prim.ether = TYPE_ETHER, eth
            else:
                if prim.op != OP_EQ or prim.op_negated:
                    errs.error(f"dangling operator near '{wd}'")
                pos -= 1

        if pos == first_pos:
            errs.error(f"empty term near '{wd}'")
            return [], pos

        if prim.check(self.prev, header, mask_dt, provided, provided_ether) < 0:
            return [], pos
        node = prim.compile()
        self.prev = prim
        return [negate(node) if negated else node], pos

    def parse_brackets(self, prim: Primitive, pos: int) -> int:
        """``[POS]``, ``[POS:LEN]`` or ``[POS,END]`` after ip/tcp/udp/...: a header field."""
        words, errs = self.words, self.errs
        first_pos = pos + 1
        pos += 1
        combination = ""
        while pos < len(words) and words[pos] != "]":
            combination += words[pos]
            pos += 1
        if pos >= len(words):
            errs.error("missing ']'")
            return first_pos
        pos += 1

        fieldpos, length = None, 1
        colon, comma = combination.find(":"), combination.find(",")
        if 0 <= colon < len(combination) - 1:
            fieldpos, length_ = int_arg(combination[:colon]), int_arg(combination[colon + 1:])
            if fieldpos is None or length_ is None:
                fieldpos = None
            else:
                length = length_
        elif 0 <= comma < len(combination) - 1:
            fieldpos, end = int_arg(combination[:comma]), int_arg(combination[comma + 1:])
            if fieldpos is None or end is None:
                fieldpos = None
            else:
                length = end - fieldpos + 1
        else:
            fieldpos = int_arg(combination)
        if fieldpos is None:
            errs.error("syntax error after '[', expected '[POS]' or '[POS:LEN]'")
            return pos

        bitpos, nbits = fieldpos * 8, length * 8
        if not 1 <= nbits <= 32:
            errs.error("LEN in '[POS:LEN]' out of range, should be between 1 and 4")
        elif bitpos & ~31 != (bitpos + nbits - 1) & ~31:
            errs.error(f"field [{fieldpos}:{length}] does not fit in a single word")
        elif not 0 <= bitpos < 0x10000:
            # Click would scramble the field's type bits; refuse instead
            errs.error(f"field [{fieldpos}:{length}] does not fit in a single word")
        else:
            transp = 0 if prim.transp == UNKNOWN else prim.transp
            prim.set_type(TYPE_FIELD | (transp << FIELD_PROTO_SHIFT)
                          | (bitpos << FIELD_OFFSET_SHIFT) | (nbits - 1))
        return pos


# ---------------------------------------------------------------- programs

DROP = -1


def parse_patterns(conf: list[str], noutputs: int) -> list[tuple[int, Node]]:
    """Click's IPFilter::parse_program: (output or DROP, tree) per argument.

    Raises ArgError with every message Click would print.
    """
    errs = Errors()
    result: list[tuple[int, Node]] = []
    for argno, arg in enumerate(conf):
        words = separate_text(unquote(arg))
        errs.prefix = ""
        if not words:
            errs.error(f"empty pattern {argno}")
            continue
        errs.prefix = f"pattern {argno}: "
        slot = DROP
        slotwd = words[0]
        if slotwd == "allow":
            slot = 0
            if noutputs == 0:
                errs.error("'allow' is meaningless, element has zero outputs")
        elif slotwd in ("deny", "drop"):
            pass
        elif (n := int_arg(slotwd)) is not None:
            if 0 <= n < noutputs:
                slot = n
            else:
                errs.error(f"slot '{n}' out of range")
        else:
            errs.error(f"unknown slot ID '{slotwd}'")

        if len(words) == 1 or (len(words) == 2 and words[1] in ("-", "any", "all")):
            tree: Node = TRUE
        else:
            parser = Parser(words, errs)
            nodes, pos = parser.parse_expr(1)
            if pos < len(words):
                errs.error(f"garbage after expression at '{words[pos]}'")
            tree = _group("and", nodes) if nodes else TRUE
        result.append((slot, tree))
    if errs.messages:
        raise ArgError("; ".join(errs.messages))
    return result


# ---------------------------------------------------------------- code generation

class _Gen:
    """Turns trees into a Python boolean expression over the packet buffer ``b``.

    Locals of the generated function: ``i`` IP header offset, ``t`` transport
    header offset, ``m`` MAC header offset minus 2 (None without one), ``v``
    Click's virtual packet length (transport-relative when there is transport
    data).
    """

    def insn(self, x: Insn) -> str:
        tests = []
        # Click keeps offsets in 16 signed bits and picks the header by range,
        # so ip[300] reads transport byte 44
        off = ((x.off + 0x8000) & 0xFFFF) - 0x8000
        base = OFFSET_TRANSP if off >= OFFSET_TRANSP else OFFSET_NET if off >= OFFSET_NET else OFFSET_MAC
        var = {OFFSET_MAC: "m", OFFSET_NET: "i", OFFSET_TRANSP: "t"}[base]
        for k in range(4):
            mk = (x.mask >> (24 - 8 * k)) & 0xFF
            if not mk:
                continue
            vk = (x.value >> (24 - 8 * k)) & 0xFF
            byte = f"b[{var}+{off - base + k}]"
            if mk != 0xFF:
                byte = f"({byte}&{mk})"
            tests.append(f"{byte}=={vk}" if vk & mk == vk else "False")
        if not tests:
            return "True"
        cmp = " and ".join(tests)
        need = Insn(off, x.mask, x.value).required_length()
        if base == OFFSET_MAC:
            # Click reads the MAC header without a length check; ours may be absent
            return f"(m is not None and {cmp})"
        if x.short_yes:
            return f"(v<{need} or {cmp})"
        return f"(v>={need} and {cmp})"

    def expr(self, node: Node) -> str:
        kind = node[0]
        if kind == "insn":
            return self.insn(node[1])
        if kind == "not":
            return f"(not {self.expr(node[1])})"
        if kind == "and":
            return "(" + " and ".join(self.expr(c) for c in node[1]) + ")"
        if kind == "or":
            return "(" + " or ".join(self.expr(c) for c in node[1]) + ")"
        parts = node[1]  # ternary chain: c0 ? e0 : (c1 ? e1 : ... last)
        if len(parts) % 2 == 0:
            parts = parts + [negate(TRUE)]
        out = self.expr(parts[-1])
        for k in range(len(parts) - 3, -1, -2):
            out = f"({self.expr(parts[k + 1])} if {self.expr(parts[k])} else {out})"
        return out


def compile_ip_program(patterns: list[tuple[int, Node]]) -> Callable[[bytearray, int, Packet], int]:
    """One function ``match(b, i, p)`` returning the output port, or -1 to drop.

    ``b`` is ``p.buf`` and ``i`` the IP header offset in it.
    """
    gen = _Gen()
    body = [
        "n = len(b) - i",
        "h = (b[i] & 15) << 2 if n > 0 else 0",
        "t = i + h",
        "v = 512 + n - h if n > h else 256 + n",
    ]
    exprs = [(slot, gen.expr(tree)) for slot, tree in patterns]
    if any("b[m+" in expr for _, expr in exprs):
        # MAC offsets count from 2 bytes before the MAC header, as in Click
        body.append("m = None if p.mac_off is None else p.mac_off - 2")
    for slot, expr in exprs:
        if expr == "True":
            body.append(f"return {slot}")
            break
        body.append(f"if {expr}: return {slot}")
    else:
        body.append(f"return {DROP}")
    # Click reads past a short header into whatever memory follows: ``match``
    # retries on a copy padded with zeros (``padded``, the same code) instead
    # of failing; the try costs nothing on the common path
    lines = (["def padded(b, i, p):"] + ["    " + line for line in body]
             + ["def match(b, i, p):", "    try:"] + ["        " + line for line in body]
             + ["    except IndexError:", f"        return padded(b + bytes({OFFSET_TRANSP}), i, p)"])
    namespace: dict[str, object] = {}
    exec(compile("\n".join(lines), "<ipfilter>", "exec"), namespace)  # noqa: S102 - our own generated code
    match = namespace["match"]
    assert callable(match)
    return match  # type: ignore[no-any-return]
