"""Link emulation inside a running lab, on each backend the kernel supports.

A four-site chain with links of different delays, a rate limit, loss and jitter. Tolerances
hold on a noisy 2-core machine: medians, not single samples; loss within a binomial bound.
The netem backend needs sch_netem (it runs in the real-kernel VM, tests/vm).
"""

from __future__ import annotations

import math
import statistics

import pytest
import yaml

from lab.calibration import measure_links
from lab.capabilities import netem_available
from controllers.forwarding import make_lab
from tests.helpers import iperf3
from tests.integration.conftest import NOTHING, lab_leftovers
from topologies.loader import load

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet]

CHAIN = {
    "name": "chain",
    "link_classes": {"wan": {"inflation": 1.0, "equipment_ms": 0.0}},
    "sites": [{"name": n, "kind": "clinic", "lat": 40.0, "lon": -70.0 - i}
              for i, n in enumerate(["sa", "sb", "sc", "sd", "se"])],
    "links": [
        {"ends": ["sa", "sb"], "class": "wan", "delay_ms": 1.0, "source": "test"},
        {"ends": ["sb", "sc"], "class": "wan", "delay_ms": 5.0, "source": "test",
         "bandwidth_mbit": 40},
        {"ends": ["sc", "sd"], "class": "wan", "delay_ms": 20.0, "source": "test",
         "loss_pct": 10},
        {"ends": ["sd", "se"], "class": "wan", "delay_ms": 10.0, "source": "test",
         "jitter_ms": 2.0},
    ],
    "hosts": [{"name": f"h{n[1]}", "site": n, "role": "client"}
              for n in ["sa", "sb", "sc", "sd", "se"]],
}
# Median RTT within this of 2 x delay (userspace: the fabric's variation after calibration).
TOLERANCE_MS = {"userspace": 0.3, "netem": 0.3}


def backends():
    yield "userspace"
    yield pytest.param("netem", marks=pytest.mark.skipif(
        not netem_available(), reason="kernel has no sch_netem"))


@pytest.fixture(scope="module", params=list(backends()))
def chain_lab(request, tmp_path_factory, no_lab_running):
    path = tmp_path_factory.mktemp("chain") / "chain.yaml"
    path.write_text(yaml.safe_dump(CHAIN))
    topo = load(path)
    with make_lab(topo, controller="static", links=request.param) as lab:
        yield lab
    assert lab_leftovers() == NOTHING


def link(lab, a, b):
    return lab.topology.link_between(a, b)


def test_rtt_is_twice_the_delay_for_several_delays(chain_lab):
    links = [link(chain_lab, "sa", "sb"), link(chain_lab, "sb", "sc"), link(chain_lab, "sd", "se")]
    # 200 probes: sd-se's jitter (+-2 ms each way) leaves its median uncertain by about
    # 0.15 ms (0.26 ms at 60 probes, too close to the tolerance).
    rtts = measure_links(chain_lab, links, count=200)
    tolerance = TOLERANCE_MS[chain_lab.backend]
    for l in links:
        samples, _ = rtts[l.index]
        median = statistics.median(samples)
        assert abs(median - 2 * l.delay_ms) <= tolerance + 0.02 * 2 * l.delay_ms, \
            f"{l.name}: median {median:.3f} ms, expected {2 * l.delay_ms:.3f} ms"


def test_loss_rate_within_binomial_bound(chain_lab):
    lossy = link(chain_lab, "sc", "sd")
    n = 600
    samples, sent = measure_links(chain_lab, [lossy], count=n, warmup=0)[lossy.index]
    # A probe and its reply each cross the link: both survive with (1 - p)^2.
    p_ok = (1 - lossy.loss_pct / 100) ** 2
    bound = 4 * math.sqrt(sent * p_ok * (1 - p_ok))  # ~4 sigma: fails by chance < 1e-4
    assert abs(len(samples) - sent * p_ok) <= bound, \
        f"{len(samples)}/{sent} replies, expected {sent * p_ok:.0f} +- {bound:.0f}"


def test_jitter_has_the_configured_spread(chain_lab):
    jittery = link(chain_lab, "sd", "se")
    # Probes further apart than the jitter's range: closer ones would wait behind each other
    # (the delay line keeps each direction in order), raising the median.
    gap = 2 * jittery.jitter_ms + 1
    samples, _ = measure_links(chain_lab, [jittery], count=300, gap_ms=gap)[jittery.index]
    # Each direction uniform in delay +- j: the RTT's spread is that of a sum of two.
    expected_sd = math.sqrt(2 * (2 * jittery.jitter_ms) ** 2 / 12)
    sd = statistics.stdev(samples)
    assert 0.7 * expected_sd <= sd <= 1.5 * expected_sd, f"sd {sd:.3f}, expected {expected_sd:.3f}"
    assert abs(statistics.median(samples) - 2 * jittery.delay_ms) <= 0.5


def test_rate_limit_holds_within_ten_percent(chain_lab):
    limited = link(chain_lab, "sb", "sc")
    data = iperf3(chain_lab.host("hb"), chain_lab.host("hc"), 5302, "-t 4 -O 1")
    mbit = data["end"]["sum_received"]["bits_per_second"] / 1e6
    # Goodput is the rate less TCP/IP and Ethernet headers (~4 %).
    assert 0.9 * limited.bandwidth_mbit <= mbit <= 1.1 * limited.bandwidth_mbit, f"{mbit:.1f} Mbit/s"


def test_tcp_through_a_delayed_lossless_path(chain_lab):
    data = iperf3(chain_lab.host("ha"), chain_lab.host("hc"), 5303, "-n 4M")
    assert data["end"]["sum_sent"]["bytes"] >= 4 * 1024 * 1024
    assert data["end"]["sum_received"]["bytes"] > 0


def test_delay_line_counts_what_it_forwards_and_loses(chain_lab):
    if chain_lab.backend != "userspace":
        pytest.skip("counters belong to the userspace delay line")
    stats = chain_lab.emulation.stats()["links"]
    lossy = stats["sc-sd"]
    assert lossy["a_to_b"]["forwarded"] > 0 and lossy["a_to_b"]["lost"] > 0
    assert stats["sa-sb"]["a_to_b"]["lost"] == 0
