"""RateMeter: rates from consecutive rounds of switch statistics, and what counts as in and out."""

from __future__ import annotations

import pytest

from controller.core import cookies
from controller.core.compiler import PRIO_ARP_REPLY, PRIO_RETURN, TABLE_HANDOFF, TABLE_STEER
from controller.core.ofmsg import match
from controller.core.stats import (UNAVAILABLE, FlowStat, InstanceRates, PortStat, RateMeter, Rates, SwitchStats,
                                   direction, instance_of)

CHAIN = 0x1234
A = cookies.cookie(CHAIN, 1, 0)
B = cookies.cookie(CHAIN, 1, 1)
KEY_A = (CHAIN, 1, 0)
KEY_B = (CHAIN, 1, 1)


def into(cookie: int, packets: int, octets: int, label: int = 7) -> FlowStat:
    return FlowStat(TABLE_HANDOFF, 100, cookie, match(reg0=label), packets, octets)


def back(cookie: int, packets: int, octets: int, port: int = 3) -> FlowStat:
    return FlowStat(TABLE_STEER, PRIO_RETURN, cookie, match(eth_src="02:00:00:00:00:01", in_port=port),
                    packets, octets)


def sample(dpid: int, time: float, *flows: FlowStat, ports: tuple[PortStat, ...] = ()) -> SwitchStats:
    return SwitchStats(dpid, time, flows, ports)


def rounds(*samples: list[SwitchStats]) -> list[Rates]:
    meter = RateMeter()
    return [meter.update({s.dpid: s for s in round_}) for round_ in samples]


@pytest.mark.parametrize(("table", "priority", "side"), [
    (TABLE_HANDOFF, 100, "in"), (TABLE_HANDOFF, 101, "in"),
    (TABLE_STEER, PRIO_RETURN, "out"), (TABLE_STEER, PRIO_ARP_REPLY - 1, "out"),
    (TABLE_STEER, PRIO_RETURN - 1, None),      # below the returns: not a return flow
    (TABLE_STEER, PRIO_ARP_REPLY, None),       # ARP answers
    (TABLE_STEER, 900, None),                  # MPLS transit and hand-over of fixed hops
    (TABLE_STEER, 1000, None),                 # classification
    (1, PRIO_RETURN, None), (2, 100, None),
])
def test_direction(table: int, priority: int, side: str | None) -> None:
    assert direction(FlowStat(table, priority, A, (), 0, 0)) == side


def test_instance_of_needs_hop_and_instance_in_our_cookie() -> None:
    assert instance_of(into(A, 0, 0)) == KEY_A
    assert instance_of(into(cookies.cookie(CHAIN, 1), 0, 0)) is None          # the hop as a whole
    assert instance_of(into(cookies.cookie(CHAIN), 0, 0)) is None             # the chain as a whole
    assert instance_of(into(0x1234, 0, 0)) is None                            # not ours


def test_first_round_knows_no_rate_then_rates_per_second() -> None:
    first, second = rounds([sample(1, 10.0, into(A, 100, 10_000), back(A, 50, 6_000))],
                           [sample(1, 12.0, into(A, 300, 30_000), back(A, 150, 16_000))])
    assert first.instances == {KEY_A: InstanceRates(None, None, None, None)}
    assert second.instances == {KEY_A: InstanceRates(100.0, 80_000.0, 50.0, 40_000.0)}
    assert second.time == 12.0


def test_other_flows_do_not_count() -> None:
    others = [FlowStat(TABLE_STEER, 1000, A, match(in_port=1), 0, 0),           # classification
              FlowStat(TABLE_STEER, 900, A, match(mpls_label=7), 0, 0),          # hand-over of a fixed hop
              FlowStat(TABLE_HANDOFF, 100, cookies.cookie(CHAIN, 1), match(reg0=9), 0, 0),   # no instance
              FlowStat(TABLE_HANDOFF, 100, 0xABCD, match(reg0=8), 0, 0)]               # not ours
    grown = [FlowStat(f.table_id, f.priority, f.cookie, f.match, 1000, 100_000) for f in others]
    _, second = rounds([sample(1, 0.0, into(A, 0, 0), *others)], [sample(1, 1.0, into(A, 10, 1000), *grown)])
    assert second.instances == {KEY_A: InstanceRates(10.0, 8000.0, None, None)}   # no return flow: out unknown


