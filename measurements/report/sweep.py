"""A sweep's report: its runs' numbers side by side, with intervals across repetitions.

Reads only the finished run folders (OUT/runs/<run id>/run.json, and each run's numbers,
computed from its raw files as `lab report` does and kept as its results.json), so it can
be made again at any time without a lab. For
every point, scenario and strategy, each key metric is taken once per repetition (the run's
own figure, e.g. its clients' p50) and summarized across the repetitions: mean, a Student-t
95 % interval of the mean (none from a single repetition), minimum and maximum. Writes
sweep-results.json, sweep-report.md and one plot per swept parameter, sweep-<parameter>.png
(each key metric against that parameter, a line per strategy and scenario).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from lab.files import atomic_write, write_json
from measurements.report.figures import plt, save
from measurements.report.raw import load_raw
from measurements.report.results import compute
from measurements.sweep import RUN_FILE, RunSpec, run_dir
from measurements.sweepfile import Sweep, value_text

CONFIDENCE = 0.95
# name -> (where in a cell of the run's results.json, label in the report)
METRICS = {
    "client_p50_ms": (("clients", "p50_ms"), "client p50 ms"),
    "client_p99_ms": (("clients", "p99_ms"), "client p99 ms"),
    "client_failed_pct": (("clients", "failed_pct"), "client failed %"),
    "client_outage_ms": (("clients", "outage_ms"), "client outage ms"),
    "service_outage_ms": (("services", "outage_ms"), "service outage ms"),
    "db_read_p50_ms": (("db_read", "p50_ms"), "DB read p50 ms"),
}
# The metrics drawn against each swept parameter (outages only where a failure was injected).
PLOTTED = ("client_p50_ms", "client_p99_ms", "client_outage_ms", "db_read_p50_ms")
COLORS = plt.get_cmap("tab10").colors


def interval(values: list[float], confidence: float = CONFIDENCE) -> dict:
    """Mean, Student-t interval of the mean, min and max of one metric's repetitions."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "ci95_low": None, "ci95_high": None, "min": None,
                "max": None}
    mean = float(np.mean(values))
    low = high = None
    if n >= 2:
        sem = float(np.std(values, ddof=1)) / math.sqrt(n)
        if sem == 0:
            low = high = mean
        else:
            low, high = (float(x) for x in scipy_stats.t.interval(confidence, n - 1, loc=mean,
                                                                   scale=sem))
    return {"n": n, "mean": mean, "ci95_low": low, "ci95_high": high,
            "min": float(min(values)), "max": float(max(values))}


def _metric(cell: dict, path: tuple[str, str]) -> float | None:
    value = cell.get(path[0], {}).get(path[1])
    return None if value is None else float(value)


def aggregate(sweep: Sweep, runs: list[RunSpec], out: Path) -> dict:
    """Every point x scenario x strategy with each metric across its finished repetitions."""
    out = Path(out)
    by_row: dict[tuple, list[dict]] = defaultdict(list)
    finished, missing = [], []
    for run in runs:
        folder = run_dir(out, run)
        if not (folder / RUN_FILE).exists():
            missing.append(run.id)
            continue
        finished.append(run.id)
        results = _run_results(folder)
        for cell in results["cells"]:
            by_row[(run.point.id, cell["scenario"], cell["strategy"])].append(
                {"seed": run.seed, "failure": cell.get("failure") is not None,
                 **{name: _metric(cell, path) for name, (path, _) in METRICS.items()}})
    points = {p.id: p for p in sweep.points}
    rows = []
    for point in sweep.points:
        for scenario in point.scenarios:
            for strategy in point.strategies:
                reps = by_row.get((point.id, scenario, strategy), [])
                if not reps:
                    continue
                failure = any(r["failure"] for r in reps)
                rows.append({
                    "point": point.id, "label": points[point.id].label, "swept": point.swept,
                    "scenario": scenario, "strategy": strategy, "runs": len(reps),
                    "seeds": [r["seed"] for r in reps],
                    "metrics": {name: {**interval([r[name] for r in reps
                                                    if r[name] is not None]),
                                       "values": [r[name] for r in reps]}
                                for name in METRICS
                                if failure or not name.endswith("outage_ms")}})
    return {"sweep": sweep.name, "description": sweep.description, "file": sweep.file,
            "topology": sweep.topology.name, "parameters": list(sweep.parameters),
            "repetitions": sweep.repetitions, "seeds": sweep.seeds(),
            "points": [{"id": p.id, "label": p.label, "swept": p.swept, "params": p.params}
                       for p in sweep.points],
            "runs_finished": finished, "runs_missing": missing,
            "confidence": CONFIDENCE, "metrics": {k: v[1] for k, v in METRICS.items()},
            "rows": rows}


def _run_results(folder: Path) -> dict:
    """One run's numbers: its results.json, computed from its raw files (as `lab report`
    does) the first time they are asked for."""
    path = folder / "results.json"
    if not path.exists():
        write_json(path, compute(load_raw(folder)))
    return json.loads(path.read_text())


