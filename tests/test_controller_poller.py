"""The statistics poller: switches' answers become rates handed to the service, round after round."""

from __future__ import annotations

import threading
from collections.abc import Collection

import pytest

from controller.core import cookies
from controller.core.compiler import TABLE_HANDOFF
from controller.core.stats import FlowStat, Rates, SwitchStats
from controller.poller import StatsPoller

HANDOFF = cookies.cookie(7, 0, 1)


class Switches:
    """Answers each round with a hand-over flow that counted 100 more packets (of 100 bytes) per second."""

    def __init__(self, fail_round: int | None = None) -> None:
        self.round = 0
        self.fail_round = fail_round

    def stats(self, dpids: Collection[int] | None = None, timeout: float = 1.0) -> dict[int, SwitchStats]:
        self.round += 1
        if self.round == self.fail_round:
            raise RuntimeError("the switch connection broke")
        flow = FlowStat(TABLE_HANDOFF, 100, HANDOFF, (("reg0", 16),), 100 * self.round, 10000 * self.round)
        return {1: SwitchStats(1, float(self.round), (flow,))}


class Service:
    def __init__(self, rounds: int) -> None:
        self.seen: list[Rates] = []
        self.done = threading.Event()
        self.rounds = rounds

    def observe(self, rates: Rates) -> None:
        self.seen.append(rates)
        if len(self.seen) == self.rounds:
            self.done.set()


def test_each_round_hands_the_service_rates_from_the_counters() -> None:
    service = Service(3)
    poller = StatsPoller(service, Switches(), interval=0.01)   # type: ignore[arg-type]
    poller.start()
    assert service.done.wait(5)
    poller.stop()
    first, second, third = service.seen[:3]
    assert first.instances[7, 0, 1].in_pps is None            # one sample: no rate yet
    assert second.instances[7, 0, 1].in_pps == 100 and second.instances[7, 0, 1].in_bps == 80000
    assert third.instances[7, 0, 1].in_pps == 100


def test_a_failed_round_is_logged_and_polling_goes_on(caplog) -> None:  # noqa: ANN001 - pytest fixture
    service = Service(2)
    poller = StatsPoller(service, Switches(fail_round=2), interval=0.01)   # type: ignore[arg-type]
    poller.start()
    assert service.done.wait(5)
    poller.stop()
    assert "statistics round failed" in caplog.text
    assert service.seen[1].instances[7, 0, 1].in_pps == 100    # round 3, over the 2 s since round 1


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StatsPoller(Service(1), Switches(), interval=0)   # type: ignore[arg-type]
