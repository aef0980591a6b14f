"""Calibration: measure the switching fabric's own latency per link and take it out of the holds.

Open vSwitch's userspace datapath and the delay line cost time of their own (about 0.1 ms per
direction per switch-to-switch hop here, more than an Outpost's whole delay). At bring-up the
lab measures each link's round trip between the hosts at its two ends with ICMP pinned to that
link, subtracts the round trip between two hosts on one switch (the access part no link can
absorb) and the link's current hold, and sets each link's hold to its configured delay minus
the base it found (below zero where the fabric alone is slower than the link: MIN_HOLD_MS);
then measures and corrects once more at the new holds.
Last, it probes every site-to-site path (routed by lowest latency for the while, whatever the
lab's strategy, where the lab's own controller runs). The delay line chains links (a frame
leaves each further link its configured delay, the span, after it was due to leave the one
before: lab.delayline), so
a path's round trip depends on two holds, its first link's and its last link's, and on the
spans of the others; a least-squares fit over all paths says how much each hold is off for the
paths it starts or ends, and what each further link costs beyond its span; both are taken
off, twice. Per link: the base, the hold and what a one-link path keeps; and the per-hop term.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from lab.delayline_control import CHAIN_LIMIT
from lab.icmpprobe import measure
from lab.runstate import run_dir

PIN_COOKIE = 0x4C50_0000_0000_0000  # "LP": the lab's pinned probe flows
PIN_PRIORITY = 1000
# Time between two probes (of any pair): light load, so that calibration and verification
# see the fabric as a light workload does. About 330 probes a second in all: at 1000 a second
# the probes themselves kept two cores busy enough to widen every path's spread (interquartile
# range 0.42 ms, against 0.23 ms at this rate) and to move it by tenths of a ms.
PROBE_GAP_MS = 3.0
# Where the fabric alone takes longer than a link's delay, its hold goes negative: a link
# chained after it makes the difference up, as far as the delay line lets it.
MIN_HOLD_MS = -CHAIN_LIMIT * 1000
# The path fit weighs no path's median as known better than this (ms); a link whose median
# is known worse than ROUGH_SPREAD_MS (jitter) is not measured for its base.
SPREAD_FLOOR_MS = 0.01
ROUGH_SPREAD_MS = 0.1


@dataclass
class LinkCalibration:
    index: int
    name: str
    delay_ms: float
    base_ms: float  # the fabric's one-way latency on this link, measured
    hold_ms: float  # what the emulator holds: delay - base (negative: see MIN_HOLD_MS)
    uncompensated_ms: float  # base a one-link path keeps (delay < base)
    n: int
    rtt_p50_ms: float


@dataclass
class Calibration:
    access_rtt_ms: float  # host -> switch -> host on one site, not absorbed by any link
    access_n: int
    links: list[LinkCalibration] = field(default_factory=list)
    per_hop_rtt_ms: float = 0.0  # path error per further link, taken off the spans
    paths_probed: int = 0
    path_errors_before_ms: list[float] = field(default_factory=list)  # in the last fit round
    span_trim_ms: float = 0.0  # taken off every link's span (one way): per_hop_rtt_ms / 2
    measured_at: float = 0.0  # Unix time of the measurement
    reused: bool = False  # taken from lab.calibration_cache, not measured in this run

    @property
    def holds(self) -> dict[int, float]:
        return {link.index: link.hold_ms for link in self.links}

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        return cls(**{**data, "links": [LinkCalibration(**link) for link in data["links"]]})


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
    result = Calibration(access_rtt_ms=round(access, 4), access_n=access_n,
                         measured_at=round(time.time(), 3))
    for _ in range(rounds):
        lab.emulation.set_holds(holds)
        rtts = measure_links(lab, links, count=samples)
        measured = {i: statistics.median(r) for i, (r, _) in rtts.items() if r}
        # A negative hold holds nothing on a one-link round trip (lab.delayline). A link
        # whose median is known only roughly (jitter) gets the other links' typical base:
        # the fabric's latency does not depend on the link's jitter.
        bases = {i: max(0.0, (rtt - access) / 2 - max(0.0, holds[i]))
                 for i, rtt in measured.items()
                 if median_spread(rtts[i][0]) <= ROUGH_SPREAD_MS}
        fallback = statistics.median(bases.values()) if bases else 0.0
        result.links = []
        for link in topo.links:
            base = bases.get(link.index, fallback)
            holds[link.index] = max(MIN_HOLD_MS, link.delay_ms - base)
            result.links.append(LinkCalibration(
                index=link.index, name=link.name, delay_ms=link.delay_ms,
                base_ms=round(base, 4), hold_ms=round(holds[link.index], 4),
                uncompensated_ms=round(max(0.0, base - link.delay_ms), 4),
                n=len(rtts.get(link.index, ([], 0))[0]),
                rtt_p50_ms=round(measured.get(link.index, 0.0), 4)))
    with lab.forwarding.lowest_latency_routes() as routed:
        if routed:
            _fit_paths(lab, result, holds, samples=max(5, samples // 2))
    (run_dir() / "calibration.json").write_text(json.dumps(result.as_dict(), indent=1))
    return result


def path_design(topology, pairs) -> tuple[list[list[float]], list[int]]:
    """One row per path: how often each link's hold counts in its round trip, then links - 1.

    With chained links (lab.delayline) a path's round trip holds a frame once on its first
    link going out and once on its last link coming back (a one-link path: its link twice);
    every other link adds its span, each way.
    """
    links = [link.index for link in topology.links]
    column = {index: i for i, index in enumerate(links)}
    rows = []
    for p, _, _ in pairs:
        sites = p["path"]
        row = [0.0] * (len(links) + 1)
        for a, b in ((sites[0], sites[1]), (sites[-1], sites[-2])):
            row[column[topology.link_between(a, b).index]] += 1
        row[-1] = len(sites) - 2
        rows.append(row)
    return rows, links


def fit_path_errors(rows: list[list[float]], errors: list[float],
                    spreads: list[float] | None = None, ridge: float = 1.0) -> list[float]:
    """Weighted least squares of errors on rows.

    Each path counts by how precisely its median is known: weight 1 / spread^2, scaled so
    that the typical path weighs 1 (`spreads`: each path's interquartile range over the
    square root of its samples; a path over a jittery link knows its median to a tenth of a
    ms at best and must not move the holds by that much). Every coefficient but the last
    (the per-hop one) is pulled towards 0 with weight `ridge`, so that a link few paths
    start or end on is not moved on little evidence.
    """
    design = np.array(rows)
    if spreads is None:
        weights = np.ones(len(rows))
    else:
        variances = np.maximum(np.array(spreads), SPREAD_FLOOR_MS) ** 2
        weights = np.median(variances) / variances
    penalty = np.eye(design.shape[1]) * ridge
    penalty[-1, -1] = 0.0
    weighted = design.T * weights
    solution = np.linalg.solve(weighted @ design + penalty, weighted @ np.array(errors))
    return [float(x) for x in solution]


def median_spread(samples: list[float]) -> float:
    """How far a median of these samples may be off: interquartile range / sqrt(n)."""
    if len(samples) < 4:
        return math.inf
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return (q3 - q1) / math.sqrt(len(samples))


def _fit_paths(lab, result: Calibration, holds: dict[int, float], samples: int,
               rounds: int = 2) -> None:
    """Probe every site-to-site path and correct the holds and the spans to their errors.

    The links' own measurements set each hold under the light load of one probe pair per
    link; the paths carry more, and say how much each hold is off for them: the fit gives,
    per link, what its hold adds to the round trips of the paths it starts or ends (taken
    off that hold) and what each further link adds beyond its span (half of it taken off
    every span). `rounds` times, each measuring at the corrections found so far.
    """
    topo = lab.topology
    pairs = site_pairs(topo)
    if len(pairs) < 3:
        return
    rows, links = path_design(topo, pairs)
    probes = [(f"{p['src']}>{p['dst']}", a, b) for p, a, b in pairs]
    trim = 0.0
    for _ in range(rounds):
        lab.emulation.set_holds(holds, span_trim_ms=trim)
        rtts = measure(lab, probes, count=samples, warmup=2, gap_ms=PROBE_GAP_MS)
        # A one-link path over a link held 0 or less shows the fabric's own floor, which no
        # hold can lower: it would only push the hold down for the longer paths.
        measured = [(row, statistics.median(r) - p["expected_rtt_ms"], median_spread(r))
                    for row, (p, _, _), (r, _) in zip(rows, pairs, rtts.values())
                    if r and not (len(p["path"]) == 2 and holds[links[row.index(2)]] <= 0)]
        if len(measured) < 3:
            return
        coefficients = fit_path_errors([row for row, _, _ in measured],
                                       [error for _, error, _ in measured],
                                       [spread for _, _, spread in measured])
        result.paths_probed = len(measured)
        result.path_errors_before_ms = [round(error, 4) for _, error, _ in measured]
        trim += coefficients[-1] / 2
        for index, error in zip(links, coefficients):
            holds[index] = max(MIN_HOLD_MS, holds[index] - error)
        result.per_hop_rtt_ms = round(2 * trim, 4)
    for link in result.links:
        link.base_ms = round(link.base_ms + link.hold_ms - holds[link.index], 4)
        link.hold_ms = round(holds[link.index], 4)
        link.uncompensated_ms = round(max(0.0, link.base_ms - link.delay_ms), 4)
    result.span_trim_ms = round(trim, 4)
