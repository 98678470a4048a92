"""Classic pcap files: reading and writing, microsecond and nanosecond variants.

Used by FromDump/ToDump, the tests and the bench.  The reader parses big
blocks with ``struct.unpack_from`` so a record costs one unpack and one slice.
Like Click's FromFile/ToDump, gzip and bzip2 files are read transparently
(recognised by their magic) and written when the name ends in .gz or .bz2.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from clickos_agent.click.args import parse_uint
from clickos_agent.click.element import ArgError

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

# Click's names for link types (fake_pcap_parse_dlt, case-sensitive), for
# ToDump's ENCAP; ``#N`` names link type N.
ENCAP_NAMES = {"NULL": 0, "IP": 101, "ETHER": 1, "FDDI": 10, "ATM": 100, "RFC1483": 100,
               "ATM_RFC1483": 100, "802_11": 105, "802.11": 105, "802_11_RADIO": 127,
               "802.11_RADIO": 127, "SLL": 113, "AIRONET": 120, "HDLC": 104, "PPP_HDLC": 50,
               "PPP": 9, "SUNATM": 123, "PRISM": 119}


def parse_encap(name: str) -> int | None:
    """The link type Click's fake_pcap_parse_dlt gives ``name``, or None."""
    if name in ENCAP_NAMES:
        return ENCAP_NAMES[name]
    if len(name) >= 2 and name[0] == "#":
        try:
            dlt = parse_uint(name[1:])
        except ArgError:
            return None
        return dlt if dlt < 0x7FFFFFFF else None
    return None


# FromDump's ``encap`` handler
ENCAP_OF_LINKTYPE = {1: "ETHER", 12: "IP", 101: "IP", 228: "IP", 0: "NULL", 10: "FDDI",
                     105: "802_11", 113: "SLL", 9: "PPP", 127: "AIRONET", 104: "HDLC",
                     50: "PPP_HDLC", 119: "PRISM", 123: "SUNATM"}

_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_BLOCK = 1 << 22


class PcapError(Exception):
    """A file that is not a readable classic pcap."""


def _open_read(path: str) -> BinaryIO:
    """``path`` for reading, decompressed if it starts with a gzip or bzip2 magic."""
    raw = open(path, "rb")
    magic = raw.peek(3)[:3]
    if magic[:2] == b"\x1f\x8b":
        import gzip
        raw.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic == b"BZh":
        import bz2
        raw.close()
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return raw


def _open_write(path: str) -> BinaryIO:
    if path.endswith(".gz"):
        import gzip
        return gzip.open(path, "wb")  # type: ignore[return-value]
    if path.endswith(".bz2"):
        import bz2
        return bz2.open(path, "wb")  # type: ignore[return-value]
    return open(path, "wb")


class PcapReader:
    """Iterates ``(ts_ns, data, orig_len)`` records of a pcap file (timestamps in ns)."""

    def __init__(self, path: str) -> None:
        self._file: BinaryIO = _open_read(path)
        header = self._file.read(_FILE_HEADER.size)
        if len(header) < _FILE_HEADER.size:
            self._file.close()
            raise PcapError(f"{path}: not a pcap file (too short)")
        magic = struct.unpack_from("<I", header)[0]
        if magic in (MAGIC_USEC, MAGIC_NSEC):
            order = "<"
        elif struct.unpack_from(">I", header)[0] in (MAGIC_USEC, MAGIC_NSEC):
            order = ">"
            magic = struct.unpack_from(">I", header)[0]
        else:
            self._file.close()
            raise PcapError(f"{path}: not a pcap file (bad magic)")
        _, self.version_major, self.version_minor, _, _, self.snaplen, self.linktype = \
            struct.unpack(order + "IHHiIII", header)
        self.nanosecond = magic == MAGIC_NSEC
        self._record = struct.Struct(order + "IIII")
        self._scale = 1 if self.nanosecond else 1000
        self._buf = b""
        self._pos = 0
        # bytes of the file consumed before _buf began, for the filepos handler
        self._base = _FILE_HEADER.size

    def close(self) -> None:
        self._file.close()

    @property
    def position(self) -> int:
        return self._base + self._pos

    def _refill(self, need: int) -> bool:
        """Make at least ``need`` bytes available at ``_pos``; False at end of file."""
        rest = self._buf[self._pos:]
        self._base += self._pos
        chunk = self._file.read(max(_BLOCK, need - len(rest)))
        self._buf = rest + chunk
        self._pos = 0
        return len(self._buf) >= need

    def read(self) -> tuple[int, bytes, int] | None:
        """The next record, or None at the end of the file (a truncated record ends it)."""
        pos = self._pos
        buf = self._buf
        if pos + 16 > len(buf):
            if not self._refill(16):
                return None
            pos, buf = 0, self._buf
        sec, sub, caplen, length = self._record.unpack_from(buf, pos)
        end = pos + 16 + caplen
        if end > len(buf):
            if not self._refill(16 + caplen):
                return None
            pos, buf = 0, self._buf
            end = 16 + caplen
        self._pos = end
        return sec * 1_000_000_000 + sub * self._scale, buf[pos + 16:end], length

    def __iter__(self) -> Iterator[tuple[int, bytes, int]]:
        while (record := self.read()) is not None:
            yield record

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapWriter:
    """Writes records to a pcap file, buffering in memory between flushes."""

    def __init__(self, path: str, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 65535,
                 nanosecond: bool = False, unbuffered: bool = False) -> None:
        self._file: BinaryIO = _open_write(path)
        self.nanosecond = nanosecond
        self._div = 1 if nanosecond else 1000
        self._unbuffered = unbuffered
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._file.write(_FILE_HEADER.pack(MAGIC_NSEC if nanosecond else MAGIC_USEC, 2, 4, 0, 0,
                                           snaplen & 0xFFFFFFFF, linktype))
        if unbuffered:
            self._file.flush()

    def write(self, ts_ns: int, data: bytes | bytearray | memoryview,
              orig_len: int | None = None) -> None:
        sec, sub = divmod(ts_ns, 1_000_000_000)
        sub //= self._div
        caplen = len(data)
        pending = self._pending
        pending.append(_RECORD.pack(sec, sub, caplen, caplen if orig_len is None else orig_len))
        # slices handed in are fresh objects, so they are kept without a copy
        pending.append(data)
        self._pending_bytes += caplen + 16
        if self._pending_bytes >= _BLOCK or self._unbuffered:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(path: str) -> list[tuple[int, bytes]]:
    """All ``(ts_ns, data)`` records of a file (for tests and tools)."""
    with PcapReader(path) as reader:
        return [(ts, data) for ts, data, _ in reader]


def write_pcap(path: str, packets: list[bytes] | list[tuple[int, bytes]],
               nanosecond: bool = False, linktype: int = LINKTYPE_ETHERNET) -> None:
    """Write packets (bytes, or ``(ts_ns, bytes)``) to a file; bare bytes get 1 s apart."""
    with PcapWriter(path, linktype=linktype, nanosecond=nanosecond) as writer:
        for i, item in enumerate(packets):
            if isinstance(item, tuple):
                writer.write(item[0], item[1])
            else:
                writer.write((i + 1) * 1_000_000_000, item)
