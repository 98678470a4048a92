"""Packets as the Click runtime sees them: a buffer with headroom and annotations."""

from __future__ import annotations

HEADROOM = 32

# Click's annotation area layout (include/click/packet_anno.hh): elements with
# an ANNO argument name a byte offset in it.  The two used on the fast path
# live in attributes; any other offset lives in ``Packet.anno``.
DST_IP_ANNO_OFFSET = 0
PAINT_ANNO_OFFSET = 16
ANNO_SIZE = 48

# Concatenating to this (never modified) makes a new buffer with zeroed headroom
# in one step, about twice as fast as building the headroom per packet.
_HEADROOM_BYTES = bytearray(HEADROOM)


class Packet:
    """A packet: ``buf[off:]`` is its data; bytes before ``off`` are headroom.

    ``Strip(n)`` advances ``off``, ``Unstrip(n)`` moves it back, so no copy is
    made.  Annotations follow Click's: ``paint`` (PAINT_ANNO), ``dst_ip``
    (DST_IP_ANNO, 4 bytes or None), ``ip_off``/``mac_off`` (absolute offsets in
    ``buf`` of the IP and MAC headers once set, else None), ``ts_ns`` (the
    timestamp in integer nanoseconds, so pcap timestamps survive exactly;
    ``timestamp`` is the same in float seconds), ``extra_len`` (bytes of the
    original packet that were not captured, for pcap), ``anno`` (a bytearray
    of ANNO_SIZE for other annotation offsets, created on first use).
    ``paint``/``dst_ip`` are annotation offsets 16 and 0 of that area.
    """

    __slots__ = ("buf", "off", "paint", "dst_ip", "ip_off", "mac_off", "ts_ns",
                 "extra_len", "anno")

    def __init__(self, data: bytes | bytearray, timestamp: float = 0.0,
                 headroom: int = HEADROOM, ts_ns: int | None = None) -> None:
        if headroom == HEADROOM:
            self.buf = _HEADROOM_BYTES + data
        elif headroom:
            self.buf = bytearray(headroom) + data
        else:
            self.buf = bytearray(data)
        self.off = headroom
        self.paint = 0
        self.dst_ip: bytes | None = None
        self.ip_off: int | None = None
        self.mac_off: int | None = None
        self.ts_ns = round(timestamp * 1e9) if ts_ns is None else ts_ns
        self.extra_len = 0
        self.anno: bytearray | None = None

    @property
    def timestamp(self) -> float:
        return self.ts_ns / 1e9

    @timestamp.setter
    def timestamp(self, value: float) -> None:
        self.ts_ns = round(value * 1e9)

    @property
    def data(self) -> bytes:
        return bytes(self.buf[self.off:])

    def __len__(self) -> int:
        return len(self.buf) - self.off

    def pull(self, n: int) -> None:
        """Remove ``n`` bytes from the front (Click's Packet::pull; clamps at the length)."""
        self.off = min(self.off + n, len(self.buf))

    def push(self, n: int) -> None:
        """Expose ``n`` more bytes at the front (Click's Packet::push).

        When the headroom is too small the buffer grows at the front; header
        offsets move with the data so they keep naming the same bytes.
        """
        if n <= self.off:
            self.off -= n
            return
        grow = n - self.off + HEADROOM
        self.buf[0:0] = bytes(grow)
        self.off += grow - n
        if self.ip_off is not None:
            self.ip_off += grow
        if self.mac_off is not None:
            self.mac_off += grow

    def take(self, n: int) -> None:
        """Remove ``n`` bytes from the end (Click's Packet::take)."""
        if n > 0:
            del self.buf[max(len(self.buf) - n, self.off):]

    def anno_u8(self, offset: int) -> int:
        """The annotation byte at ``offset`` of Click's annotation area."""
        if offset == PAINT_ANNO_OFFSET:
            return self.paint
        if DST_IP_ANNO_OFFSET <= offset < DST_IP_ANNO_OFFSET + 4:
            return self.dst_ip[offset - DST_IP_ANNO_OFFSET] if self.dst_ip else 0
        return self.anno[offset] if self.anno is not None else 0

    def set_anno_u8(self, offset: int, value: int) -> None:
        if offset == PAINT_ANNO_OFFSET:
            self.paint = value
        elif DST_IP_ANNO_OFFSET <= offset < DST_IP_ANNO_OFFSET + 4:
            ip = bytearray(self.dst_ip or bytes(4))
            ip[offset - DST_IP_ANNO_OFFSET] = value
            self.dst_ip = bytes(ip)
        else:
            if self.anno is None:
                self.anno = bytearray(ANNO_SIZE)
            self.anno[offset] = value

    def anno_bytes(self, offset: int, size: int) -> bytes:
        return bytes(self.anno_u8(offset + i) for i in range(size))

    def set_anno_bytes(self, offset: int, value: bytes) -> None:
        if offset == DST_IP_ANNO_OFFSET and len(value) == 4:
            self.dst_ip = bytes(value)
            return
        for i, b in enumerate(value):
            self.set_anno_u8(offset + i, b)

    def clone(self) -> Packet:
        """A copy with the same annotations (Click's clone/uniqueify, for Tee)."""
        other = Packet.__new__(Packet)
        other.buf = bytearray(self.buf)
        other.off = self.off
        other.paint = self.paint
        other.dst_ip = self.dst_ip
        other.ip_off = self.ip_off
        other.mac_off = self.mac_off
        other.ts_ns = self.ts_ns
        other.extra_len = self.extra_len
        other.anno = None if self.anno is None else bytearray(self.anno)
        return other
