"""What the service needs from the switches, without os-ken: the southbound interface.

The os-ken application (controller/osken_app.py) implements it in
production; tests pass a fake.  Messages are the core's plain data.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.core.ofmsg import Barrier, Message, dpid_of
from controller.core.stats import SwitchStats


@dataclass(frozen=True)
class SwitchError:
    """A switch refused ``message`` (an OpenFlow error reply)."""

    dpid: int
    message: Message | None          # None when the error names no message we sent
    reason: str


@dataclass
class SendResult:
    """What happened to a batch: refusals, and switches that did not confirm it."""

    errors: list[SwitchError] = field(default_factory=list)
    unconfirmed: set[int] = field(default_factory=set)   # not connected, or no barrier reply in time

    @property
    def ok(self) -> bool:
        return not self.errors and not self.unconfirmed

    def merge(self, other: SendResult) -> None:
        self.errors += other.errors
        self.unconfirmed |= other.unconfirmed


class Southbound(Protocol):
    def send(self, messages: Sequence[Message]) -> SendResult:
        """Send in order, waiting at each run of Barriers; confirm the end with barriers."""

    def stats(self, dpids: Collection[int] | None = None, timeout: float = 1.0) -> dict[int, SwitchStats]:
        """Our flows of the steering and hand-off tables and every port's counters, per switch.

        ``None`` asks every connected switch.  A switch that is not connected,
        or whose answer is not complete within ``timeout`` seconds, is left out.
        """


def phases(messages: Sequence[Message]) -> list[tuple[list[Message], set[int]]]:
    """Split a message list at its barriers: [(messages, dpids to barrier afterwards)].

    A run of Barrier messages closes a phase.  The sender waits for every
    barrier of a phase before it sends the next phase, so the core's
    make-before-break order holds across switches, not only on one switch.
    The last phase is closed by barriers on every switch it touched (the
    confirmation of the whole batch).
    """
    out: list[tuple[list[Message], set[int]]] = []
    current: list[Message] = []
    touched: set[int] = set()
    barriers: set[int] = set()
    for message in messages:
        if isinstance(message, Barrier):
            barriers.add(message.dpid)
            continue
        if barriers:
            out.append((current, barriers | touched))
            current, touched, barriers = [], set(), set()
        current.append(message)
        touched.add(dpid_of(message))
    if current or barriers:
        out.append((current, barriers | touched))
    return out
