"""Links: Mininet only makes the interfaces; the emulation comes from the model, strictly."""

from __future__ import annotations

import pytest

from lab.links import LabLink, LinkParamError
from topologies.mininet_topo import HybridTopo
from tests.helpers import DEFAULT_TOPOLOGY


@pytest.mark.parametrize("params, words", [
    ({"dealy": "5ms"}, "unknown link parameter 'dealy'"),
    # The lab emulates from the model: a TCLink parameter given to a lab link is an error.
    ({"delay": "5ms"}, "unknown link parameter 'delay'"),
    ({"bw": 100}, "unknown link parameter 'bw'"),
])
def test_lab_link_rejects_parameters_before_creating_anything(params, words):
    # Mininet's own Intf.config would drop them silently.
    with pytest.raises(LinkParamError, match=words):
        LabLink(None, None, **params)


def test_the_lab_topo_numbers_its_links_and_carries_no_emulation():
    topo = HybridTopo(DEFAULT_TOPOLOGY, lab_links=True)
    info = topo.linkInfo("hlrga", "hlrgb")
    assert "delay" not in info and info["link_index"] > 0
    assert len(topo.switches()) == 19 and len(topo.hosts()) == 21


def test_plain_mininet_gets_each_model_delay_as_tclink_parameters():
    topo = HybridTopo(DEFAULT_TOPOLOGY)
    assert topo.linkInfo("hlrga", "hlrgb")["delay"] == "31.2ms"
    service = topo.linkInfo("hlop1a", "hlrga")
    assert service["bw"] == 500 and "link_index" not in service
