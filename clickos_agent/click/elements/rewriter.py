"""IPRewriter: Click's TCP/UDP address and port rewriting with a flow table.

Follows Click's IPRewriter/TCPRewriter/IPRewriterBase:

- one input spec per input: ``pattern SADDR SPORT DADDR DPORT FOUT ROUT``,
  ``keep FOUT ROUT``, ``pass [OUT]`` (``passthrough``, ``nochange``) or
  ``drop`` (``discard``); pattern fields are ``-`` (unchanged), an address or
  port, or for the source a range (``1024-65535``, ``1.0.0.1-1.0.0.9``,
  ``1.0.0.0/24``) with ``#`` (sequential) or ``?`` (no same-port preference);
- the flow tables (one for TCP, one for UDP) are keyed by the 4-tuple
  (addresses and ports) and hold a forward entry and a reply entry per flow,
  so packets of either direction are rewritten whatever input they arrive
  on; a packet without a mapping is handled by its input's spec;
- checksums are updated incrementally with Click's precomputed deltas;
- flows expire after their timeouts, checked every REAP_INTERVAL, and
  MAPPING_CAPACITY bounds the table (guaranteed flows are never evicted).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clickos_agent.click.args import (keyword_of, parse_bool, parse_int, parse_ip,
                                      parse_time, split_words)
from clickos_agent.click.element import (
    CONFIGURE_PHASE_INFO,
    ArgError,
    Element,
    HandlerError,
    element_class,
)
from clickos_agent.click.elements.common import update_checksum
from clickos_agent.click.ipexpr import PORTS, int_arg, ip_prefix_arg, system_names

if TYPE_CHECKING:
    from clickos_agent.click.packet import Packet

DROP = -1        # Click's rw_drop
ADDMAP = -2      # Click's rw_addmap
PATTERN_NAME = "IPRewriterPattern"   # the NameScope kind of IPRewriterPatterns' names

# TCP flag bits and the connection state bits Click tracks for timeouts
_FIN, _SYN, _RST = 0x01, 0x02, 0x04
S_FORWARD_DONE, S_REPLY_DONE, S_FORWARD_DATA, S_REPLY_DATA = 1, 2, 4, 8


def _halfwords(key: bytes) -> list[int]:
    return [key[k] << 8 | key[k + 1] for k in range(0, len(key), 2)]


def _reverse(key: bytes) -> bytes:
    """A flow key is saddr(4) daddr(4) sport(2) dport(2), as Click's IPFlowID."""
    return key[4:8] + key[0:4] + key[10:12] + key[8:10]


def _unparse_key(key: bytes) -> str:
    return (f"({'.'.join(map(str, key[0:4]))}, {key[8] << 8 | key[9]}, "
            f"{'.'.join(map(str, key[4:8]))}, {key[10] << 8 | key[11]})")


def _ip_text(value: int) -> str:
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))


# ---------------------------------------------------------------- patterns

