"""Packets as the Click runtime sees them: a buffer with headroom and annotations."""

from __future__ import annotations

HEADROOM = 64


class Packet:
    """A packet: ``buf[off:]`` is its data; bytes before ``off`` are headroom.

    ``Strip(n)`` advances ``off``, ``Unstrip(n)`` moves it back, so no copy is
    made.  Annotations follow Click's: ``paint`` (PAINT_ANNO), ``dst_ip``
    (DST_IP_ANNO, 4 bytes or None), ``ip_off`` (absolute offset of the IP
    header once CheckIPHeader/MarkIPHeader set it), ``timestamp`` (seconds).
    """

    __slots__ = ("buf", "off", "paint", "dst_ip", "ip_off", "timestamp")

    def __init__(self, data: bytes, timestamp: float = 0.0) -> None:
        self.buf = bytearray(HEADROOM) + data
        self.off = HEADROOM
        self.paint = 0
        self.dst_ip: bytes | None = None
        self.ip_off: int | None = None
        self.timestamp = timestamp

    @property
    def data(self) -> bytes:
        return bytes(self.buf[self.off:])

    def __len__(self) -> int:
        return len(self.buf) - self.off

    def clone(self) -> Packet:
        """A copy with the same annotations (Click's clone/uniqueify, for Tee)."""
        other = Packet.__new__(Packet)
        other.buf = bytearray(self.buf)
        other.off = self.off
        other.paint = self.paint
        other.dst_ip = self.dst_ip
        other.ip_off = self.ip_off
        other.timestamp = self.timestamp
        return other
