"""`lab verify`: measure every link and every site-to-site path, compare with the model.

A link is measured with probes pinned to it (lab.calibration.pinned), so its expected round
trip is twice its configured delay; a path between two sites is measured between their
hosts along the lowest-latency route, so its expected round trip is twice the sum of the
delays on that route. Each verdict compares the median with the expectation within a
tolerance of `ms + pct % of the expected RTT`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from lab.calibration import PROBE_GAP_MS, measurable_links, measure_links, site_pairs
from lab.health import HealthWatch
from lab.icmpprobe import measure
from measurements.stats import percentile

# Default tolerance per backend. netem runs in the kernel (microseconds); the userspace
# backend rides on OVS's userspace datapath, whose own latency varies by tenths of a ms.
TOLERANCE = {"netem": (0.2, 2.0), "userspace": (0.3, 2.0)}


@dataclass(frozen=True)
class Tolerance:
    ms: float
    pct: float

    def allows(self, error_ms: float, expected_ms: float) -> bool:
        return abs(error_ms) <= self.ms + self.pct / 100 * expected_ms

    def __str__(self) -> str:
        return f"{self.ms:g} ms + {self.pct:g} % of the expected RTT"


def _row(src: str, dst: str, expected: float, samples: list[float], sent: int,
         tolerance: Tolerance) -> dict:
    if not samples:
        return {"src": src, "dst": dst, "expected_rtt_ms": round(expected, 4), "p50_ms": None,
                "p99_ms": None, "n": 0, "sent": sent, "error_ms": None, "pass": False}
    p50 = statistics.median(samples)
    return {"src": src, "dst": dst, "expected_rtt_ms": round(expected, 4),
            "p50_ms": round(p50, 4), "p99_ms": round(percentile(samples, 99), 4),
            "n": len(samples), "sent": sent, "error_ms": round(p50 - expected, 4),
            "pass": tolerance.allows(p50 - expected, expected)}


def verify(lab, samples: int = 50, tolerance: Tolerance | None = None) -> dict:
    """Measure the running lab; returns the report `lab verify --json` writes."""
    topo = lab.topology
    tolerance = tolerance or Tolerance(*TOLERANCE[lab.backend])
    links = measurable_links(topo)
    watch = HealthWatch(lab)
    watch.start()
    try:
        start = watch.mark()
        rows = _measure(lab, topo, links, samples, tolerance)
        health = watch.block(start, watch.mark())
    finally:
        watch.stop()
    return {**rows, "health": health}


def _measure(lab, topo, links, samples: int, tolerance: Tolerance) -> dict:
    link_rtts = measure_links(lab, links, count=samples)
    link_rows = [_row(link.a, link.b, 2 * link.delay_ms, *link_rtts[link.index], tolerance)
                 for link in links]
    paths = site_pairs(topo)
    path_rtts = measure(lab, [(f"{p['src']}>{p['dst']}", a, b) for p, a, b in paths],
                        count=samples, warmup=3, gap_ms=PROBE_GAP_MS)
    path_rows = [_row(p["src"], p["dst"], p["expected_rtt_ms"], *path_rtts[f"{p['src']}>{p['dst']}"],
                      tolerance) for p, _, _ in paths]
    errors = [abs(r["error_ms"]) for r in path_rows if r["error_ms"] is not None]
    return {
        "backend": lab.backend,
        "datapath": lab.caps.datapath,
        "tolerance": {"ms": tolerance.ms, "pct": tolerance.pct, "text": str(tolerance)},
        "samples_per_pair": samples,
        "pass": all(r["pass"] for r in link_rows + path_rows),
        "max_abs_path_error_ms": round(max(errors), 4) if errors else None,
        "median_abs_path_error_ms": round(statistics.median(errors), 4) if errors else None,
        "calibration": lab.calibration.as_dict() if lab.calibration else None,
        "delay_line": lab.emulation.stats().get("links", {}),
        "switch_priority": lab.switch_priority.summary() if lab.switch_priority else None,
        "links": link_rows,
        "paths": path_rows,
    }
