"""Files the lab writes: whole or not at all, so a reader never sees half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike[str], data) -> None:
    """`data` as indented JSON, written atomically."""
    atomic_write(path, json.dumps(data, indent=1) + "\n")
