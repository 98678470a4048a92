"""IP elements: CheckIPHeader, MarkIPHeader, DecIPTTL, SetIPAddress, ICMPPingResponder.

Semantics follow Click 2.1's elements/ip and elements/icmp.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from clickos_agent.click.args import Spec, parse_ip_prefix, parse_keywords, split_words
from clickos_agent.click.element import ArgError, Element, element_class
from clickos_agent.click.elements.common import (
    add_data_handlers,
    anno_arg,
    handler_arg,
    bool_arg,
    int32_arg,
    ip_arg,
    uint_arg,
    ip_checksum_ok,
    unparse_ip,
    update_checksum,
)
from clickos_agent.click.ipexpr import prefix_mask
from clickos_agent.click.packet import DST_IP_ANNO_OFFSET, Packet

_REASONS = ("tiny packet", "bad IP version", "bad IP header length", "bad IP length",
            "bad IP checksum", "bad source address")


def _ip_list(text: str) -> list[bytes]:
    return [ip_arg(w) for w in split_words(text)]


def _interfaces(text: str) -> tuple[list[bytes], list[bytes]]:
    """INTERFACES ``ADDR/MASK ...`` -> (bad sources: broadcasts, 0 and 255.255.255.255; good dsts)."""
    bad: list[bytes] = []
    good: list[bytes] = []
    for word in split_words(text):
        addr, length = parse_ip_prefix(word, allow_bare_address=True)
        a = int.from_bytes(ip_arg(addr), "big")
        mask = prefix_mask(length)
        bad.append(((a & mask) | (~mask & 0xFFFFFFFF)).to_bytes(4, "big"))
        good.append(a.to_bytes(4, "big"))
    return bad + [bytes(4), b"\xff" * 4], good


@element_class
class CheckIPHeader(Element):
    """Drops (or sends to output 1) packets with a bad IP header; marks good ones."""

    class_name = "CheckIPHeader"
    port_count = "1/1-2"
    processing = "a/ah"

    def configure(self, args: list[str]) -> None:
        bad: list[bytes] = []
        good: list[bytes] = []
        keyword_specs = [Spec("INTERFACES", _interfaces), Spec("BADSRC", _ip_list),
                         Spec("GOODDST", _ip_list), Spec("OFFSET", uint_arg),
                         Spec("VERBOSE", bool_arg, default=False),
                         Spec("DETAILS", bool_arg, default=False),
                         Spec("CHECKSUM", bool_arg, default=True)]
        positional = [a for a in args if not _is_keyword(a, keyword_specs)]
        v = parse_keywords([a for a in args if _is_keyword(a, keyword_specs)], keyword_specs)
        if v["INTERFACES"] is not None:
            bad, good = v["INTERFACES"]
        if v["BADSRC"] is not None:
            bad = v["BADSRC"]
        if v["GOODDST"] is not None:
            good = v["GOODDST"]
        offset = v["OFFSET"] if v["OFFSET"] is not None else 0
        # Click 2.1 keeps one positional form, CheckIPHeader(OFFSET) with an unsigned
        # offset; its old BADSRC/OFFSET fallback reads keywords only, so any other
        # positional argument, even an empty one, is "too many arguments"
        if len(positional) == 1 and _maybe_uint(positional[0]) is not None:
            offset = _maybe_uint(positional[0])  # type: ignore[assignment]
        elif positional:
            raise ArgError("too many arguments")
        self.offset: int = offset
        self.bad_src = frozenset(bad)
        self.good_dst = frozenset(good)
        self.verbose: bool = v["VERBOSE"]
        self.checksum: bool = v["CHECKSUM"]
        self.drops = 0
        self.reason_drops = [0] * len(_REASONS) if v["DETAILS"] else None
        self.read_handlers["drops"] = lambda: str(self.drops)
        if self.reason_drops is not None:
            self.read_handlers["drop_details"] = lambda: "".join(
                f"{n}\t{r}\n" for n, r in zip(self.reason_drops or [], _REASONS))

    def _drop(self, reason: int, packet: Packet) -> None:
        if self.drops == 0 or self.verbose:
            print(f"{self.name}: IP header check failed: {_REASONS[reason]}", file=sys.stderr)
        self.drops += 1
        if self.reason_drops is not None:
            self.reason_drops[reason] += 1
        if self.noutputs == 2:
            self.out[1](packet)

    def simple_action(self, packet: Packet) -> Packet | None:
        buf = packet.buf
        ip = packet.off + self.offset
        plen = len(buf) - ip
        if plen < 20:
            return self._drop(0, packet)
        vhl = buf[ip]
        if vhl >> 4 != 4:
            return self._drop(1, packet)
        hlen = (vhl & 0xF) << 2
        if hlen < 20:
            return self._drop(2, packet)
        length = (buf[ip + 2] << 8) | buf[ip + 3]
        if length > plen or length < hlen:
            return self._drop(3, packet)
        if self.checksum and not ip_checksum_ok(buf, ip, hlen):
            return self._drop(4, packet)
        if self.bad_src and bytes(buf[ip + 12:ip + 16]) in self.bad_src \
                and bytes(buf[ip + 16:ip + 20]) not in self.good_dst:
            return self._drop(5, packet)
        packet.ip_off = ip
        if plen > length:
            del buf[ip + length:]
        packet.dst_ip = bytes(buf[ip + 16:ip + 20])
        return packet


def _is_keyword(arg: str, specs: list[Spec]) -> bool:
    word = arg.split(None, 1)
    return len(word) == 2 and any(word[0] == s.keyword for s in specs)


def _maybe_uint(text: str) -> int | None:
    try:
        return uint_arg(text)
    except ArgError:
        return None


@element_class
class MarkIPHeader(Element):
    """Marks the IP header at OFFSET (sets the IP header annotation only)."""

    class_name = "MarkIPHeader"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("OFFSET", int32_arg, positional=True, default=0)])
        self.offset: int = v["OFFSET"]

    def simple_action(self, packet: Packet) -> Packet:
        packet.ip_off = packet.off + self.offset
        return packet

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        return self._push

    def _push(self, packet: Packet) -> None:
        packet.ip_off = packet.off + self.offset
        self.out[0](packet)


@element_class
class DecIPTTL(Element):
    """Decrements the IP TTL, fixing the checksum; TTL <= 1 goes to output 1 or is dropped."""

    class_name = "DecIPTTL"
    port_count = "1/1-2"
    processing = "a/ah"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("ACTIVE", bool_arg, default=True),
                                  Spec("MULTICAST", bool_arg, default=True)])
        self.active: bool = v["ACTIVE"]
        self.multicast: bool = v["MULTICAST"]
        self.drops = 0
        add_data_handlers(self, "drops", lambda: self.drops)
        add_data_handlers(self, "active", lambda: self.active, self._set_active)

    def _set_active(self, value: str) -> None:
        self.active = handler_arg(bool_arg, value, "expected boolean")

    def simple_action(self, packet: Packet) -> Packet | None:
        if not self.active:
            return packet
        buf = packet.buf
        ip = packet.ip_off if packet.ip_off is not None else packet.off
        if not self.multicast and buf[ip + 16] & 0xF0 == 0xE0:
            return packet
        ttl = buf[ip + 8]
        if ttl <= 1:
            self.drops += 1
            if self.noutputs == 2:
                self.out[1](packet)
            return None
        buf[ip + 8] = ttl - 1
        # RFC 1624: the TTL's half-word drops by 0x0100
        total = ((~((buf[ip + 10] << 8) | buf[ip + 11])) & 0xFFFF) + 0xFEFF
        total = ~(total + (total >> 16)) & 0xFFFF
        buf[ip + 10] = total >> 8
        buf[ip + 11] = total & 0xFF
        return packet


@element_class
class SetIPAddress(Element):
    """Sets the destination IP address annotation (or another 4-byte annotation)."""

    class_name = "SetIPAddress"
    live_reconfigure = True

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("IPADDR", ip_arg, mandatory=True, positional=True),
                                  Spec("ANNO", anno_arg(4), default=DST_IP_ANNO_OFFSET)])
        self.addr: bytes = v["IPADDR"]
        self.anno: int = v["ANNO"]
        add_data_handlers(self, "addr", lambda: unparse_ip(self.addr), self._set_addr)

    def _set_addr(self, value: str) -> None:
        self.addr = handler_arg(ip_arg, value)

    def simple_action(self, packet: Packet) -> Packet:
        if self.anno == DST_IP_ANNO_OFFSET:
            packet.dst_ip = self.addr
        else:
            packet.set_anno_bytes(self.anno, self.addr)
        return packet


@element_class
class ICMPPingResponder(Element):
    """Turns ICMP echo requests into echo replies; other packets go to output 1 or are dropped."""

    class_name = "ICMPPingResponder"
    port_count = "1/1-2"
    processing = "a/ah"

    def simple_action(self, packet: Packet) -> Packet | None:
        buf = packet.buf
        ip = packet.ip_off if packet.ip_off is not None else packet.off
        icmp = ip + ((buf[ip] & 0xF) << 2) if ip < len(buf) else len(buf)
        if len(buf) - icmp < 8 or buf[ip + 9] != 1 or buf[icmp] != 8:
            self.checked_push(1, packet)
            return None
        src = bytes(buf[ip + 12:ip + 16])
        buf[ip + 12:ip + 16] = buf[ip + 16:ip + 20]
        buf[ip + 16:ip + 20] = src
        csum = (buf[ip + 10] << 8) | buf[ip + 11]
        csum = update_checksum(csum, (buf[ip + 6] << 8) | buf[ip + 7], 0)
        buf[ip + 6] = buf[ip + 7] = 0
        old = (buf[ip + 8] << 8) | buf[ip + 9]
        buf[ip + 8] = 255
        csum = update_checksum(csum, old, (255 << 8) | buf[ip + 9])
        buf[ip + 10], buf[ip + 11] = csum >> 8, csum & 0xFF
        packet.dst_ip = src
        packet.ts_ns = time.time_ns()
        packet.paint = 0
        old = (buf[icmp] << 8) | buf[icmp + 1]
        buf[icmp] = buf[icmp + 1] = 0
        csum = update_checksum((buf[icmp + 2] << 8) | buf[icmp + 3], old, 0)
        if csum == 0 and not any(buf[icmp:icmp + 2]) and not any(buf[icmp + 4:]):
            csum = 0xFFFF
        buf[icmp + 2], buf[icmp + 3] = csum >> 8, csum & 0xFF
        return packet
