"""The control API without a lab: validation of every body (property-based), errors as JSON
with the right status, and LinkControl's bookkeeping of cut links and sites over a fake
emulation (the commands it would run are recorded, not run)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lab.linkcontrol as linkcontrol
from dashboard.live import Live
from dashboard.server import create_app
from lab.emulation import EmulatedLink
from lab.linkcontrol import RATE_MBIT, LinkControl, interface_bytes
from tests.helpers import DEFAULT_TOPOLOGY
from topologies.loader import load
from topologies.model import MAX_DELAY_MS

TOPOLOGY = load(DEFAULT_TOPOLOGY)
LINK = "dc1-lz1a"
BOUNDS = {"delay_ms": (0, MAX_DELAY_MS), "jitter_ms": (0, MAX_DELAY_MS), "loss_pct": (0, 100),
          "rate_mbit": RATE_MBIT}


class FakeEmulation:
    """The emulation's links, and the parameters set on them, without tc or a delay line."""

    def __init__(self):
        self.links = [EmulatedLink(k, intf1=f"{k.a}-p", intf2=f"{k.b}-p", ns1=100 + k.index,
                                   ns2=None) for k in TOPOLOGY.links]
        self.calls = []

    def set_params(self, index, delay_ms=None, jitter_ms=None, loss_pct=None,
                   bandwidth_mbit=None, rate=False):
        self.calls.append((index, delay_ms, jitter_ms, loss_pct, bandwidth_mbit))
        link = next(link for link in self.links if link.index == index)
        if delay_ms is not None:
            link.delay_ms = delay_ms
        link.jitter_ms = link.jitter_ms if jitter_ms is None else jitter_ms
        link.loss_pct = link.loss_pct if loss_pct is None else loss_pct
        if rate:
            link.bandwidth_mbit = bandwidth_mbit


@pytest.fixture
def commands(monkeypatch):
    """The `ip` commands LinkControl would run: (namespace, argv)."""
    ran = []
    monkeypatch.setattr(linkcontrol, "run_batch", lambda program, cmds: ran.extend(cmds))
    return ran


class FakeLab(SimpleNamespace):
    def __repr__(self) -> str:
        return "FakeLab(default topology)"


@pytest.fixture
def lab():
    return FakeLab(topology=TOPOLOGY, emulation=FakeEmulation(), controller=None)


@pytest.fixture
def api(lab, commands):
    control = LinkControl(lab)
    with TestClient(create_app(control, Live(lab, control), dashboard=False)) as client:
        yield client


def valid(body) -> bool:
    """What the API must accept: an object of known fields, numbers in range, `up` a
    boolean, at least one field given."""
    if not isinstance(body, dict) or not set(body) <= set(BOUNDS) | {"up"}:
        return False
    for key, value in body.items():
        if value is None:
            continue
        if key == "up":
            if not isinstance(value, bool):
                return False
        elif (isinstance(value, bool) or not isinstance(value, (int, float))
              or not math.isfinite(value) or not BOUNDS[key][0] <= value <= BOUNDS[key][1]):
            return False
    return any(v is not None for v in body.values())


FIELDS = st.sampled_from(list(BOUNDS) + ["up", "delay", "Loss_pct", ""])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6),
                   st.floats(-1e5, 2e5), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=5), st.lists(st.integers(), max_size=2))
