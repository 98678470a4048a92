"""FromDump and ToDump: packets from and to pcap files (Click's elements/userlevel)."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clickos_agent.click.args import (
    Spec,
    parse_filename,
    parse_keywords,
    parse_time,
    parse_word,
    split_words,
)
from clickos_agent.click.element import ArgError, Element, element_class
from clickos_agent.click.elements.common import (
    add_data_handlers,
    bool_arg,
    handler_arg,
    uint_arg,
)
from clickos_agent.click.packet import Packet
from clickos_agent.click.pcap import (
    ENCAP_OF_LINKTYPE,
    LINKTYPE_ETHERNET,
    PcapError,
    PcapReader,
    PcapWriter,
    parse_encap,
)

if TYPE_CHECKING:
    from clickos_agent.click.runtime import Router

# Packets a pushing FromDump emits per task run when it is the only task.
# Otherwise it emits one per run: Click's scheduler interleaves tasks one
# packet each, which fixes the order in which two sources' packets meet and
# keeps a queue between a source and a pulling sink short.
_BURST = 64
_IP_ETHERTYPES = (b"\x08\x00", b"\x86\xdd")


_SAMPLING_SHIFT = 28     # Click keeps SAMPLE as an unsigned 32-bit fixed-point number
_UNSIGNED_REAL = re.compile(r"\+?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?")


def _probability(text: str) -> float:
    """Click's FixedPointArg(28): an unsigned real whose fixed-point form fits 32 bits."""
    if not _UNSIGNED_REAL.fullmatch(text):
        raise ArgError("expected real number")
    value = float(text.replace("_", ""))
    if round(value * (1 << _SAMPLING_SHIFT)) > 0xFFFFFFFF:
        raise ArgError("out of range")
    return value


def force_ip(packet: Packet, linktype: int) -> bool:
    """Find and mark the IP header as Click's fake_pcap_force_ip does; False if not IP."""
    buf, off = packet.buf, packet.off
    if linktype == LINKTYPE_ETHERNET:
        if len(buf) - off < 14:
            return False
        ethertype = bytes(buf[off + 12:off + 14])
        if ethertype in _IP_ETHERTYPES:
            ip = off + 14
        elif ethertype == b"\x81\x00" and len(buf) - off >= 18 \
                and bytes(buf[off + 16:off + 18]) in _IP_ETHERTYPES:
            ip = off + 18
        else:
            return False
    elif linktype in (12, 14, 101, 228):
        ip = off
    else:
        return False
    if ip >= len(buf):
        return False
    version = buf[ip] >> 4
    if version == 4:
        hlen = (buf[ip] & 0xF) << 2
        if hlen >= 20 and ip + hlen <= len(buf):
            packet.ip_off = ip
            packet.dst_ip = bytes(buf[ip + 16:ip + 20])
            return True
    elif version == 6 and ip + 40 <= len(buf):
        packet.ip_off = ip
        return True
    return False