class Pattern:
    """Click's IPRewriterPattern: what a new flow's source/destination become."""

    def __init__(self, saddr: int, sport: int, daddr: int, dport: int, is_napt: bool,
                 sequential: bool, same_first: bool, variation_top: int) -> None:
        self.saddr, self.sport, self.daddr, self.dport = saddr, sport, daddr, dport
        self.is_napt = is_napt
        self.sequential = sequential
        self.same_first = same_first
        self.variation_top = variation_top
        self.next_variation = 0

    def rewrite(self, key: bytes, reply_map: dict[bytes, tuple[Flow, bool]]) -> bytes | None:
        """The rewritten flow key for a new flow ``key``, or None when no port/address is free."""
        saddr = self.saddr.to_bytes(4, "big") if self.saddr else key[0:4]
        daddr = self.daddr.to_bytes(4, "big") if self.daddr else key[4:8]
        sport = self.sport.to_bytes(2, "big") if self.sport else key[8:10]
        dport = self.dport.to_bytes(2, "big") if self.dport else key[10:12]
        if not self.variation_top:
            return saddr + daddr + sport + dport
        top = self.variation_top
        base = self.sport if self.is_napt else self.saddr
        # the reply key of the candidate: daddr saddr dport sport
        def taken(src: bytes, src_port: bytes) -> bool:
            return daddr + src + dport + src_port in reply_map

        orig_sport = key[8] << 8 | key[9]
        val = (orig_sport - base) & 0xFFFFFFFF
        if self.same_first and val <= top and not taken(saddr, key[8:10]):
            # Click keeps the packet's own port when it is in range and free
            # (it tests the port even for address ranges, and then keeps the base address)
            self.next_variation = val + 1
            return saddr + daddr + key[8:10] + dport
        if self.sequential:
            val = 0 if self.next_variation > top else self.next_variation
        else:
            val = random.randint(0, top)
        for _ in range(top + 1):
            if self.is_napt:
                candidate_port = (base + val).to_bytes(2, "big")
                if not taken(saddr, candidate_port):
                    self.next_variation = val + 1
                    return saddr + daddr + candidate_port + dport
            else:
                candidate_addr = ((base + val) & 0xFFFFFFFF).to_bytes(4, "big")
                if not taken(candidate_addr, sport):
                    self.next_variation = val + 1
                    return candidate_addr + daddr + sport + dport
            val = 0 if val == top else val + 1
        return None

    def unparse(self) -> str:
        if not self.is_napt and self.variation_top:
            text = f"{_ip_text(self.saddr)}-{_ip_text(self.saddr + self.variation_top)}"
        else:
            text = _ip_text(self.saddr) if self.saddr else "-"
        if self.is_napt:
            if not self.sport:
                text += " -"
            elif self.variation_top:
                text += f" {self.sport}-{self.sport + self.variation_top}"
            else:
                text += f" {self.sport}"
        text += f" {_ip_text(self.daddr)}" if self.daddr else " -"
        if self.is_napt:
            text += f" {self.dport}" if self.dport else " -"
        return text


def _suffix(text: str) -> tuple[str, bool | None, bool]:
    """Strip ``#`` (sequential) or ``?`` (random, no same-port preference)."""
    if text.endswith("#"):
        return text[:-1], True, False
    if text.endswith("?"):
        return text[:-1], None, False
    return text, None, True


def _address_variation(text: str) -> tuple[int, int, bool | None, bool] | None:
    """Click's ip_address_variation: (address, variation, sequential?, same_first)."""
    body, sequential, same_first = _suffix(text)
    if "-" in body:
        first, _, last = body.partition("-")
        a, b = _ip(first), _ip(last)
        if a is not None and b is not None and b >= a:
            return a, b - a, sequential, same_first
        return None
    prefix = ip_prefix_arg(body, allow_bare=True)
    if prefix is None:
        return None
    addr, mask = prefix
    if not addr or not mask or (~mask & 0xFFFFFFFF) & ((~mask & 0xFFFFFFFF) + 1):
        return None
    if mask == 0xFFFFFFFF:
        return addr, 0, sequential, same_first
    if mask == 0xFFFFFFFE:
        return addr & mask, 1, sequential, same_first
    # skip PREFIX.0 and PREFIX.255, as Click does
    return (addr & mask) | 1, (~mask & 0xFFFFFFFF) - 2, sequential, same_first


def _port_variation(text: str) -> tuple[int, int, bool | None, bool] | None:
    body, sequential, same_first = _suffix(text)
    first, dash, last = body.partition("-")
    a, b = int_arg(first), int_arg(last) if dash else None
    if a is not None and b is not None and 0 <= a <= b < 65536:
        return a, b - a, sequential, same_first
    return None


def _ip(text: str) -> int | None:
    try:
        return int.from_bytes(bytes(int(x) for x in parse_ip(text).split(".")), "big")
    except ArgError:
        return None


def _port(text: str) -> int | None:
    value = int_arg(text)
    return value if value is not None and 0 < value < 65536 else None


def _tcp_port(text: str) -> int | None:
    """Click's IPPortArg for TCP: a number or a service name."""
    value = int_arg(text)
    if value is None:
        value = PORTS.get(text, system_names()[1].get(text))
    return value if value is not None and 0 <= value < 65536 else None


