"""`lab run`: reachability and round-trip times between every two sites, both ways.

Each site speaks through its first host. The lab's one round-trip prober (lab.icmpprobe:
ICMP echo with kernel timestamps, every pair from one process) measures every ordered pair,
round robin, after a warm-up of its own (ARP, OVS's first flows: start-up, not the network).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from lab.icmpprobe import measure
from measurements.stats import percentile

# Between two probes of any pair: about 1000 a second, light enough for two cores.
GAP_MS = 1.0


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


def site_rtts(lab, samples: int = 10, warmup: int = 2) -> list[PairRtt]:
    """Probe every other site from every site; `samples` probes counted per pair."""
    topo = lab.topology
    reps = {name: hosts[0].name for name in topo.sites if (hosts := topo.hosts_at(name))}
    expected = {}
    for p in topo.lowest_latency_paths():
        expected[p["src"], p["dst"]] = expected[p["dst"], p["src"]] = p["expected_rtt_ms"]
    pairs = [(src, dst) for src in reps for dst in reps if dst != src]
    found = measure(lab, [(f"{src}>{dst}", reps[src], reps[dst]) for src, dst in pairs],
                    count=samples, warmup=warmup, gap_ms=GAP_MS)
    return [PairRtt(src, dst, expected.get((src, dst)), sent=found[f"{src}>{dst}"][1],
                    samples=found[f"{src}>{dst}"][0]) for src, dst in pairs]
