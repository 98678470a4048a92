"""OpenFlow statistics as plain data, and the rates the scaler reads from them.

The os-ken shell polls every switch for the flows of two tables (steering
and hand-off, our cookies only) and for its port counters, and hands the
replies over as ``SwitchStats``; ``RateMeter.update`` turns consecutive
rounds of them into rates.

Which flows count for an instance (the cookie names chain, hop and instance):

- *in*: the hand-off flows (table ``TABLE_HANDOFF``), which hand each packet
  going into an autoscaled hop's instance to it exactly once;
- *out*: the return flows (table ``TABLE_STEER``, priority in
  ``[PRIO_RETURN, PRIO_ARP_REPLY)``), which match what the instance sent back.

Unknown is never reported as a number.  A rate is None when it cannot be
measured this round: the switch did not answer (its last sample is kept, so
the next answer gives the rate over the longer interval), Open vSwitch
reports the counter as unavailable (all ones), the counter went backwards
(the flow was replaced; it becomes the new baseline), or there is no earlier
sample.  A sum over an instance's flows is None as soon as one of them is,
so an instance spread over several switches is never underestimated because
one switch was late.

A flow absent from a switch's previous answer counts from zero: it did not
exist then, so every packet it counted falls in the interval.  This keeps an
instance's rate known across a re-plan that adds flows.  Ports get no such
treatment: Open vSwitch reports the interface's own counters, which predate
the port's addition to the bridge.  A flow deleted between two answers takes
the packets it counted since the first one with it; without flow-removed
messages nobody can know them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from controller.core import cookies
from controller.core.compiler import PRIO_ARP_REPLY, PRIO_RETURN, TABLE_HANDOFF, TABLE_STEER
from controller.core.ofmsg import MatchValue

UNAVAILABLE = 2**64 - 1            # what Open vSwitch reports for a counter it does not keep

InstanceKey = tuple[int, int, int]   # (chain id, hop, instance index), as in the flow's cookie
PortKey = tuple[int, int]            # (dpid, port number)
FlowKey = tuple[int, int, int, tuple[tuple[str, MatchValue], ...]]   # (dpid, table, priority, match)


@dataclass(frozen=True)
class FlowStat:
    table_id: int
    priority: int
    cookie: int
    match: tuple[tuple[str, MatchValue], ...]   # canonical, as ofmsg.match builds it
    packets: int
    bytes: int


@dataclass(frozen=True)
class PortStat:
    port_no: int
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class SwitchStats:
    """One switch's complete answer to a round of requests."""

    dpid: int
    time: float                                 # when the answer arrived, on the caller's clock
    flows: tuple[FlowStat, ...] = ()
    ports: tuple[PortStat, ...] = ()


@dataclass(frozen=True)
class InstanceRates:
    """Packets and bits per second into and out of one instance; None: unknown this round."""

    in_pps: float | None
    in_bps: float | None
    out_pps: float | None
    out_bps: float | None


@dataclass(frozen=True)
class PortRates:
    """Per second rates of one port, and its last totals (None: unavailable), for counters."""

    rx_pps: float | None
    rx_bps: float | None
    tx_pps: float | None
    tx_bps: float | None
    rx_packets: int | None
    tx_packets: int | None
    rx_bytes: int | None
    tx_bytes: int | None


@dataclass(frozen=True)
class Rates:
    time: float | None                          # the latest answer of the round; None: nobody answered
    instances: dict[InstanceKey, InstanceRates]
    ports: dict[PortKey, PortRates]


def direction(flow: FlowStat) -> str | None:
    """"in" for a hand-off flow, "out" for a return flow, None for any other flow."""
    if flow.table_id == TABLE_HANDOFF:
        return "in"
    if flow.table_id == TABLE_STEER and PRIO_RETURN <= flow.priority < PRIO_ARP_REPLY:
        return "out"
    return None


def instance_of(flow: FlowStat) -> InstanceKey | None:
    fields = cookies.decode(flow.cookie)
    if fields is None or fields.hop is None or fields.instance is None:
        return None
    return fields.chain_id, fields.hop, fields.instance


