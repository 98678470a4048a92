"""Talking to the per-host agents (clickos_agent/api.py), behind one small interface.

The service only needs ``AgentClient``; tests pass a fake, production this
HTTP client (stdlib only, one short-lived connection per call).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Protocol


class AgentError(RuntimeError):
    """An agent refused a call or could not be reached; ``status`` is 0 when unreachable."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AgentClient(Protocol):
    def create(self, body: dict[str, Any], wait: bool) -> dict[str, Any]:
        """POST /v1/instances: the instance as the agent reports it (``state``, ``reason``)."""

    def get(self, instance_id: str) -> dict[str, Any] | None:
        """The instance, or None when the agent does not know it."""

    def delete(self, instance_id: str) -> None:
        """Stop and free an instance; unknown ids are not an error (safe to repeat)."""

    def read_handler(self, instance_id: str, element: str, handler: str) -> str: ...


class HttpAgentClient:
    """The agent's REST API at ``address`` ("HOST:PORT")."""

    def __init__(self, address: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base = f"http://{address}"
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw).get("error", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                detail = raw.decode(errors="replace")
            return exc.code, {"error": detail}
        except (OSError, ValueError) as exc:
            raise AgentError(f"agent {self.base}: {exc}") from None

    def create(self, body: dict[str, Any], wait: bool) -> dict[str, Any]:
        status, answer = self._call("POST", "/v1/instances" + ("?wait=1" if wait else ""), body)
        if status >= 400:
            raise AgentError(f"agent {self.base} refused instance {body.get('id')}: {answer['error']}", status)
        return answer

    def get(self, instance_id: str) -> dict[str, Any] | None:
        status, answer = self._call("GET", f"/v1/instances/{instance_id}")
        if status == 404:
            return None
        if status >= 400:
            raise AgentError(f"agent {self.base}: {answer['error']}", status)
        return answer

    def delete(self, instance_id: str) -> None:
        status, answer = self._call("DELETE", f"/v1/instances/{instance_id}")
        if status >= 400 and status != 404:
            raise AgentError(f"agent {self.base}: {answer['error']}", status)

    def read_handler(self, instance_id: str, element: str, handler: str) -> str:
        status, answer = self._call("GET", f"/v1/instances/{instance_id}/handlers/{element}/{handler}")
        if status >= 400:
            raise AgentError(f"agent {self.base}: {answer['error']}", status)
        return str(answer["value"])
