"""Parsers for the small values of the chain language: names, CIDRs, protocols, ports, rates, durations.

Each parser takes the value as loaded from YAML or JSON and returns the
model's representation, or raises ``ValueError`` with a message meant for the
user.  The loader and the catalog share them, so a firewall rule's ``dst_port``
means exactly what a classifier's does.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from chains.model import PROTOCOLS, PortRange

DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_CIDR = re.compile(r"(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})(?:/(\d{1,2}))?\Z")
_PORT_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMG]?)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_UNITS = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOLS.items()}
PORT_PROTOCOLS = (PROTOCOLS["tcp"], PROTOCOLS["udp"])


def type_name(value: Any) -> str:
    """How a value's type reads in a message (YAML words, not Python's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def name(value: Any) -> str:
    """A lowercase DNS label (RFC 1123), so that it can be part of identifiers."""
    if not isinstance(value, str):
        raise ValueError(f"expected a name (a string), got {type_name(value)}")
    if not DNS_LABEL.match(value):
        raise ValueError(f"invalid name {value!r}: use a lowercase DNS label "
                         "(a-z, 0-9 and '-', not at either end, at most 63 characters)")
    return value


def integer(value: Any, lo: int | None = None, hi: int | None = None) -> int:
    # bool is an int in Python but never a number in a chain file
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {type_name(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            raise ValueError(f"{value} is out of range (at least {lo})")
        raise ValueError(f"{value} is out of range ({lo}-{hi})")
    return value


def number(value: Any, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type_name(value)}")
    if value < lo:
        raise ValueError(f"{value} is out of range (at least {lo:g})")
    return float(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type_name(value)}")
    return value


def choice(value: Any, options: tuple[str, ...]) -> str:
    if value not in options or not isinstance(value, str):
        raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    return value


def network(value: Any) -> ipaddress.IPv4Network:
    """An IPv4 CIDR ("10.0.1.0/24"); a bare address means a /32."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 CIDR such as 10.0.0.0/16, got {type_name(value)}")
    # The common well-formed case without ipaddress's string parsing (a third of the load time
    # of a large file); anything unusual goes the slow way, which also words the errors.
    simple = _CIDR.match(value)
    if simple is not None:
        a, b, c, d, length = simple.groups()
        prefix = 32 if length is None else int(length)
        first = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
        if max(int(a), int(b), int(c), int(d)) <= 255 and prefix <= 32 and not first & (0xFFFFFFFF >> prefix):
            return ipaddress.IPv4Network((first, prefix))
    try:
        return ipaddress.IPv4Network(value)
    except ipaddress.NetmaskValueError:
        raise ValueError(f"invalid IPv4 CIDR {value!r}: bad prefix length") from None
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.IPv4Network(value, strict=False)
            raise ValueError(f"invalid IPv4 CIDR {value!r}: host bits set (did you mean {fixed}?)") from None
        raise ValueError(f"invalid IPv4 CIDR {value!r}") from None


def address(value: Any) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 address, got {type_name(value)}")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"invalid IPv4 address {value!r}") from None


def protocol(value: Any) -> int | None:
    """tcp, udp, icmp, any (None) or an IP protocol number 0-255."""
    if isinstance(value, str):
        if value == "any":
            return None
        if value in PROTOCOLS:
            return PROTOCOLS[value]
        raise ValueError(f"unknown protocol {value!r}: use tcp, udp, icmp, any or a number 0-255")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a protocol (tcp, udp, icmp, any or 0-255), got {type_name(value)}")
    if not 0 <= value <= 255:
        raise ValueError(f"protocol {value} is out of range (0-255)")
    return value


def ports(value: Any) -> PortRange | None:
    """A port (80), an inclusive range ("1000-2000") or any (None)."""
    if value == "any" and isinstance(value, str):
        return None
    if isinstance(value, bool):
        raise ValueError("expected a port, a range such as \"1000-2000\" or any, got a boolean")
    if isinstance(value, int):
        lo = hi = value
    elif isinstance(value, str) and (match := _PORT_RANGE.match(value)):
        lo, hi = int(match.group(1)), int(match.group(2))
    elif isinstance(value, str) and value.strip().isdigit():
        lo = hi = int(value)
    else:
        raise ValueError(f"expected a port, a range such as \"1000-2000\" or any, got {value!r}")
    for port in (lo, hi):
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range (0-65535)")
    if lo > hi:
        raise ValueError(f"empty port range {lo}-{hi} (the first port must not exceed the second)")
    if (lo, hi) == (0, 65535):
        return None
    return lo, hi


def duration(value: Any) -> float:
    """Seconds, from "500ms", "5s", "2m", "1h" or a plain number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"expected a duration such as \"5s\", \"500ms\" or \"2m\", got {value!r}")


def rate(value: Any) -> int:
    """A positive rate: 1000, "10k", "2.5M", "1G" (decimal multiples)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = float(value)
    elif isinstance(value, str) and (match := _RATE.match(value)):
        amount = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a rate such as 1000, \"10k\" or \"2.5M\", got {value!r}")
    if amount < 1:
        raise ValueError(f"a rate must be at least 1, got {value!r}")
    return int(amount)


ANY_NETWORK = ipaddress.IPv4Network("0.0.0.0/0")


class Match(NamedTuple):
    """A packet pattern: the fields of a classifier, a firewall rule or an IDS signature."""

    src: ipaddress.IPv4Network = ANY_NETWORK
    dst: ipaddress.IPv4Network = ANY_NETWORK
    protocol: int | None = None
    src_port: PortRange | None = None
    dst_port: PortRange | None = None


MATCH_KEYS = ("src", "dst", "protocol", "src_port", "dst_port")

class Issue(NamedTuple):
    """A problem found below some value: the key path from that value, the message, and
    whether it is about the key itself (an unknown key) rather than its value."""

    path: tuple[str | int, ...]
    message: str
    on_key: bool = False


def format_path(path: Iterable[str | int]) -> str:
    """``("chains", 1, "hops", 0)`` -> ``chains[1].hops[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def within(prefix: tuple[str | int, ...], issues: Iterable[Issue]) -> list[Issue]:
    """The same issues, seen from ``prefix`` levels higher up."""
    return [Issue(prefix + issue.path, issue.message, issue.on_key) for issue in issues]


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str] = ()) -> list[Issue]:
    """Unknown keys (with a "did you mean" when one is close) and missing required keys."""
    allowed = list(allowed)
    issues = []
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            if hint:
                more = f" (did you mean {hint[0]!r}?)"
            else:
                more = f"; expected one of: {', '.join(allowed)}" if allowed else " (nothing is allowed here)"
            issues.append(Issue((key,), f"unknown key {key!r}{more}", on_key=True))
    for key in required:
        if key not in data:
            issues.append(Issue((), f"missing required key {key!r}"))
    return issues


_MATCH_PARSERS = (("src", network), ("dst", network), ("protocol", protocol),
                  ("src_port", ports), ("dst_port", ports))


def match(data: Mapping[str, Any]) -> tuple[Match | None, list[Issue]]:
    """Parse the match fields of ``data`` (other keys are the caller's business).

    Ports need tcp or udp: OpenFlow and Click match ports only for those.
    """
    issues: list[Issue] = []
    values: dict[str, Any] = {}
    for key, parse in _MATCH_PARSERS:
        if key in data:
            try:
                values[key] = parse(data[key])
            except ValueError as exc:
                issues.append(Issue((key,), str(exc)))
    protocol_ok = "protocol" in values or "protocol" not in data
    if protocol_ok and values.get("protocol") not in PORT_PROTOCOLS:
        for key in ("src_port", "dst_port"):
            if values.get(key) is not None:
                proto = values.get("protocol")
                got = "any protocol" if proto is None else PROTOCOL_NAMES.get(proto, f"protocol {proto}")
                issues.append(Issue((key,), f"ports need protocol tcp or udp (this matches {got})"))
    if issues:
        return None, issues
    return Match(**values), []
