"""Click's standard elements: counting, queueing, switching, stripping, printing.

Semantics follow Click 2.1's elements/standard (counter.cc, simplequeue.cc,
discard.cc, tee.cc, paint*.cc, rrswitch.cc, hashswitch.cc, strip.cc,
unstrip.cc, print.cc, averagecounter.cc, idle.cc, nullelement.cc).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from clickos_agent.click.args import Spec, parse_int, parse_keywords, parse_string
from clickos_agent.click.element import ArgError, Element, HandlerError, element_class
from clickos_agent.click.elements.common import (
    CLOCK,
    RateEWMA,
    add_data_handlers,
    anno_arg,
    bool_arg,
    handler_arg,
    int32_arg,
    int_arg,
    uint_arg,
    unparse_real,
)
from clickos_agent.click.packet import PAINT_ANNO_OFFSET, Packet

if TYPE_CHECKING:
    from clickos_agent.click.runtime import Router

_now_ns = time.monotonic_ns


@element_class
class Null(Element):
    """Passes packets unchanged."""

    class_name = "Null"

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        return self._push

    def _push(self, packet: Packet) -> None:
        self.out[0](packet)


@element_class
class PushNull(Null):
    class_name = "PushNull"
    processing = "h/h"


@element_class
class PullNull(Null):
    class_name = "PullNull"
    processing = "l/l"


@element_class
class Idle(Element):
    """Never pushes or pulls anything; packets pushed into it are dropped."""

    class_name = "Idle"
    port_count = "-/-"
    processing = "a/a"
    flow_code = "x/y"

    def push(self, port: int, packet: Packet) -> None:
        return None

    def pull(self, port: int) -> Packet | None:
        return None


@element_class
class Discard(Element):
    """Drops every packet; with a pull input it pulls with a task."""

    class_name = "Discard"
    port_count = "1/0"
    processing = "a/a"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("ACTIVE", bool_arg), Spec("BURST", uint_arg, default=1)])
        if v["ACTIVE"] is False and not self.input_is_pull(0):
            raise ArgError("ACTIVE is meaningless in push context")
        self.active: bool = v["ACTIVE"] is not False
        self.burst: int = v["BURST"] or 1 << 32
        self.count = 0
        add_data_handlers(self, "count", lambda: self.count)
        self.write_handlers["reset_counts"] = self._reset
        if self.input_is_pull(0):
            add_data_handlers(self, "active", lambda: self.active, self._set_active)

    def _reset(self, _value: str) -> None:
        self.count = 0

    def _set_active(self, value: str) -> None:
        self.active = handler_arg(bool_arg, value, "syntax error")

    def initialize(self, router: Router) -> None:
        if self.input_is_pull(0):
            router.add_task(self._run)

    def _run(self) -> bool:
        if not self.active:
            return False
        pull = self.pull_in[0]
        n = 0
        while n < self.burst and pull() is not None:
            n += 1
        self.count += n
        return n > 0

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        return self._push

    def _push(self, packet: Packet) -> None:
        self.count += 1

    def push(self, port: int, packet: Packet) -> None:
        self.count += 1


@element_class
class Counter(Element):
    """Counts packets and bytes; reports an EWMA rate."""

    class_name = "Counter"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("COUNT_CALL"), Spec("BYTE_COUNT_CALL")])
        self.count = 0
        self.byte_count = 0
        self._rate = RateEWMA()
        self._byte_rate = RateEWMA()
        self._folded_count = self._folded_bytes = 0
        self._count_trigger, self._count_call = self._parse_call(v["COUNT_CALL"], "COUNT_CALL")
        self._byte_trigger, self._byte_call = self._parse_call(v["BYTE_COUNT_CALL"],
                                                               "BYTE_COUNT_CALL")
        self._count_triggered = self._byte_triggered = False
        self._router: Router | None = None
        self.read_handlers.update({
            "count": lambda: str(self.count),
            "byte_count": lambda: str(self.byte_count),
            "rate": lambda: unparse_real(self._read_rate(self._rate)),
            "byte_rate": lambda: unparse_real(self._read_rate(self._byte_rate)),
            "bit_rate": lambda: unparse_real(self._read_rate(self._byte_rate) * 8),
            "count_call": lambda: str(self._count_trigger) if self._count_call else "",
        })
        self.write_handlers.update({
            "reset": self._reset, "reset_counts": self._reset,
            "count_call": lambda value: self._write_call(value, "count"),
            "byte_count_call": lambda value: self._write_call(value, "byte"),
        })

    @staticmethod
    def _parse_call(text: str | None, what: str) -> tuple[int, str | None]:
        """``N handler [value]`` -> (N, "handler [value]"); no call -> (never, None)."""
        if text is None:
            return -1, None
        words = text.split(None, 1)
        try:
            trigger = uint_arg(words[0]) if words else -1
        except ArgError:
            raise ArgError(f"{what} type mismatch") from None
        return trigger, words[1] if len(words) > 1 else ""

    def _write_call(self, value: str, which: str) -> None:
        words = value.split(None, 1)
        try:
            trigger = uint_arg(words[0]) if words else -1
        except ArgError:
            raise HandlerError(f"'{which}_count_call' first word should be unsigned (count)"
                               if which == "byte" else
                               "'count_call' first word should be unsigned (count)") from None
        call = words[1] if len(words) > 1 else ""
        if which == "count":
            self._count_trigger, self._count_call, self._count_triggered = trigger, call, False
        else:
            self._byte_trigger, self._byte_call, self._byte_triggered = trigger, call, False

    def _reset(self, _value: str = "") -> None:
        self.count = self.byte_count = 0
        self._folded_count = self._folded_bytes = 0
        self._count_triggered = self._byte_triggered = False

    def resolve(self) -> None:
        for call in (self._count_call, self._byte_call):
            if call is not None:
                self.names.check_write_call(self, call)

    def initialize(self, router: Router) -> None:
        self._router = router

    def _fire(self, call: str | None) -> None:
        if call and self._router is not None:
            self._router.call_write(call, self.name)

    def _check_triggers(self) -> None:
        if self.count == self._count_trigger and not self._count_triggered:
            self._count_triggered = True
            self._fire(self._count_call)
        if 0 <= self._byte_trigger <= self.byte_count and not self._byte_triggered:
            self._byte_triggered = True
            self._fire(self._byte_call)

    def simple_action(self, packet: Packet) -> Packet:
        self._count_packet(packet)
        return packet

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        return self._push

    def _push(self, packet: Packet) -> None:
        # _count_packet inlined: this runs for every packet
        if CLOCK.epoch_ms != self._rate.epoch:
            self._fold(CLOCK.epoch_ms)
        self.count += 1
        self.byte_count += len(packet.buf) - packet.off
        if self._count_call is not None or self._byte_call is not None:
            self._check_triggers()
        self.out[0](packet)

    def _count_packet(self, packet: Packet) -> None:
        # the rates learn an epoch's counts only when the clock moves on
        if CLOCK.epoch_ms != self._rate.epoch:
            self._fold(CLOCK.epoch_ms)
        self.count += 1
        self.byte_count += len(packet.buf) - packet.off
        if self._count_call is not None or self._byte_call is not None:
            self._check_triggers()

    def _fold(self, epoch: int) -> None:
        """Give the rates the packets and bytes counted since the last fold."""
        if epoch < self._rate.epoch:
            return
        self._rate.add_epoch(self.count - self._folded_count, epoch)
        self._byte_rate.add_epoch(self.byte_count - self._folded_bytes, epoch)
        self._folded_count, self._folded_bytes = self.count, self.byte_count

    def _read_rate(self, rate: RateEWMA) -> float:
        self._fold(_now_ns() // RateEWMA.EPOCH_NS)
        return rate.rate()


@element_class
class AverageCounter(Element):
    """Counts packets and bytes and reports the average rate since the first packet.

    As in Click, time is counted in jiffies (milliseconds), IGNORE in whole
    seconds, and rates are printed like C's ``%.12g``.
    """

    class_name = "AverageCounter"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("IGNORE", uint_arg, positional=True, default=0)])
        self.ignore_ms = v["IGNORE"] * 1000
        self._reset()
        self.read_handlers.update({
            "count": lambda: str(self.count),
            "byte_count": lambda: str(self.byte_count),
            "rate": lambda: self._rate(self.count),
            "byte_rate": lambda: self._rate(self.byte_count),
        })
        self.write_handlers["reset"] = self._reset

    def _reset(self, _value: str = "") -> None:
        self.count = self.byte_count = 0
        self.first_ms = self.last_ms = 0

    def _rate(self, count: int) -> str:
        # unsigned 32-bit jiffy arithmetic, never dividing by less than one jiffy
        elapsed = (self.last_ms - self.first_ms - self.ignore_ms) & 0xFFFFFFFF
        return f"{count * 1000 / max(elapsed, 1):.12g}"

    def simple_action(self, packet: Packet) -> Packet:
        now = CLOCK.epoch_ms & 0xFFFFFFFF
        if not self.first_ms:
            self.first_ms = now
        if now - self.first_ms >= self.ignore_ms:
            self.count += 1
            self.byte_count += len(packet.buf) - packet.off
        self.last_ms = now
        return packet


@element_class
class Queue(Element):
    """A FIFO between a push input and a pull output; drops arrivals when full."""

    class_name = "Queue"
    live_reconfigure = True
    port_count = "1/1-2"
    processing = "h/lh"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("CAPACITY", uint_arg, positional=True, default=1000)])
        self.capacity: int = v["CAPACITY"]
        self.queue: deque[Packet] = deque()
        self.drops = 0
        self.highwater = 0
        self.read_handlers.update({
            "length": lambda: str(len(self.queue)),
            "highwater_length": lambda: str(self.highwater),
            "capacity": lambda: str(self.capacity),
            "drops": lambda: str(self.drops),
        })
        self.write_handlers.update({"capacity": self._set_capacity,
                                    "reset_counts": self._reset_counts,
                                    "reset": self._reset})

    def _set_capacity(self, value: str) -> None:
        try:
            self.capacity = uint_arg(value.strip())
        except ArgError as e:
            raise HandlerError(f"CAPACITY: {e}") from None
        while len(self.queue) > self.capacity:
            self.queue.pop()

    def _reset_counts(self, _value: str) -> None:
        self.drops = 0
        self.highwater = len(self.queue)

    def _reset(self, _value: str) -> None:
        while self.queue:
            self.checked_push(1, self.queue.popleft())

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        return self._push

    def _push(self, packet: Packet) -> None:
        queue = self.queue
        if len(queue) < self.capacity:
            queue.append(packet)
            if len(queue) > self.highwater:
                self.highwater = len(queue)
        else:
            if self.drops == 0 and self.capacity > 0:
                print(f"{self.name}: overflow", file=sys.stderr)
            self.drops += 1
            self.checked_push(1, packet)

    def push(self, port: int, packet: Packet) -> None:
        self._push(packet)

    def pull_callable(self, port: int) -> Callable[[], Packet | None]:
        return self._pull

    def _pull(self) -> Packet | None:
        return self.queue.popleft() if self.queue else None

    def pull(self, port: int) -> Packet | None:
        return self._pull()


@element_class
class SimpleQueue(Queue):
    class_name = "SimpleQueue"
    live_reconfigure = True


@element_class
class NotifierQueue(Queue):
    class_name = "NotifierQueue"
    live_reconfigure = True


@element_class
class Unqueue(Element):
    """Pulls packets from its input with a task and pushes them out (BURST per run)."""

    class_name = "Unqueue"
    processing = "l/h"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("BURST", int_arg, positional=True, default=1),
                                  Spec("ACTIVE", bool_arg, default=True),
                                  Spec("LIMIT", int_arg, default=-1)])
        self.burst: int = v["BURST"] if v["BURST"] > 0 else 1 << 30
        self.active: bool = v["ACTIVE"]
        self.limit: int = v["LIMIT"]
        self.count = 0
        add_data_handlers(self, "active", lambda: self.active, self._set_active)
        add_data_handlers(self, "count", lambda: self.count)
        add_data_handlers(self, "burst", lambda: self.burst)
        add_data_handlers(self, "limit", lambda: self.limit)
        self.write_handlers.update({"reset": self._reset, "reset_counts": self._reset})

    def _set_active(self, value: str) -> None:
        self.active = handler_arg(bool_arg, value, "expected boolean")

    def _reset(self, _value: str) -> None:
        self.count = 0

    def initialize(self, router: Router) -> None:
        router.add_task(self._run)

    def _run(self) -> bool:
        if not self.active:
            return False
        limit = self.burst
        if self.limit >= 0:
            limit = min(limit, self.limit - self.count)
        pull, out = self.pull_in[0], self.out[0]
        worked = 0
        while worked < limit:
            packet = pull()
            if packet is None:
                break
            worked += 1
            self.count += 1
            out(packet)
        return worked > 0


@element_class
class Tee(Element):
    """Sends a copy of each packet to every output (the original to the last)."""

    class_name = "Tee"
    port_count = "1/1-"
    processing = "h/h"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("N", uint_arg, positional=True, default=self.noutputs)])
        if v["N"] != self.noutputs:
            raise ArgError(f"{self.noutputs} outputs implies {self.noutputs} arms")

    def push(self, port: int, packet: Packet) -> None:
        _push_to_all(self.out, packet)


def _push_to_all(out: list[Callable[[Packet], None]], packet: Packet) -> None:
    """The packet on every output: a clone on each but the last, which gets the packet itself."""
    if not out:
        return
    last = len(out) - 1
    for i in range(last):
        out[i](packet.clone())
    out[last](packet)


@element_class
class PullTee(Tee):
    """Returns pulled packets and pushes a copy of each to every other output."""

    class_name = "PullTee"
    processing = "l/lh"

    def pull(self, port: int) -> Packet | None:
        packet = self.pull_in[0]()
        if packet is not None:
            for i in range(1, len(self.out)):
                self.out[i](packet.clone())
        return packet


@element_class
class Paint(Element):
    """Sets the paint annotation (or another one-byte annotation) to COLOR."""

    class_name = "Paint"
    live_reconfigure = True

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("COLOR", _uint8, mandatory=True, positional=True),
                                  Spec("ANNO", anno_arg(1), positional=True,
                                       default=PAINT_ANNO_OFFSET)])
        self.color: int = v["COLOR"]
        self.anno: int = v["ANNO"]
        add_data_handlers(self, "color", lambda: self.color, self._set_color)

    def _set_color(self, value: str) -> None:
        self.color = handler_arg(_uint8, value)

    def simple_action(self, packet: Packet) -> Packet:
        if self.anno == PAINT_ANNO_OFFSET:
            packet.paint = self.color
        else:
            packet.set_anno_u8(self.anno, self.color)
        return packet


def _uint8(text: str) -> int:
    return parse_int(text, 0, 255)


@element_class
class PaintSwitch(Element):
    """Sends each packet to the output its paint annotation names (255: all outputs)."""

    class_name = "PaintSwitch"
    port_count = "1/-"
    processing = "h/h"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("ANNO", anno_arg(1), positional=True,
                                       default=PAINT_ANNO_OFFSET)])
        self.anno: int = v["ANNO"]

    def push(self, port: int, packet: Packet) -> None:
        color = packet.paint if self.anno == PAINT_ANNO_OFFSET else packet.anno_u8(self.anno)
        out = self.out
        if color == 0xFF:
            _push_to_all(out, packet)
        elif color < len(out):
            out[color](packet)


@element_class
class RoundRobinSwitch(Element):
    """Sends packets to its outputs in turn."""

    class_name = "RoundRobinSwitch"
    port_count = "1/1-"
    processing = "h/h"

    def configure(self, args: list[str]) -> None:
        parse_keywords(args, [])
        self.next = 0

    def push(self, port: int, packet: Packet) -> None:
        i = self.next
        self.next = 0 if i + 1 >= self.noutputs else i + 1
        self.out[i](packet)


@element_class
class HashSwitch(Element):
    """Chooses an output from a hash of LENGTH bytes at OFFSET (Click's byte-sum hash)."""

    class_name = "HashSwitch"
    port_count = "1/1-"
    processing = "h/h"

    def configure(self, args: list[str]) -> None:
        # C ints in Click: a negative LENGTH hashes nothing (output 0)
        v = parse_keywords(args, [Spec("OFFSET", int32_arg, mandatory=True, positional=True),
                                  Spec("LENGTH", int32_arg, mandatory=True, positional=True)])
        self.offset: int = v["OFFSET"]
        self.length: int = v["LENGTH"]
        if self.length == 0:
            raise ArgError("length must be > 0")

    def push(self, port: int, packet: Packet) -> None:
        start = packet.off + self.offset
        end = start + self.length
        if end > len(packet.buf):
            self.out[0](packet)
            return
        d = sum(packet.buf[start:end])
        n = self.noutputs
        if n in (2, 4, 8):
            self.out[(d ^ (d >> 4)) & (n - 1)](packet)
        else:
            self.out[d % n](packet)


@element_class
class Strip(Element):
    """Removes LENGTH bytes from the front of each packet."""

    class_name = "Strip"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("LENGTH", uint_arg, mandatory=True, positional=True)])
        self.nbytes: int = v["LENGTH"]

    def simple_action(self, packet: Packet) -> Packet:
        off = packet.off + self.nbytes
        packet.off = off if off <= len(packet.buf) else len(packet.buf)
        return packet

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        return self._push

    def _push(self, packet: Packet) -> None:
        off = packet.off + self.nbytes
        packet.off = off if off <= len(packet.buf) else len(packet.buf)
        self.out[0](packet)


