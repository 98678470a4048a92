"""The controller's REST API (JSON over HTTP, on the shared httpapi framework).

    GET    /v1/chains                 every chain with its state
    POST   /v1/chains[?wait=S]        add the chains of a document (YAML or JSON)
    GET    /v1/chains/{name}          state, placement, path, per-hop counters and rates
    GET    /v1/chains/{name}/events   its scaling events (decisions, boots, drains, releases)
    PUT    /v1/chains/{name}[?wait=S] create or replace one chain, without dropping traffic
    DELETE /v1/chains/{name}          remove it (normal forwarding first, then its instances)
    GET    /v1/topology               the fabric, and which switches are connected
    GET    /v1/instances              every instance and its state
    GET    /v1/health                 switches connected vs expected, chains by state
    GET    /v1/metrics                rates, instance counts, events, port counters (Prometheus text)
    GET    /v1/openapi.json           the OpenAPI 3 description of all of it

``?wait=SECONDS`` on POST/PUT answers once the chains are active (or in
error), at most after that long.  Mutating calls need the bearer token.
"""

from __future__ import annotations

from typing import Any

from chains.errors import ConfigError
from chains.loader import chainset_from_data, load_chains
from chains.model import ChainSet
from clickos_agent.httpapi import HttpError, JsonApi, Request, TextBody
from controller.openapi import document
from controller.service import ChainService, Conflict, NotFound

MAX_WAIT_S = 60.0


def _wait_seconds(request: Request) -> float:
    raw = request.query.get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw or "0")
    except ValueError:
        raise HttpError(400, f"wait must be a number of seconds, got {raw!r}", field="wait") from None
    if not 0 <= value <= MAX_WAIT_S:
        raise HttpError(400, f"wait must be between 0 and {MAX_WAIT_S:g} seconds", field="wait")
    return value


def _chainset(request: Request) -> ChainSet:
    """The body as a chain document: JSON when it says so, YAML otherwise (the same checks)."""
    if not request.body.strip():
        raise HttpError(400, "a chain document (YAML or JSON) is required", field="body")
    if request.content_type == "application/json":
        return chainset_from_data(request.json(), "<request>")
    return load_chains(request.text(), "<request>")


def _invalid(exc: ConfigError) -> HttpError:
    first = exc.problems[0]
    return HttpError(422, f"the chain document is invalid: {first.message}", field=first.path or "body",
                     problems=[p.as_dict() for p in exc.problems])


def build_api(service: ChainService, token: str | None = None) -> JsonApi:
    api = JsonApi(token)

    def mutate(call: Any) -> Any:
        """Map the service's refusals to 4xx answers naming the field."""
        try:
            return call()
        except ConfigError as exc:
            raise _invalid(exc) from None
        except Conflict as exc:
            raise HttpError(409, str(exc), field=exc.field) from None
        except NotFound as exc:
            raise HttpError(404, f"no chain named {exc}", field="name") from None

    @api.route("GET", "/v1/chains")
    def list_chains(request: Request) -> Any:
        return {"chains": service.chains_summary()}

    @api.route("POST", "/v1/chains")
    def create(request: Request) -> Any:
        wait = _wait_seconds(request)
        names = mutate(lambda: service.create(_chainset(request)))
        if wait:
            service.wait(names, wait)
        return 201, {"chains": [service.chain_view(n) for n in names]}

    @api.route("GET", "/v1/chains/{name}")
    def show(request: Request) -> Any:
        counters = request.query.get("counters", "1") not in ("0", "false", "no")
        return mutate(lambda: service.chain_view(request.params["name"], counters=counters))

    @api.route("GET", "/v1/chains/{name}/events")
    def events(request: Request) -> Any:
        name = request.params["name"]
        return mutate(lambda: {"name": name, "events": service.events_view(name)})

    @api.route("GET", "/v1/metrics")
    def metrics(request: Request) -> Any:
        return TextBody(service.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")

    @api.route("PUT", "/v1/chains/{name}")
    def replace(request: Request) -> Any:
        wait = _wait_seconds(request)
        name = request.params["name"]
        created = mutate(lambda: service.replace(name, _chainset(request)))
        if wait:
            service.wait([name], wait)
        return (201 if created else 200), service.chain_view(name)

    @api.route("DELETE", "/v1/chains/{name}")
    def delete(request: Request) -> Any:
        name = request.params["name"]
        mutate(lambda: service.delete(name))
        return {"name": name, "state": "deleted"}

    @api.route("GET", "/v1/topology")
    def topology(request: Request) -> Any:
        return service.topology_view()

    @api.route("GET", "/v1/instances")
    def instances(request: Request) -> Any:
        return {"instances": service.instances_view()}

    @api.route("GET", "/v1/health")
    def health(request: Request) -> Any:
        return service.health()

    @api.route("GET", "/v1/openapi.json")
    def openapi(request: Request) -> Any:
        return document()

    return api
