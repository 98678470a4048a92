"""The catalog of middlebox functions and the ClickOS Click configs they render to.

Every rendered config has the same frame, because the agent, the Click
runtime and the controller rely on it:

    FromDevice(0) -> Classifier(instance MAC, IPv4; everything else discarded)
      -> count_in -> Strip(14) -> CheckIPHeader -> ...function... -> Unstrip(14)
      -> count_out -> EtherRewrite(SRC instance MAC, DST uplink MAC) -> Queue -> ToDevice(0)

The host switch may flood, so the instance keeps only frames addressed to it;
it sends packets back to the uplink's MAC so the learning host switch hands
them to the fabric.  Functions that drop traffic count it in ``count_drop``.
The counters' ``count`` and ``byte_count`` handlers are what the agent reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chains import fields
from chains.errors import ConfigError, Problem
from chains.fields import Issue, Match, check_keys, within
from chains.model import PROTOCOLS, CustomFunction

_MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# $INSTANCE_MAC_HEX (no colons) is what a Classifier pattern such as 0/$INSTANCE_MAC_HEX needs.
CUSTOM_VARIABLES = ("INSTANCE_MAC", "INSTANCE_MAC_HEX", "UPLINK_MAC")
# What a custom config must contain so the agent can run and observe it like a catalog one.
CUSTOM_REQUIRED = ("FromDevice(0)", "ToDevice(0)", "count_in", "count_out")


@dataclass(frozen=True)
class Function:
    """One catalog entry: how to check its params and what Click it becomes.

    ``parse`` turns params into what ``body`` needs (or issues); ``body``
    returns Click statements that take IP packets from ``ip_in`` to ``ip_out``
    (and to ``count_drop`` when ``drops``).
    """

    name: str
    description: str
    drops: bool
    params_schema: Mapping[str, Any]
    parse: Callable[[Mapping[str, Any]], tuple[Any, list[Issue]]]
    body: Callable[[Any], list[str]]


# ---- Click pattern text ---------------------------------------------------------------

def click_pattern(match: Match) -> str:
    """An IPClassifier/IPFilter pattern (tcpdump-like) for a Match; ``all`` if it matches everything."""
    parts = []
    for side, net in (("src", match.src), ("dst", match.dst)):
        if net.prefixlen == 32:
            parts.append(f"{side} host {net.network_address}")
        elif net.prefixlen:
            parts.append(f"{side} net {net}")
    if match.protocol is not None:
        proto_name = fields.PROTOCOL_NAMES.get(match.protocol)
        parts.append(proto_name or f"ip proto {match.protocol}")
    for side, span in (("src", match.src_port), ("dst", match.dst_port)):
        if span is None:
            continue
        proto_name = "tcp" if match.protocol == PROTOCOLS["tcp"] else "udp"
        lo, hi = span
        if lo == hi:
            parts.append(f"{side} {proto_name} port {lo}")
        else:
            parts.append(f"({side} {proto_name} port >= {lo} and {side} {proto_name} port <= {hi})")
    return " and ".join(parts) or "all"


def _mac_hex(mac: str) -> str:
    return mac.replace(":", "").lower()


def _element_name(label: str) -> str:
    # Click element names allow letters, digits and '_' (not '-').
    return label.replace("-", "_")


# ---- shared param checks --------------------------------------------------------------

def _mapping(params: Any) -> list[Issue]:
    if not isinstance(params, Mapping):
        return [Issue((), f"params must be a mapping, got {fields.type_name(params)}")]
    return []


def _match_list(items: Any, extra: dict[str, Callable[[Any], Any]], required: tuple[str, ...],
                what: str) -> tuple[list[tuple[dict[str, Any], Match]], list[Issue]]:
    """A list of mappings, each with match fields plus ``extra`` keys (parsed by their function)."""
    if not isinstance(items, list):
        return [], [Issue((), f"expected a list of {what}s, got {fields.type_name(items)}")]
    out: list[tuple[dict[str, Any], Match]] = []
    issues: list[Issue] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            issues.append(Issue((index,), f"expected a {what} (a mapping), got {fields.type_name(item)}"))
            continue
        here = check_keys(item, (*extra, *fields.MATCH_KEYS), required)
        values = {}
        for key, parse in extra.items():
            if key in item:
                try:
                    values[key] = parse(item[key])
                except ValueError as exc:
                    here.append(Issue((key,), str(exc)))
        match, match_issues = fields.match(item)
        here += match_issues
        if match is not None and not here:
            out.append((values, match))
        issues += within((index,), here)
    return out, issues


# ---- passthrough ----------------------------------------------------------------------

def _parse_none(params: Mapping[str, Any]) -> tuple[Any, list[Issue]]:
    return None, check_keys(params, ())


def _body_passthrough(_: Any) -> list[str]:
    return ["ip_in -> ip_out;"]


# ---- monitor ---------------------------------------------------------------------------

_MONITOR_PROTOCOLS = ("tcp", "udp", "icmp")


def _parse_monitor(params: Mapping[str, Any]) -> tuple[Any, list[Issue]]:
    issues = check_keys(params, ("by_protocol",))
    by_protocol = False
    if "by_protocol" in params:
        try:
            by_protocol = fields.boolean(params["by_protocol"])
        except ValueError as exc:
            issues.append(Issue(("by_protocol",), str(exc)))
    return by_protocol, issues


def _body_monitor(by_protocol: bool) -> list[str]:
    if not by_protocol:
        return ["ip_in -> ip_out;"]
    # One counter per protocol (count_tcp, count_udp, count_icmp, count_other) besides count_in/out.
    lines = [f"proto :: IPClassifier({', '.join(_MONITOR_PROTOCOLS)}, -);", "ip_in -> proto;"]
    for port, proto in enumerate((*_MONITOR_PROTOCOLS, "other")):
        lines.append(f"proto[{port}] -> count_{proto} :: Counter -> ip_out;")
    return lines


# ---- firewall --------------------------------------------------------------------------

_ACTIONS = ("allow", "deny")


def _parse_firewall(params: Mapping[str, Any]) -> tuple[Any, list[Issue]]:
    issues = check_keys(params, ("rules", "default"))
    rules: list[tuple[dict[str, Any], Match]] = []
    if "rules" in params:
        rules, rule_issues = _match_list(params["rules"], {"action": lambda v: fields.choice(v, _ACTIONS)},
                                         ("action",), "rule")
        issues += within(("rules",), rule_issues)
    default = "deny"
    if "default" in params:
        try:
            default = fields.choice(params["default"], _ACTIONS)
        except ValueError as exc:
            issues.append(Issue(("default",), str(exc)))
    return ([(values["action"], match) for values, match in rules], default), issues


def _body_firewall(config: tuple[list[tuple[str, Match]], str]) -> list[str]:
    rules, default = config
    # IPFilter actions as output numbers: 0 goes on, 1 is a deny that we count before discarding.
    output = {"allow": 0, "deny": 1}
    filters = [f"{output[action]} {click_pattern(match)}" for action, match in rules]
    filters.append(f"{output[default]} all")
    return [
        "filter :: IPFilter(" + ",\n                   ".join(filters) + ");",
        "ip_in -> filter;",
        "filter[0] -> ip_out;",
        "filter[1] -> count_drop;",
    ]


# ---- rate-limiter ----------------------------------------------------------------------

# Click keeps rates in 32 bits: packets per second, and bytes (not bits) per second.
_MAX_RATE = {"pps": 0xFFFFFFFF, "bps": 8 * 0xFFFFFFFF}


def _parse_rate_limiter(params: Mapping[str, Any]) -> tuple[Any, list[Issue]]:
    issues = check_keys(params, ("pps", "bps"))
    given = [key for key in ("pps", "bps") if key in params]
    if len(given) != 1:
        if not issues:
            issues.append(Issue((), "give exactly one of pps (packets per second) or bps (bits per second)"))
        return None, issues
    unit = given[0]
    try:
        amount = fields.rate(params[unit])
        if amount > _MAX_RATE[unit]:
            raise ValueError(f"{amount} {unit} is more than Click's rate splitters take "
                             f"(at most {_MAX_RATE[unit]:,} {unit})")
        return (unit, amount), issues
    except ValueError as exc:
        return None, [*issues, Issue((unit,), str(exc))]


def _body_rate_limiter(config: tuple[str, int]) -> list[str]:
    unit, amount = config
    # Up to the rate goes out on output 0, the excess on output 1.
    splitter = f"RatedSplitter({amount})" if unit == "pps" else f"BandwidthRatedSplitter({amount}bps)"
    return [
        f"limit :: {splitter};",
        "ip_in -> limit;",
        "limit[0] -> ip_out;",
        "limit[1] -> count_drop;",
    ]


# ---- nat -------------------------------------------------------------------------------

def _parse_nat(params: Mapping[str, Any]) -> tuple[Any, list[Issue]]:
    issues = check_keys(params, ("address", "ports"), ("address",))
    addr = None
    span: tuple[int, int] | None = (1024, 65535)
    if "address" in params:
        try:
            addr = fields.address(params["address"])
        except ValueError as exc:
            issues.append(Issue(("address",), str(exc)))
    if "ports" in params:
        try:
            span = fields.ports(params["ports"])
            if span is None or span[0] == 0:
                raise ValueError("NAT ports must be a range within 1-65535, such as \"1024-65535\"")
        except ValueError as exc:
            issues.append(Issue(("ports",), str(exc)))
    return (addr, span), issues


def _body_nat(config: tuple[Any, tuple[int, int]]) -> list[str]:
    addr, (lo, hi) = config
    # Replies come back to the NAT address and enter the rewriter's input 1, where
    # only known mappings pass.  IPRewriter handles TCP and UDP only: other
    # protocols cannot be translated, so they are dropped rather than leaked.
    return [
        f"nat_in :: IPClassifier(dst host {addr} and (tcp or udp), tcp or udp, -);",
        f"rewrite :: IPRewriter(pattern {addr} {lo}-{hi} - - 0 1, drop);",
        "ip_in -> nat_in;",
        "nat_in[0] -> [1]rewrite;",
        "nat_in[1] -> [0]rewrite;",
        "nat_in[2] -> count_drop;",
        "rewrite[0] -> ip_out;",
        "rewrite[1] -> ip_out;",
    ]


# ---- ids -------------------------------------------------------------------------------

def _parse_ids(params: Mapping[str, Any]) -> tuple[Any, list[Issue]]:
    issues = check_keys(params, ("signatures",), ("signatures",))
    if "signatures" not in params:
        return None, issues
    signatures, sig_issues = _match_list(params["signatures"], {"name": fields.name}, ("name",), "signature")
    seen: dict[str, int] = {}
    items = params["signatures"] if isinstance(params["signatures"], list) else []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if not any(key in item for key in fields.MATCH_KEYS):
            sig_issues.append(Issue((index,), "a signature needs at least one of: " + ", ".join(fields.MATCH_KEYS)))
        label = item.get("name")
        if isinstance(label, str) and label in seen:
            sig_issues.append(Issue((index, "name"), f"duplicate signature name {label!r} "
                                    f"(also signatures[{seen[label]}])"))
        elif isinstance(label, str):
            seen[label] = index
    if isinstance(params["signatures"], list) and not params["signatures"]:
        sig_issues.append(Issue((), "give at least one signature"))
    issues += within(("signatures",), sig_issues)
    return [(values["name"], match) for values, match in signatures], issues


def _body_ids(signatures: list[tuple[str, Match]]) -> list[str]:
    # A packet matching signature i goes to output i and is counted in sig_<name>,
    # then in count_drop; the last output (no signature matched) goes on.
    patterns = [click_pattern(match) for _, match in signatures]
    lines = ["sigs :: IPClassifier(" + ",\n                     ".join([*patterns, "-"]) + ");",
             "ip_in -> sigs;"]
    for port, (label, _) in enumerate(signatures):
        lines.append(f"sigs[{port}] -> sig_{_element_name(label)} :: Counter -> count_drop;")
    lines.append(f"sigs[{len(signatures)}] -> ip_out;")
    return lines


# ---- JSON Schema fragments for the params ------------------------------------------------

_CIDR_SCHEMA = {"type": "string", "pattern": r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?$"}
_PORTS_SCHEMA = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 65535},
                           {"type": "string", "pattern": r"^(any|\d+|\d+\s*-\s*\d+)$"}]}
_PROTOCOL_SCHEMA = {"oneOf": [{"enum": ["tcp", "udp", "icmp", "any"]},
                              {"type": "integer", "minimum": 0, "maximum": 255}]}
_RATE_SCHEMA = {"oneOf": [{"type": "number", "minimum": 1},
                          {"type": "string", "pattern": r"^\d+(\.\d+)?[kKMG]?$"}]}
MATCH_SCHEMA_PROPERTIES = {"src": _CIDR_SCHEMA, "dst": _CIDR_SCHEMA, "protocol": _PROTOCOL_SCHEMA,
                           "src_port": _PORTS_SCHEMA, "dst_port": _PORTS_SCHEMA}
_NAME_SCHEMA = {"type": "string", "pattern": fields.DNS_LABEL.pattern}


def object_schema(properties: Mapping[str, Any], required: tuple[str, ...] = (),
                  description: str = "") -> dict[str, Any]:
    """A JSON Schema object with exactly ``properties`` (no others allowed)."""
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


CATALOG: dict[str, Function] = {function.name: function for function in (
    Function("passthrough", "forwards every packet unchanged", False,
             object_schema({}), _parse_none, _body_passthrough),
    Function("monitor", "counts packets and bytes (optionally per protocol), passes all", False,
             object_schema({"by_protocol": {"type": "boolean"}}), _parse_monitor, _body_monitor),
    Function("firewall", "ordered allow/deny rules, first match wins, then the default action", True,
             object_schema({"rules": {"type": "array", "items": object_schema(
                        {"action": {"enum": list(_ACTIONS)}, **MATCH_SCHEMA_PROPERTIES}, ("action",))},
                      "default": {"enum": list(_ACTIONS)}}),
             _parse_firewall, _body_firewall),
    Function("rate-limiter", "passes up to a rate (pps or bps), drops the excess", True,
             {"oneOf": [object_schema({"pps": _RATE_SCHEMA}, ("pps",)), object_schema({"bps": _RATE_SCHEMA}, ("bps",))]},
             _parse_rate_limiter, _body_rate_limiter),
    Function("nat", "source NAT of TCP and UDP to one address and a port range (other protocols dropped)", True,
             object_schema({"address": {"type": "string", "pattern": r"^\d{1,3}(\.\d{1,3}){3}$"},
                      "ports": _PORTS_SCHEMA}, ("address",)),
             _parse_nat, _body_nat),
    Function("ids", "drops and counts packets matching signatures (addresses, protocols, ports)", True,
             object_schema({"signatures": {"type": "array", "minItems": 1, "items": {
                 **object_schema({"name": _NAME_SCHEMA, **MATCH_SCHEMA_PROPERTIES}, ("name",)), "minProperties": 2}}},
                     ("signatures",)),
             _parse_ids, _body_ids),
)}


# ---- custom functions ------------------------------------------------------------------

def check_custom_click(click: str) -> list[str]:
    """Problems with a custom function's raw Click config (messages only)."""
    problems = [f"the Click config must contain {needed}" for needed in CUSTOM_REQUIRED if needed not in click]
    for variable in sorted(set(_VARIABLE.findall(click)) - set(CUSTOM_VARIABLES)):
        known = ", ".join(f"${name}" for name in CUSTOM_VARIABLES)
        problems.append(f"unknown variable ${variable}: only {known} are filled in")
    return problems


