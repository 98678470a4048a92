"""The agent's lifecycle core and REST API, with a stateful fake backend (no root needed)."""

from __future__ import annotations

import json
import threading

import pytest

from clickos_agent.agent import Agent, BackendError, Instance, Interface, NotFound, click_validator, derive_mac
from clickos_agent.api import build_api
from clickos_agent.store import StateStore

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = "FromDevice(0) -> count_in :: Counter -> count_out :: Counter -> Queue -> ToDevice(0);\n"


class FakeBackend:
    """Resources as a set of names; steps can be told to fail or to block."""

    name = "fake"

    def __init__(self) -> None:
        self.resources: set[str] = set()
        self.fail: dict[str, str] = {}
        self.gate: threading.Event | None = None
        self.handlers: dict[tuple[str, str, str], str] = {}

    def bind(self, tag: str) -> None:
        self.tag = tag

    def plan(self, inst: Instance, tag: str) -> None:
        inst.handles = {"name": f"csi-{tag}-{inst.seq}"}
        inst.interfaces = [Interface(i, mac, f"port{inst.seq}.{i}") for i, mac in enumerate(inst.spec.macs)]

    def _step(self, step: str, inst: Instance) -> None:
        if step in self.fail:
            raise BackendError(self.fail[step])
        self.resources.add(f"{inst.handles['name']}/{step}")

    def create(self, inst: Instance) -> None:
        if self.gate is not None:
            self.gate.wait()
        self._step("create", inst)

    def attach(self, inst: Instance) -> None:
        self._step("attach", inst)

    def install(self, inst: Instance) -> None:
        self._step("install", inst)

    def start(self, inst: Instance) -> None:
        self._step("start", inst)

    def destroy(self, inst: Instance) -> None:
        self.resources = {r for r in self.resources if not r.startswith(inst.handles["name"] + "/")}

    def alive(self, inst: Instance) -> bool:
        return f"{inst.handles['name']}/start" in self.resources

    def sweep(self, tag: str, keep: list[Instance]) -> list[str]:
        kept = {i.handles["name"] for i in keep}
        orphans = {r for r in self.resources if r.startswith(f"csi-{tag}-") and r.split("/")[0] not in kept}
        self.resources -= orphans
        return sorted(orphans)

    def read_handler(self, inst: Instance, element: str, handler: str) -> str:
        return self.handlers.get((inst.id, element, handler), "0\n")

    def write_handler(self, inst: Instance, element: str, handler: str, value: str) -> None:
        self.handlers[(inst.id, element, handler)] = value


