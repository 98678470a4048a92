"""Flow cookies: who owns a flow, and which chain, hop and instance it serves.

Layout of the 64-bit cookie (most significant first)::

    | tag: 8 | chain id: 40 | hop: 8 | instance: 8 |

- ``tag`` (0xC5) marks every flow ClickSteer installs, so ``OWNER_MASK``
  deletes or counts exactly ours.
- ``chain id`` is derived from the chain's name (a hash, so it survives
  restarts and re-plans); id 0 is normal forwarding.  Ids are checked for
  collisions across the chains of a plan: a colliding name is re-hashed with a
  counter, in name order, so the outcome is still deterministic.
- ``hop`` is the hop index, or ``ANY`` for flows of the chain as a whole
  (classification at the ingress).
- ``instance`` is the instance index within the hop, or ``ANY``.

Statistics map back with ``decode``; ``chain_cookie`` gives the
(cookie, mask) pair that selects every flow of one chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple

TAG = 0xC5
ANY = 0xFF
OWNER_MASK = 0xFF << 56
CHAIN_MASK = OWNER_MASK | ((1 << 40) - 1) << 16
NORMAL_CHAIN_ID = 0
MAX_HOPS = ANY               # hop indexes 0..254
MAX_INSTANCES = ANY          # instance indexes 0..254


class CookieFields(NamedTuple):
    chain_id: int
    hop: int | None          # None: the chain as a whole
    instance: int | None     # None: not one instance's flow


def _hash(name: str, attempt: int) -> int:
    data = name.encode() if attempt == 0 else f"{name}#{attempt}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=5).digest(), "big")


def chain_ids(names: Iterable[str]) -> dict[str, int]:
    """A distinct, non-zero 40-bit id per chain name, stable for a given set of names."""
    ids: dict[str, int] = {}
    taken = {NORMAL_CHAIN_ID}
    for name in sorted(set(names)):
        attempt = 0
        while (chain_id := _hash(name, attempt)) in taken:
            attempt += 1        # collision: the later name (in sort order) moves on
        taken.add(chain_id)
        ids[name] = chain_id
    return ids


def cookie(chain_id: int, hop: int | None = None, instance: int | None = None) -> int:
    hop_bits = ANY if hop is None else hop
    instance_bits = ANY if instance is None else instance
    return TAG << 56 | chain_id << 16 | hop_bits << 8 | instance_bits


NORMAL = cookie(NORMAL_CHAIN_ID)


def chain_cookie(chain_id: int) -> tuple[int, int]:
    """(cookie, cookie_mask) that selects every flow of one chain."""
    return cookie(chain_id, 0, 0), CHAIN_MASK


def is_ours(value: int) -> bool:
    return value & OWNER_MASK == TAG << 56


def decode(value: int) -> CookieFields | None:
    """The fields of one of our cookies; None for a cookie we did not set."""
    if not is_ours(value):
        return None
    hop = (value >> 8) & 0xFF
    instance = value & 0xFF
    return CookieFields((value >> 16) & ((1 << 40) - 1),
                        None if hop == ANY else hop,
                        None if instance == ANY else instance)
