"""Link parameters: Mininet's names, read strictly."""

from __future__ import annotations

import pytest

from lab.links import LabLink, LinkParamError, LinkParams
from topologies.mininet_topo import HybridTopo
from tests.helpers import DEFAULT_TOPOLOGY


def test_reads_mininet_names():
    p = LinkParams.from_mininet({"delay": "7.5ms", "jitter": "250us", "loss": 1.5, "bw": 500,
                                 "max_queue_size": 200})
    assert p == LinkParams(delay_ms=7.5, jitter_ms=0.25, loss_pct=1.5, rate_mbit=500,
                           queue_packets=200)


def test_defaults_match_netem():
    assert LinkParams.from_mininet({}) == LinkParams(0.0, 0.0, 0.0, None, 1000)


@pytest.mark.parametrize("params, words", [
    ({"dealy": "5ms"}, "unknown link parameter 'dealy'"),
    ({"delay": "5 parsecs"}, "cannot read"),
    ({"loss": 101}, "'loss' must be between 0 and 100"),
    ({"delay": -1}, "'delay' must be between"),
    ({"bw": "fast"}, "'bw' must be a number"),
])
def test_bad_parameters_are_errors(params, words):
    with pytest.raises(LinkParamError, match=words):
        LinkParams.from_mininet(params)


def test_lab_link_rejects_a_misspelt_parameter_before_creating_anything():
    # Mininet's own Intf.config would drop 'dealy' silently.
    with pytest.raises(LinkParamError, match="unknown link parameter 'dealy'"):
        LabLink(None, None, dealy="5ms")


def test_topo_carries_each_model_delay_on_its_link():
    topo = HybridTopo(DEFAULT_TOPOLOGY)
    info = topo.linkInfo("hlrga", "hlrgb")
    assert LinkParams.from_mininet({k: info[k] for k in ("delay", "max_queue_size")}).delay_ms == 31.2
    service = topo.linkInfo("hlop1a", "hlrga")
    assert service["bw"] == 500
    assert len(topo.switches()) == 19 and len(topo.hosts()) == 21
