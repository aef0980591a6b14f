"""The controller's JSON API over HTTP, on 127.0.0.1 by default: Falcon served by waitress.

Falcon routes and answers (404 for an unknown path, 405 with Allow for a method a resource
does not take), waitress serves it from a small pool of threads beside the controller's own:
it reads a whole request before a thread takes it, so a client that stalls holds no thread,
and it closes a connection idle for `timeout` seconds. Every answer is JSON, errors as
{"error": "..."}; a rejected request changes nothing. The API is described by the OpenAPI
document it serves at /v1/openapi.json (the tests fuzz the API from it).

  GET /v1/topology | /v1/strategy | /v1/paths | /v1/links | /v1/endpoints | /v1/openapi.json
  PUT /v1/strategy {"name": "<strategy>"[, "measured_delays": true|false]}
  PUT /v1/endpoints {"service": "<name>", "endpoints": ["<host>", ...]}: the hosts that serve
      a service, in order (a promotion moves the write address to the new primary)
"""

from __future__ import annotations

import json
import threading
import time
from typing import Protocol

import falcon
import waitress

RESOURCES = ("topology", "strategy", "paths", "links", "endpoints")
MAX_BODY = 64 * 1024  # what the API reads; larger bodies get its JSON 400
# What waitress buffers before the API sees a request: well above MAX_BODY, so that the API,
# not waitress's plain-text 413, answers every body a client could mean.
SERVER_MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT_S = 10
THREADS = 4


class Backend(Protocol):
    def view(self, resource: str) -> dict:
        """One of RESOURCES as JSON-ready data."""

    def set_strategy(self, name: str, measured_delays: bool | None = None) -> dict:
        """Switch strategy (raises ValueError for an unknown one), and whether measured link
        delays may override configured ones (None: as it was); returns the new strategy view."""

    def set_endpoints(self, service: str, hosts: list[str]) -> dict:
        """Serve a service by these hosts in this order (ValueError if not among its own);
        returns the endpoints view."""


def _resource_doc(name: str) -> dict:
    return {"get": {"summary": f"the controller's {name}", "operationId": f"get_{name}",
                    "responses": {"200": {"description": name, "content": {
                        "application/json": {"schema": {"type": "object"}}}}}}}


ERROR = {"description": "rejected; nothing changed", "content": {"application/json": {
    "schema": {"type": "object", "required": ["error"],
               "properties": {"error": {"type": "string"}}}}}}
OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "hclab controller", "version": "1"},
    "paths": {**{f"/v1/{name}": _resource_doc(name) for name in RESOURCES},
              "/v1/openapi.json": _resource_doc("openapi")},
}
OPENAPI["paths"]["/v1/strategy"]["put"] = {
    "summary": "switch the routing strategy (paths change at run time)",
    "operationId": "put_strategy",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "measured_delays": {"type": "boolean"}}}}}},
    "responses": {"200": {"description": "the new strategy", "content": {
        "application/json": {"schema": {"type": "object"}}}}, "400": ERROR},
}
OPENAPI["paths"]["/v1/endpoints"]["put"] = {
    "summary": "serve a service by these hosts, in this order (a promotion moves the write "
               "address)",
    "operationId": "put_endpoints",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["service", "endpoints"], "additionalProperties": False,
        "properties": {"service": {"type": "string"},
                       "endpoints": {"type": "array", "items": {"type": "string"}}}}}}},
    "responses": {"200": {"description": "the endpoints", "content": {
        "application/json": {"schema": {"type": "object"}}}}, "400": ERROR},
}


class _View:
    """GET of one resource."""

    def __init__(self, backend: Backend, name: str):
        self.backend, self.name = backend, name

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.backend.view(self.name)


