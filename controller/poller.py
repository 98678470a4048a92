"""The statistics poller: every interval, OpenFlow statistics from every switch -> rates -> the service.

A thin shell around the pure rate meter (controller/core/stats.py): it asks
the southbound (os-ken) for flow and port statistics, turns them into rates
and hands them to ``ChainService.observe``, which scales hops.  A switch that
does not answer within the interval is left out of that round (its rates
are unknown, not zero).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from controller.core.stats import RateMeter
from controller.service import ChainService
from controller.southbound import Southbound

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0


class StatsPoller:
    def __init__(self, service: ChainService, southbound: Southbound, interval: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0:
            raise ValueError(f"the poll interval must be positive, got {interval:g}")
        self.service = service
        self.southbound = southbound
        self.interval = interval
        self.clock = clock
        self.meter = RateMeter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="stats-poller")

    def start(self) -> StatsPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 2)

    def poll_once(self) -> None:
        """One round: ask, compute, hand over."""
        samples = self.southbound.stats(timeout=self.interval)
        self.service.observe(self.meter.update(samples))

    def _run(self) -> None:
        next_round = self.clock()
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a poller must keep polling, and say why a round failed
                log.exception("statistics round failed")
            # Rounds start on a fixed grid, so rates are computed over even intervals.
            next_round += self.interval
            self._stop.wait(max(0.0, next_round - self.clock()))
            if self.clock() - next_round > self.interval:
                next_round = self.clock()     # fell behind (a slow round): do not catch up in a burst
