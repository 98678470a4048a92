"""The controller's REST API in process (JsonApi.call): routes, errors naming the field, auth, OpenAPI."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from controller.api import build_api
from controller.commands import table
from controller.openapi import document
from test_controller_service import WEB, serving_service

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api() -> Any:
    service, agent = serving_service()
    api = build_api(service, TOKEN)
    api.service, api.agent = service, agent
    return api


def test_post_get_put_delete_a_chain(api: Any) -> None:
    status, body = api.call("POST", "/v1/chains?wait=10", WEB, {**AUTH, "Content-Type": "application/yaml"})
    assert status == 201, body
    assert [c["name"] for c in body["chains"]] == ["web"]
    assert body["chains"][0]["state"] == "active"
    status, body = api.call("GET", "/v1/chains")
    assert status == 200 and body["chains"][0]["name"] == "web" and body["chains"][0]["instances"] == 3
    status, body = api.call("GET", "/v1/chains/web")
    assert status == 200
    assert [h["name"] for h in body["hops"]] == ["fw", "mon", "pass"]
    assert body["hops"][1]["instances"][0]["counters"]["count_in"]["packets"] == 7
    assert body["path"][0] in {"client1", "client2"}
    changed = WEB.replace("function: monitor", "function: monitor, params: {by_protocol: true}")
    status, body = api.call("PUT", "/v1/chains/web?wait=10", changed, AUTH)
    assert status == 200 and body["state"] == "active"
    status, body = api.call("GET", "/v1/instances")
    assert len(body["instances"]) == 3
    status, body = api.call("DELETE", "/v1/chains/web", None, AUTH)
    assert (status, body) == (200, {"name": "web", "state": "deleted"})
    assert api.call("GET", "/v1/chains/web")[0] == 404


def test_json_body_is_accepted(api: Any) -> None:
    doc = {"chains": [{"name": "j", "classifier": {"src": "10.0.1.1/32", "dst": "10.0.2.1/32"},
                       "hops": [{"name": "m", "function": "monitor"}]}]}
    status, body = api.call("POST", "/v1/chains?wait=10", json.dumps(doc), {**AUTH, "Content-Type": "application/json"})
    assert status == 201, body
    assert body["chains"][0]["state"] == "active"


def test_put_creates_and_name_must_match(api: Any) -> None:
    status, _ = api.call("PUT", "/v1/chains/web", WEB, AUTH)
    assert status == 201
    status, body = api.call("PUT", "/v1/chains/other", WEB, AUTH)
    assert status == 422 and body["field"] == "chains"


def test_errors_name_the_field(api: Any) -> None:
    bad = WEB.replace("function: monitor", "function: nosuch")
    status, body = api.call("POST", "/v1/chains", bad, AUTH)
    assert status == 422
    assert body["field"] == "chains[0].hops[1].function"
    assert body["problems"][0]["line"] == 7
    status, body = api.call("POST", "/v1/chains", "{", {**AUTH, "Content-Type": "application/json"})
    assert status == 400 and body["field"] == "body"
    api.call("POST", "/v1/chains", WEB, AUTH)
    status, body = api.call("POST", "/v1/chains", WEB, AUTH)
    assert status == 409 and body["field"] == "chains[0].name"
    status, body = api.call("POST", "/v1/chains?wait=x", WEB, AUTH)
    assert status == 400 and body["field"] == "wait"
    assert api.call("DELETE", "/v1/chains/nope", None, AUTH)[1]["field"] == "name"


def test_a_refused_chain_changes_nothing(api: Any) -> None:
    api.call("POST", "/v1/chains?wait=10", WEB, AUTH)
    before = (dict(api.service.installed.flows), api.call("GET", "/v1/instances")[1])
    overlapping = WEB.replace("name: web", "name: web2")
    status, body = api.call("POST", "/v1/chains", overlapping, AUTH)
    assert status == 422 and body["field"] == "chains[0].classifier"
    assert (dict(api.service.installed.flows), api.call("GET", "/v1/instances")[1]) == before


def test_mutating_calls_need_the_token(api: Any) -> None:
    assert api.call("POST", "/v1/chains", WEB)[0] == 401
    assert api.call("PUT", "/v1/chains/web", WEB, {"Authorization": "Bearer wrong"})[0] == 401
    assert api.call("DELETE", "/v1/chains/web")[0] == 401
    assert api.call("GET", "/v1/chains")[0] == 200


def test_topology_and_health(api: Any) -> None:
    status, body = api.call("GET", "/v1/topology")
    assert status == 200 and all(s["connected"] for s in body["switches"])
    status, body = api.call("GET", "/v1/health")
    assert body["status"] == "ok"
    assert body["switches"]["expected"] == body["switches"]["connected"] == 4


def test_openapi_describes_every_route(api: Any) -> None:
    doc = api.call("GET", "/v1/openapi.json")[1]
    assert doc == json.loads(json.dumps(document()))
    served = {(r.method.lower(), r.pattern) for r in api.routes}
    described = {(method, path) for path, item in doc["paths"].items() for method in item if method != "parameters"}
    assert served == described
    for path, item in doc["paths"].items():
        for name in re.findall(r"\{(\w+)\}", path):
            assert any(p["name"] == name and p["in"] == "path" for p in item.get("parameters", []))
    for method, path in described:
        if method in ("post", "put", "delete"):
            assert doc["paths"][path][method]["security"] == [{"bearer": []}]


def test_openapi_is_valid() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document())


def test_table_aligns_columns() -> None:
    assert table(("A", "LONG"), [("xyz", 1), ("q", "")]) == "A    LONG\nxyz  1\nq"



def test_events_and_metrics(api: Any) -> None:
    assert api.call("POST", "/v1/chains?wait=10", WEB, {**AUTH, "Content-Type": "application/yaml"})[0] == 201
    assert api.call("GET", "/v1/chains/web/events") == (200, {"name": "web", "events": []})
    status, body = api.call("GET", "/v1/chains/nope/events")
    assert status == 404 and body["field"] == "name"
    status, body = api.call("GET", "/v1/metrics")
    assert status == 200 and body.content_type.startswith("text/plain; version=0.0.4")
    # Prometheus text: every family announced, then its samples; rates unknown before a poll.
    assert "# TYPE clicksteer_hop_instances gauge" in body.text
    assert 'clicksteer_hop_instances{chain="web",hop="fw"} 1' in body.text
    assert 'clicksteer_instance_in_packets_per_second{chain="web",hop="fw",instance="web-fw-0"} NaN' in body.text