def _rate(new: int, old: int | None, seconds: float | None, scale: int = 1) -> float | None:
    if old is None or seconds is None or seconds <= 0 or UNAVAILABLE in (new, old) or new < old:
        return None
    return (new - old) * scale / seconds


def _total(value: int) -> int | None:
    return None if value == UNAVAILABLE else value


def _sum(values: list[float | None]) -> float | None:
    if not values or None in values:
        return None
    return sum(v for v in values if v is not None)


K = TypeVar("K")
S = TypeVar("S")


def _pair(new: Iterable[S], old: Iterable[S] | None, key: Callable[[S], K]) -> Iterable[tuple[S, S | None]]:
    before = {key(s): s for s in old or ()}
    return ((s, before.get(key(s))) for s in new)


class RateMeter:
    """Rates from consecutive rounds of statistics; keeps each switch's last answer."""

    def __init__(self) -> None:
        self._last: dict[int, SwitchStats] = {}

    def forget(self, dpid: int) -> None:
        """Drop a switch for good (it left the fabric): its instances and ports stop being reported."""
        self._last.pop(dpid, None)

    def update(self, samples: Mapping[int, SwitchStats]) -> Rates:
        """The rates of this round; ``samples`` holds the switches that answered, by dpid."""
        flow_rates: list[tuple[FlowStat, float | None, float | None]] = []   # (flow, pps, bps)
        ports: dict[PortKey, PortRates] = {}
        for dpid in sorted(self._last.keys() | samples.keys()):
            new = samples.get(dpid)
            old = self._last.get(dpid)
            if new is None:
                assert old is not None
                # No answer: the flows and ports it had are still there as far as we know, rates unknown.
                flow_rates += [(flow, None, None) for flow in old.flows]
                ports.update(((dpid, p.port_no), _port_rates(p, None, None)) for p in old.ports)
                continue
            seconds = None if old is None else new.time - old.time
            for flow, before in _pair(new.flows, None if old is None else old.flows,
                                      lambda f: (f.table_id, f.priority, f.match)):
                # A flow the switch's previous answer lacked was added since: count from zero.
                packets, octets = (before.packets, before.bytes) if before else (0, 0)
                flow_rates.append((flow, _rate(flow.packets, packets, seconds),
                                   _rate(flow.bytes, octets, seconds, 8)))
            for port, before in _pair(new.ports, None if old is None else old.ports, lambda p: p.port_no):
                ports[(dpid, port.port_no)] = _port_rates(port, before, seconds)
            self._last[dpid] = new
        answered = [s.time for s in samples.values()]
        return Rates(max(answered) if answered else None, _instance_rates(flow_rates), ports)


def _port_rates(port: PortStat, before: PortStat | None, seconds: float | None) -> PortRates:
    def rate(field: str, scale: int = 1) -> float | None:
        return None if before is None else _rate(getattr(port, field), getattr(before, field), seconds, scale)

    return PortRates(rate("rx_packets"), rate("rx_bytes", 8), rate("tx_packets"), rate("tx_bytes", 8),
                     _total(port.rx_packets), _total(port.tx_packets), _total(port.rx_bytes),
                     _total(port.tx_bytes))


def _instance_rates(flow_rates: list[tuple[FlowStat, float | None, float | None]]) -> dict[InstanceKey, InstanceRates]:
    sums: dict[InstanceKey, dict[str, list[float | None]]] = {}
    for flow, pps, bps in flow_rates:
        key = instance_of(flow)
        side = direction(flow)
        if key is None or side is None:
            continue
        parts = sums.setdefault(key, {"in_pps": [], "in_bps": [], "out_pps": [], "out_bps": []})
        parts[f"{side}_pps"].append(pps)
        parts[f"{side}_bps"].append(bps)
    return {key: InstanceRates(**{name: _sum(values) for name, values in parts.items()})
            for key, parts in sorted(sums.items())}
