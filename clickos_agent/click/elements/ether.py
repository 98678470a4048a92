"""Ethernet elements: EtherRewrite, EtherMirror, StoreEtherAddress, ARPResponder.

Semantics follow Click 2.1's elements/ethernet.
"""

from __future__ import annotations

from collections.abc import Callable

from clickos_agent.click.args import (
    Spec,
    parse_ip_prefix,
    parse_keywords,
    parse_mac,
    split_words,
)
from clickos_agent.click.element import ArgError, Element, HandlerError, element_class
from clickos_agent.click.elements.common import (
    anno_arg,
    handler_arg,
    ip_arg,
    mac_arg,
    uint_arg,
    unparse_mac,
)
from clickos_agent.click.ipexpr import prefix_mask
from clickos_agent.click.packet import Packet


@element_class
class EtherRewrite(Element):
    """Rewrites the Ethernet source and destination addresses at the MAC header."""

    class_name = "EtherRewrite"
    live_reconfigure = True

    def configure(self, args: list[str]) -> None:
        # an empty address is accepted and left all zeros, as in Click
        v = parse_keywords(args, [Spec("SRC", mac_arg, mandatory=True, positional=True, default=bytes(6)),
                                  Spec("DST", mac_arg, mandatory=True, positional=True, default=bytes(6))])
        self.src: bytes = v["SRC"]
        self.dst: bytes = v["DST"]
        self._header = self.dst + self.src
        self.read_handlers.update({"src": lambda: unparse_mac(self.src),
                                   "dst": lambda: unparse_mac(self.dst)})
        self.write_handlers.update({"src": lambda t: self._set("src", t),
                                    "dst": lambda t: self._set("dst", t)})

    def _set(self, which: str, text: str) -> None:
        try:
            setattr(self, which, parse_mac(text.strip()))
        except ArgError as e:
            raise HandlerError(f"{which.upper()}: {e}") from None
        self._header = self.dst + self.src

    def simple_action(self, packet: Packet) -> Packet:
        self._rewrite(packet)
        return packet

    def _rewrite(self, packet: Packet) -> None:
        buf = packet.buf
        mac = packet.mac_off if packet.mac_off is not None else packet.off
        if mac + 12 <= len(buf):
            buf[mac:mac + 12] = self._header
        else:
            # Click writes all 12 bytes on into the tailroom; the packet keeps its length
            buf[mac:] = self._header[:max(0, len(buf) - mac)]

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        return self._push

    def _push(self, packet: Packet) -> None:
        self._rewrite(packet)
        self.out[0](packet)


@element_class
class EtherMirror(Element):
    """Swaps the Ethernet source and destination addresses."""

    class_name = "EtherMirror"

    def simple_action(self, packet: Packet) -> Packet:
        buf, off = packet.buf, packet.off
        n = len(buf) - off
        if n >= 12:
            buf[off:off + 12] = buf[off + 6:off + 12] + buf[off:off + 6]
        else:
            # Click swaps 12 bytes whatever the length, through the (zeroed)
            # tailroom; what stays inside the packet is what it shows
            header = buf[off:] + bytes(12 - n)
            buf[off:] = (header[6:12] + header[0:6])[:n]
        return packet


@element_class
class StoreEtherAddress(Element):
    """Stores an Ethernet address at OFFSET ("src", "dst" or a byte offset)."""

    class_name = "StoreEtherAddress"
    port_count = "1/1-2"
    processing = "a/ah"

    def configure(self, args: list[str]) -> None:
        given: set[str] = set()
        v = parse_keywords(args, [Spec("ADDR", mac_arg, positional=True),
                                  Spec("OFFSET", str, mandatory=True, positional=True, default=""),
                                  Spec("ANNO", anno_arg(6))], given)
        # an empty ADDR counts as given (and stays all zeros), as in Click
        if ("ADDR" in given) == ("ANNO" in given):
            raise ArgError("must specify exactly one of ADDR/ANNO")
        offset = v["OFFSET"].lower()
        if offset == "src":
            self.offset = 6
        elif offset == "dst":
            self.offset = 0
        else:
            try:
                # Click's offset is 32-bit unsigned and offset + 6 must not wrap
                self.offset = uint_arg(v["OFFSET"])
                if self.offset > 0xFFFFFFFF - 6:
                    raise ArgError("overflow")
            except ArgError:
                raise ArgError("type mismatch: bad OFFSET") from None
        self.addr: bytes | None = v["ADDR"] or bytes(6) if "ADDR" in given else None
        self.anno: int | None = v["ANNO"]
        if self.addr is not None:
            self.read_handlers["addr"] = lambda: unparse_mac(self.addr or bytes(6))
            self.write_handlers["addr"] = self._set_addr

    def _set_addr(self, text: str) -> None:
        self.addr = handler_arg(parse_mac, text)

    def simple_action(self, packet: Packet) -> Packet | None:
        start = packet.off + self.offset
        if start + 6 > len(packet.buf):
            self.checked_push(1, packet)
            return None
        addr = self.addr if self.anno is None else packet.anno_bytes(self.anno, 6)
        packet.buf[start:start + 6] = addr  # type: ignore[index]
        return packet


