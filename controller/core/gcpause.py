"""Pausing the cyclic garbage collector while the core builds large plans."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (and restore its state after).

    A plan allocates 10^5-10^6 small objects that all stay alive and form no
    cycles; every full collection during the build would re-scan all of them
    (measured on 10,000 chains: plans three times slower).  Reference
    counting still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
