"""The agent's REST API (JSON over HTTP, on the shared httpapi framework).

    POST   /v1/instances[?wait=1]             create (201 running/failed, 202 booting, 200 existed)
    GET    /v1/instances                      list
    GET    /v1/instances/{id}[?wait=SECONDS]  one instance (optionally waiting while it boots)
    DELETE /v1/instances/{id}                 stop it and free everything
    GET    /v1/instances/{id}/handlers/{element}/{handler}   read a Click handler
    PUT    /v1/instances/{id}/handlers/{element}/{handler}   write one (body: {"value": ...} or text)
    GET    /v1/health

Mutating calls need the bearer token when the agent has one.
"""

from __future__ import annotations

from typing import Any

from clickos_agent.agent import Agent, AgentError, BackendError
from clickos_agent.httpapi import HttpError, JsonApi, Request

MAX_WAIT_S = 60.0


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() not in ("", "0", "false", "no")


def _seconds(value: str | None, name: str) -> float:
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        raise HttpError(400, f"{name} must be a number of seconds", field=name) from None
    return max(0.0, min(seconds, MAX_WAIT_S))


def build_api(agent: Agent, token: str | None = None) -> JsonApi:
    api = JsonApi(token)

    def guard(call: Any) -> Any:
        """Map the agent's refusals onto HTTP errors."""
        try:
            return call()
        except AgentError as exc:
            raise HttpError(exc.status, str(exc), exc.field, **exc.details) from None
        except BackendError as exc:
            raise HttpError(503, str(exc)) from None

    @api.route("POST", "/v1/instances")
    def create(request: Request) -> tuple[int, Any]:
        wait = _truthy(request.query.get("wait"))
        created, inst = guard(lambda: agent.create(request.json(), wait=wait))
        if not created:
            return 200, inst.to_json()
        return (201 if wait else 202), inst.to_json()

    @api.route("GET", "/v1/instances")
    def list_instances(request: Request) -> Any:
        return {"host": agent.host, "instances": [i.to_json() for i in guard(agent.list)]}

    @api.route("GET", "/v1/instances/{id}")
    def get(request: Request) -> Any:
        inst = guard(lambda: agent.get(request.params["id"]))
        timeout = _seconds(request.query.get("wait"), "wait")
        if timeout:
            agent.wait(inst, timeout)
        return inst.to_json()

    @api.route("DELETE", "/v1/instances/{id}")
    def delete(request: Request) -> Any:
        inst = guard(lambda: agent.delete(request.params["id"]))
        return {"id": inst.id, "state": "deleted"}

    @api.route("GET", "/v1/instances/{id}/handlers/{element}/{handler}")
    def read_handler(request: Request) -> Any:
        p = request.params
        value = guard(lambda: agent.read_handler(p["id"], p["element"], p["handler"]))
        return {"id": p["id"], "element": p["element"], "handler": p["handler"], "value": value}

    @api.route("PUT", "/v1/instances/{id}/handlers/{element}/{handler}")
    def write_handler(request: Request) -> Any:
        p = request.params
        if request.content_type == "application/json" or request.body.lstrip().startswith(b"{"):
            body = request.json()
            if not isinstance(body, dict) or not isinstance(body.get("value"), str):
                raise HttpError(400, 'the body must be {"value": "..."}', field="value")
            value = body["value"]
        else:
            value = request.text()
        guard(lambda: agent.write_handler(p["id"], p["element"], p["handler"], value))
        return {"id": p["id"], "element": p["element"], "handler": p["handler"], "written": True}

    @api.route("GET", "/v1/health")
    def health(request: Request) -> Any:
        return agent.health()

    return api