@element_class
class ARPResponder(Element):
    """Answers ARP requests for configured IP prefixes; other packets go to output 1."""

    class_name = "ARPResponder"
    live_reconfigure = True
    port_count = "1/1-2"
    processing = "a/ah"

    def configure(self, args: list[str]) -> None:
        entries: list[tuple[int, int, bytes]] = []
        errors: list[str] = []
        for i, arg in enumerate(args):
            try:
                entries += self._entries(arg)
            except ArgError as e:
                errors.append(f"argument {i}: {e}")
        if errors:
            raise ArgError("; ".join(errors))
        self.table = self._normalize(entries)
        self.read_handlers["table"] = self._table
        self.param_read_handlers["lookup"] = self._lookup
        self.write_handlers.update({"add": self._add, "remove": self._remove})

    @staticmethod
    def _entries(arg: str) -> list[tuple[int, int, bytes]]:
        """``IP/MASK ... ETH`` -> [(network, mask, eth)]."""
        prefixes: list[tuple[int, int]] = []
        eth: bytes | None = None
        for word in split_words(arg):
            try:
                addr, length = parse_ip_prefix(word, allow_bare_address=True)
                mask = prefix_mask(length)
                prefixes.append((int.from_bytes(ip_arg(addr), "big") & mask, mask))
                continue
            except ArgError:
                pass
            try:
                mac = parse_mac(word)
            except ArgError:
                raise ArgError("expected IP/MASK ETH") from None
            if eth is not None:
                raise ArgError("more than one ETH")
            eth = mac
        if not prefixes:
            raise ArgError("missing IP/MASK")
        if eth is None:
            raise ArgError("missing ETH")
        return [(net, mask, eth) for net, mask in prefixes]

    @staticmethod
    def _normalize(entries: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
        """Most specific prefixes first; for duplicates the later entry wins."""
        latest: dict[tuple[int, int], tuple[int, int, bytes]] = {}
        for entry in entries:
            latest[(entry[0], entry[1])] = entry
        return sorted(latest.values(), key=lambda e: -bin(e[1]).count("1"))

    def lookup(self, ip: int) -> bytes | None:
        for net, mask, eth in self.table:
            if ip & mask == net:
                return eth
        return None

    def _lookup(self, text: str) -> str:
        """The Ethernet address answered for an IP address, or "" if none."""
        try:
            ip = ip_arg(text.strip())
        except ArgError:
            raise HandlerError("expected IP address") from None
        eth = self.lookup(int.from_bytes(ip, "big"))
        return unparse_mac(eth) if eth is not None else ""

    def _table(self) -> str:
        lines = []
        for net, mask, eth in self.table:
            length = bin(mask).count("1")
            # Click's unparse_with_mask: always a mask, as a length when contiguous
            if mask == prefix_mask(length):
                shown_mask = str(length)
            else:
                shown_mask = ".".join(str(b) for b in mask.to_bytes(4, "big"))
            addr = ".".join(str(b) for b in net.to_bytes(4, "big"))
            lines.append(f"{addr}/{shown_mask} {unparse_mac(eth)}\n")
        return "".join(lines)

    def _add(self, text: str) -> None:
        try:
            self.table = self._normalize(self.table + self._entries(text))
        except ArgError as e:
            raise HandlerError(str(e)) from None

    def _remove(self, text: str) -> None:
        try:
            addr, length = parse_ip_prefix(text.strip(), allow_bare_address=True)
        except ArgError:
            raise HandlerError("expected IP/MASK") from None
        mask = prefix_mask(length)
        net = int.from_bytes(ip_arg(addr), "big") & mask
        for entry in self.table:
            if entry[0] == net and entry[1] == mask:
                self.table.remove(entry)
                return
        raise HandlerError(f"{addr}/{length} not found")

    def simple_action(self, packet: Packet) -> Packet | None:
        buf, off = packet.buf, packet.off
        reply = None
        if len(buf) - off >= 42 and buf[off + 12:off + 14] == b"\x08\x06" \
                and buf[off + 14:off + 18] == b"\x00\x01\x08\x00" \
                and buf[off + 20:off + 22] == b"\x00\x01":
            target_ip = bytes(buf[off + 38:off + 42])
            eth = self.lookup(int.from_bytes(target_ip, "big"))
            if eth is not None:
                sender_eth = bytes(buf[off + 22:off + 28])
                sender_ip = bytes(buf[off + 28:off + 32])
                data = (sender_eth + eth + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02"
                        + eth + target_ip + sender_eth + sender_ip)
                reply = Packet(data)
                reply.mac_off = reply.off
        if reply is None:
            self.checked_push(1, packet)
        return reply
