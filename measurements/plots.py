"""The comparison's PNG plots, drawn from the raw records and the report's numbers.

latency_cdf.png (client latency per strategy, a panel per scenario), placement_bars.png
(database read p50 per placement with bootstrap 95 % CIs), failover_timeline.png (client
requests around the first failure scenario's failure) and map.png (sites at their
coordinates, links labelled with their one-way delay).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

KIND_STYLE = {"datacenter": ("s", "#444444"), "outpost": ("D", "#ff7f0e"),
              "localzone": ("^", "#2ca02c"), "region": ("o", "#1f77b4"),
              "clinic": ("P", "#d62728")}


def _colors(strategies: list[str]) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {s: palette[i % len(palette)] for i, s in enumerate(strategies)}


def latency_cdf(raw: dict, path: Path) -> None:
    strategies = raw["setup"]["strategies"]
    colors = _colors(strategies)
    scenarios = list(dict.fromkeys(c["scenario"] for c in raw["cells"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.6 * len(scenarios), 4.2),
                             sharey=True, squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        for strategy in strategies:
            values = np.sort([r["latency_ms"] for r in raw["requests"] if r["kind"] == "client"
                              and r["ok"] and r["scenario"] == scenario
                              and r["strategy"] == strategy])
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
                 "(new TCP connection + request + answer)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def placement_bars(results: dict, path: Path, scenario: str = "normal") -> None:
    cells = [c for c in results["cells"] if c["scenario"] == scenario] or \
        [c for c in results["cells"] if c["scenario"] == results["cells"][0]["scenario"]]
    strategies = [c["strategy"] for c in cells]
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    del strategies


def failover_timeline(raw: dict, path: Path) -> str | None:
    """Client requests around the failure of the first scenario that has one."""
    failed_cells = [c for c in raw["cells"] if c.get("failure")]
    if not failed_cells:
        fig, ax = plt.subplots(figsize=(8, 2))
        ax.text(0.5, 0.5, "no failure scenario in this run", ha="center", va="center")
        ax.axis("off")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return None
    scenario = failed_cells[0]["scenario"]
    cells = [c for c in failed_cells if c["scenario"] == scenario]
    fig, axes = plt.subplots(len(cells), 1, figsize=(12, 2.6 * len(cells) + 0.8), sharex=True,
                             squeeze=False)
    longest = max((c.get("repair") or c["end"]) - c["failure"] for c in cells)
    window = (-1.0, longest + 1.5)
    for ax, cell in zip(axes[:, 0], cells):
        t0 = cell["failure"]
        reqs = [r for r in raw["requests"] if r["kind"] == "client"
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
        if cell.get("repair"):
            ax.axvline(cell["repair"] - t0, color="grey", ls="--", lw=1)
            ax.text(cell["repair"] - t0 + 0.05, 0.5, "repair", rotation=90, fontsize=8,
                    va="center", transform=ax.get_xaxis_transform(), clip_on=True)
        ax.set_ylim(0, top * 1.08)
        ax.set_title(f"{scenario} - {cell['strategy']}", fontsize=10, loc="left")
        ax.set_ylabel("latency, ms")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("seconds since the failure was injected (requests by send time)")
    axes[-1, 0].set_xlim(*window)
    fig.suptitle("Clinic clients' requests around the failure (all clinics)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return scenario


def _positions(topo: dict, spread: float) -> dict[str, tuple[float, float]]:
    """Site -> (lon, lat); co-located sites (an Outpost in its data center) fanned out."""
    pos, seen = {}, {}
    for s in topo["sites"]:
        key = (round(s["lat"], 1), round(s["lon"], 1))
        k = seen.get(key, 0)
        seen[key] = k + 1
        angle = np.pi / 2 + k * 2 * np.pi / 5
        r = 0.0 if k == 0 else spread
        pos[s["name"]] = (s["lon"] + r * np.cos(angle), s["lat"] + r * np.sin(angle))
    return pos


def _draw_sites(ax, topo: dict, pos: dict, bounds=None, label_size: float = 8) -> None:
    sites = {s["name"]: s for s in topo["sites"]}

    def inside(x, y):
        return bounds is None or (bounds[0] <= x <= bounds[1] and bounds[2] <= y <= bounds[3])

    for link in topo["links"]:
        (x1, y1), (x2, y2) = pos[link["a"]], pos[link["b"]]
        ax.plot([x1, x2], [y1, y2], color="#999999", lw=0.8, zorder=1)
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        if not inside(x1, y1) or not inside(x2, y2):
            # A link leaving the panel: label it near its inside end.
            if not (inside(x1, y1) or inside(x2, y2)):
                continue
            (ix, iy), (ox, oy) = ((x1, y1), (x2, y2)) if inside(x1, y1) else ((x2, y2), (x1, y1))
            span = max(bounds[1] - bounds[0], bounds[3] - bounds[2])
            d = np.hypot(ox - ix, oy - iy)
            mx, my = ix + (ox - ix) * min(0.35 * span / d, 0.5), iy + (oy - iy) * min(0.35 * span / d, 0.5)
        ax.text(mx, my, f"{link['delay_ms']:.1f}", fontsize=label_size - 1, ha="center",
                va="center", zorder=3, clip_on=True,
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85))
    for kind, (marker, color) in KIND_STYLE.items():
        names = [n for n, s in sites.items() if s["kind"] == kind]
        if names:
            ax.scatter([pos[n][0] for n in names], [pos[n][1] for n in names], marker=marker,
                       s=70, color=color, label=kind, zorder=4, edgecolor="white")
    for name, (x, y) in pos.items():
        if inside(x, y):
            ax.annotate(name, (x, y), xytext=(5, 5), textcoords="offset points",
                        fontsize=label_size, zorder=5, annotation_clip=True)
    if bounds:
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
    lat = np.mean([s["lat"] for s in topo["sites"]])
    ax.set_aspect(1 / np.cos(np.radians(lat)))
    ax.grid(True, alpha=0.2)


def site_map(setup: dict, path: Path) -> None:
    """The whole map on top; below it, a zoom on each data center's metro area."""
    topo = setup["topology"]
    dcs = [s for s in topo["sites"] if s["kind"] == "datacenter"][:3]
    fig = plt.figure(figsize=(13, 11))
    grid = fig.add_gridspec(2, max(1, len(dcs)), height_ratios=[1.25, 1])
    ax = fig.add_subplot(grid[0, :])
    _draw_sites(ax, topo, _positions(topo, 0.9))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.legend(loc="lower left", fontsize=9)
    ax.set_title("Sites at their coordinates; each link labelled with its one-way delay in ms "
                 "(a round trip sees it twice)", fontsize=11)
    for i, dc in enumerate(dcs):
        zoom = fig.add_subplot(grid[1, i])
        half = 1.0
        bounds = (dc["lon"] - half * 1.6, dc["lon"] + half * 1.6, dc["lat"] - half, dc["lat"] + half)
        _draw_sites(zoom, topo, _positions(topo, 0.15), bounds, label_size=9)
        zoom.set_title(f"zoom: around {dc['name']} ({dc['label'] or dc['kind']}); Outposts "
                       f"drawn beside it", fontsize=9)
        ax.add_patch(plt.Rectangle((bounds[0], bounds[2]), bounds[1] - bounds[0],
                                   bounds[3] - bounds[2], fill=False, ls=":", color="black"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(raw: dict, results: dict, out: Path) -> list[str]:
    latency_cdf(raw, out / "latency_cdf.png")
    placement_bars(results, out / "placement_bars.png")
    failover_timeline(raw, out / "failover_timeline.png")
    site_map(raw["setup"], out / "map.png")
    return ["latency_cdf.png", "placement_bars.png", "failover_timeline.png", "map.png"]
