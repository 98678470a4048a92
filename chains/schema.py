"""The JSON Schema (draft 2020-12) of a chain document, for editors and other tools.

The loader is the authority (it also checks what a schema cannot say well:
CIDR host bits, port ranges in order, overlapping classifiers, min <= max);
the schema accepts every valid document and describes each field.
"""

from __future__ import annotations

from typing import Any

from chains import loader
from chains.catalog import CATALOG, MATCH_SCHEMA_PROPERTIES, object_schema
from chains.fields import DNS_LABEL

_NAME = {"type": "string", "pattern": DNS_LABEL.pattern, "maxLength": 63,
         "description": "a lowercase DNS label: a-z, 0-9 and '-', not at either end"}


def json_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict."""
    scaling = object_schema({
        "min": {"type": "integer", "minimum": 1, "maximum": loader.MAX_INSTANCES},
        "max": {"type": "integer", "minimum": 1, "maximum": loader.MAX_INSTANCES},
        "metric": {"enum": list(loader.METRICS)},
        "out_above": {"type": "number", "minimum": 0, "description": "add an instance above this rate"},
        "in_below": {"type": "number", "minimum": 0, "description": "remove an instance below this rate"},
        "cooldown": {"oneOf": [{"type": "number", "minimum": 0},
                               {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)\s*$"}],
                     "description": "time between scaling decisions, e.g. \"5s\""},
    }, description="how many instances serve the hop, and when to add or remove one")
    function_names = [*CATALOG]
    hop = object_schema({
        "name": _NAME,
        "function": {"type": "string", "description": "a catalog function (" + ", ".join(function_names)
                     + ") or one defined under functions:"},
        "params": {"type": ["object", "null"]},
        "scaling": scaling,
    }, ("name", "function"))
    # params depend on the function: one if/then per catalog function
    hop["allOf"] = [
        {"if": {"properties": {"function": {"const": name}}, "required": ["function"]},
         "then": {"properties": {"params": {"anyOf": [{"type": "null"}, entry.params_schema]}}}}
        for name, entry in CATALOG.items()
    ]
    chain = object_schema({
        "name": _NAME,
        "description": {"type": "string"},
        "classifier": object_schema(MATCH_SCHEMA_PROPERTIES,
                                    description="which packets enter the chain; ports only with tcp or udp"),
        "hops": {"type": "array", "minItems": 1, "items": hop},
        "symmetric": {"type": "boolean", "default": False,
                      "description": "replies cross the same instances in reverse order"},
        "priority": {"type": "integer", "minimum": 0, "maximum": loader.MAX_PRIORITY, "default": 100},
        "on_failure": {"enum": list(loader.ON_FAILURE), "default": "open",
                       "description": "open: bypass a hop that is not ready; closed: drop"},
    }, ("name", "classifier", "hops"))
    function = object_schema({
        "click": {"type": "string", "description": "a raw Click config; $INSTANCE_MAC, $INSTANCE_MAC_HEX "
                  "and $UPLINK_MAC are filled in"},
        "description": {"type": "string"},
    }, ("click",))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://clicksteer.example/schemas/chains.json",
        "title": "ClickSteer chain document",
        **object_schema({
            "chains": {"type": "array", "items": chain},
            "functions": {"type": "object", "propertyNames": _NAME, "additionalProperties": function,
                          "description": "custom middlebox functions, by name"},
        }, ("chains",)),
    }
