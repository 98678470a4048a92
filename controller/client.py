"""A small HTTP client of the controller's REST API (the CLI, benches and tests use it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ApiError(RuntimeError):
    """The controller refused a call (``status`` >= 400, ``body`` its JSON) or could not be reached (0)."""

    def __init__(self, status: int, body: Any, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ControllerClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 90.0) -> None:
        self.base = base_url.rstrip("/")
        if "://" not in self.base:
            self.base = "http://" + self.base
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             ) -> tuple[int, Any]:
        """One request; the status and the JSON answer, whatever the status."""
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, {"error": raw.decode(errors="replace")}
        except (OSError, ValueError) as exc:
            raise ApiError(0, None, f"cannot reach the controller at {self.base}: {exc}") from None

    def ok(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One request that must succeed; ApiError with the controller's words otherwise."""
        status, answer = self.call(method, path, body, content_type)
        return check(method, path, status, answer)


def check(method: str, path: str, status: int, answer: Any) -> Any:
    """The answer of a call that succeeded; ApiError with the controller's words otherwise."""
    if status >= 400:
        detail = answer.get("error", "") if isinstance(answer, dict) else str(answer)
        where = f" (at {answer['field']})" if isinstance(answer, dict) and answer.get("field") else ""
        raise ApiError(status, answer, f"{method} {path}: {status}: {detail}{where}")
    return answer
