"""The model back to document form: plain JSON-ready data that the loader reads back to the same model.

The REST API answers with chains in the same shape it accepts them, so a
client can fetch a chain, change it and send it back.
"""

from __future__ import annotations

from typing import Any

from chains.fields import PROTOCOL_NAMES
from chains.model import Chain, ChainSet, Hop, PortRange, Scaling


def _ports(span: PortRange) -> int | str:
    lo, hi = span
    return lo if lo == hi else f"{lo}-{hi}"


def _scaling(scaling: Scaling) -> dict[str, Any]:
    out: dict[str, Any] = {"min": scaling.min, "max": scaling.max, "metric": scaling.metric,
                           "cooldown": scaling.cooldown}
    if scaling.out_above is not None:
        out["out_above"] = scaling.out_above
    if scaling.in_below is not None:
        out["in_below"] = scaling.in_below
    return out


def hop_to_data(hop: Hop) -> dict[str, Any]:
    return {"name": hop.name, "function": hop.function, "params": dict(hop.params),
            "scaling": _scaling(hop.scaling)}


def chain_to_data(chain: Chain) -> dict[str, Any]:
    c = chain.classifier
    classifier: dict[str, Any] = {"src": str(c.src), "dst": str(c.dst),
                                  "protocol": "any" if c.protocol is None else PROTOCOL_NAMES.get(c.protocol, c.protocol)}
    for key, span in (("src_port", c.src_port), ("dst_port", c.dst_port)):
        if span is not None:
            classifier[key] = _ports(span)
    return {"name": chain.name, "description": chain.description, "classifier": classifier,
            "hops": [hop_to_data(hop) for hop in chain.hops], "symmetric": chain.symmetric,
            "priority": chain.priority, "on_failure": chain.on_failure}


def chainset_to_data(chainset: ChainSet) -> dict[str, Any]:
    data: dict[str, Any] = {"chains": [chain_to_data(chain) for chain in chainset.chains]}
    if chainset.functions:
        data["functions"] = {name: {"click": function.click, "description": function.description}
                             for name, function in chainset.functions.items()}
    return data
