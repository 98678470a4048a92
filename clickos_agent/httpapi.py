"""A small JSON-over-HTTP framework shared by the agent's and the controller's REST APIs.

A plain WSGI application (stdlib only) served from its own thread, so it runs
beside os-ken's hub and is tested in process with ``call`` (no socket).
Handlers take a ``Request`` and return ``(status, body)`` or a body (200);
they raise ``HttpError`` for 4xx answers, which become a JSON body naming
the offending field.  Mutating methods need ``Authorization: Bearer TOKEN``
when the API has a token.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
           401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
           500: "Internal Server Error", 503: "Service Unavailable"}
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class TextBody:
    """A response that is not JSON (e.g. Prometheus metrics): served as is."""

    text: str
    content_type: str = "text/plain; charset=utf-8"


class HttpError(Exception):
    """An error answer: status, message, and optionally the field at fault and details."""

    def __init__(self, status: int, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message}
        if field is not None:
            self.body["field"] = field
        self.body.update(details)


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]           # from the route pattern, e.g. {"id": "web-fw-0"}
    query: dict[str, str]
    headers: dict[str, str]          # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        """The body as JSON; a 400 naming the problem when it is not."""
        if not self.body:
            raise HttpError(400, "a JSON body is required", field="body")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc}", field="body") from None

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "the body is not UTF-8 text", field="body") from None


Handler = Callable[[Request], Any]


@dataclass
class Route:
    method: str
    pattern: str
    handler: Handler
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


class JsonApi:
    """Routes plus the WSGI glue; ``token`` None means no authentication."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.routes: list[Route] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            self.routes.append(Route(method, pattern, handler))
            return handler
        return add

    def dispatch(self, request: Request) -> tuple[int, Any]:
        allowed = []
        for route in self.routes:
            found = route.regex.match(request.path)
            if not found:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            if request.method in MUTATING:
                self._authorize(request)
            request.params = found.groupdict()
            result = route.handler(request)
            return result if isinstance(result, tuple) else (200, result)
        if allowed:
            raise HttpError(405, f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}",
                            field="method")
        raise HttpError(404, f"no such resource: {request.path}", field="path")

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self.token):
            raise HttpError(401, "a valid bearer token is required for this call", field="Authorization")

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             ) -> tuple[int, Any]:
        """Serve one request in process (tests, and the CLI's local mode)."""
        raw = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        data = raw.encode() if isinstance(raw, str) else (raw or b"")
        path_only, _, query = path.partition("?")
        request = Request(method, path_only, {}, _parse_query(query),
                          {k.lower(): v for k, v in (headers or {}).items()}, data)
        return self._answer(request)

    def _answer(self, request: Request) -> tuple[int, Any]:
        try:
            return self.dispatch(request)
        except HttpError as exc:
            return exc.status, exc.body
        except Exception:  # noqa: BLE001 - the API must answer, and log the bug, never die
            log.exception("%s %s failed", request.method, request.path)
            return 500, {"error": "internal error; see the server log"}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            status, body = 413, {"error": f"body over {MAX_BODY} bytes", "field": "body"}
        else:
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = environ["CONTENT_TYPE"]
            request = Request(environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/", {},
                              _parse_query(environ.get("QUERY_STRING", "")), headers,
                              environ["wsgi.input"].read(length) if length else b"")
            status, body = self._answer(request)
        content_type = "application/json"
        if isinstance(body, TextBody):
            payload, content_type = body.text.encode(), body.content_type
        else:
            payload = b"" if status == 204 else (json.dumps(body, indent=1) + "\n").encode()
        start_response(f"{status} {REASONS.get(status, '')}",
                       [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
        return [payload]


def _parse_query(query: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in query.split("&") if part)
    return {key: value for key, _, value in pairs}


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)


class ApiServer:
    """Serves a JsonApi on host:port from a daemon thread; ``port`` 0 picks a free one."""

    def __init__(self, api: JsonApi, host: str, port: int) -> None:
        self.server = make_server(host, port, api, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self.address = f"{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"api-{self.address}", daemon=True)

    def start(self) -> ApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def read_token(path: str | None) -> str | None:
    """The bearer token from a file (first line), or None when no file is given."""
    if path is None:
        return None
    with io.open(path, encoding="utf-8") as handle:
        token = handle.readline().strip()
    if not token:
        raise ValueError(f"{path}: the token file is empty")
    return token