@element_class
class Unstrip(Element):
    """Puts LENGTH bytes back at the front of each packet."""

    class_name = "Unstrip"

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [Spec("LENGTH", uint_arg, mandatory=True, positional=True)])
        self.nbytes: int = v["LENGTH"]

    def simple_action(self, packet: Packet) -> Packet:
        packet.push(self.nbytes)
        return packet


@element_class
class Print(Element):
    """Prints a line per packet (label, length, leading bytes) on standard error."""

    class_name = "Print"
    live_reconfigure = True

    def configure(self, args: list[str]) -> None:
        v = parse_keywords(args, [
            Spec("LABEL", parse_string, positional=True, default=""),
            Spec("MAXLENGTH", int32_arg, positional=True, default=24),
            Spec("LENGTH", int32_arg), Spec("NBYTES", int32_arg),
            Spec("CONTENTS", str, default="HEX"), Spec("TIMESTAMP", bool_arg, default=False),
            Spec("PRINTANNO", bool_arg, default=False), Spec("ACTIVE", bool_arg, default=True),
            Spec("HEADROOM", bool_arg, default=False)])
        self.label: str = v["LABEL"]
        self.maxlength: int = next(x for x in (v["NBYTES"], v["LENGTH"], v["MAXLENGTH"])
                                   if x is not None)
        contents = v["CONTENTS"]
        try:
            self.contents = 1 if bool_arg(contents) else 0
        except ArgError:
            modes = {"NONE": 0, "HEX": 1, "ASCII": 2}
            if contents.upper() not in modes:
                raise ArgError(f"bad contents value '{contents.upper()}'; should be 'NONE', "
                               "'HEX', or 'ASCII'") from None
            self.contents = modes[contents.upper()]
        self.timestamp: bool = v["TIMESTAMP"]
        self.printanno: bool = v["PRINTANNO"]
        self.headroom: bool = v["HEADROOM"]
        self.active: bool = v["ACTIVE"]
        add_data_handlers(self, "active", lambda: self.active, self._set_active)

    def _set_active(self, value: str) -> None:
        self.active = handler_arg(bool_arg, value, "expected boolean")

    def simple_action(self, packet: Packet) -> Packet:
        if self.active:
            print(self.format(packet), file=sys.stderr)
        return packet

    def format(self, packet: Packet) -> str:
        length = len(packet)
        nbytes = self.maxlength if self.contents else 0
        if nbytes < 0 or length < nbytes:
            nbytes = length
        parts: list[str] = []
        sep = ""
        if self.label:
            parts.append(self.label)
            sep = ": "
        if self.timestamp:
            sec, nsec = divmod(packet.ts_ns, 1_000_000_000)
            parts.append(f"{sep}{sec}.{nsec:09d}")
            sep = ": "
        parts.append(f"{sep}{length:4d}")
        if self.headroom:
            parts.append(f" (h{packet.off} t0)")
        if self.printanno:
            parts.append(" | " + packet.anno_bytes(0, 48).hex())
        if nbytes:
            data = packet.buf[packet.off:packet.off + nbytes]
            if self.contents == 1:
                text = " ".join(data[i:i + 4].hex() for i in range(0, nbytes, 4))
            else:
                text = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
            parts.append(" | " + text)
        return "".join(parts)