BODIES = st.one_of(st.dictionaries(FIELDS, VALUES, max_size=5),
                   st.dictionaries(st.sampled_from(list(BOUNDS) + ["up"]), VALUES, min_size=1),
                   st.lists(VALUES, max_size=3), VALUES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_a_link_change_is_applied_exactly_when_its_body_is_valid(api, lab, body):
    before = [(link.delay_ms, link.jitter_ms, link.loss_pct, link.bandwidth_mbit, link.hold_ms) for link in lab.emulation.links]
    # json.dumps writes NaN and Infinity as the server's JSON parser reads them
    resp = api.put(f"/v1/links/{LINK}", content=json.dumps(body),
                   headers={"Content-Type": "application/json"})
    if not valid(body):
        assert resp.status_code == 400, (body, resp.text)
        assert isinstance(resp.json()["error"], str) and resp.json()["error"]
        assert [(link.delay_ms, link.jitter_ms, link.loss_pct, link.bandwidth_mbit, link.hold_ms) for link in lab.emulation.links] == before
        return
    assert resp.status_code == 200, (body, resp.text)
    link = resp.json()["link"]
    for key in BOUNDS:
        if body.get(key) is not None:
            assert link[key] == pytest.approx(body[key]), key
    if body.get("up") is not None:
        assert link["up"] is body["up"]


def test_a_changed_delay_moves_the_calibrated_hold_with_it(api, lab):
    emulated = next(link for link in lab.emulation.links if link.name == LINK)
    emulated.hold_ms = emulated.delay_ms - 0.25  # what calibration left
    assert api.put(f"/v1/links/{LINK}", json={"delay_ms": 20}).status_code == 200
    assert emulated.applied_hold_ms == pytest.approx(19.75)
    assert lab.emulation.calls[-1][1] == 20


def test_down_and_up_set_both_switch_ports_once(api, commands):
    assert api.put(f"/v1/links/{LINK}", json={"up": False}).json()["link"]["up"] is False
    link = next(k for k in TOPOLOGY.links if k.name == LINK)
    assert commands == [(100 + link.index, ["ip", "link", "set", "dev", "dc1-p", "down"]),
                        (None, ["ip", "link", "set", "dev", "lz1a-p", "down"])]
    api.put(f"/v1/links/{LINK}", json={"up": False})
    assert len(commands) == 2, "a link already down is not set down again"
    assert api.put(f"/v1/links/{LINK}", json={"up": True}).json()["link"]["up"] is True
    assert [c[1][-1] for c in commands[2:]] == ["up", "up"]


def test_restoring_a_site_leaves_links_that_were_cut_for_another_reason_down(api):
    api.put(f"/v1/links/{LINK}", json={"up": False})
    site = api.put("/v1/sites/lz1a", json={"cut": True}).json()["site"]
    assert site["cut"] and not any(link["up"] for link in site["links"])
    api.put("/v1/sites/dc1", json={"cut": True})
    restored = api.put("/v1/sites/lz1a", json={"cut": False}).json()["site"]
    state = {link["name"]: link["up"] for link in restored["links"]}
    assert state == {"dc1-lz1a": False, "lz1a-rga": True, "clbos-lz1a": True}
    api.put("/v1/sites/dc1", json={"cut": False})
    assert {link["name"]: link["up"] for link in api.get("/v1/links").json()}[LINK] is False


@pytest.mark.parametrize("method, path, status", [
    ("POST", f"/v1/links/{LINK}", 405), ("DELETE", f"/v1/links/{LINK}", 405),
    ("PATCH", "/v1/sites/dc1", 405), ("POST", "/v1/strategy", 405),
    ("PUT", "/v1/links/nosuch", 404), ("PUT", "/v1/sites/nosuch", 404),
    ("GET", "/v1/nothing", 404), ("GET", "/v1/state", 503), ("GET", "/v1/strategy", 503),
    ("GET", "/v1/stream", 503), ("GET", "/", 404),
])
def test_every_error_is_json_with_its_status(api, method, path, status):
    body = {"up": True} if "links" in path else {"cut": True}
    resp = api.request(method, path, json=body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b'{"cut": "yes"}', b'{"cut": 1}',
                                 b'{"cut": true, "silent": true}', b"[" * 10000 + b"]" * 10000])
def test_a_malformed_site_body_is_a_400_and_changes_nothing(api, commands, raw):
    resp = api.put("/v1/sites/dc1", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]
    assert commands == []


def test_the_openapi_document_describes_the_control_routes(api):
    doc = api.get("/v1/openapi.json").json()
    assert set(doc["paths"]["/v1/links/{name}"]) == {"put"}
    schema = doc["components"]["schemas"]["LinkBody"]
    assert schema["additionalProperties"] is False
    assert {"delay_ms", "jitter_ms", "loss_pct", "rate_mbit", "up"} == set(schema["properties"])


def test_interface_counters_come_from_the_namespace_of_a_process():
    counters = interface_bytes(None)
    assert "lo" in counters and counters["lo"] >= 0
    assert interface_bytes(2**22 + 7) == {}  # no such process: nothing, not an error


def test_the_controllers_link_and_failover_lines_become_events_and_nothing_else(tmp_path):
    log = tmp_path / "controller.log"
    log.write_text("2026-12-04 16:00:00,000 HybridLabApp INFO strategy latency, REST on x:1\n")
    controller = SimpleNamespace(rest_url="http://127.0.0.1:9", log_path=log)
    lab = FakeLab(topology=TOPOLOGY, emulation=FakeEmulation(), controller=controller)
    live = Live(lab, LinkControl(lab))
    with log.open("a") as out:  # what the controller writes after the dashboard started
        out.write("2026-12-04 16:00:01,250 HybridLabApp INFO switch clden port 3 down\n"
                  "2026-12-04 16:00:01,300 HybridLabApp INFO sent 12 flow mods\n"
                  "2026-12-04 16:00:02,029 HybridLabApp WARNING link clden-rgb silent: down\n"
                  "2026-12-04 16:00:03,000 HybridLabApp INFO strategy hops\n"
                  "2026-12-04 16:00:04,000 HybridLabApp INFO switch rgb port")  # still being written
    live._read_controller_log()
    assert [(e.kind, e.text) for e in live.events] == [
        ("port", "switch clden port 3 down"), ("probe", "link clden-rgb silent: down"),
        ("strategy", "strategy hops")]
    assert live.events[1].t - live.events[0].t == pytest.approx(0.779)
    with log.open("a") as out:
        out.write(" 8 up\n")
    live._read_controller_log()
    assert live.events[-1].text == "switch rgb port 8 up"
