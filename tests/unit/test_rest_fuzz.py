"""The controller's REST API under fuzzing, driven by its own OpenAPI document: no answer
>= 500, no connection closed without an answer, 405 for methods a resource does not take,
JSON on every error, the state unchanged by any rejected request, stalled clients timed out
without holding the API's threads."""

from __future__ import annotations

import http.client
import json
import socket
import string
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.rest import OPENAPI, THREADS, serve
from tests.helpers import FakeRestBackend

EXAMPLES = 1500
METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"]
URL_CHARS = string.ascii_letters + string.digits + "-._~/%?=&"


@pytest.fixture(scope="module")
def api():
    backend = FakeRestBackend()
    server = serve(backend, "127.0.0.1", 0, timeout=1.0)
    yield backend, server.server_address[1]
    server.shutdown()


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()  # a connection closed without an answer raises here
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)
bodies = st.one_of(
    st.none(),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda name: json.dumps({"name": name}).encode(),
              st.sampled_from(["hops", "latency", "fastest", ""]) | st.text(max_size=10)),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.binary(max_size=200))
paths = st.sampled_from(list(OPENAPI["paths"])) | st.text(URL_CHARS, max_size=30).map(
    lambda tail: "/" + tail) | st.sampled_from(list(OPENAPI["paths"])).flatmap(
    lambda p: st.text(URL_CHARS, max_size=10).map(lambda tail: p + tail))


def test_random_requests_never_get_a_5xx_and_change_nothing_when_rejected(api):
    backend, port = api
    seen = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(METHODS), path=paths, body=bodies,
           content_type=st.sampled_from(["application/json", "text/plain", None]))
    def one(method, path, body, content_type):
        before = backend.strategy
        headers = {"Content-Type": content_type} if content_type else {}
        status, data, _ = call(port, method, path, body, headers)
        seen[status] += 1
        assert status < 500, (method, path, body, data)
        if method != "HEAD" and data:
            answer = json.loads(data)
            if status >= 400:
                assert isinstance(answer.get("error"), str), answer
        if status >= 400 or not (method == "PUT" and path.rstrip("/") == "/v1/strategy"):
            assert backend.strategy == before, (method, path, body)

    one()
    print(f"\nREST fuzzing: {sum(seen.values())} requests, responses by status: "
          f"{dict(sorted(seen.items()))}")
    assert sum(seen.values()) == EXAMPLES and not any(s >= 500 for s in seen)
    assert seen[200] and seen[400] and seen[404] and seen[405]


def test_a_resource_answers_405_with_allow_for_a_method_it_does_not_take(api):
    backend, port = api
    for method in ("POST", "DELETE", "PATCH", "HEAD"):
        status, data, headers = call(port, method, "/v1/strategy", b'{"name": "hops"}',
                                     {"Content-Type": "application/json"})
        assert status == 405 and "PUT" in headers["Allow"], (method, status, headers)
        if method != "HEAD":
            assert "error" in json.loads(data)
    assert backend.strategy == "latency"
    assert call(port, "PUT", "/v1/paths", b"{}")[0] == 405


def test_deeply_nested_json_is_a_400_not_a_dropped_connection(api):
    backend, port = api
    body = b"[" * 100_000 + b"]" * 100_000
    status, data, _ = call(port, "PUT", "/v1/strategy", body[:60_000],
                           {"Content-Type": "application/json"})
    assert status == 400 and "error" in json.loads(data)
    status, data, _ = call(port, "PUT", "/v1/strategy", body,
                           {"Content-Type": "application/json"})
    assert status == 400 and "error" in json.loads(data)  # over the API's size limit


def test_stalled_clients_are_timed_out_and_hold_no_thread(api):
    backend, port = api
    stalled = [socket.create_connection(("127.0.0.1", port)) for _ in range(3 * THREADS)]
    try:
        for sock in stalled:  # half a request each, then nothing
            sock.sendall(b"PUT /v1/strategy HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert call(port, "GET", "/v1/strategy")[0] == 200  # served meanwhile
        deadline = time.monotonic() + 15
        for sock in stalled:  # each is closed by the server (idle timeout of 1 s here)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1024) is not None
    finally:
        for sock in stalled:
            sock.close()
    assert backend.strategy == "latency"


def test_the_openapi_document_lists_every_route(api):
    _, port = api
    status, data, _ = call(port, "GET", "/v1/openapi.json")
    doc = json.loads(data)
    assert status == 200 and doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/v1/topology", "/v1/strategy", "/v1/paths", "/v1/links",
                                 "/v1/endpoints", "/v1/openapi.json"}
    assert "put" in doc["paths"]["/v1/strategy"]