def parse_pattern(words: list[str]) -> Pattern:
    """Click's IPRewriterPattern::parse of 2-4 words (``SADDR [SPORT] DADDR [DPORT]``)."""
    if not 1 <= len(words) <= 4:
        raise ArgError("syntax error")
    if len(words) == 1:
        # a name; IPRewriter resolves names itself, so here it is one we lack
        raise ArgError(f"no such pattern '{words[0]}'")
    sequential, same_first, variation = False, True, 0

    def vary(found: tuple[int, int, bool | None, bool]) -> int:
        nonlocal sequential, same_first, variation
        value, variation, seq, same_first = found
        if seq:
            sequential = True
        return value

    saddr = sport = daddr = dport = 0
    w = words[0]
    if w != "-":
        addr = _ip(w)
        if addr is not None:
            saddr = addr
        elif (av := _address_variation(w)) is not None:
            saddr = vary(av)
        else:
            raise ArgError("bad source address")
    i = 0
    if len(words) >= 3:
        # three words are SADDR DADDR SPORT in Click, four SADDR SPORT DADDR DPORT
        i = 2 if len(words) == 3 else 1
        w = words[i]
        if w != "-":
            port = _port(w)
            if port is not None:
                sport = port
            elif (pv := _port_variation(w)) is not None:
                sport = vary(pv)
            else:
                raise ArgError("bad source port")
        i = 0 if len(words) == 3 else 1
    i += 1
    if words[i] != "-":
        addr = _ip(words[i])
        if addr is None:
            raise ArgError("bad destination address")
        daddr = addr
    if len(words) == 4 and words[3] != "-":
        port = _port(words[3])
        if port is None:
            raise ArgError("bad destination port")
        dport = port
    return Pattern(saddr, sport, daddr, dport, len(words) >= 3, sequential, same_first, variation)


class InputSpec:
    """What one input does with packets that have no mapping yet."""

    def __init__(self, kind: str, foutput: int = -1, routput: int = -1,
                 pattern: Pattern | None = None) -> None:
        self.kind = kind            # "drop", "nochange", "keep", "pattern"
        self.foutput = foutput
        self.routput = routput
        self.pattern = pattern
        self.count = 0              # live flows created by this input
        self.failures = 0

    def unparse(self) -> str:
        text = self.pattern.unparse() if self.pattern else f"<{self.kind}>"
        return text + (f" [{self.count}]" if self.count else "")


def parse_input_spec(line: str, noutputs: int,
                     named: Callable[[str], Pattern | None]) -> InputSpec:
    """Click's IPRewriterBase::parse_input_spec (without IPMapper elements).

    ``named`` looks up a pattern an IPRewriterPatterns element defined.
    """
    words = split_words(line)
    if not words:
        raise ArgError("empty argument")
    word = words[0]
    rest = line.strip()[len(word):].strip()
    if word in ("pass", "passthrough", "nochange"):
        out = 0
        if rest:
            value = int_arg(rest)
            if value is None:
                raise ArgError("syntax error, expected 'nochange [OUTPUT]'")
            out = value
        if not 0 <= out < noutputs:
            raise ArgError("output port out of range")
        return InputSpec("nochange", out)
    if word == "keep":
        spec = InputSpec("keep", *_parse_ports(split_words(rest)))
    elif word in ("drop", "discard"):
        if rest:
            raise ArgError(f"syntax error, expected '{word}'")
        return InputSpec("drop")
    elif word in ("pattern", "xpattern"):
        pwords = split_words(rest)
        if len(pwords) <= 2:
            raise ArgError("syntax error")
        if len(pwords) == 3:
            pattern = named(pwords[0])
            if pattern is None:
                raise ArgError(f"no such pattern '{pwords[0]}'")
        else:
            pattern = parse_pattern(pwords[:-2])
        spec = InputSpec("pattern", *_parse_ports(pwords[-2:]), pattern=pattern)
    else:
        raise ArgError("unknown specification")
    if not 0 <= spec.foutput < noutputs or not 0 <= spec.routput < noutputs:
        raise ArgError("output port out of range")
    return spec


def _parse_ports(words: list[str]) -> tuple[int, int]:
    """FOUTPUT ROUTPUT of a keep or pattern spec."""
    foutput = int_arg(words[0]) if len(words) == 2 else None
    if foutput is None:
        raise ArgError("bad forward port")
    routput = int_arg(words[1])
    if routput is None:
        raise ArgError("bad reply port")
    return foutput, routput


# ---------------------------------------------------------------- flows

