"""matplotlib as the report uses it: drawing to files on a machine without a display, and
one way to save a figure. Take pyplot from here (`from measurements.report.figures import
plt`): importing it elsewhere first could pick an interactive backend."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

from lab.files import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def save(fig, path: Path) -> None:
    """The figure as a PNG at the report's resolution, written atomically; then its memory
    is freed."""
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    atomic_write(path, png.getvalue())