def test_sums_flows_and_switches_per_instance() -> None:
    # A's traffic comes in on two switches and through two hand-off flows on the first.
    _, second = rounds(
        [sample(1, 0.0, into(A, 0, 0, label=7), into(A, 0, 0, label=8), into(B, 0, 0, label=9)),
         sample(2, 0.5, into(A, 0, 0), back(A, 0, 0))],
        [sample(1, 1.0, into(A, 10, 1000, label=7), into(A, 20, 2000, label=8), into(B, 5, 500, label=9)),
         sample(2, 2.5, into(A, 40, 4000), back(A, 60, 6000))])
    assert second.instances == {KEY_A: InstanceRates(10 + 20 + 20, (1000 + 2000 + 2000) * 8, 30.0, 24_000.0),
                                KEY_B: InstanceRates(5.0, 4000.0, None, None)}
    assert second.time == 2.5


def test_a_missing_switch_makes_its_instances_unknown_then_spans_the_gap() -> None:
    first, second, third = rounds(
        [sample(1, 0.0, into(A, 0, 0), into(B, 0, 0, label=9)), sample(2, 0.0, into(A, 0, 0))],
        [sample(1, 1.0, into(A, 10, 1000), into(B, 10, 1000, label=9))],        # switch 2 late
        [sample(1, 2.0, into(A, 20, 2000), into(B, 20, 2000, label=9)), sample(2, 2.0, into(A, 40, 4000))])
    # Not an underestimate from switch 1 alone: unknown.
    assert second.instances[KEY_A] == InstanceRates(None, None, None, None)
    assert second.instances[KEY_B] == InstanceRates(10.0, 8000.0, None, None)
    # Switch 2's rate is over the two seconds since its last answer.
    assert third.instances[KEY_A] == InstanceRates(10 + 20, (1000 + 2000) * 8, None, None)


def test_an_instance_known_only_from_a_missing_switch_is_reported_unknown() -> None:
    _, second = rounds([sample(1, 0.0, into(A, 0, 0)), sample(2, 0.0, into(B, 0, 0, label=9))],
                       [sample(1, 1.0, into(A, 10, 1000))])
    assert second.instances[KEY_B] == InstanceRates(None, None, None, None)


def test_nobody_answering_gives_no_time_and_unknown_rates() -> None:
    _, second = rounds([sample(1, 0.0, into(A, 0, 0))], [])
    assert second.time is None
    assert second.instances == {KEY_A: InstanceRates(None, None, None, None)}


def test_unavailable_counters_are_ignored() -> None:
    _, second, third = rounds([sample(1, 0.0, into(A, 0, UNAVAILABLE), back(A, UNAVAILABLE, 0))],
                              [sample(1, 1.0, into(A, 10, UNAVAILABLE), back(A, UNAVAILABLE, 800))],
                              [sample(1, 2.0, into(A, 30, UNAVAILABLE), back(A, 5, 1600))])
    assert second.instances[KEY_A] == InstanceRates(10.0, None, None, 6400.0)
    # A counter that becomes available has no earlier value to compare with.
    assert third.instances[KEY_A] == InstanceRates(20.0, None, None, 6400.0)


def test_a_counter_going_backwards_is_a_new_baseline_not_a_negative_rate() -> None:
    _, second, third = rounds([sample(1, 0.0, into(A, 1000, 100_000))],
                              [sample(1, 1.0, into(A, 10, 1000))],              # re-added meanwhile
                              [sample(1, 2.0, into(A, 30, 3000))])
    assert second.instances[KEY_A] == InstanceRates(None, None, None, None)
    assert third.instances[KEY_A] == InstanceRates(20.0, 16_000.0, None, None)


