"""Calibration: measure the switching fabric's own latency per link and take it out of the holds.

Open vSwitch's userspace datapath and the delay line cost time of their own (about 0.1 ms per
direction per switch-to-switch hop here, more than an Outpost's whole delay). At bring-up the
lab measures each link's round trip between the hosts at its two ends with ICMP pinned to that
link, subtracts the round trip between two hosts on one switch (the access part no link can
absorb) and the link's current hold, and sets each link's hold to its configured delay minus
the base it found, never below zero; then measures and corrects once more at the new holds.
Last, it probes every site-to-site path: a switch that passes traffic from link to link costs
a little more than the link measurements show, so the path error grows with the number of
links; the slope of that growth (least squares) is taken off every link as well. What could
not be removed is reported per link, with the per-hop slope and the constant that remains.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from dataclasses import asdict, dataclass, field

from lab.icmpprobe import measure
from lab.runstate import run_dir

PIN_COOKIE = 0x4C50_0000_0000_0000  # "LP": the lab's pinned probe flows
PIN_PRIORITY = 1000
# Time between two probes (of any pair): light load, so that calibration and verification
# see the fabric as a light workload does (about 1000 probes a second in all).
PROBE_GAP_MS = 1.0


@dataclass
class LinkCalibration:
    index: int
    name: str
    delay_ms: float
    base_ms: float  # the fabric's one-way latency on this link, measured
    hold_ms: float  # what the emulator holds: delay - base, at least 0
    uncompensated_ms: float  # base the hold could not absorb (delay < base)
    n: int
    rtt_p50_ms: float


@dataclass
class Calibration:
    access_rtt_ms: float  # host -> switch -> host on one site, not absorbed by any link
    access_n: int
    links: list[LinkCalibration] = field(default_factory=list)
    per_hop_rtt_ms: float = 0.0  # path error per link, taken off every link's hold
    path_residual_rtt_ms: float = 0.0  # what the path fit leaves at zero hops
    paths_probed: int = 0

    @property
    def holds(self) -> dict[int, float]:
        return {link.index: link.hold_ms for link in self.links}

    def as_dict(self) -> dict:
        return asdict(self)


def representative(topology, site: str) -> str | None:
    hosts = topology.hosts_at(site)
    return hosts[0].name if hosts else None


def site_pairs(topology) -> list[tuple[dict, str, str]]:
    """Each lowest-latency path between two sites with hosts, and the hosts that probe it."""
    return [(p, representative(topology, p["src"]), representative(topology, p["dst"]))
            for p in topology.lowest_latency_paths()
            if representative(topology, p["src"]) and representative(topology, p["dst"])]


def pin_flows(lab, links) -> dict[str, list[str]]:
    """Flows sending ICMP between the hosts at a link's two ends over that very link."""
    topo = lab.topology
    flows: dict[str, list[str]] = {}
    for link in links:
        ends = [(link.a, link.b), (link.b, link.a)]
        for here, there in ends:
            src, dst = representative(topo, here), representative(topo, there)
            flows.setdefault(topo.sites[here].switch, []).append(
                f"cookie={PIN_COOKIE:#x},table=0,priority={PIN_PRIORITY},icmp,"
                f"nw_src={topo.hosts[src].ip},nw_dst={topo.hosts[dst].ip},"
                f"actions=output:{topo.port_to(here, there)}")
    return flows


@contextlib.contextmanager
def pinned(lab, links):
    """Within the block, probes between each link's end hosts take that link."""
    flows = pin_flows(lab, links)
    lab.ofctl("add-flows", flows)
    try:
        yield
    finally:
        lab.ofctl("del-flows", {switch: [f"cookie={PIN_COOKIE:#x}/-1"] for switch in flows})


def measurable_links(topology) -> list:
    return [link for link in topology.links
            if representative(topology, link.a) and representative(topology, link.b)]


