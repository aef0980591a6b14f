"""The controller's JSON API over HTTP, on 127.0.0.1 by default (standard library only).

os-ken 4 ships no WSGI framework, and the API is seven routes, so a `ThreadingHTTPServer`
in its own thread serves it. Routes:
  GET /v1/topology | /v1/strategy | /v1/paths | /v1/links | /v1/endpoints
  PUT /v1/strategy {"name": "<strategy>"}
  PUT /v1/endpoints {"service": "<name>", "endpoints": ["<host>", ...]}: the hosts that serve
      a service, in order (a promotion moves the write address to the new primary)
Errors are JSON `{"error": "..."}` with 400 (bad request, unknown strategy: the current one
stays), 404 (no such route) or 405 (wrong method).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

RESOURCES = ("topology", "strategy", "paths", "links", "endpoints")
MAX_BODY = 64 * 1024


class Backend(Protocol):
    def view(self, resource: str) -> dict:
        """One of RESOURCES as JSON-ready data."""

    def set_strategy(self, name: str) -> dict:
        """Switch strategy (raises ValueError for an unknown one); returns the new strategy view."""

    def set_endpoints(self, service: str, hosts: list[str]) -> dict:
        """Serve a service by these hosts in this order (ValueError if not among its own);
        returns the endpoints view."""


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _resource(path: str) -> str:
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) != 2 or parts[0] != "v1" or parts[1] not in RESOURCES:
        raise ApiError(404, f"no such resource {path!r} (try /v1/{{{','.join(RESOURCES)}}})")
    return parts[1]


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hclab-controller/1"

        def log_message(self, format: str, *args) -> None:  # keep the controller log quiet
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body, indent=1).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _run(self, method: str) -> None:
            try:
                self._reply(200, self._dispatch(method))
            except ApiError as exc:
                self._reply(exc.status, {"error": str(exc)})

        def _dispatch(self, method: str) -> dict:
            resource = _resource(self.path)
            if method == "GET":
                return backend.view(resource)
            if resource == "endpoints":
                return self._set_endpoints()
            if resource != "strategy":
                raise ApiError(405, f"only GET is allowed on /v1/{resource}")
            name = self._json_body().get("name")
            if not isinstance(name, str):
                raise ApiError(400, 'body must be a JSON object {"name": "<strategy>"}')
            try:
                return backend.set_strategy(name)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None

        def _set_endpoints(self) -> dict:
            body = self._json_body()
            service, hosts = body.get("service"), body.get("endpoints")
            if not isinstance(service, str) or not isinstance(hosts, list) \
                    or not all(isinstance(h, str) for h in hosts):
                raise ApiError(400, 'body must be a JSON object {"service": "<name>", '
                                    '"endpoints": ["<host>", ...]}')
            try:
                return backend.set_endpoints(service, hosts)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None

        def _json_body(self) -> dict:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise ApiError(400, "bad Content-Length") from None
            if not 0 < length <= MAX_BODY:
                raise ApiError(400, f"a JSON body of 1 to {MAX_BODY} bytes is required")
            try:
                body = json.loads(self.rfile.read(length))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ApiError(400, f"body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise ApiError(400, "body must be a JSON object")
            return body

        def do_GET(self) -> None:
            self._run("GET")

        def do_PUT(self) -> None:
            self._run("PUT")

        def do_POST(self) -> None:
            self._run("POST")

        def do_DELETE(self) -> None:
            self._run("DELETE")

    return Handler


class ApiServer(ThreadingHTTPServer):
    """One thread per request; `cpu_s` adds up the CPU time those threads used."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        super().__init__(address, handler)
        self.cpu_s = 0.0
        self._cpu_lock = threading.Lock()

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._cpu_lock:
                self.cpu_s += time.thread_time()


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8080) -> ApiServer:
    """Start serving in a daemon thread; call `.shutdown()` on the result to stop."""
    server = ApiServer((host, port), _handler(backend))
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
