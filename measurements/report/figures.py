"""matplotlib as the report uses it: drawing to files on a machine without a display, and
one way to save a figure. Take pyplot from here (`from measurements.report.figures import
plt`): importing it elsewhere first could pick an interactive backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def save(fig, path: Path) -> None:
    """The figure as a PNG at the report's resolution; then its memory is freed."""
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
