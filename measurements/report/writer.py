"""`lab report DIR` and the end of `lab compare`: a run's report written next to its raw
files (report.md, results.json, the plots), from those files alone."""

from __future__ import annotations

from pathlib import Path

from lab.files import atomic_write, write_json
from measurements.report.markdown import render_markdown
from measurements.report.plots import write_all
from measurements.report.raw import ReportError, load_raw
from measurements.report.results import compute


def write_report(out_dir: str | Path) -> dict:
    """report.md, results.json and the plots in out_dir, from its raw files only; the
    results, with the plots' file names under "plots"."""
    out = Path(out_dir)
    raw = load_raw(out)
    results = compute(raw)
    try:
        write_json(out / "results.json", results)
        atomic_write(out / "report.md", render_markdown(results))
        results["plots"] = write_all(raw, results, out)
    except OSError as exc:
        raise ReportError(f"{exc.filename or out}: cannot write: {exc.strerror or exc}") from None
    return results
