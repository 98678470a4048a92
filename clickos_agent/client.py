"""A small client of the agent's REST API, for the controller (stdlib only).

    agent = AgentClient("http://127.0.0.1:7461", token="...")
    inst = agent.create_instance("web-fw-0", chain="web", hop=0, function="firewall",
                                 config=text, macs=["02:..."])      # waits until running
    agent.read_handler("web-fw-0", "count_in", "count")            # -> "42\n"
    agent.delete_instance("web-fw-0")

Every method returns the decoded JSON (instances are dicts with ``id``,
``state``, ``reason``, ``interfaces`` [{index, mac, port, ofport}],
``timings_ms``...) and raises ``AgentClientError`` (with ``status`` and the
error ``body``) on an error answer; ``NotFoundError`` for 404.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any


class AgentClientError(Exception):
    def __init__(self, status: int, body: Any, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class NotFoundError(AgentClientError):
    pass


class AgentClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": raw.decode("utf-8", "replace")}
            cls = NotFoundError if exc.code == 404 else AgentClientError
            message = payload.get("error", "") if isinstance(payload, dict) else str(payload)
            raise cls(exc.code, payload, f"{method} {path}: {exc.code} {message}") from None
        except urllib.error.URLError as exc:
            raise AgentClientError(0, None, f"{method} {path}: agent unreachable: {exc.reason}") from None

    @staticmethod
    def _quote(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")[1]

    def create_instance(self, instance_id: str, chain: str, hop: int, function: str, config: str,
                        interfaces: int = 1, macs: list[str] | None = None, wait: bool = True) -> dict[str, Any]:
        """Create (or find) an instance; with ``wait`` the answer comes once it runs or failed.

        An instance that failed to boot is returned with ``state`` "failed" and its
        ``reason``; a config the Click toolkit refuses raises AgentClientError 422
        whose body lists the errors.
        """
        body: dict[str, Any] = {"id": instance_id, "chain": chain, "hop": hop, "function": function,
                                "config": config, "interfaces": interfaces}
        if macs is not None:
            body["macs"] = macs
        return self._call("POST", "/v1/instances" + ("?wait=1" if wait else ""), body)[1]

    def get_instance(self, instance_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """One instance; ``wait_s`` lets the agent hold the answer while the instance boots."""
        query = f"?wait={wait_s:g}" if wait_s else ""
        return self._call("GET", f"/v1/instances/{self._quote(instance_id)}{query}",
                          timeout=self.timeout + wait_s)[1]

    def list_instances(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/instances")[1]["instances"]

    def delete_instance(self, instance_id: str, missing_ok: bool = True) -> bool:
        """Delete an instance; False when there was none (and ``missing_ok``)."""
        try:
            self._call("DELETE", f"/v1/instances/{self._quote(instance_id)}")
        except NotFoundError:
            if not missing_ok:
                raise
            return False
        return True

    def _handler_path(self, instance_id: str, element: str, handler: str) -> str:
        return f"/v1/instances/{self._quote(instance_id)}/handlers/{self._quote(element)}/{self._quote(handler)}"

    def read_handler(self, instance_id: str, element: str, handler: str) -> str:
        return self._call("GET", self._handler_path(instance_id, element, handler))[1]["value"]

    def write_handler(self, instance_id: str, element: str, handler: str, value: str) -> None:
        self._call("PUT", self._handler_path(instance_id, element, handler), {"value": value})

    def wait_until_running(self, instance_id: str, timeout: float = 30.0,
                           clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
        """Poll (with the agent holding each answer up to 5 s) until the instance runs.

        Raises AgentClientError when it failed (the reason in the message) or
        is still booting after ``timeout`` seconds.
        """
        deadline = clock() + timeout
        while True:
            inst = self.get_instance(instance_id, wait_s=min(5.0, max(0.0, deadline - clock())))
            if inst["state"] == "running":
                return inst
            if inst["state"] == "failed":
                raise AgentClientError(200, inst, f"instance {instance_id} failed: {inst['reason']}")
            if clock() >= deadline:
                raise AgentClientError(200, inst, f"instance {instance_id} is still {inst['state']} "
                                                  f"after {timeout:g} s")
