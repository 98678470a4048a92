"""The core's OpenFlow messages in ``ovs-ofctl`` syntax (the flow_install baseline, debugging).

Pure functions: a Flow becomes one ``add-flows`` line, a Group one
``add-groups`` line.  Field names follow ovs-fields(7), which differ from the
OXM names os-ken uses for a few IPv4 fields.
"""

from __future__ import annotations

from controller.core.ofmsg import (
    Action,
    Flow,
    Group,
    GroupAction,
    Learn,
    MatchValue,
    Multipath,
    Output,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
)
from controller.ofwire import Pins, field_int, learn_pins

OFPP_IN_PORT = 0xFFFFFFF8

# os-ken OXM name -> ovs-ofctl name, where they differ.
_FIELD_NAMES = {"ipv4_src": "ip_src", "ipv4_dst": "ip_dst"}


def field_name(oxm: str) -> str:
    return _FIELD_NAMES.get(oxm, oxm)


def _value(value: int | str) -> str:
    return str(value)   # decimal: ovs-ofctl reads ports only in decimal


def match_text(name: str, value: MatchValue) -> str:
    if isinstance(value, tuple):
        return f"{field_name(name)}={_value(value[0])}/{_value(value[1])}"
    return f"{field_name(name)}={_value(value)}"


def _learn_text(learn: Learn, pins: Pins) -> str:
    pinned = dict(pins)
    args = [f"table={learn.table_id}", f"priority={learn.priority}", f"cookie={learn.cookie:#x}",
            f"idle_timeout={learn.idle_timeout}", f"fin_idle_timeout={learn.fin_idle_timeout}"]
    # A pinned field is matched as the constant (see ofwire.learn_pins), the others copy the packet's value.
    args += [match_text(name, pinned[name]) if name in pinned else f"{field_name(name)}[]" for name in learn.copy]
    # learn's load takes only an integer, not an address.
    args += [f"load:{field_int(name, value):#x}->{field_name(name)}[]" for name, value in learn.load]
    return f"learn({','.join(args)})"


def action_text(action: Action, pins: Pins = ()) -> str:
    """One action; ``pins`` (from ofwire.learn_pins) only matter to a Learn."""
    if isinstance(action, Output):
        return "in_port" if action.port == OFPP_IN_PORT else f"output:{action.port}"
    if isinstance(action, GroupAction):
        return f"group:{action.group_id}"
    if isinstance(action, SetField):
        return f"set_field:{_value(action.value)}->{field_name(action.field)}"
    if isinstance(action, PushMpls):
        return f"push_mpls:{action.ethertype:#06x}"
    if isinstance(action, PopMpls):
        return f"pop_mpls:{action.ethertype:#06x}"
    if isinstance(action, Resubmit):
        return f"resubmit(,{action.table_id})"
    if isinstance(action, Multipath):
        return f"multipath(symmetric_l3l4+udp,{action.basis},hrw,{action.n_links},0,{action.dst}[0..15])"
    if isinstance(action, Learn):
        return _learn_text(action, pins)
    raise TypeError(f"not an action: {action!r}")


def flow_line(flow: Flow) -> str:
    """One ``ovs-ofctl add-flows`` line (the dpid is the caller's: one file per bridge)."""
    head = [f"table={flow.table_id}", f"priority={flow.priority}", f"cookie={flow.cookie:#x}"]
    head += [match_text(name, value) for name, value in flow.match]
    actions = [action_text(a, p) for a, p in zip(flow.actions, learn_pins(flow.match, flow.actions))]
    if flow.goto_table is not None:
        actions.append(f"goto_table:{flow.goto_table}")
    return ",".join(head) + ",actions=" + (",".join(actions) or "drop")


def group_line(group: Group) -> str:
    """One ``ovs-ofctl add-groups`` line."""
    buckets = []
    for bucket in group.buckets:
        weight = f"weight:{bucket.weight}," if group.type == "select" else ""  # only select buckets weigh
        buckets.append(f"bucket={weight}actions=" + (",".join(action_text(a) for a in bucket.actions) or "drop"))
    return ",".join([f"group_id={group.group_id}", f"type={group.type}", *buckets])
