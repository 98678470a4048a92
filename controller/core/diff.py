"""From what is installed to what is desired, make-before-break.

The messages come in phases; each phase ends with a Barrier for every switch
it touched, and the sender must wait for all those barrier replies before it
sends the next phase (OpenFlow orders nothing across switches, nor within a
switch without a barrier).  Phases:

1. add groups, modify changed groups;
2. add and modify flows, one phase per rank, lowest first: a flow's rank is
   higher than that of every flow a packet can reach through it (see
   compiler), so nothing ever steers a packet into an entry that is missing;
3. delete stale flows, one phase per rank, highest first: entry points go
   before what they lead to; first of all, the pins switches learned for
   instances whose hand-over goes (the entry points the diff does not
   track: their flows pick another instance while the old one still
   returns packets);
4. delete stale groups.

A changed flow (same table, priority and match) is replaced in place, never
deleted and re-added: ``modify_strict`` when only its actions changed (it
keeps its counters), ``add`` (which overwrites) when its cookie changed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from controller.core import cookies
from controller.core.compiler import TABLE_HANDOFF, TABLE_PIN, Desired
from controller.core.gcpause import gc_paused
from controller.core.ofmsg import Barrier, DeleteFlows, DeleteGroups, FlowMod, GroupMod, Message, dpid_of


EXACT = 0xFFFFFFFFFFFFFFFF      # a cookie mask that selects one cookie


def diff(installed: Desired, desired: Desired) -> list[Message]:
    """The messages that turn ``installed`` into ``desired``, in phases (see the module docstring)."""
    with gc_paused():
        return _diff(installed, desired)


def _diff(installed: Desired, desired: Desired) -> list[Message]:
    out: list[Message] = []
    groups = [GroupMod("add" if key not in installed.groups else "modify", group)
              for key, group in sorted(desired.groups.items())
              if installed.groups.get(key) != group]
    _phase(out, groups)

    adds: dict[int, list[FlowMod]] = defaultdict(list)
    for key, flow in desired.flows.items():
        old = installed.flows.get(key)
        if old == flow:
            continue
        command = "modify_strict" if old is not None and old.cookie == flow.cookie else "add"
        adds[desired.ranks[key]].append(FlowMod(command, flow))
    for rank in sorted(adds):
        _phase(out, sorted(adds[rank], key=_flow_order))

    deletes: dict[int, list[FlowMod]] = defaultdict(list)
    unpinned: set[tuple[int, int]] = set()
    for key, flow in installed.flows.items():
        if key not in desired.flows:
            deletes[installed.ranks[key]].append(FlowMod("delete_strict", flow))
            if flow.table_id == TABLE_HANDOFF and cookies.decode(flow.cookie).instance is not None:
                unpinned.add((flow.dpid, flow.cookie))
    _phase(out, [DeleteFlows(dpid, cookie, EXACT, TABLE_PIN) for dpid, cookie in sorted(unpinned)])
    for rank in sorted(deletes, reverse=True):
        _phase(out, sorted(deletes[rank], key=_flow_order))

    _phase(out, [GroupMod("delete", group) for key, group in sorted(installed.groups.items())
                 if key not in desired.groups])
    return out


def resync(desired: Desired, dpid: int) -> list[Message]:
    """Everything for a switch that (re)connects: forget all our flows and groups, install anew.

    The switch forwards nothing of ours between the delete and the adds; use
    ``diff`` against what it reports holding when that gap matters.
    """
    out: list[Message] = [DeleteFlows(dpid, cookies.TAG << 56, cookies.OWNER_MASK),
                          DeleteGroups(dpid), Barrier(dpid)]
    return out + diff(Desired.empty(), desired.for_dpid(dpid))


def _flow_order(message: FlowMod) -> tuple[int, int, int, str]:
    """Deterministic order within a phase (matches mix value types, so compare their text)."""
    flow = message.flow
    return flow.dpid, flow.table_id, flow.priority, str(flow.match)


def _phase(out: list[Message], messages: Iterable[Message]) -> None:
    touched: set[int] = set()
    for message in messages:
        out.append(message)
        touched.add(dpid_of(message))
    out.extend(Barrier(dpid) for dpid in sorted(touched))
