"""The one error type of the pure core."""

from __future__ import annotations


class PlanError(Exception):
    """A plan cannot be made; ``chain`` names the chain at fault ("" when none is)."""

    def __init__(self, chain: str, reason: str) -> None:
        super().__init__(f"chain {chain}: {reason}" if chain else reason)
        self.chain = chain
        self.reason = reason
