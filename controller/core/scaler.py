"""The scaler: from one hop's load sample to "add an instance" or "remove one".

Pure: no I/O, no threads, no clock of its own (``now`` comes in with every
sample), so tests drive it with a fake clock.  The stats poller calls
``Scaler.decide`` once per hop and round; the caller executes every Decision
it gets (boots or drains an instance) and says ``busy`` until that is done.

Policy (a hop's ``chains.model.Scaling``; the load is in its metric, pps or bps):

- Per-instance load = the hop's total rate / its instances taking new flows
  (the caller leaves out booting and draining ones).
- Scale out (one more instance) on the first sample whose per-instance load
  is above ``out_above``: an overload costs packets, and the budget from
  threshold crossing to traffic on the new instance is 1.5 s at a 0.5 s poll.
  No cooldown between outs: as soon as the previous action is no longer busy
  the next sample may add another, so a big load step takes a few rounds.
- Scale in (one fewer) only when all hold: ``in_below`` is set; the load
  *projected* onto one instance fewer is still below ``in_below`` per
  instance; ``cooldown`` seconds have passed since the hop's last action
  (either direction) and since its first sample; and that projection has held
  on every sample of a run of at least two samples spanning
  ``min(cooldown, 3 s)``, so a one-sample dip never removes an instance.
- Counts stay in [min, max]: an out never goes above max, an in never below
  min.  A hop outside that range gets no decision at all (placement clamps it
  back, e.g. restores min after failures).
- No decision while ``busy``: rates measured while an instance boots or
  drains do not describe the settled hop, so such rounds also end a quiet run.
  A round with an unknown rate (None) is no sample at all: it decides
  nothing and neither ends nor extends a quiet run.

Why this does not flap.  After an in the per-instance load is below
``in_below`` < ``out_above``, so the same load cannot trigger an out.  With a
load that moves within L(1 - e) .. L(1 + e), an out at n instances needs
rate > out_above * n and a later in back to n needs rate < in_below * n, so
neither "out then in" nor "in then out" can happen as long as
``(1 - e) / (1 + e) >= in_below / out_above``: any noise up to +-33% when
in_below <= out_above / 2, up to +-5.2% when in_below = 0.9 * out_above.
"""

from __future__ import annotations

from dataclasses import dataclass

from chains.model import Scaling

SETTLE_MAX = 3.0    # seconds: the longest a scale-in condition must hold before it counts


@dataclass(frozen=True)
class Decision:
    """Change a hop's instance count from ``instances`` to ``target`` (one step)."""

    chain: str
    hop: int                 # hop index
    action: str              # "out" or "in"
    instances: int           # instances taking new flows now
    target: int              # how many it should have
    reason: str              # in words, with the numbers and the metric's unit
    rate: float              # the hop's total rate in the policy's metric
    per_instance: float


@dataclass
class _HopState:
    cooldown_from: float             # the hop's first sample, then its last action
    quiet_since: float | None = None  # first sample of the current run below the scale-in projection
    quiet_samples: int = 0           # samples in that run

    def end_quiet(self) -> None:
        self.quiet_since = None
        self.quiet_samples = 0


class Scaler:
    """Scaling decisions for every hop of every chain; one instance per controller."""

    def __init__(self) -> None:
        self._hops: dict[str, dict[int, _HopState]] = {}

    def decide(self, now: float, chain: str, hop: int, policy: Scaling, instances: int,
               rate: float | None, busy: bool) -> Decision | None:
        """The decision for one sample of a hop (see the module docstring), or None."""
        if rate is None:
            return None
        state = self._hops.get(chain, {}).get(hop)
        if busy:
            if state is not None:
                state.end_quiet()
            return None
        if state is None:
            # The first settled sample starts the cooldown: a new chain does not scale in at once.
            state = self._hops.setdefault(chain, {})[hop] = _HopState(now)
        floor = max(policy.min, 1)       # a hop with no instance has no per-instance load
        if not floor <= instances <= policy.max:
            state.end_quiet()
            return None
        unit = policy.metric
        per_instance = rate / instances
        if policy.out_above is not None and per_instance > policy.out_above:
            state.end_quiet()
            if instances == policy.max:
                return None
            reason = (f"{_num(per_instance)} {unit} per instance > out_above {_num(policy.out_above)} {unit}"
                      f" ({_num(rate)} {unit} over {_count(instances)})")
            return self._act(state, now, Decision(chain, hop, "out", instances, instances + 1,
                                                  reason, rate, per_instance))
        if policy.in_below is None or instances == floor:
            state.end_quiet()
            return None
        projected = rate / (instances - 1)
        if projected >= policy.in_below:
            state.end_quiet()
            return None
        if state.quiet_since is None:
            state.quiet_since = now
        state.quiet_samples += 1
        quiet_for = now - state.quiet_since
        if (state.quiet_samples < 2 or quiet_for < min(policy.cooldown, SETTLE_MAX)
                or now - state.cooldown_from < policy.cooldown):
            return None
        reason = (f"{_num(projected)} {unit} per instance on {_count(instances - 1)}"
                  f" < in_below {_num(policy.in_below)} {unit}"
                  f" ({_num(rate)} {unit} over {_count(instances)}, quiet for {_num(quiet_for)} s)")
        return self._act(state, now, Decision(chain, hop, "in", instances, instances - 1,
                                              reason, rate, per_instance))

    def forget(self, chain: str, hop: int | None = None) -> None:
        """Drop a chain's state (deleted or replaced), or one hop's; unknown names are fine."""
        if hop is None:
            self._hops.pop(chain, None)
            return
        hops = self._hops.get(chain)
        if hops is not None:
            hops.pop(hop, None)
            if not hops:
                del self._hops[chain]

    @staticmethod
    def _act(state: _HopState, now: float, decision: Decision) -> Decision:
        # The caller executes every decision: it is the hop's last action from now on,
        # and a quiet run must start afresh on the new instance count.
        state.cooldown_from = now
        state.end_quiet()
        return decision


def _num(value: float) -> str:
    """A rate or a duration for people: at most two decimals, none when whole."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _count(instances: int) -> str:
    return f"{instances} instance" + ("" if instances == 1 else "s")
