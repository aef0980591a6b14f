"""schedule.png: each scheduled link's delay over time, as scheduled and as measured.

Drawn from the files `lab verify --schedule` writes (schedule-samples.json and
schedule-check.json): a panel per link, the schedule's one-way delay as a step line and
every probe's round trip halved as a dot, titled with the sample count, the median error
and the time alignment.
"""

from __future__ import annotations

import json
from pathlib import Path

from measurements.report.figures import plt, save


def schedule_plot(out_dir: Path) -> Path:
    """Draw out_dir/schedule.png from the check's files; returns its path."""
    out_dir = Path(out_dir)
    samples = json.loads((out_dir / "schedule-samples.json").read_text())
    check = {row["name"]: row for row in
             json.loads((out_dir / "schedule-check.json").read_text())["links"]}
    fig, axes = plt.subplots(len(samples), 1, figsize=(9, 3.2 * len(samples)), squeeze=False)
    for ax, (name, data) in zip(axes[:, 0], samples.items()):
        ax.plot(data["t_s"], [r / 2 for r in data["rtt_ms"]], ".", markersize=2,
                color="tab:blue", label=f"measured (RTT / 2, n={len(data['t_s'])})")
        steps = data["scheduled"]
        end = data["t_s"][-1] if data["t_s"] else (steps[-1][0] if steps else 0)
        xs = [t for t, _ in steps] + [end]
        ys = [d for _, d in steps] + [steps[-1][1]] if steps else []
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1.2, label="scheduled")
        row = check.get(name, {})
        ax.set_title(f"{name}: median |error| {row.get('median_abs_error_ms')} ms (RTT), "
                     f"alignment {row.get('alignment_s')} s, n={row.get('n')}")
        ax.set_ylabel("one-way delay (ms)")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time since the schedule started (s)")
    fig.tight_layout()
    path = out_dir / "schedule.png"
    save(fig, path)
    return path
