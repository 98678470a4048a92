"""The Prometheus text exposition format (version 0.0.4), rendered from plain data.

Families come out sorted by name and samples by their labels, so equal
input renders to equal text whatever order it was built in.  An unknown
value (None) is NaN, which Prometheus stores as "no meaningful value";
leaving the sample out would instead make the series look stale.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TYPES = ("counter", "gauge", "untyped")     # the types whose samples carry the family's own name

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float | int | None]]


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    # An int is written whole: a 64-bit counter would lose its low digits as a float.
    return str(int(value)) if isinstance(value, int) else repr(float(value))


def _check(family: Family) -> None:
    if not _METRIC_NAME.fullmatch(family.name):
        raise ValueError(f"bad metric name {family.name!r}")
    if family.type not in TYPES:
        raise ValueError(f"metric {family.name}: type {family.type!r} is not one of {', '.join(TYPES)}")
    seen = set()
    for labels, _ in family.samples:
        for label in labels:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"metric {family.name}: bad label name {label!r}")
        key = tuple(sorted(labels.items()))
        if key in seen:
            raise ValueError(f"metric {family.name}: two samples with labels {dict(key)}")
        seen.add(key)


def render(families: Iterable[Family]) -> str:
    """The exposition text: HELP, TYPE, then the samples of each family; ValueError on bad names."""
    families = sorted(families, key=lambda f: f.name)
    for family, following in zip(families, families[1:]):
        if family.name == following.name:
            raise ValueError(f"metric {family.name} given twice")
    lines = []
    for family in families:
        _check(family)
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in sorted(family.samples, key=lambda s: sorted(s[0].items())):
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{family.name}{{{text}}} {_value(value)}" if text else f"{family.name} {_value(value)}")
    return "".join(line + "\n" for line in lines)
