"""A calibration is kept per fingerprint and reused only while nothing it depends on changed."""

from __future__ import annotations

import dataclasses

import pytest

from lab import calibration_cache
from lab.calibration import Calibration, LinkCalibration
from lab.capabilities import Capabilities
from tests.helpers import DEFAULT_TOPOLOGY
from topologies.loader import load, parse


def caps(kernel: str = "6.1.0") -> Capabilities:
    return Capabilities(netem=False, ovs_kernel=False, ovs_running=True, ovs="3.1.0",
                        mininet="2.3.0", postgres="15", os_ken="4.2.2", kernel=kernel)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(calibration_cache.CACHE_DIR_ENV, str(tmp_path))
    return tmp_path


def test_a_saved_calibration_comes_back_marked_reused(cache):
    measured = Calibration(access_rtt_ms=0.05, access_n=30, measured_at=1.0, links=[
        LinkCalibration(1, "dc1-op1a", 0.2, 0.11, 0.09, 0.0, 30, 0.5)], span_trim_ms=0.02)
    calibration_cache.save("abc", measured)
    kept = calibration_cache.load("abc")
    assert kept.reused and not measured.reused
    assert dataclasses.replace(kept, reused=False) == measured
    assert kept.holds == {1: 0.09}
    assert calibration_cache.load("other") is None
    (cache / "bad.json").write_text("{not json")
    assert calibration_cache.load("bad") is None


def test_the_fingerprint_changes_with_what_the_calibration_depends_on():
    topo = load(DEFAULT_TOPOLOGY)
    key = calibration_cache.fingerprint(topo, caps(), "userspace")
    assert key == calibration_cache.fingerprint(load(DEFAULT_TOPOLOGY), caps(), "userspace")
    assert key != calibration_cache.fingerprint(topo, caps("6.2.0"), "userspace")
    assert key != calibration_cache.fingerprint(topo, caps(), "netem")
    data = __import__("yaml").safe_load(DEFAULT_TOPOLOGY.read_text())
    data["links"][0]["delay_ms"] = 7.5
    assert key != calibration_cache.fingerprint(parse(data, str(DEFAULT_TOPOLOGY)), caps(),
                                                "userspace")