class _Strategy(_View):
    """GET, and PUT {"name": ...[, "measured_delays": ...]}: the current strategy stays on
    any error."""

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _json_object(req)
        name, measured = body.get("name"), body.get("measured_delays")
        if not isinstance(name, str) or set(body) - {"name", "measured_delays"}:
            raise falcon.HTTPBadRequest(description='body must be a JSON object {"name": '
                                                    '"<strategy>"[, "measured_delays": true|false]}')
        if measured is not None and not isinstance(measured, bool):
            raise falcon.HTTPBadRequest(description="measured_delays must be true or false")
        try:
            resp.media = self.backend.set_strategy(name, measured)
        except ValueError as exc:
            raise falcon.HTTPBadRequest(description=str(exc)) from None


class _Endpoints(_View):
    """GET, and PUT {"service": ..., "endpoints": [...]}: nothing changes on any error."""

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _json_object(req)
        service, hosts = body.get("service"), body.get("endpoints")
        if not isinstance(service, str) or not isinstance(hosts, list) \
                or not all(isinstance(h, str) for h in hosts) \
                or set(body) - {"service", "endpoints"}:
            raise falcon.HTTPBadRequest(description='body must be a JSON object {"service": '
                                                    '"<name>", "endpoints": ["<host>", ...]}')
        try:
            resp.media = self.backend.set_endpoints(service, hosts)
        except ValueError as exc:
            raise falcon.HTTPBadRequest(description=str(exc)) from None


class _OpenApi:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = OPENAPI


def _json_object(req: falcon.Request) -> dict:
    """The request's body as a JSON object, or a 400 that names what is wrong."""
    length = req.content_length
    if not length or length > MAX_BODY:
        raise falcon.HTTPBadRequest(description=f"a JSON body of 1 to {MAX_BODY} bytes is required")
    raw = req.bounded_stream.read(length)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested beyond reason
        raise falcon.HTTPBadRequest(
            description=f"body is not valid JSON: {str(exc)[:200] or type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(description="body must be a JSON object")
    return body


def _error_body(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Every error as {"error": "..."} (Falcon's own errors included: 404, 405, 400)."""
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"error": exc.description or exc.title})


class _Timing:
    """Adds up the CPU time the API's threads spend on requests (the controller leaves it out
    of its own load: controllers.app)."""

    def __init__(self):
        self.cpu_s = 0.0
        self._lock = threading.Lock()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.cpu0 = time.thread_time()

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        with self._lock:
            self.cpu_s += time.thread_time() - getattr(req.context, "cpu0", time.thread_time())


def make_app(backend: Backend) -> tuple[falcon.App, _Timing]:
    timing = _Timing()
    app = falcon.App(middleware=[timing], cors_enable=False)
    app.set_error_serializer(_error_body)
    app.req_options.strip_url_path_trailing_slash = True
    for name in RESOURCES:
        resource = {"strategy": _Strategy, "endpoints": _Endpoints}.get(name, _View)
        app.add_route(f"/v1/{name}", resource(backend, name))
    app.add_route("/v1/openapi.json", _OpenApi())
    return app, timing


class ApiServer:
    """The API served in a daemon thread; `shutdown()` stops it."""

    def __init__(self, backend: Backend, host: str, port: int, timeout: float = IDLE_TIMEOUT_S):
        app, self._timing = make_app(backend)
        self._server = waitress.create_server(
            app, host=host, port=port, threads=THREADS, channel_timeout=timeout,
            cleanup_interval=1, max_request_body_size=SERVER_MAX_BODY, ident="hclab-controller", expose_tracebacks=False)
        self.server_address = (host, self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="rest", daemon=True)
        self._thread.start()

    @property
    def cpu_s(self) -> float:
        return self._timing.cpu_s

    def shutdown(self) -> None:
        self._server.close()
        self._server.task_dispatcher.shutdown()


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8080,
          timeout: float = IDLE_TIMEOUT_S) -> ApiServer:
    """Start serving in a daemon thread; call `.shutdown()` on the result to stop."""
    return ApiServer(backend, host, port, timeout)
