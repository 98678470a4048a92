"""Small helpers shared by the element modules: argument types, formats, checksums."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TypeVar

from clickos_agent.click.args import parse_bool, parse_int, parse_ip, parse_mac
from clickos_agent.click.element import ArgError, Element, HandlerError
from clickos_agent.click.packet import DST_IP_ANNO_OFFSET, PAINT_ANNO_OFFSET

# Click's annotation names (NameInfo T_ANNOTATION, case-sensitive) that ANNO
# arguments accept: name -> (offset, size) in Click 2.1's 48-byte area (64-bit host)
ANNO_NAMES = {"AGGREGATE": (20, 4), "DST_IP": (DST_IP_ANNO_OFFSET, 4), "DST_IP6": (0, 16),
              "EXTRA_LENGTH": (28, 4), "EXTRA_PACKETS": (24, 4), "FIRST_TIMESTAMP": (32, 8),
              "FIX_IP_SRC": (19, 1), "FWD_RATE": (20, 4), "GRID_ROUTE_CB": (27, 1),
              "ICMP_PARAMPROB": (17, 1), "IPREASSEMBLER": (28, 4), "IPSEC_SA_DATA_REFERENCE": (40, 8),
              "IPSEC_SPI": (32, 4), "MISC_IP": (20, 4), "PACKET_NUMBER": (32, 4),
              "PAINT": (PAINT_ANNO_OFFSET, 1), "PERFCTR": (40, 8), "REV_RATE": (24, 4),
              "SEQUENCE_NUMBER": (36, 4), "VLAN": (20, 2), "VLAN_TCI": (20, 2), "WIFI_EXTRA": (16, 24)}
ANNO_AREA = 48


def anno_arg(size: int) -> Callable[[str], int]:
    """Click's AnnoArg(size): an annotation name of that size, or a byte offset, that fits the area."""
    def parse(text: str) -> int:
        if text in ANNO_NAMES:
            offset, named_size = ANNO_NAMES[text]
        else:
            # a number is Click's encoded annotation info: size << 16 | offset,
            # where size 0 (a plain offset) fits any size
            try:
                info = parse_int(text, -0x80000000, 0x7FFFFFFF)
            except ArgError:
                raise ArgError("parse error") from None
            offset, named_size = info & 0xFFFF, info >> 16
        if (named_size and named_size != size) or offset + size > ANNO_AREA:
            raise ArgError("parse error")
        return offset
    return parse


def ip_arg(text: str) -> bytes:
    """An IPv4 address argument as 4 bytes."""
    return bytes(int(x) for x in parse_ip(text).split("."))


def mac_arg(text: str) -> bytes:
    return parse_mac(text)


def uint_arg(text: str) -> int:
    return parse_int(text, 0, 0xFFFFFFFF, signed=False)


def int_arg(text: str) -> int:
    return parse_int(text)


def int32_arg(text: str) -> int:
    """Click's IntArg into a C ``int``: out of range beyond 32 bits."""
    return parse_int(text, -0x80000000, 0x7FFFFFFF)


bool_arg = parse_bool


def unparse_mac(mac: bytes) -> str:
    """Click's EtherAddress::unparse: dash-separated upper-case hex."""
    return "-".join(f"{b:02X}" for b in mac)


def unparse_ip(ip: bytes | None) -> str:
    return ".".join(str(b) for b in (ip or bytes(4)))


def unparse_bool(value: bool) -> str:
    return "true" if value else "false"


def unparse_real(value: float) -> str:
    """A rate as Click prints reals: fixed point without trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


_WORDS = {n: struct.Struct(f"!{n}H") for n in range(10, 31)}


def ip_checksum_ok(buf: bytes | bytearray, off: int, hlen: int) -> bool:
    """True if the Internet checksum over ``buf[off:off+hlen]`` verifies (folds to 0xFFFF)."""
    words = _WORDS.get(hlen >> 1)
    if words is None:
        return False
    total = sum(words.unpack_from(buf, off))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def update_checksum(old_sum: int, old_word: int, new_word: int) -> int:
    """RFC 1624 incremental update of a checksum for one 16-bit word change."""
    total = (~old_sum & 0xFFFF) + (~old_word & 0xFFFF) + new_word
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def add_data_handlers(elem: Element, name: str, getter: Callable[[], object],
                      setter: Callable[[str], None] | None = None) -> None:
    """Register a read handler printing ``getter()`` (bools as true/false) and an optional writer."""
    def read() -> str:
        value = getter()
        if isinstance(value, bool):
            return unparse_bool(value)
        return str(value)
    elem.read_handlers[name] = read
    if setter is not None:
        elem.write_handlers[name] = setter


T = TypeVar("T")


def handler_arg(parse: Callable[[str], T], text: str, error: str | None = None) -> T:
    """A write handler's value parsed as configure would parse it.

    A bad value is the handler's error, not the configuration's: the ArgError
    becomes a HandlerError, with its own text unless ``error`` names Click's.
    """
    try:
        return parse(text.strip())
    except ArgError as e:
        raise HandlerError(error or str(e)) from None


class Clock:
    """Milliseconds of the monotonic clock, refreshed by the run loop once per pass.

    Per-packet rate bookkeeping reads this instead of the system clock, which
    would cost a system call per packet; a pass takes well under a millisecond.
    """

    __slots__ = ("epoch_ms",)

    def __init__(self) -> None:
        self.tick()

    def tick(self) -> None:
        self.epoch_ms = time.monotonic_ns() // 1_000_000


CLOCK = Clock()


class RateEWMA:
    """Click's RateEWMA: an exponentially weighted rate over 1 ms epochs, alpha 1/16."""

    __slots__ = ("avg", "epoch", "pending")

    SHIFT = 4
    EPOCH_NS = 1_000_000
    EPOCHS_PER_SEC = 1000

    def __init__(self) -> None:
        self.avg = 0.0          # events per epoch
        self.epoch = time.monotonic_ns() // self.EPOCH_NS
        self.pending = 0        # events in the current epoch

    def update(self, delta: int, now_ns: int) -> None:
        epoch = now_ns // self.EPOCH_NS
        if epoch != self.epoch:
            self.roll(epoch)
        self.pending += delta

    def roll(self, epoch: int) -> None:
        """Fold the finished epoch, then decay once per idle epoch in between."""
        alpha = 1.0 / (1 << self.SHIFT)
        idle = epoch - self.epoch - 1
        avg = self.avg + (self.pending - self.avg) * alpha
        if idle > 0:
            avg *= (1 - alpha) ** min(idle, 100000)
        self.avg = avg
        self.pending = 0
        self.epoch = epoch

    def rate(self) -> float:
        """Events per second, after folding in the time elapsed up to now."""
        self.update(0, time.monotonic_ns())
        return self.avg * self.EPOCHS_PER_SEC

    def add_epoch(self, events: int, epoch: int) -> None:
        """Credit ``events`` to the current epoch and move on to ``epoch``."""
        self.pending += events
        self.roll(epoch)

