"""Rate-based elements: RatedSplitter, BandwidthRatedSplitter, Meter, BandwidthMeter.

Semantics follow Click 2.1 (ratedsplitter.cc, bwratedsplitter.cc,
ratedunqueue.cc's token bucket set-up, bandwidthmeter.cc, meter.cc).  Rates are
measured against the clock in whole milliseconds, as Click's token buckets and
rate averages count jiffies (1 ms at user level): packets handled within one
millisecond see no refill and no new average, whatever their number.
"""

from __future__ import annotations

from clickos_agent.click.args import Spec, parse_bandwidth, parse_keywords, parse_time
from clickos_agent.click.element import ArgError, Element, HandlerError, element_class
from clickos_agent.click.elements.common import CLOCK, RateEWMA, uint_arg, unparse_real
from clickos_agent.click.packet import Packet

# Click's BandwidthRatedSplitter sends a packet on while the bucket holds this
# many bytes, then charges the packet's length (ratedunqueue.hh).
_BANDWIDTH_THRESH = 131072
_MAX_METER_RATE = 0xFFFFFFFF >> 10     # the largest rate BandwidthMeter can scale (2^10)
_MAX_TOKENS = 0xFFFFFFFF
_TICKS_PER_SECOND = 1000               # user-level Click's CLICK_HZ
_METER_SCALE = 10                      # fraction bits of BandwidthMeter's rates