# ---- the API -----------------------------------------------------------------------------

def validate_params(function: str, params: Any,
                    functions: Mapping[str, CustomFunction] | None = None) -> list[Issue]:
    """Issues with ``params`` for ``function`` (paths relative to the params); [] when valid."""
    if function in CATALOG:
        issues = _mapping(params)
        return issues or CATALOG[function].parse(params)[1]
    if functions and function in functions:
        if params:
            return [Issue((), f"custom function {function!r} takes no params")]
        return []
    return [Issue((), f"unknown function {function!r}")]


def _check_mac(mac: str, what: str) -> str:
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise ConfigError([Problem(f"<{what}>", 1, 1, f"invalid MAC address {mac!r}")])
    return mac.lower()


def render(function: str, params: Mapping[str, Any], *, instance_mac: str, uplink_mac: str,
           functions: Mapping[str, CustomFunction] | None = None) -> str:
    """The ClickOS Click config of one instance of ``function``; ConfigError if params are bad."""
    instance_mac = _check_mac(instance_mac, "instance_mac")
    uplink_mac = _check_mac(uplink_mac, "uplink_mac")
    issues = validate_params(function, params, functions)
    if issues:
        raise ConfigError([Problem(f"<{function} params>", 1, 1, issue.message,
                                   fields.format_path(("params", *issue.path)))
                           for issue in issues])
    if function not in CATALOG:
        assert functions is not None  # validate_params accepted it as a custom function
        values = {"INSTANCE_MAC": instance_mac, "INSTANCE_MAC_HEX": _mac_hex(instance_mac),
                  "UPLINK_MAC": uplink_mac}
        return _VARIABLE.sub(lambda found: values[found.group(1)], functions[function].click)
    entry = CATALOG[function]
    config, _ = entry.parse(params)
    declarations = [
        f"// ClickSteer {function} for instance {instance_mac}, returning to {uplink_mac}",
        "from_dev :: FromDevice(0);",
        f"accept :: Classifier(0/{_mac_hex(instance_mac)} 12/0800, -);",
        "count_in :: Counter;",
        "ip_in :: CheckIPHeader;",
        "ip_out :: Unstrip(14);",
        "count_out :: Counter;",
    ]
    if entry.drops:
        declarations.append("count_drop :: Counter;")
    connections = [
        "from_dev -> accept;",
        "accept[1] -> Discard;",
        "accept[0] -> count_in -> Strip(14) -> ip_in;",
        *entry.body(config),
        f"ip_out -> count_out -> EtherRewrite(SRC {instance_mac}, DST {uplink_mac}) -> Queue -> ToDevice(0);",
    ]
    if entry.drops:
        connections.append("count_drop -> Discard;")
    return "\n".join([*declarations, "", *connections]) + "\n"