def measure_links(lab, links, count: int, warmup: int = 3,
                  gap_ms: float = PROBE_GAP_MS) -> dict[int, tuple[list[float], int]]:
    """RTT samples per link index, with probes pinned to each link."""
    topo = lab.topology
    pairs = [(str(link.index), representative(topo, link.a), representative(topo, link.b))
             for link in links]
    with pinned(lab, links):
        result = measure(lab, pairs, count=count, warmup=warmup, gap_ms=gap_ms)
    return {int(key): value for key, value in result.items()}


def access_pair(topology) -> tuple[str, str] | None:
    """Two hosts on one switch, if the topology has any."""
    for site in topology.sites:
        hosts = topology.hosts_at(site)
        if len(hosts) >= 2:
            return hosts[0].name, hosts[1].name
    return None


def calibrate(lab, samples: int = 30, rounds: int = 2) -> Calibration:
    """Measure each link at its current hold and set hold = delay - base; repeat `rounds` times.

    The first round starts from holds equal to the configured delays; the second measures
    again at the corrected holds, so each base is taken at the hold the link really runs with
    (the delay line's wake-up hides behind a hold, and OVS's cost varies a little with load).
    """
    topo = lab.topology
    pair = access_pair(topo)
    access, access_n = 0.0, 0
    if pair:
        rtts, _ = measure(lab, [("access", *pair)], count=samples, warmup=5,
                          gap_ms=PROBE_GAP_MS)["access"]
        if rtts:
            access, access_n = statistics.median(rtts), len(rtts)
    links = measurable_links(topo)
    holds = {link.index: link.delay_ms for link in topo.links}
    result = Calibration(access_rtt_ms=round(access, 4), access_n=access_n)
    for _ in range(rounds):
        lab.emulation.set_holds(holds)
        rtts = measure_links(lab, links, count=samples)
        measured = {i: statistics.median(r) for i, (r, _) in rtts.items() if r}
        bases = {i: max(0.0, (rtt - access) / 2 - holds[i]) for i, rtt in measured.items()}
        fallback = statistics.median(bases.values()) if bases else 0.0
        result.links = []
        for link in topo.links:
            base = bases.get(link.index, fallback)
            holds[link.index] = max(0.0, link.delay_ms - base)
            result.links.append(LinkCalibration(
                index=link.index, name=link.name, delay_ms=link.delay_ms,
                base_ms=round(base, 4), hold_ms=round(holds[link.index], 4),
                uncompensated_ms=round(max(0.0, base - link.delay_ms), 4),
                n=len(rtts.get(link.index, ([], 0))[0]),
                rtt_p50_ms=round(measured.get(link.index, 0.0), 4)))
    if lab.strategy == "latency":  # the paths probed are the lowest-latency ones
        _take_off_per_hop_cost(lab, result, holds, samples=max(5, samples // 3))
    (run_dir() / "calibration.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result


def _take_off_per_hop_cost(lab, result: Calibration, holds: dict[int, float],
                           samples: int) -> None:
    """Fit path error = a + b x links over every site pair; take b/2 off each link's hold."""
    pairs = site_pairs(lab.topology)
    lab.emulation.set_holds(holds)
    rtts = measure(lab, [(f"{p['src']}>{p['dst']}", a, b) for p, a, b in pairs],
                   count=samples, warmup=2, gap_ms=PROBE_GAP_MS)
    points = [(len(p["path"]) - 1, statistics.median(r) - p["expected_rtt_ms"])
              for (p, _, _), (r, _) in zip(pairs, rtts.values()) if r]
    if len(points) < 3 or len({k for k, _ in points}) < 2:
        return
    slope, intercept = statistics.linear_regression([k for k, _ in points],
                                                    [e for _, e in points])
    result.paths_probed = len(points)
    result.path_residual_rtt_ms = round(intercept, 4)
    if slope <= 0:
        return
    result.per_hop_rtt_ms = round(slope, 4)
    for link in result.links:
        holds[link.index] = max(0.0, holds[link.index] - slope / 2)
        link.hold_ms = round(holds[link.index], 4)
        link.base_ms = round(link.base_ms + slope / 2, 4)
        link.uncompensated_ms = round(max(0.0, link.base_ms - link.delay_ms), 4)