class Flow:
    """One mapping: the forward key, the reply key, and how to rewrite each direction."""

    __slots__ = ("spec", "tcp", "key", "rkey", "outputs", "headers", "actions",
                 "expiry", "guaranteed", "tflags")

    def __init__(self, spec: InputSpec, tcp: bool, key: bytes, rewritten: bytes,
                 expiry: float, guaranteed: bool) -> None:
        self.spec = spec
        self.tcp = tcp
        self.key = key
        self.rkey = _reverse(rewritten)
        self.outputs = (spec.foutput, spec.routput)
        # addresses and ports written into packets: forward, then reply direction
        self.headers = (rewritten, _reverse(key))
        # Click's checksum deltas, from the original to the rewritten halfwords
        old, new = _halfwords(key), _halfwords(rewritten)
        delta = 0
        for k in range(4):
            delta = update_checksum(delta, old[k], new[k])
        ip_delta = delta
        for k in range(4, 6):
            delta = update_checksum(delta, old[k], new[k])
        # Click adds ~delta going forward and delta in reply (update_csum),
        # as a halfword replacing 0: here the constant part of that sum, or
        # None when there is nothing to change.  Per direction, everything a
        # packet needs, sliced once per flow rather than once per packet:
        # (addresses and ports, destination annotation, IP add, L4 add, output)
        self.actions = tuple(
            (header, header[4:8],
             None if not ip_delta else 0xFFFF + (ip_delta if reply else ~ip_delta & 0xFFFF),
             None if not delta else 0xFFFF + (delta if reply else ~delta & 0xFFFF),
             output)
            for reply, header, output in zip((False, True), self.headers, self.outputs))
        self.expiry = expiry
        self.guaranteed = guaranteed
        self.tflags = 0


class FlowMap(dict[bytes, tuple[Flow, bool]]):
    """A flow table (key -> (flow, is_reply)) that also tracks Click's HashContainer order.

    Lookups are plain dict lookups.  ``insert``/``remove`` keep the buckets
    Click would have (one to start, as the rewriters build their maps with
    HashContainer(0); new keys at the front of their bucket; grown to 2^k-1
    buckets when more than twice as full), so the table handlers list
    mappings in the order Click prints them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.buckets: list[list[bytes]] = [[]]

    @staticmethod
    def _hash(key: bytes) -> int:
        """Click's IPFlowID::hashcode on a little-endian host."""
        def rot(v: int, r: int) -> int:
            return ((v << r) | (v >> (32 - r))) & 0xFFFFFFFF
        sx, dx = int.from_bytes(key[0:4], "little"), int.from_bytes(key[4:8], "little")
        sport, dport = key[8] << 8 | key[9], key[10] << 8 | key[11]
        return rot(sx, sport % 16 + 1) ^ rot(dx, 31 - dport % 16) ^ ((dport << 16) | sport)

    def insert(self, key: bytes, entry: tuple[Flow, bool]) -> None:
        """Set ``key``; a replaced entry keeps its place, a new one goes first in its bucket."""
        if key not in self:
            self.buckets[self._hash(key) % len(self.buckets)].insert(0, key)
        self[key] = entry

    def remove(self, key: bytes) -> None:
        del self[key]
        self.buckets[self._hash(key) % len(self.buckets)].remove(key)

    def rebalance(self) -> None:
        """Click's ``if (map.unbalanced()) map.rehash(bucket_count() + 1)``."""
        if len(self) <= 2 * len(self.buckets):
            return
        n = len(self.buckets)
        size = 1
        while size < n + 1:
            size = ((size + 1) << 1) - 1
        buckets: list[list[bytes]] = [[] for _ in range(size)]
        for bucket in self.buckets:
            for key in bucket:
                buckets[self._hash(key) % size].insert(0, key)
        self.buckets = buckets

    def ordered(self) -> list[tuple[bytes, tuple[Flow, bool]]]:
        return [(key, self[key]) for bucket in self.buckets for key in bucket]


# ---------------------------------------------------------------- the element

