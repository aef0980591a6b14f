"""Reading the JSON-lines files that the lab's worker processes write as they go.

A worker writes whole lines and flushes each; a reader may look while the last one is half
written, so only lines that end in a newline count.
"""

from __future__ import annotations

import json
from pathlib import Path


class LineReader:
    """Follows a JSON-lines file another process is writing; returns whole new lines."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]

    def read_all(self) -> list[dict]:
        self.offset, self.partial = 0, b""
        return self.read()


def read_json_lines(path: Path, kind: str | None = None) -> list[dict]:
    """Every whole line written so far (only those of one "type", if given)."""
    return [r for r in LineReader(path).read_all() if kind is None or r.get("type") == kind]
