"""Talking to the per-host agents (clickos_agent/api.py), behind one small interface.

The service only needs ``AgentClient``; tests pass a fake, production the
agent's own HTTP client (clickos_agent/client.py) behind this adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from clickos_agent import client as agent_client


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

    def list_instances(self) -> list[dict[str, Any]]:
        """Every instance the agent runs (``id``, ``chain``, ``state``, ...)."""

    def read_handler(self, instance_id: str, element: str, handler: str) -> str: ...


class HttpAgentClient:
    """The agent's REST API at ``address`` ("HOST:PORT"), through the agent's own client."""

    def __init__(self, address: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.client = agent_client.AgentClient(f"http://{address}", token=token, timeout=timeout)

    def _guard(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except agent_client.AgentClientError as exc:
            raise AgentError(f"agent {self.client.base_url}: {exc}", exc.status) from None

    def create(self, body: dict[str, Any], wait: bool) -> dict[str, Any]:
        fields = {k: v for k, v in body.items() if k != "id"}
        return self._guard(lambda: self.client.create_instance(body["id"], wait=wait, **fields))

    def get(self, instance_id: str) -> dict[str, Any] | None:
        try:
            return self._guard(lambda: self.client.get_instance(instance_id))
        except AgentError as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, instance_id: str) -> None:
        self._guard(lambda: self.client.delete_instance(instance_id))

    def list_instances(self) -> list[dict[str, Any]]:
        return self._guard(self.client.list_instances)

    def read_handler(self, instance_id: str, element: str, handler: str) -> str:
        return str(self._guard(lambda: self.client.read_handler(instance_id, element, handler))).strip()