def _reported_rate(rate: int, capacity: int) -> int:
    """The rate Click's token bucket reports for ``rate`` and ``capacity``: it keeps
    tokens per 1 ms tick, scaled to 32 bits by the capacity, and converts back."""
    if capacity == 0:
        rate, capacity = 0, _MAX_TOKENS
    if rate == 0:
        return 0
    capacity = max(capacity, (rate - 1) // _TICKS_PER_SECOND + 1)
    scale = _MAX_TOKENS // capacity
    per_tick = rate * scale // _TICKS_PER_SECOND or 1
    return min((per_tick // 2 + per_tick * _TICKS_PER_SECOND) // scale, _MAX_TOKENS)


def unparse_real2(value: int, frac_bits: int) -> str:
    """Click's cp_unparse_real2 of an unsigned 32-bit fixed-point number (TeX's
    print_scaled: the shortest decimal that reads back to the same value)."""
    value &= 0xFFFFFFFF
    text = str(value >> frac_bits)
    one = 1 << frac_bits
    value &= one - 1
    if not value:
        return text
    text += "."
    value = 10 * value + 5
    allowed = 10
    rounder = 5
    while rounder < one >> 1:
        rounder *= 10
    while True:
        if allowed > one:
            value = (value + (one >> 1) - rounder) & 0xFFFFFFFF     # C's unsigned wrap
        text += chr(ord("0") + (value >> frac_bits))
        value = (10 * (value & (one - 1))) & 0xFFFFFFFF
        allowed *= 10
        if value <= allowed:
            return text


def unparse_real10(value: int, digits: int) -> str:
    """Click's cp_unparse_real10: ``value / 10**digits`` without trailing zeros."""
    whole, fraction = divmod(value, 10 ** digits)
    decimals = str(fraction).rjust(digits, "0").rstrip("0")
    return f"{whole}.{decimals}" if decimals else str(whole)


def unparse_bandwidth(rate: int) -> str:
    """Click's BandwidthArg::unparse of bytes per second."""
    if rate >= 0x20000000:
        return unparse_real10(rate, 6) + "MBps"
    if rate >= 125_000_000:
        return unparse_real10(rate * 8, 9) + "Gbps"
    if rate >= 125_000:
        return unparse_real10(rate * 8, 6) + "Mbps"
    return unparse_real10(rate * 8, 3) + "kbps"


class TokenBucket:
    """Tokens refill at ``rate`` per second, per whole millisecond, up to ``capacity``.

    It starts full, as Click's does (its first refill finds the bucket idle
    since time zero).
    """

    __slots__ = ("rate", "capacity", "tokens", "last_ms")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.last_ms = CLOCK.epoch_ms

    def refill(self) -> None:
        now = CLOCK.epoch_ms
        if now != self.last_ms:
            self.tokens = min(self.capacity, self.tokens + (now - self.last_ms) * self.rate / 1000)
            self.last_ms = now


class _RatedSplitterBase(Element):
    port_count = "1/1-2"
    processing = "h/h"
    bandwidth = False

    def configure(self, args: list[str]) -> None:
        self._configure(args)
        self.read_handlers["rate"] = self._read_rate
        self.read_handlers["config"] = self._read_rate
        self.write_handlers["rate"] = self._write_rate

    def _configure(self, args: list[str]) -> None:
        burst_kw = "BURST_BYTES" if self.bandwidth else "BURST_SIZE"
        v = parse_keywords(args, [
            Spec("RATE", parse_bandwidth if self.bandwidth else uint_arg,
                 mandatory=True, positional=True),
            Spec("BURST_DURATION", parse_time), Spec(burst_kw, uint_arg)])
        if v["BURST_DURATION"] is not None and v[burst_kw] is not None:
            raise ArgError(f"cannot specify both BURST_DURATION and {burst_kw}")
        # an empty RATE is accepted unparsed; Click then runs with whatever was in
        # its variable, here 0
        rate = int(v["RATE"] or 0)
        if v[burst_kw] is not None:
            tokens = v[burst_kw]
        else:
            duration_ms = 20 if v["BURST_DURATION"] is None else int(v["BURST_DURATION"] * 1000)
            tokens = rate * duration_ms // 1000
        if self.bandwidth:
            tokens += _BANDWIDTH_THRESH
        self.rate = rate
        self.bucket = TokenBucket(rate, max(tokens, 1))

    def _read_rate(self) -> str:
        rate = _reported_rate(self.rate, int(self.bucket.capacity))
        return unparse_bandwidth(rate) if self.bandwidth else str(rate)

    def _write_rate(self, value: str) -> None:
        try:
            self._configure([f"RATE {value.strip()}"])
        except ArgError as e:
            raise HandlerError(str(e)) from None


@element_class
class RatedSplitter(_RatedSplitterBase):
    """Sends at most RATE packets per second to output 0, the rest to output 1."""

    class_name = "RatedSplitter"
    live_reconfigure = True

    def push(self, port: int, packet: Packet) -> None:
        bucket = self.bucket
        bucket.refill()
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            self.out[0](packet)
        else:
            self.checked_push(1, packet)


@element_class
class BandwidthRatedSplitter(_RatedSplitterBase):
    """Sends at most RATE bytes per second to output 0, the rest to output 1."""

    class_name = "BandwidthRatedSplitter"
    live_reconfigure = True
    bandwidth = True

    def push(self, port: int, packet: Packet) -> None:
        bucket = self.bucket
        bucket.refill()
        if bucket.tokens >= _BANDWIDTH_THRESH:
            bucket.tokens = max(0.0, bucket.tokens - len(packet))
            self.out[0](packet)
        else:
            self.checked_push(1, packet)


class _MeterBase(Element):
    port_count = "1/2-"
    processing = "h/h"
    bytes_not_packets = True

    def configure(self, args: list[str]) -> None:
        if not args:
            raise ArgError(f"too few arguments to {self.class_name}(bandwidth, ...)")
        rates: list[int] = []
        for i, arg in enumerate(args):
            try:
                rates.append(parse_bandwidth(arg))
            except ArgError:
                raise ArgError(f"argument {i + 1} syntax error") from None
            if i and rates[i] <= rates[i - 1]:
                raise ArgError(f"rate {i + 1} must be > rate {i}")
        # Click keeps rates scaled by 2^10 in 32 bits
        for i, rate in enumerate(rates):
            if rate > _MAX_METER_RATE:
                raise ArgError(f"rate {i + 1} too large (max {_MAX_METER_RATE})")
        if len(rates) + 1 != self.noutputs:
            raise ArgError(f"need {self.noutputs - 1} arguments, one less than the number "
                           "of output ports")
        self.meters = rates
        self._rate = RateEWMA()
        self.read_handlers["rate"] = lambda: unparse_real(self._rate.rate())
        self.read_handlers["meters"] = self._read_meters

    def _read_meters(self) -> str:
        """Click stores each rate per jiffy in fixed point (10 fraction bits) and prints
        that back, one after another with no separator, as its handler does."""
        return "".join(
            unparse_real2(((rate << _METER_SCALE) // _TICKS_PER_SECOND * _TICKS_PER_SECOND) & 0xFFFFFFFF,
                          _METER_SCALE)
            for rate in self.meters)

    def push(self, port: int, packet: Packet) -> None:
        rate = self._rate
        rate.update(len(packet) if self.bytes_not_packets else 1,
                    CLOCK.epoch_ms * RateEWMA.EPOCH_NS)
        current = rate.avg * rate.EPOCHS_PER_SEC
        for i, limit in enumerate(self.meters):
            if current < limit:
                self.out[i](packet)
                return
        self.out[len(self.meters)](packet)


@element_class
class BandwidthMeter(_MeterBase):
    """Classifies packets by the byte rate of the stream."""

    class_name = "BandwidthMeter"


@element_class
class Meter(_MeterBase):
    """Classifies packets by the packet rate of the stream."""

    class_name = "Meter"
    bytes_not_packets = False
