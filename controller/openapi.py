"""The OpenAPI 3 description of the controller's REST API (controller/api.py), written by hand.

A test checks that every route the API serves is described here.
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "refused; the body names the field at fault")
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "the chain's name"}
_WAIT = {"name": "wait", "in": "query", "required": False,
         "schema": {"type": "number", "minimum": 0, "maximum": 60},
         "description": "answer once the chains are active or in error, waiting at most this many seconds"}
_CHAIN_DOCUMENT = {
    "required": True,
    "description": "a chain document, as `clicksteer check` reads it (top level `chains:` and `functions:`)",
    "content": {"application/yaml": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}},
}
_AUTH = [{"bearer": []}]

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "the key path or parameter at fault"},
            "problems": {"type": "array", "items": _ref("Problem")},
        },
    },
    "Problem": {
        "type": "object",
        "properties": {"file": {"type": "string"}, "line": {"type": "integer"}, "col": {"type": "integer"},
                       "path": {"type": "string"}, "message": {"type": "string"}},
    },
    "ChainState": {"type": "string", "enum": ["pending", "booting", "active", "error"]},
    "ChainSummary": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "state": _ref("ChainState"), "reason": {"type": "string"},
                       "hops": {"type": "array", "items": {"type": "string"}},
                       "priority": {"type": "integer"}, "instances": {"type": "integer"}},
    },
    "Counter": {"type": "object", "properties": {"packets": {"type": "integer"}, "bytes": {"type": "integer"}}},
    "HopInstance": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "compute": {"type": "string"}, "mac": {"type": "string"},
                       "label": {"type": "integer"}, "state": {"type": "string"}, "reason": {"type": "string"},
                       "counters": {"type": "object", "additionalProperties": _ref("Counter"),
                                    "description": "count_in, count_out, count_drop of the instance"},
                       "draining": {"type": "boolean",
                                    "description": "being scaled in: gets no new flows, keeps its own"},
                       "rates": {"allOf": [_ref("Rates")], "nullable": True}},
    },
    "Rates": {
        "type": "object",
        "description": "from the last round of OpenFlow statistics; null: unknown",
        "properties": {f: {"type": "number", "nullable": True}
                       for f in ("in_pps", "in_bps", "out_pps", "out_bps")},
    },
    "Event": {
        "type": "object",
        "properties": {"time": {"type": "number"}, "chain": {"type": "string"}, "hop": {"type": "string"},
                       "action": {"type": "string", "enum": ["scale-out", "scale-out-failed", "scale-in",
                                                             "scale-in-cancelled", "instance-running",
                                                             "instance-failed", "instance-released"]},
                       "instance": {"type": "string"}, "reason": {"type": "string"},
                       "instances": {"type": "integer"}, "target": {"type": "integer"},
                       "rate": {"type": "number"}, "per_instance": {"type": "number"}},
    },
    "Chain": {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "state": _ref("ChainState"), "reason": {"type": "string"},
            "since": {"type": "number"}, "priority": {"type": "integer"},
            "on_failure": {"type": "string", "enum": ["open", "closed"]}, "symmetric": {"type": "boolean"},
            "classifier": {"type": "object"},
            "hops": {"type": "array", "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "function": {"type": "string"},
                               "scaling": {"type": "object", "description": "the hop's policy, and whether "
                                           "it is autoscaled (max > min)"},
                               "load": {"type": "object", "description": "pps and bps summed over its running "
                                        "instances, what scaling compares with its thresholds (null: unknown): "
                                        "per instance, in_* where hand-over flows count it, else out_*"},
                               "instances": {"type": "array", "items": _ref("HopInstance")}}}},
            "path": {"type": "array", "items": {"type": "string"},
                     "description": "host, switches and instances the forward traffic crosses, in order"},
            "steering": {"type": "string", "description": "how the chain is steered now (from the compiler)"},
        },
    },
    "Instance": {
        "type": "object",
        "properties": {"id": {"type": "string"}, "chain": {"type": "string"}, "hop": {"type": "string"},
                       "hop_index": {"type": "integer"}, "index": {"type": "integer"},
                       "compute": {"type": "string"}, "function": {"type": "string"},
                       "mac": {"type": "string"}, "label": {"type": "integer"},
                       "state": {"type": "string", "enum": ["booting", "running", "failed"]},
                       "reason": {"type": "string"},
                       "retiring": {"type": "boolean",
                                    "description": "replaced by a new config; serves until its successor runs"}},
    },
    "Topology": {
        "type": "object",
        "properties": {"name": {"type": "string"},
                       "switches": {"type": "array", "items": {"type": "object"}},
                       "hosts": {"type": "array", "items": {"type": "object"}},
                       "computes": {"type": "array", "items": {"type": "object"}},
                       "links": {"type": "array", "items": {"type": "object"}},
                       "unexpected_switches": {"type": "array", "items": {"type": "string"}},
                       "link_problems": {"type": "array", "items": {"type": "string"},
                                         "description": "links LLDP found wired otherwise than the topology"}},
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "switches": {"type": "object", "properties": {
                "expected": {"type": "integer"}, "connected": {"type": "integer"},
                "missing": {"type": "array", "items": {"type": "string"}},
                "unexpected": {"type": "array", "items": {"type": "string"}},
                "problems": {"type": "object"}}},
            "links": {"type": "object", "description": "links confirmed by LLDP probes", "properties": {
                "expected": {"type": "integer"}, "confirmed": {"type": "integer"},
                "problems": {"type": "array", "items": {"type": "string"}}}},
            "chains": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document."""
    chains_list = {"type": "object", "properties": {"chains": {"type": "array", "items": _ref("ChainSummary")}}}
    created = {"type": "object", "properties": {"chains": {"type": "array", "items": _ref("Chain")}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "ClickSteer controller", "version": "1",
                 "description": "Steer traffic through chains of ClickOS middleboxes."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": {
            "/v1/chains": {
                "get": {"summary": "every chain with its state", "operationId": "listChains",
                        "responses": {"200": _json(chains_list, "the chains")}},
                "post": {"summary": "add the chains of a document", "operationId": "createChains",
                         "parameters": [_WAIT], "requestBody": _CHAIN_DOCUMENT, "security": _AUTH,
                         "responses": {"201": _json(created, "accepted; states say how far they got"),
                                       "400": _ERROR, "401": _ERROR, "409": _ERROR, "422": _ERROR}},
            },
            "/v1/chains/{name}": {
                "parameters": [_NAME],
                "get": {"summary": "one chain: state, placement, path, per-hop counters", "operationId": "getChain",
                        "parameters": [{"name": "counters", "in": "query", "required": False,
                                        "schema": {"type": "string", "enum": ["0", "1"]},
                                        "description": "0 leaves out the instances' counters (faster)"}],
                        "responses": {"200": _json(_ref("Chain"), "the chain"), "404": _ERROR}},
                "put": {"summary": "create or replace one chain without dropping traffic",
                        "operationId": "putChain", "parameters": [_WAIT], "requestBody": _CHAIN_DOCUMENT,
                        "security": _AUTH,
                        "responses": {"200": _json(_ref("Chain"), "replaced"),
                                      "201": _json(_ref("Chain"), "created"),
                                      "400": _ERROR, "401": _ERROR, "409": _ERROR, "422": _ERROR}},
                "delete": {"summary": "remove a chain and release its instances", "operationId": "deleteChain",
                           "security": _AUTH,
                           "responses": {"200": _json({"type": "object"}, "deleted"),
                                         "401": _ERROR, "404": _ERROR}},
            },
            "/v1/chains/{name}/events": {
                "parameters": [_NAME],
                "get": {"summary": "the chain's scaling events, oldest first", "operationId": "getChainEvents",
                        "responses": {"200": _json({"type": "object", "properties": {
                            "name": {"type": "string"}, "events": {"type": "array", "items": _ref("Event")}}},
                            "the events"), "404": _ERROR}}},
            "/v1/metrics": {
                "get": {"summary": "rates, instance counts, scaling events and port counters",
                        "operationId": "metrics",
                        "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/v1/topology": {
                "get": {"summary": "the fabric and which switches are connected", "operationId": "getTopology",
                        "responses": {"200": _json(_ref("Topology"), "the topology")}}},
            "/v1/instances": {
                "get": {"summary": "every middlebox instance", "operationId": "listInstances",
                        "responses": {"200": _json({"type": "object", "properties": {
                            "instances": {"type": "array", "items": _ref("Instance")}}}, "the instances")}}},
            "/v1/health": {
                "get": {"summary": "switches connected vs expected; chains by state", "operationId": "health",
                        "responses": {"200": _json(_ref("Health"), "health")}}},
            "/v1/openapi.json": {
                "get": {"summary": "this document", "operationId": "openapi",
                        "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")}}},
        },
    }