_KEYWORDS: dict[str, Callable[[str], object]] = {
    "UDP_TIMEOUT": parse_time, "UDP_STREAMING_TIMEOUT": parse_time, "UDP_GUARANTEE": parse_time,
    "TCP_NODATA_TIMEOUT": parse_time, "TCP_GUARANTEE": parse_time, "TIMEOUT": parse_time,
    "TCP_TIMEOUT": parse_time, "TCP_DONE_TIMEOUT": parse_time, "DST_ANNO": parse_bool,
    "REPLY_ANNO": lambda text: parse_int(text, 0, 47), "CAPACITY": str, "MAPPING_CAPACITY": str,
    "GUARANTEE": parse_time, "REAP_INTERVAL": parse_time, "REAP_TIME": parse_time,
}


@element_class
class IPRewriter(Element):
    """Click's IPRewriter: rewrites TCP and UDP flows per input spec, both directions."""

    class_name = "IPRewriter"
    port_count = "1-/1-"
    processing = "h/h"

    def __init__(self, name: str, ninputs: int, noutputs: int) -> None:
        super().__init__(name, ninputs, noutputs)
        self.clock: Callable[[], float] = time.monotonic
        self.specs: list[InputSpec] = []
        self.tcp_map = FlowMap()
        self.udp_map = FlowMap()
        self.flows: dict[int, Flow] = {}       # id -> flow, in creation order
        self.next_reap = 0.0
        self.read_handlers.update({
            "tcp_table": lambda: self._table(self.tcp_map),
            "udp_table": lambda: self._table(self.udp_map),
            "tcp_mappings": lambda: self._table(self.tcp_map),
            "udp_mappings": lambda: self._table(self.udp_map),
            "table": lambda: self._table(self.tcp_map) + self._table(self.udp_map),
            "mappings": lambda: self._table(self.tcp_map) + self._table(self.udp_map),
            "table_size": lambda: str(sum(s.count for s in self.specs)),
            "nmappings": lambda: str(sum(s.count for s in self.specs)),
            "mapping_failures": lambda: str(sum(s.failures for s in self.specs)),
            "patterns": lambda: "".join(s.unparse() + "\n" for s in self.specs),
            "size": lambda: str(len(self.flows)),
            "capacity": lambda: str(self.capacity),
        })
        self.write_handlers.update({"capacity": self._write_capacity, "clear": self._write_clear})
        self.param_read_handlers["tcp_lookup"] = self._tcp_lookup

    def configure(self, args: list[str]) -> None:
        values: dict[str, object] = {}
        positional: list[str] = []
        for arg in args:
            kw = keyword_of(arg)
            if kw in _KEYWORDS:
                try:
                    values[kw] = _KEYWORDS[kw](arg[len(kw):].strip())
                except ArgError:
                    raise ArgError(f"{kw}: parse error") from None
            else:
                positional.append(arg)

        def seconds(key: str, default: float) -> float:
            value = values.get(key, default)
            assert isinstance(value, float | int)
            return float(value)

        self.udp_timeout = seconds("UDP_TIMEOUT", 300)
        self.udp_streaming_timeout = seconds("UDP_STREAMING_TIMEOUT", self.udp_timeout)
        self.udp_guarantee = seconds("UDP_GUARANTEE", 5)
        self.tcp_nodata_timeout = seconds("TCP_NODATA_TIMEOUT", 300)
        # Click reads GUARANTEE after TCP_GUARANTEE into the same setting, and
        # REAP_TIME after REAP_INTERVAL: the later keyword wins
        self.tcp_guarantee = seconds("GUARANTEE", seconds("TCP_GUARANTEE", 5))
        self.tcp_data_timeout = seconds("TCP_TIMEOUT", seconds("TIMEOUT", 86400))
        self.tcp_done_timeout = seconds("TCP_DONE_TIMEOUT", 240)
        self.reap_interval = seconds("REAP_TIME", seconds("REAP_INTERVAL", 900))
        self.dst_anno = bool(values.get("DST_ANNO", True))
        capacity = values.get("MAPPING_CAPACITY", values.get("CAPACITY"))
        self.capacity = 0x7FFFFFFF
        if capacity is not None:
            value = int_arg(str(capacity))
            if value is None:
                # Click also accepts another rewriter's name to share its table
                raise ArgError("bad MAPPING_CAPACITY")
            self.capacity = value

        if len(positional) != self.ninputs:
            raise ArgError(f"need {self.ninputs} arguments, one per input port")
        errors, specs = [], []
        for i, line in enumerate(positional):
            try:
                specs.append(parse_input_spec(line, self.noutputs, self._named_pattern))
            except ArgError as e:
                errors.append(f"input spec {i}: {e}")
        if errors:
            raise ArgError("; ".join(errors))
        self.specs = specs
        for i in range(self.ninputs):
            self.read_handlers[f"pattern{i}"] = lambda i=i: self.specs[i].unparse() + "\n"
            self.write_handlers[f"pattern{i}"] = lambda text, i=i: self._write_pattern(i, text)

    def _named_pattern(self, name: str) -> Pattern | None:
        pattern = self.names.lookup(PATTERN_NAME, self.name, name)
        assert pattern is None or isinstance(pattern, Pattern)
        return pattern

    # -------------------------------------------------------- packets

    def push(self, port: int, packet: Packet) -> None:
        self.push_callable(port)(packet)

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        """Input ``port``'s packet path, one closure over what configure fixed (the hot path).

        Addresses, ports and checksums change as in Click's TCPFlow/UDPFlow::apply:
        checksums incrementally by the flow's precomputed deltas, so a wrong
        checksum stays wrong just as in Click.
        """
        el = self       # clock, next_reap and the timeouts' helpers are read live
        specs, outs = self.specs, self.out
        tcp_map, udp_map = self.tcp_map, self.udp_map
        tcp_guarantee, udp_guarantee = self.tcp_guarantee, self.udp_guarantee
        dst_anno = self.dst_anno

        def push(packet: Packet) -> None:
            b = packet.buf
            i = packet.ip_off
            if i is None:
                i = packet.off
            n = len(b)
            if n - i < 20:
                proto = t = 0
            else:
                proto = b[i + 9]
                t = i + ((b[i] & 15) << 2)
            if (proto != 6 and proto != 17) or (b[i + 6] & 0x1F) or b[i + 7] or n - t < 8:
                # not a first TCP/UDP fragment with ports: only 'pass' inputs forward it
                spec = specs[port]
                if spec.kind == "nochange":
                    outs[spec.foutput](packet)
                return
            # addresses then ports; one slice when no IP options sit between them
            key = bytes(b[i + 12:t + 4]) if t == i + 20 else bytes(b[i + 12:i + 20]) + b[t:t + 4]
            table = tcp_map if proto == 6 else udp_map
            now = el.clock()
            if now >= el.next_reap:
                el._reap(now)
            entry = table.get(key)
            if entry is None:
                spec = specs[port]
                result = el._rewrite(spec, key, table)
                if not isinstance(result, bytes):
                    if 0 <= result < len(outs):
                        outs[result](packet)
                    return
                flow = el._add_flow(spec, proto == 6, key, result, table, now)
                if flow is None:
                    return
                reply = False
            else:
                flow, reply = entry
            header, dst, ip_add, l4_add, output = flow.actions[reply]
            # a TCP header too short for its checksum keeps its ports, as in Click
            with_ports = proto == 17 or n - t >= 18
            if with_ports and t == i + 20:
                b[i + 12:t + 4] = header     # addresses and ports in one write
            else:
                b[i + 12:i + 20] = header[0:8]
                if with_ports:
                    b[t:t + 4] = header[8:12]
            if dst_anno:
                packet.dst_ip = dst
            if ip_add is not None:
                c = (~(b[i + 10] << 8 | b[i + 11]) & 0xFFFF) + ip_add
                c = (c & 0xFFFF) + (c >> 16)
                c = ~(c + (c >> 16)) & 0xFFFF
                b[i + 10] = c >> 8
                b[i + 11] = c & 0xFF
            at = -1     # where the TCP/UDP checksum is, if it is to change
            if proto == 6:
                if with_ports:
                    at = t + 16
                    # connection state, which only chooses the flow's timeout
                    flags = b[t + 13]
                    ip_len = b[i + 2] << 8 | b[i + 3]
                    have_payload = ((b[i] & 15) + (b[t + 12] >> 4)) * 4 < ip_len
                    if flags & _RST:
                        flow.tflags |= S_FORWARD_DONE | S_REPLY_DONE
                    elif flags & _FIN:
                        flow.tflags |= S_FORWARD_DONE << reply
                    elif flags & _SYN or have_payload:
                        flow.tflags &= ~(S_FORWARD_DONE << reply)
                    if have_payload:
                        flow.tflags |= S_FORWARD_DATA << reply
                if tcp_guarantee:
                    flow.expiry, flow.guaranteed = now + tcp_guarantee, True
                else:
                    flow.expiry, flow.guaranteed = now + el._tcp_timeout(flow), False
            else:
                # Click's UDP state: bit 0 a reply was seen, then 2 per packet up to 6
                if reply:
                    flow.tflags |= 1
                if flow.tflags < 6:
                    flow.tflags += 2
                if b[t + 6] or b[t + 7]:        # a zero UDP checksum means none
                    at = t + 6
                if udp_guarantee:
                    flow.expiry, flow.guaranteed = now + udp_guarantee, True
                else:
                    flow.expiry, flow.guaranteed = now + el._udp_timeout(flow), False
            if l4_add is not None and at >= 0:
                c = (~(b[at] << 8 | b[at + 1]) & 0xFFFF) + l4_add
                c = (c & 0xFFFF) + (c >> 16)
                c = ~(c + (c >> 16)) & 0xFFFF
                b[at] = c >> 8
                b[at + 1] = c & 0xFF
            outs[output](packet)
        return push

    def _rewrite(self, spec: InputSpec, key: bytes, table: FlowMap) -> bytes | int:
        """Click's IPRewriterInput::rewrite_flowid: a rewritten key, an output, or DROP."""
        if spec.kind == "nochange":
            return spec.foutput
        if spec.kind == "keep":
            return key
        if spec.kind == "pattern":
            assert spec.pattern is not None
            rewritten = spec.pattern.rewrite(key, table)
            if rewritten is not None:
                return rewritten
            spec.failures += 1
        return DROP

    def _add_flow(self, spec: InputSpec, tcp: bool, key: bytes, rewritten: bytes,
                  table: FlowMap, now: float) -> Flow | None:
        """Click's add_flow + store_flow, including capacity admission control."""
        guarantee = self.tcp_guarantee if tcp else self.udp_guarantee
        timeout = guarantee or (self.tcp_nodata_timeout if tcp else self.udp_timeout)
        flow = Flow(spec, tcp, key, rewritten, now + timeout, bool(guarantee))
        table.insert(key, (flow, False))
        # a flow whose reply key we take over loses its mapping
        old = table.get(flow.rkey)
        table.insert(flow.rkey, (flow, True))
        if old is not None and old[0] is not flow:
            self._destroy(old[0])
        self.flows[id(flow)] = flow
        spec.count += 1
        if len(self.flows) > self.capacity:
            self._shift_guarantees(now)
            best_effort = [f for f in self.flows.values() if not f.guaranteed]
            victim = min(best_effort, key=lambda f: f.expiry) if best_effort else flow
            self._destroy(victim)
            if victim is flow:
                spec.failures += 1
                return None
        table.rebalance()
        return flow

    def _tcp_timeout(self, flow: Flow) -> float:
        both_done = S_FORWARD_DONE | S_REPLY_DONE
        both_data = S_FORWARD_DATA | S_REPLY_DATA
        if flow.tflags & both_done == both_done:
            return self.tcp_done_timeout
        if flow.tflags & both_data == both_data:
            return self.tcp_data_timeout
        return self.tcp_nodata_timeout

    def _best_effort_expiry(self, flow: Flow) -> float:
        if flow.tcp:
            return flow.expiry + self._tcp_timeout(flow) - self.tcp_guarantee
        return flow.expiry + self._udp_timeout(flow) - self.udp_guarantee

    def _udp_timeout(self, flow: Flow) -> float:
        # streaming: three packets or more, at least one a reply
        return self.udp_streaming_timeout if flow.tflags > 6 else self.udp_timeout

    # -------------------------------------------------------- expiry

    def _destroy(self, flow: Flow) -> None:
        table = self.tcp_map if flow.tcp else self.udp_map
        for key, reply in ((flow.key, False), (flow.rkey, True)):
            if table.get(key) == (flow, reply):
                table.remove(key)
        if self.flows.pop(id(flow), None) is not None:
            flow.spec.count -= 1

    def _shift_guarantees(self, now: float) -> None:
        """Flows whose guarantee ran out become best-effort (Click's shift_heap_best_effort)."""
        for flow in self.flows.values():
            if flow.guaranteed and flow.expiry <= now:
                flow.expiry = self._best_effort_expiry(flow)
                flow.guaranteed = False

    def _reap(self, now: float, clear_all: bool = False) -> None:
        """Click's shrink_heap: drop expired flows, then enforce the capacity."""
        self._shift_guarantees(now)
        for flow in [f for f in self.flows.values() if not f.guaranteed and f.expiry <= now]:
            self._destroy(flow)
        capacity = 0 if clear_all else self.capacity
        while len(self.flows) > capacity:
            best_effort = [f for f in self.flows.values() if not f.guaranteed]
            pool = best_effort or list(self.flows.values())
            self._destroy(min(pool, key=lambda f: f.expiry))
        self.next_reap = now + self.reap_interval if self.reap_interval else float("inf")

    # -------------------------------------------------------- handlers

    def _table(self, table: FlowMap) -> str:
        now = self.clock()
        lines = []
        for key, (flow, reply) in table.ordered():
            rewritten = flow.headers[reply]
            expiry = self._best_effort_expiry(flow) if flow.guaranteed else flow.expiry
            outs = (f"*{flow.outputs[0]} {flow.outputs[1]}" if not reply
                    else f"{flow.outputs[0]} *{flow.outputs[1]}")
            lines.append(f"{_unparse_key(key)} => {_unparse_key(rewritten)} [{outs}] "
                         f"i{self.specs.index(flow.spec)} exp{int(expiry - now + 0.5)}\n")
        return "".join(lines)

    def _tcp_lookup(self, text: str) -> str:
        """``SADDR SPORT DADDR DPORT`` -> where that TCP flow is rewritten to, or ""."""
        words = split_words(text)
        names = ("SADDR", "SPORT", "DADDR", "DPORT")
        if len(words) != 4:
            raise ArgError("expected SADDR SPORT DADDR DPORT")
        parts = []
        for name, word in zip(names, words):
            value = _ip(word) if name.endswith("ADDR") else _tcp_port(word)
            if value is None:
                raise ArgError(f"{name}: parse error")
            parts.append(value.to_bytes(4 if name.endswith("ADDR") else 2, "big"))
        entry = self.tcp_map.get(parts[0] + parts[2] + parts[1] + parts[3])
        if entry is None:
            return ""
        flow, reply = entry
        r = flow.headers[reply]
        return f"{_ip_text(int.from_bytes(r[0:4], 'big'))} {r[8] << 8 | r[9]} " \
               f"{_ip_text(int.from_bytes(r[4:8], 'big'))} {r[10] << 8 | r[11]}"

    def _write_capacity(self, text: str) -> None:
        value = int_arg(text.strip())
        if value is None:
            raise HandlerError("CAPACITY: expected integer")
        self.capacity = value
        self._reap(self.clock())

    def _write_pattern(self, i: int, text: str) -> None:
        """Replace input ``i``'s spec; the flows it created go away (Click's pattern_write_handler)."""
        try:
            spec = parse_input_spec(text, self.noutputs, self._named_pattern)
        except ArgError as e:
            raise HandlerError(f"input spec {i}: {e}") from None
        old = self.specs[i]
        for flow in [f for f in self.flows.values() if f.spec is old]:
            self._destroy(flow)
        self.specs[i] = spec

    def _write_clear(self, _text: str) -> None:
        self._reap(self.clock(), clear_all=True)


@element_class
class IPRewriterPatterns(Element):
    """Click's IPRewriterPatterns: ``NAME SADDR SPORT DADDR DPORT`` patterns shared by name.

    Rewriters naming a pattern share the one object, so sequential port
    choices continue across them, as in Click.
    """

    class_name = "IPRewriterPatterns"
    port_count = "0/0"
    configure_phase = CONFIGURE_PHASE_INFO

    def configure(self, args: list[str]) -> None:
        errors = []
        for arg in args:
            words = split_words(arg)
            if not words:
                continue
            name = words[0]
            # names are router-wide (per compound scope), as Click's NameInfo
            if self.names.lookup(PATTERN_NAME, self.name, name) is not None:
                errors.append(f"pattern '{name}' already defined")
                continue
            try:
                self.names.define(PATTERN_NAME, self.name, name, parse_pattern(words[1:]))
            except ArgError as e:
                errors.append(str(e))
        if errors:
            raise ArgError("; ".join(errors))