class Ticks:
    """A clock that advances one millisecond per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
def backend():
    return FakeBackend()


@pytest.fixture
def agent(backend, tmp_path):
    a = Agent("c1", backend, StateStore(tmp_path / "state.json"), capacity=2, clock=Ticks(),
              validator=click_validator)
    a.start()
    return a


@pytest.fixture
def api(agent):
    return build_api(agent, TOKEN)


def body(instance_id: str = "web-fw-0", **extra) -> dict:
    return {"id": instance_id, "chain": "web", "hop": 0, "function": "firewall", "config": CONFIG, **extra}


def post(api, data, wait: bool = True):
    return api.call("POST", "/v1/instances" + ("?wait=1" if wait else ""), data, AUTH)


def test_create_boots_through_every_step_and_reports_it(api, backend):
    status, inst = post(api, body())
    assert status == 201
    assert (inst["state"], inst["vm"], inst["router"], inst["reason"]) == ("running", "running", "running", "")
    assert set(inst["timings_ms"]) == {"create", "attach", "install", "start", "total"}
    assert all(v > 0 for v in inst["timings_ms"].values())
    assert inst["interfaces"] == [{"index": 0, "mac": derive_mac("web-fw-0", 0), "port": "port0.0", "ofport": None}]
    assert len(backend.resources) == 4


def test_macs_are_taken_from_the_request_or_derived():
    assert derive_mac("a", 0) == derive_mac("a", 0) != derive_mac("a", 1)
    first = int(derive_mac("web-fw-0", 0)[:2], 16)
    assert first & 0x02 and not first & 0x01    # locally administered, unicast


def test_given_macs(api):
    status, inst = post(api, body(interfaces=2, macs=["02:AA:00:00:00:01", "02:aa:00:00:00:02"]))
    assert status == 201
    assert [i["mac"] for i in inst["interfaces"]] == ["02:aa:00:00:00:01", "02:aa:00:00:00:02"]


@pytest.mark.parametrize(("change", "field"), [
    ({"id": ""}, "id"), ({"id": "x" * 41}, "id"), ({"id": "a/b"}, "id"), ({"hop": -1}, "hop"),
    ({"interfaces": 0}, "interfaces"), ({"macs": ["02:00:00:00:00:01", "x"]}, "macs"),
    ({"macs": ["03:00:00:00:00:01"]}, "macs[0]"), ({"colour": "red"}, "colour"), ({"config": 3}, "config"),
])
def test_bad_requests_name_the_field(api, backend, change, field):
    status, answer = post(api, {**body(), **change})
    assert (status, answer["field"]) == (400, field)
    assert not backend.resources


def test_invalid_click_config_is_refused_with_the_toolkit_errors(api, backend, agent):
    status, answer = post(api, body(config="FromDevice(0) -> Cunter -> ToDevice(0);\n"))
    assert status == 422 and answer["field"] == "config"
    assert answer["errors"][0]["line"] == 1
    assert "Cunter" in answer["errors"][0]["message"]
    assert answer["errors"][0]["text"].startswith("web-fw-0.click:1:")
    assert not backend.resources and not agent.instances


def test_creating_an_existing_id_returns_it(api, backend):
    post(api, body())
    status, inst = post(api, body(config=CONFIG + "// changed\n"))
    assert (status, inst["state"]) == (200, "running")
    assert len(backend.resources) == 4


def test_mutating_calls_need_the_token(api):
    assert api.call("POST", "/v1/instances?wait=1", body())[0] == 401
    assert api.call("DELETE", "/v1/instances/x")[0] == 401
    assert api.call("GET", "/v1/instances")[0] == 200
    assert api.call("GET", "/v1/health")[1]["status"] == "ok"


def test_unknown_id_is_404(api):
    assert api.call("GET", "/v1/instances/nope")[0] == 404
    assert api.call("DELETE", "/v1/instances/nope", headers=AUTH)[0] == 404
    assert api.call("GET", "/v1/instances/nope/handlers/c/count")[0] == 404


def test_capacity_is_409_and_failed_instances_do_not_count(api, backend):
    backend.fail["start"] = "no router"
    assert post(api, body("a"))[1]["state"] == "failed"
    backend.fail.clear()
    assert post(api, body("b"))[0] == 201
    assert post(api, body("c"))[0] == 201
    status, answer = post(api, body("d"))
    assert status == 409 and "capacity" in answer["error"]


def test_backend_failure_leaves_failed_with_reason_and_releases(api, backend):
    backend.fail["attach"] = "vale-ctl: no such device"
    status, inst = post(api, body())
    assert inst["state"] == "failed"
    assert inst["reason"] == "attach failed: vale-ctl: no such device"
    assert (inst["vm"], inst["router"]) == ("none", "none")
    assert not backend.resources
    # A retry replaces the failed instance.
    backend.fail.clear()
    status, inst = post(api, body())
    assert (status, inst["state"]) == (201, "running")


def test_delete_frees_everything(api, backend, agent):
    post(api, body())
    status, answer = api.call("DELETE", "/v1/instances/web-fw-0", headers=AUTH)
    assert (status, answer["state"]) == (200, "deleted")
    assert not backend.resources and not agent.instances
    assert api.call("GET", "/v1/instances")[1]["instances"] == []


def test_async_create_then_wait(api, backend):
    backend.gate = threading.Event()
    status, inst = post(api, body(), wait=False)
    assert (status, inst["state"]) == (202, "booting")
    backend.gate.set()
    status, inst = api.call("GET", "/v1/instances/web-fw-0?wait=30")
    assert inst["state"] == "running"


def test_handlers(api, backend):
    post(api, body())
    backend.handlers[("web-fw-0", "count_in", "count")] = "17\n"
    status, answer = api.call("GET", "/v1/instances/web-fw-0/handlers/count_in/count")
    assert (status, answer["value"]) == (200, "17\n")
    status, _ = api.call("PUT", "/v1/instances/web-fw-0/handlers/count_in/reset", {"value": "1"}, AUTH)
    assert status == 200 and backend.handlers[("web-fw-0", "count_in", "reset")] == "1"
    status, _ = api.call("PUT", "/v1/instances/web-fw-0/handlers/q/capacity", "100",
                         {**AUTH, "Content-Type": "text/plain"})
    assert status == 200 and backend.handlers[("web-fw-0", "q", "capacity")] == "100"


def test_a_dead_router_is_reported_failed_and_released(api, backend):
    post(api, body())
    backend.resources.discard("csi-" + api.call("GET", "/v1/health")[1]["tag"] + "-0/start")
    inst = api.call("GET", "/v1/instances/web-fw-0")[1]
    assert (inst["state"], inst["reason"]) == ("failed", "the router exited")
    assert not backend.resources


def test_state_file_is_complete_json_after_every_change(agent, tmp_path):
    agent.create(body("a"))
    agent.create(body("b"))
    agent.delete("a")
    saved = json.loads((tmp_path / "state.json").read_text())
    assert [r["spec"]["id"] for r in saved["instances"]] == ["b"]
    assert saved["tag"] == agent.tag and saved["next_seq"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]   # no temporary file left


def test_restart_adopts_live_releases_dead_and_sweeps_orphans(agent, backend, tmp_path):
    agent.create(body("a"))
    agent.create(body("b"))
    backend.resources.discard(f"csi-{agent.tag}-1/start")          # b's router died meanwhile
    backend.resources.add(f"csi-{agent.tag}-7/create")             # a crash left this behind
    backend.resources.add("csi-other-0/create")                    # another agent's: never touched
    again = Agent("c1", backend, StateStore(tmp_path / "state.json"), capacity=2)
    report = again.start()
    assert report == {"adopted": ["a"], "released": ["b"], "swept": [f"csi-{agent.tag}-7/create"]}
    assert again.tag == agent.tag
    a = again.get("a")
    assert a.state == "running" and a.adopted
    assert again.get("b").state == "failed"
    assert "csi-other-0/create" in backend.resources
    # Sequence numbers go on, so names never repeat.
    _, c = again.create(body("c"))
    assert c.seq == 2


def test_restart_sweeps_an_instance_that_was_booting(agent, backend, tmp_path):
    """A boot cut short by a crash is not in the table: its tagged resources are swept."""
    agent.create(body("b"))
    backend.gate = threading.Event()
    _, first = agent.create(body("a"), wait=False)
    again = Agent("c1", backend, StateStore(tmp_path / "state.json"))
    backend.resources.add(f"csi-{agent.tag}-1/create")   # what the cut-short boot had made
    report = again.start()
    assert report["swept"] == [f"csi-{agent.tag}-1/create"] and report["adopted"] == ["b"]
    with pytest.raises(NotFound):
        again.get("a")
    backend.gate.set()
    agent.wait(first)