def test_a_new_flow_counts_from_zero_when_the_switch_answered_before() -> None:
    # Between the answers the flow did not exist, then counted 10 packets: all of them in the interval.
    _, second = rounds([sample(1, 0.0, into(B, 0, 0, label=9))],
                       [sample(1, 2.0, into(B, 0, 0, label=9), into(A, 10, 1000))])
    assert second.instances[KEY_A] == InstanceRates(5.0, 4000.0, None, None)


def test_a_switch_first_answer_gives_no_rate_even_for_flows_it_had_before_being_seen() -> None:
    _, second = rounds([sample(1, 0.0, into(B, 0, 0, label=9))],
                       [sample(1, 1.0, into(B, 0, 0, label=9)), sample(2, 1.0, into(A, 10, 1000))])
    assert second.instances[KEY_A] == InstanceRates(None, None, None, None)


def test_flows_that_disappear_are_forgotten() -> None:
    _, second, third = rounds([sample(1, 0.0, into(A, 100, 100), into(B, 0, 0, label=9))],
                              [sample(1, 1.0, into(B, 1, 100, label=9))],              # A's flow removed
                              [sample(1, 2.0, into(B, 2, 200, label=9), into(A, 4, 400))])  # and added again
    assert KEY_A not in second.instances
    # Counted from zero (the previous answer lacked it), not against its old count of 100.
    assert third.instances[KEY_A] == InstanceRates(4.0, 3200.0, None, None)


def test_time_not_moving_forward_gives_no_rate() -> None:
    _, second = rounds([sample(1, 5.0, into(A, 0, 0))], [sample(1, 5.0, into(A, 10, 1000))])
    assert second.instances[KEY_A] == InstanceRates(None, None, None, None)


def test_port_rates_and_totals() -> None:
    p1 = PortStat(1, rx_packets=100, tx_packets=200, rx_bytes=10_000, tx_bytes=UNAVAILABLE)
    p1_later = PortStat(1, rx_packets=150, tx_packets=400, rx_bytes=15_000, tx_bytes=UNAVAILABLE)
    p2 = PortStat(2, 0, 0, 0, 0)
    first, second, third = rounds([sample(7, 0.0, ports=(p1, p2))],
                                  [sample(7, 0.5, ports=(p1_later,))],        # port 2 left the bridge
                                  [])                                          # switch 7 late
    assert first.ports[(7, 1)].rx_pps is None and first.ports[(7, 1)].rx_packets == 100
    rates = second.ports[(7, 1)]
    assert (rates.rx_pps, rates.rx_bps, rates.tx_pps, rates.tx_bps) == (100.0, 80_000.0, 400.0, None)
    assert (rates.rx_packets, rates.tx_packets, rates.rx_bytes, rates.tx_bytes) == (150, 400, 15_000, None)
    assert set(second.ports) == {(7, 1)}
    late = third.ports[(7, 1)]
    assert (late.rx_pps, late.rx_bps, late.tx_pps, late.tx_bps) == (None, None, None, None)
    assert late.rx_packets == 150           # the last totals still stand (counters never go away mid-run)


def test_a_new_port_gets_no_rate_from_zero() -> None:
    # A port's counters are the interface's, which may predate the port's addition to the bridge.
    _, second = rounds([sample(7, 0.0)], [sample(7, 1.0, ports=(PortStat(3, 1000, 0, 0, 0),))])
    assert second.ports[(7, 3)].rx_pps is None


def test_forget_drops_a_switch_for_good() -> None:
    meter = RateMeter()
    meter.update({1: sample(1, 0.0, into(A, 0, 0), ports=(PortStat(1, 0, 0, 0, 0),))})
    meter.forget(1)
    rates = meter.update({})
    assert rates.instances == {} and rates.ports == {}
