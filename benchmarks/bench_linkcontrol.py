"""Benchmark: how fast a run-time link change takes effect, and what the controller makes of it.

On the default lab, with the control API `lab up` serves (dashboard.server, the way `lab link
set` reaches it) and a continuous 1 ms ICMP probe over the link under test (cden -> svlz2a,
whose path is the one link clden-lz2a), each `--repeat` times:

- delay +20 ms: from the moment `PUT /v1/links/clden-lz2a {"delay_ms": ...}` is sent until
  the first probe sent that sees the new delay (RTT above the old one + 20 ms); and back;
- loss 100 %: until the first probe sent that is lost (all later ones are too), and back
  to 0 %: until the first answered again;
- ports down (`{"up": false}`): until the first probe lost (both switch ports go down
  with `ip` in their namespaces); then until the controller's
  `GET /v1/paths` no longer uses the link and the probes are answered over the detour;
  ports up: until the controller's path is the original again.

The probe's resolution is its interval (1 ms). A change of delay applies to frames that
enter the link after it; frames already queued keep their deadlines, and a link keeps each
direction in order (as a real line does), so a lower delay shows after the frames in flight.

    flock /tmp/hclab-lab.lock .venv/bin/python -m benchmarks.bench_linkcontrol [--repeat 5] [--json FILE]

Target: every change in force within 100 ms of the request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx


from dashboard.server import serve_lab
from controllers.forwarding import make_lab
from lab.signals import stop_signals_raise
from benchmarks.bench_controller import (Prober, path_of, print_summary, steady,
                                          summary, wait_until)
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load

SRC, DST, LINK = "cden", "svlz2a", "clden-lz2a"
EXTRA_MS = 20.0
TARGET_MS = 100.0


def first_after(probe: Prober, since: float, test) -> float | None:
    """ms from `since` to the send time of the first probe sent after it for which
    test(rtt or None if lost) holds."""
    for seq, sent in enumerate(probe.sent):
        if sent >= since and test(probe.rtt_ms.get(seq)):
            return (sent - since) * 1000
    return None


def timed_change(lab, api: httpx.Client, body: dict, test, linger: float) -> dict:
    """PUT one change under a running probe; when its effect showed and what the API said."""
    probe = Prober(lab, SRC, DST)
    probe.start()
    time.sleep(0.2)
    t0 = time.time()
    reply = api.put(f"/v1/links/{LINK}", json=body).raise_for_status().json()
    request_ms = (time.time() - t0) * 1000
    time.sleep(linger)
    probe.finish()
    return {"body": body, "effect_ms": first_after(probe, t0, test), "request_ms": request_ms,
            "apply_ms": reply["apply_ms"]}


def bench(lab, api: httpx.Client, repeat: int) -> dict:
    base = steady(lab, SRC, DST)
    delay = next(k.delay_ms for k in lab.topology.links if k.name == LINK)
    threshold = base + EXTRA_MS  # the RTT grows by 2 x EXTRA_MS
    original = path_of(lab, SRC, DST)
    rows: dict[str, list] = {k: [] for k in ("delay_up", "delay_back", "loss_on", "loss_off",
                                             "down", "reroute", "detour_answers", "up_path")}
    for _ in range(repeat):
        rows["delay_up"].append(timed_change(lab, api, {"delay_ms": delay + EXTRA_MS},
                                             lambda r: r is not None and r > threshold, 0.3))
        rows["delay_back"].append(timed_change(lab, api, {"delay_ms": delay},
                                               lambda r: r is not None and r < threshold, 0.3))
        rows["loss_on"].append(timed_change(lab, api, {"loss_pct": 100.0}, lambda r: r is None, 0.2))
        rows["loss_off"].append(timed_change(lab, api, {"loss_pct": 0.0},
                                             lambda r: r is not None, 0.3))
        wait_until(lambda: path_of(lab, SRC, DST) == original, 5, "the original path back")
        probe = Prober(lab, SRC, DST)
        probe.start()
        time.sleep(0.2)
        t0 = time.time()
        api.put(f"/v1/links/{LINK}", json={"up": False}).raise_for_status()
        wait_until(lambda: path_of(lab, SRC, DST) != original, 5, "reroute after the port down")
        rows["reroute"].append((time.time() - t0) * 1000)
        time.sleep(0.5)
        probe.finish()
        rows["down"].append({"effect_ms": first_after(probe, t0, lambda r: r is None)})
        lost = next((s for s, t in enumerate(probe.sent) if t >= t0 and s not in probe.rtt_ms), None)
        rows["detour_answers"].append(None if lost is None else first_after(
            probe, probe.sent[lost], lambda r: r is not None))
        t0 = time.time()
        api.put(f"/v1/links/{LINK}", json={"up": True}).raise_for_status()
        wait_until(lambda: path_of(lab, SRC, DST) == original, 5, "the original path after up")
        rows["up_path"].append((time.time() - t0) * 1000)
        time.sleep(0.3)
    return {"base_rtt_ms": base, "link": LINK, "path": original, "runs": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--links", default="auto", help="link backend (auto, netem, userspace)")
    parser.add_argument("--json", help="write the raw results and the summary here")
    args = parser.parse_args()
    with stop_signals_raise():
        lab = make_lab(load(args.topology), controller="builtin", links=args.links,
                  strategy="latency", calibrate=False, log=lambda *_: None)
        # One client, made before timing starts: making one costs about 20 ms (its TLS
        # context), which a `lab link set` pays but a change does not.
        with lab, serve_lab(lab) as server, httpx.Client(base_url=server.url, timeout=10) as api:
            results = bench(lab, api, args.repeat)
            results["backend"] = lab.backend
    runs = results["runs"]
    table = [summary(f"{name}_effect", [r["effect_ms"] for r in runs[name]])
             for name in ("delay_up", "delay_back", "loss_on", "loss_off", "down")]
    table += [summary(f"{name}_request", [r["request_ms"] for r in runs[name]])
              for name in ("delay_up", "loss_on")]
    table += [summary("down_controller_reroute", runs["reroute"]),
              summary("down_outage_until_detour", runs["detour_answers"]),
              summary("up_original_path_back", runs["up_path"])]
    for row in table:
        if row["measure"].endswith("_effect"):
            row["target"] = TARGET_MS
            row["pass"] = not row["failed"] and row.get("max", TARGET_MS) < TARGET_MS
    results["summary"] = table
    print(f"link {LINK} ({results['backend']} backend), probe {SRC} -> {DST} every 1 ms, base "
          f"RTT {results['base_rtt_ms']:.2f} ms, {args.repeat} repetitions; times in ms from "
          f"the request")
    print_summary(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("pass", True) for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
