"""The comparison's charts, drawn from the raw records and the report's numbers:
latency_cdf.png (client latency per strategy, a panel per scenario), placement_bars.png
(database read p50 per placement with bootstrap 95 % CIs) and failover_timeline.png (client
requests around the first failure scenario's failure, the promotion and the first write the
new primary acknowledged); with map.png (sitemap.py), all of the report's plots (write_all)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from measurements.ledger import acked_at
from measurements.report.figures import plt, save
from measurements.report.raw import busy_windows, quiet
from measurements.report.sitemap import site_map


def _colors(strategies: list[str]) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {s: palette[i % len(palette)] for i, s in enumerate(strategies)}


def latency_cdf(raw: dict, path: Path) -> None:
    strategies = raw["setup"]["strategies"]
    colors = _colors(strategies)
    scenarios = list(dict.fromkeys(c["scenario"] for c in raw["cells"]))
    busy = busy_windows(raw)
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.6 * len(scenarios), 4.2),
                             sharey=True, squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        for strategy in strategies:
            values = np.sort([r["latency_ms"] for r in raw["requests"] if r["kind"] == "client"
                              and r["ok"] and r["scenario"] == scenario
                              and r["strategy"] == strategy
                              and quiet(r, busy.get((scenario, strategy), []))])
            if values.size:
                ax.step(values, np.arange(1, values.size + 1) / values.size, where="post",
                        color=colors[strategy], label=f"{strategy} (n={values.size})")
        ax.set_xscale("log")
        ax.set_title(scenario)
        ax.set_xlabel("client request latency, ms (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel("share of successful requests")
    fig.suptitle("Clinic clients -> app service: latency CDF per strategy "
                 "(new TCP connection + request + answer; outside the database workload)")
    fig.tight_layout()
    save(fig, path)


def placement_bars(results: dict, path: Path, scenario: str = "normal") -> None:
    cells = [c for c in results["cells"] if c["scenario"] == scenario] or \
        [c for c in results["cells"] if c["scenario"] == results["cells"][0]["scenario"]]
    colors = _colors(results["setup"]["strategies"])
    placements = list(dict.fromkeys(p["placement"] for c in cells for p in c["placements"]))
    kinds = {p["placement"]: p["kind"] for c in cells for p in c["placements"]}
    width = 0.8 / max(1, len(cells))
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(placements) + 2), 4.8))
    x = np.arange(len(placements))
    for i, c in enumerate(cells):
        p50, low, high = [], [], []
        for placement in placements:
            p = next((q for q in c["placements"] if q["placement"] == placement
                      and q["operation"] == "read" and q["phase"] == "before"), None)
            ok = p is not None and p["p50_ms"] is not None
            p50.append(p["p50_ms"] if ok else np.nan)
            low.append(p["p50_ms"] - p["ci95_low_ms"] if ok else 0)
            high.append(p["ci95_high_ms"] - p["p50_ms"] if ok else 0)
        ax.bar(x + (i - (len(cells) - 1) / 2) * width, p50, width, yerr=[low, high],
               capsize=2, color=colors[c["strategy"]], label=c["strategy"])
    ax.set_xticks(x, [f"{p}\n{kinds[p]}" for p in placements], fontsize=8)
    ax.set_ylabel("indexed read through the db VIP, p50 ms")
    ax.set_title(f"Database read latency per placement ({cells[0]['scenario']}); "
                 f"error bars: bootstrap 95 % CI of the median")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="strategy", fontsize=8)
    fig.tight_layout()
    save(fig, path)


def failover_timeline(raw: dict, path: Path) -> str | None:
    """Client requests around the failure of the first scenario that has one."""
    failed_cells = [c for c in raw["cells"] if c.get("failure")]
    if not failed_cells:
        fig, ax = plt.subplots(figsize=(8, 2))
        ax.text(0.5, 0.5, "no failure scenario in this run", ha="center", va="center")
        ax.axis("off")
        save(fig, path)
        return None
    scenario = failed_cells[0]["scenario"]
    cells = [c for c in failed_cells if c["scenario"] == scenario]
    fig, axes = plt.subplots(len(cells), 1, figsize=(12, 2.6 * len(cells) + 0.8), sharex=True,
                             squeeze=False)
    longest = max((c.get("repair") or c["end"]) - c["failure"] for c in cells)
    window = (-1.0, longest + 1.5)
    for ax, cell in zip(axes[:, 0], cells):
        _timeline_panel(ax, raw["requests"], cell, window)
    axes[-1, 0].set_xlabel("seconds since the failure was injected (requests by send time)")
    axes[-1, 0].set_xlim(*window)
    fig.suptitle("Clinic clients' requests around the failure (all clinics); the promotion "
                 "and the first write the new primary acknowledged")
    fig.tight_layout()
    save(fig, path)
    return scenario


def _timeline_panel(ax, requests: list[dict], cell: dict, window: tuple[float, float]) -> None:
    """One strategy's client requests by send time since the failure: latencies, and the
    failed ones as crosses along the top."""
    scenario, t0 = cell["scenario"], cell["failure"]
    reqs = [r for r in requests if r["kind"] == "client"
            and r["scenario"] == scenario and r["strategy"] == cell["strategy"]
            and window[0] <= r["start"] - t0 <= window[1]]
    ok = [(r["start"] - t0, r["latency_ms"]) for r in reqs if r["ok"]]
    bad = [r["start"] - t0 for r in reqs if not r["ok"]]
    if ok:
        xs, ys = zip(*ok)
        ax.scatter(xs, ys, s=4, color="#1f77b4", label="answered (latency)")
    top = max([y for _, y in ok], default=100) * 1.25
    if bad:
        ax.scatter(bad, [top] * len(bad), s=10, marker="x", color="#d62728",
                   label=f"failed ({len(bad)}), drawn at the top")
    ax.axvline(0, color="black", lw=1)
    ax.text(0.05, 0.5, "failure", transform=ax.get_xaxis_transform(), rotation=90,
            va="center", fontsize=8)
    for x, label, color in _recovery_marks(requests, cell):
        ax.axvline(x - t0, color=color, ls=":", lw=1.2)
        ax.text(x - t0 + 0.05, 0.5, label, rotation=90, fontsize=8, va="center", color=color,
                transform=ax.get_xaxis_transform(), clip_on=True)
    if cell.get("repair"):
        ax.axvline(cell["repair"] - t0, color="grey", ls="--", lw=1)
        ax.text(cell["repair"] - t0 + 0.05, 0.5, "repair", rotation=90, fontsize=8,
                va="center", transform=ax.get_xaxis_transform(), clip_on=True)
    ax.set_ylim(0, top * 1.08)
    ax.set_title(f"{scenario} - {cell['strategy']}", fontsize=10, loc="left")
    ax.set_ylabel("latency, ms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def congestion_plot(raw: dict, results: dict, path: Path) -> None:
    """The scheduled delays (top) and, per strategy, the watched services' connect latency
    (median per BIN_S, bottom) against the time since the schedules started."""
    section = results["congestion"]
    colors = _colors(raw["setup"]["strategies"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 2]})
    for name in section["cells"][0]["segments"][0]["delays_ms"]:
        segs = section["cells"][0]["segments"]
        top.step([s["from_s"] for s in segs] + [segs[-1]["to_s"]],
                 [s["delays_ms"][name] for s in segs] + [segs[-1]["delays_ms"][name]],
                 where="post", label=name)
    top.set_ylabel("scheduled one-way\ndelay, ms")
    top.legend(fontsize=8)
    cells = {c["strategy"]: c for c in raw["cells"] if "schedule_start" in c}
    for row in section["cells"]:
        cell = cells[row["strategy"]]
        hosts = {k.split(">")[0] for k in row["watched"]}
        t0 = cell["schedule_start"]
        samples = [(r["start"] - t0, r["latency_ms"]) for r in raw["requests"]
                   if r["strategy"] == row["strategy"] and r["scenario"] == row["scenario"]
                   and r["kind"] == "service" and r["ok"] and r["src"] in hosts]
        if not samples:
            continue
        bins: dict[int, list[float]] = {}
        for t, v in samples:
            bins.setdefault(int(np.floor(t / BIN_S)), []).append(v)
        xs = sorted(bins)
        bottom.plot([(b + 0.5) * BIN_S for b in xs], [np.median(bins[b]) for b in xs],
                    color=colors[row["strategy"]], label=f"{row['strategy']} (n={len(samples)})")
    bottom.set_xlabel("time since the schedules started, s")
    bottom.set_ylabel(f"watched services' connect,\nmedian per {BIN_S:g} s, ms")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


BIN_S = 0.5


def _recovery_marks(requests: list[dict], cell: dict) -> list[tuple[float, str, str]]:
    """The promotion, and the first write the new primary acknowledged (the RTO's end)."""
    promotion = cell.get("promotion")
    if not promotion:
        return []
    marks = [(promotion["promoted"], "promoted", "#2ca02c")]
    firsts = [acked_at(r) for r in requests if r["kind"] == "writer" and r["ok"]
              and r["scenario"] == cell["scenario"] and r["strategy"] == cell["strategy"]
              and r["served_by"] == promotion.get("new_primary")
              and acked_at(r) > cell["failure"]]
    if firsts:
        marks.append((min(firsts), "first write on the new primary (RTO)", "#9467bd"))
    return marks


def write_all(raw: dict, results: dict, out: Path) -> list[str]:
    """Every plot of the report in out; their file names."""
    latency_cdf(raw, out / "latency_cdf.png")
    placement_bars(results, out / "placement_bars.png")
    failover_timeline(raw, out / "failover_timeline.png")
    site_map(raw["setup"], out / "map.png")
    written = ["latency_cdf.png", "placement_bars.png", "failover_timeline.png", "map.png"]
    if results.get("congestion"):
        congestion_plot(raw, results, out / "congestion.png")
        written.append("congestion.png")
    return written
