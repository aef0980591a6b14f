"""Reachability and round-trip times between sites, measured with ping from inside the hosts.

Each site is represented by its first host. All sources probe at once (each walks its
destinations in turn), so the whole matrix takes about as long as one source's row. A
warm-up round (ARP, OVS flow caches) runs first and is not counted.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from lab.network import Lab
from measurements.stats import percentile

RTT = re.compile(r"icmp_seq=(\d+) .*time=([0-9.]+) ms")


@dataclass
class PairRtt:
    src: str
    dst: str
    expected_rtt_ms: float | None
    sent: int
    samples: list[float] = field(default_factory=list)

    @property
    def loss_pct(self) -> float:
        return 100.0 * (1 - len(self.samples) / self.sent) if self.sent else 100.0

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def as_dict(self) -> dict:
        return {
            "src": self.src, "dst": self.dst, "expected_rtt_ms": self.expected_rtt_ms,
            "n": len(self.samples), "sent": self.sent, "loss_pct": round(self.loss_pct, 2),
            "p50_ms": self.p50_ms, "p99_ms": percentile(self.samples, 99) if self.samples else None,
            "min_ms": min(self.samples, default=None), "max_ms": max(self.samples, default=None),
        }


def site_rtts(lab: Lab, samples: int = 10, warmup: int = 2, interval: float = 0.02,
              progress=None) -> list[PairRtt]:
    """Ping every other site from every site; `samples` replies counted per pair.

    A whole warm-up round runs first: OVS's userspace datapath drops packets while it sets
    up the first flows of many sources at once, which is start-up, not the network.
    """
    topo = lab.topology
    reps = {name: hosts[0] for name in topo.sites if (hosts := topo.hosts_at(name))}
    expected = {(p["src"], p["dst"]): p["expected_rtt_ms"] for p in topo.lowest_latency_paths()}
    if warmup:
        _ping_all(lab, reps, warmup, interval)
    outputs = _ping_all(lab, reps, samples, interval, progress)
    results = []
    for src, out in outputs.items():
        results += _parse(src, out, samples, expected)
    return results


def _ping_all(lab: Lab, reps: dict, count: int, interval: float, progress=None) -> dict[str, str]:
    """From every site at once, ping each other site in turn; the output per source."""
    procs = {}
    for src in reps:
        script = "; ".join(
            f"echo '# {dst}'; ping -n -c {count} -i {interval} -W 2 {reps[dst].ip}"
            for dst in reps if dst != src)
        procs[src] = lab.host(reps[src].name).popen(["sh", "-c", script], text=True)
    outputs = {}
    for i, (src, proc) in enumerate(procs.items()):
        outputs[src], _ = proc.communicate(timeout=600)
        if progress:
            progress(i + 1, len(procs))
    return outputs


def _parse(src: str, output: str, count: int, expected: dict) -> list[PairRtt]:
    pairs, current = [], None
    for line in output.splitlines():
        if line.startswith("# "):
            dst = line[2:].strip()
            exp = expected.get((src, dst), expected.get((dst, src)))
            current = PairRtt(src, dst, exp, sent=count)
            pairs.append(current)
        elif current is not None and (m := RTT.search(line)):
            current.samples.append(float(m.group(2)))
    return pairs
