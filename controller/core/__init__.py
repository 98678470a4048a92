"""The controller's pure core: no os-ken, no I/O, no clock; everything deterministic.

- ``placement.place(topology, chains, existing={}, counts={}) -> Placement``:
  which compute host runs each instance (``InstanceSpec``: id, MAC and MPLS
  label derived deterministically and checked for collisions).
- ``compiler.compile_fabric(topology, chains, placement, ready) -> Desired``:
  the flows of every switch (steering and normal forwarding), their install
  ranks, and per chain a display path and a status.  The module docstring
  documents the pipeline and the steering model.
- ``diff.diff(installed, desired) -> list[Message]``: make-before-break
  updates in barrier-separated phases; ``diff.resync(desired, dpid)`` for a
  switch that (re)connects.
- ``cookies``: cookie layout, chain ids, decode, per-chain cookie masks.
- ``ofmsg``: the OpenFlow 1.3 messages as plain data.
- ``fabric``: the topology as a networkx graph with deterministic shortest
  paths (the only module that imports networkx).
- ``errors.PlanError``: the one error type (``chain`` and ``reason``).
"""