@element_class
class FromDump(Element):
    """Reads packets from a pcap file; pushes them with a task, or returns them when pulled."""

    class_name = "FromDump"
    port_count = "0/1-2"
    processing = "a/ah"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [
            Spec("FILENAME", parse_filename, mandatory=True, positional=True),
            Spec("TIMING", bool_arg, positional=True, default=False),
            Spec("STOP", bool_arg, default=False), Spec("ACTIVE", bool_arg, default=True),
            Spec("SAMPLE", _probability, default=1.0), Spec("FORCE_IP", bool_arg, default=False),
            Spec("START", parse_time), Spec("START_AFTER", parse_time),
            Spec("END", parse_time), Spec("END_AFTER", parse_time),
            Spec("INTERVAL", parse_time), Spec("END_CALL"),
            Spec("FILEPOS", uint_arg, default=0), Spec("MMAP", bool_arg)])
        self.filename: str = v["FILENAME"]
        self.timing: bool = v["TIMING"]
        self.active: bool = v["ACTIVE"]
        self.force_ip: bool = v["FORCE_IP"]
        self.sample: float = min(v["SAMPLE"], 1.0)
        if v["START"] is not None and v["START_AFTER"] is not None:
            raise ArgError("START and START_AFTER are mutually exclusive")
        if sum(v[k] is not None for k in ("END", "END_AFTER", "INTERVAL")) > 1:
            raise ArgError("END, END_AFTER, and INTERVAL are mutually exclusive")
        if v["STOP"] and v["END_CALL"] is not None:
            raise ArgError("END_CALL and STOP are mutually exclusive")
        # times in ns; relative ones are resolved against the first packet
        self._start = self._ns(v["START"])
        self._start_relative = v["START_AFTER"] is not None
        if self._start_relative:
            self._start = self._ns(v["START_AFTER"])
        end_key = next((k for k in ("END", "END_AFTER", "INTERVAL") if v[k] is not None), None)
        self._end = self._ns(v[end_key]) if end_key else None
        self._end_relative = end_key in ("END_AFTER", "INTERVAL")
        if v["STOP"]:
            self._end_call: str | None = f"{self.name}.stop"
        elif v["END_CALL"] is not None:
            self._end_call = v["END_CALL"]
        elif self._end is not None:
            self._end_call = f"{self.name}.active false"
        else:
            self._end_call = None
        self._filepos = v["FILEPOS"]
        self.count = 0
        self._reader: PcapReader | None = None
        self._pending: Packet | None = None
        self._done = False
        self._first_ts: int | None = None
        self._timing_base: float | None = None
        self._router: Router | None = None
        self.read_handlers.update({
            "count": lambda: str(self.count),
            "sampling_prob": lambda: f"{self.sample:g}",
            "encap": lambda: ENCAP_OF_LINKTYPE.get(self._linktype, str(self._linktype)),
            "filename": lambda: self.filename,
            "filesize": lambda: str(os.path.getsize(self.filename)),
            "filepos": lambda: str(self._reader.position if self._reader else 0),
            "packet_filepos": lambda: str(self._reader.position if self._reader else 0),
        })
        add_data_handlers(self, "active", lambda: self.active, self._set_active)
        self.write_handlers.update({"stop": self._stop, "reset_counts": self._reset_counts,
                                    "reset_timing": self._reset_timing})

    @staticmethod
    def _ns(seconds: float | None) -> int | None:
        return None if seconds is None else round(seconds * 1e9)

    def resolve(self) -> None:
        if self._end_call is not None:
            self.names.check_write_call(self, self._end_call)

    def initialize(self, router: Router) -> None:
        self._router = router
        try:
            self._reader = PcapReader(self.filename)
        except PcapError as e:
            raise ArgError(str(e)) from None
        except OSError as e:
            raise ArgError(f"{self.filename}: {e.strerror}") from None
        self._linktype = self._reader.linktype
        if self._linktype in (12, 14, 101):
            self.force_ip = True
        while self._filepos and self._reader.position < self._filepos:
            if self._reader.read() is None:
                break
        self._live = False
        if self.output_is_push(0):
            router.add_task(self._run, source=True)
            self._update_live()

    def _update_live(self) -> None:
        """Tell the router whether this source may still push (it ends ``until_done`` runs)."""
        live = self.output_is_push(0) and self.active and not self._done
        if live != self._live and self._router is not None:
            self._live = live
            if live:
                self._router.add_live_source()
            else:
                self._router.source_done()

    def cleanup(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ---- handlers

    def _set_active(self, value: str) -> None:
        self.active = handler_arg(bool_arg, value, "syntax error")
        self._update_live()

    def _stop(self, _value: str) -> None:
        self.active = False
        self._update_live()
        if self._router is not None:
            self._router.please_stop()

    def _reset_counts(self, _value: str) -> None:
        self.count = 0

    def _reset_timing(self, _value: str) -> None:
        self._timing_base = None

    # ---- reading

    def _finish(self) -> None:
        """End of the file or of the END time: call the end handler once."""
        if self._done:
            return
        self._done = True
        self._update_live()
        if self._end_call:
            self._router.call_write(self._end_call, self.name)

    def _read(self) -> Packet | None:
        """The next packet that passes START/END/SAMPLE, or None at the end."""
        reader = self._reader
        if reader is None or self._done:
            return None
        while True:
            record = reader.read()
            if record is None:
                self._finish()
                return None
            ts, data, orig_len = record
            if self._first_ts is None:
                self._first_ts = ts
                if self._start_relative and self._start is not None:
                    self._start += ts
                    self._start_relative = False
                if self._end_relative and self._end is not None:
                    self._end += ts
                    self._end_relative = False
            if self._start is not None:
                if ts < self._start:
                    continue
                self._start = None
            if self._end is not None and ts >= self._end:
                self._end = None
                self._finish()
                if not self.active:
                    return None
            if self.sample < 1.0 and random.random() >= self.sample:
                continue
            if orig_len < len(data):
                data = data[:orig_len]
            packet = Packet(data, ts_ns=ts)
            packet.mac_off = packet.off
            packet.extra_len = orig_len - len(data) if orig_len > len(data) else 0
            return packet

    def _next(self) -> Packet | None:
        """The next packet to emit now, sending non-IP packets out port 1 under FORCE_IP."""
        while True:
            packet = self._pending or self._read()
            self._pending = None
            if packet is None:
                return None
            if self.timing and not self._due(packet):
                self._pending = packet
                return None
            if self.force_ip and not force_ip(packet, self._linktype):
                self.checked_push(1, packet)
                continue
            return packet

    def _due(self, packet: Packet) -> bool:
        """TIMING: emit packets at their trace times relative to the first one."""
        now = time.monotonic()
        if self._timing_base is None:
            self._timing_base = now - packet.ts_ns / 1e9
        due = self._timing_base + packet.ts_ns / 1e9
        if due <= now:
            return True
        self._router.wake_at(due)
        return False

    def _plain(self) -> bool:
        """True when every record becomes a packet as is (no times, sampling or FORCE_IP)."""
        return (self._start is None and self._end is None and self.sample >= 1.0
                and not self.timing and not self.force_ip and self._pending is None)

    def _run(self) -> bool:
        if not self.active:
            return False
        out = self.out[0]
        burst = _BURST if self._router.task_count() == 1 else 1
        if self._plain() and self._reader is not None and not self._done:
            return self._run_plain(out, burst)
        n = 0
        while n < burst:
            packet = self._next()
            if packet is None:
                break
            self.count += 1
            out(packet)
            n += 1
        return n > 0

    def _run_plain(self, out: Callable[[Packet], None], burst: int) -> bool:
        """The common case of ``_run`` without per-record checks (the fast path)."""
        read = self._reader.read  # type: ignore[union-attr]
        n = 0
        try:
            while n < burst:
                record = read()
                if record is None:
                    self._finish()
                    break
                ts, data, orig_len = record
                if orig_len < len(data):
                    # a capture length beyond the wire length (tcptrace files): Click cuts it
                    data = data[:orig_len]
                packet = Packet(data, ts_ns=ts)
                packet.mac_off = packet.off
                if orig_len > len(data):
                    packet.extra_len = orig_len - len(data)
                n += 1
                out(packet)
        finally:
            # counted once per burst (handlers only run between task runs), even
            # when an element downstream raised
            self.count += n
        return n > 0

    def pull_callable(self, port: int) -> Callable[[], Packet | None]:
        return self._pull

    def _pull(self) -> Packet | None:
        if not self.active:
            return None
        packet = self._next()
        if packet is not None:
            self.count += 1
        return packet

    def pull(self, port: int) -> Packet | None:
        return self._pull()


@element_class
class ToDump(Element):
    """Writes packets to a pcap file.

    Microsecond timestamps, as Click 2.1 writes them (its ToDump has no
    nanosecond format; the ``NANO`` keyword of later Clicks is accepted).
    """

    class_name = "ToDump"
    port_count = "1/0-1"
    processing = "a/a"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [
            Spec("FILENAME", parse_filename, mandatory=True, positional=True),
            Spec("SNAPLEN", uint_arg, positional=True, default=2000),
            Spec("ENCAP", parse_word, positional=True), Spec("USE_ENCAP_FROM"),
            Spec("EXTRA_LENGTH", bool_arg, default=True),
            Spec("UNBUFFERED", bool_arg, default=False), Spec("NANO", bool_arg, default=False)])
        self.filename: str = v["FILENAME"]
        self.snaplen: int = v["SNAPLEN"] or 0xFFFFFFFF
        if v["ENCAP"] is not None and v["USE_ENCAP_FROM"] is not None:
            raise ArgError("specify at most one of 'ENCAP' and 'USE_ENCAP_FROM'")
        linktype = parse_encap(v["ENCAP"] or "ETHER")
        if linktype is None:
            raise ArgError("bad encapsulation type")
        self.linktype = linktype
        # the elements whose encapsulation to copy, found now as Click's Router::find does
        self._use_encap_from: list[Element] = []
        if v["USE_ENCAP_FROM"] is not None:
            for name in split_words(v["USE_ENCAP_FROM"]):
                element = self.names.find(self.name, name)
                if element is None:
                    raise ArgError(f"no element named '{name}'")
                self._use_encap_from.append(element)
            if not self._use_encap_from:
                raise ArgError("element names missing after 'USE_ENCAP_FROM'")
        self.extra_length: bool = v["EXTRA_LENGTH"]
        self.unbuffered: bool = v["UNBUFFERED"]
        self.nano: bool = v["NANO"]
        self.count = 0
        self._writer: PcapWriter | None = None
        self.read_handlers.update({"filename": lambda: self.filename,
                                   "count": lambda: str(self.count)})
        self.write_handlers["reset_counts"] = self._reset_counts

    def _reset_counts(self, _value: str) -> None:
        self.count = 0

    def resolve(self) -> None:
        for element in self._use_encap_from:
            if "encap" not in element.read_handlers:
                raise ArgError(f"'{element.name} :: {element.class_name}' has no 'encap' read handler")

    def initialize(self, router: Router) -> None:
        for element in self._use_encap_from:
            linktype = parse_encap(element.read_handlers["encap"]().strip())
            if linktype is not None:
                self.linktype = linktype
        path = "/dev/stdout" if self.filename == "-" else self.filename
        try:
            self._writer = PcapWriter(path, linktype=self.linktype, snaplen=self.snaplen,
                                      nanosecond=self.nano, unbuffered=self.unbuffered)
        except OSError as e:
            raise ArgError(f"{self.filename}: {e.strerror}") from None
        self._write = self._writer.write
        if self.input_is_pull(0) and self.noutputs == 0:
            router.add_task(self._run)

    def cleanup(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _record(self, packet: Packet) -> None:
        buf, off = packet.buf, packet.off
        length = len(buf) - off
        ts = packet.ts_ns or time.time_ns()
        orig = length + packet.extra_len if self.extra_length else length
        if length > self.snaplen:
            self._write(ts, buf[off:off + self.snaplen], orig)
        else:
            self._write(ts, buf[off:], orig)
        self.count += 1

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        if self.noutputs:
            return self._push_through
        return self._record

    def _push_through(self, packet: Packet) -> None:
        self._record(packet)
        self.out[0](packet)

    def push(self, port: int, packet: Packet) -> None:
        self.push_callable(port)(packet)

    def _run(self) -> bool:
        packet = self.pull_in[0]()
        if packet is None:
            return False
        self._record(packet)
        return True

    def simple_action(self, packet: Packet) -> Packet:
        self._record(packet)
        return packet