def write_report(sweep: Sweep, runs: list[RunSpec], out: Path) -> dict:
    """sweep-results.json, sweep-report.md and the plots in `out`, from its finished runs."""
    out = Path(out)
    results = aggregate(sweep, runs, out)
    results["plots"] = [path.name for path in plot_parameters(results, out)]
    write_json(out / "sweep-results.json", results)
    atomic_write(out / "sweep-report.md", render_markdown(results))
    return results


def cell_text(metric: dict | None) -> str:
    """'mean [low, high]' (or the single value, or '-')."""
    if not metric or metric["mean"] is None:
        return "-"
    text = f"{metric['mean']:.2f}"
    if metric["ci95_low"] is not None:
        text += f" [{metric['ci95_low']:.2f}, {metric['ci95_high']:.2f}]"
    return text


def summary_table(results: dict, scenario: str) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of one scenario's table (for the Markdown report and the terminal)."""
    metrics = [m for m in METRICS if any(m in r["metrics"] for r in results["rows"]
                                         if r["scenario"] == scenario)]
    columns = [*results["parameters"], "strategy", "runs",
               *(results["metrics"][m] for m in metrics)]
    rows = [[*(value_text(r["swept"].get(p)) for p in results["parameters"]), r["strategy"],
             str(r["runs"]), *(cell_text(r["metrics"].get(m)) for m in metrics)]
            for r in results["rows"] if r["scenario"] == scenario]
    return columns, rows


def scenarios_of(results: dict) -> list[str]:
    return list(dict.fromkeys(r["scenario"] for r in results["rows"]))


def render_markdown(results: dict) -> str:
    lines = [f"# Sweep {results['sweep']}", ""]
    if results["description"]:
        lines += [results["description"], ""]
    lines += [f"Topology {results['topology']}; {len(results['points'])} points x "
              f"{results['repetitions']} repetitions (seeds {results['seeds']}); "
              f"{len(results['runs_finished'])} runs finished, "
              f"{len(results['runs_missing'])} missing.",
              f"Each figure is the mean over the repetitions of each run's own figure, with a "
              f"Student-t {results['confidence']:.0%} interval of that mean in brackets "
              f"(none from one repetition); every run's raw files and report are in "
              f"runs/<run id>/.", ""]
    for scenario in scenarios_of(results):
        columns, rows = summary_table(results, scenario)
        lines += [f"## {scenario}", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += [f"![{name}]({name})" for name in results.get("plots", [])]
    return "\n".join(lines) + "\n"


def plot_parameters(results: dict, out: Path) -> list[Path]:
    """One figure per swept parameter: each plotted metric against it, with the intervals."""
    written = []
    metrics = [m for m in PLOTTED if any(m in r["metrics"] for r in results["rows"])]
    for parameter in results["parameters"] if metrics else ():
        values = list(dict.fromkeys(value_text(r["swept"].get(parameter))
                                    for r in results["rows"]))
        numeric = all(_number(v) is not None for v in values)
        others = [p for p in results["parameters"] if p != parameter]
        cols = min(2, len(metrics))
        fig, axes = plt.subplots(-(-len(metrics) // cols), cols, figsize=(6 * cols, 8.4),
                                 squeeze=False)
        for ax in axes.flat[len(metrics):]:
            ax.set_visible(False)
        lines = defaultdict(list)
        for r in results["rows"]:
            key = " / ".join([r["strategy"], r["scenario"],
                              *(f"{p}={value_text(r['swept'].get(p))}" for p in others)])
            lines[key].append(r)
        for ax, metric in zip(axes.flat, metrics):
            for i, (key, rows) in enumerate(lines.items()):
                pts, each = [], []
                for r in rows:
                    m = r["metrics"].get(metric)
                    if not m or m["mean"] is None:
                        continue
                    text = value_text(r["swept"].get(parameter))
                    x = _number(text) if numeric else values.index(text)
                    low = m["mean"] - m["ci95_low"] if m["ci95_low"] is not None else 0.0
                    high = m["ci95_high"] - m["mean"] if m["ci95_high"] is not None else 0.0
                    pts.append((x, m["mean"], low, high))
                    each += [(x, v) for v in m["values"] if v is not None]
                if not pts:
                    continue
                pts.sort()
                xs, ys, lows, highs = zip(*pts)
                color = COLORS[i % len(COLORS)]
                ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, color=color,
                            label=key)
                ax.scatter(*zip(*each), s=12, color=color, alpha=0.45)  # each repetition
            ax.set_title(results["metrics"][metric])
            ax.set_xlabel(parameter)
            if not numeric:
                ax.set_xticks(range(len(values)), values, rotation=20)
            ax.grid(alpha=0.3)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)),
                       fontsize=8, frameon=False)
        fig.suptitle(f"{results['sweep']}: key metrics against {parameter}\n(mean over "
                     f"repetitions with its {results['confidence']:.0%} interval; dots: each "
                     f"repetition)")
        fig.tight_layout(rect=(0, 0.05 + 0.03 * (len(labels) // 4), 1, 0.93))
        path = Path(out) / f"sweep-{_file_part(parameter)}.png"
        save(fig, path)
        written.append(path)
    return written


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _file_part(parameter: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", parameter)
