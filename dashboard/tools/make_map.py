"""Reduce Natural Earth's country outlines to the small map file the dashboard ships.

Source: Natural Earth 1:50m Admin 0 countries (public domain), as TopoJSON in the npm package
world-atlas 2.0.2 (`npm pack world-atlas@2.0.2`, file package/countries-50m.json). Usage:

    python -m dashboard.tools.make_map countries-50m.json dashboard/static/map.json

Keeps the borders and coasts inside the box the default topology needs (the United States
with the edges of Canada and Mexico), drops points closer than a tolerance to the previous
one, and writes [lon, lat] polylines with the source named in the file itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BOX = (-127.0, 23.0, -64.0, 50.5)  # west, south, east, north (degrees)
COUNTRIES = {"United States of America", "Canada", "Mexico"}
TOLERANCE_DEG = 0.12
SOURCE = ("Natural Earth 1:50m Admin 0 countries (public domain, naturalearthdata.com), "
          "via the TopoJSON of world-atlas 2.0.2; reduced by dashboard/tools/make_map.py")


def decode_arcs(topo: dict) -> list[list[tuple[float, float]]]:
    """TopoJSON's quantized, delta-encoded arcs as lists of (lon, lat)."""
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def arc_indices(geometry: dict) -> set[int]:
    """Every arc a (Multi)Polygon uses; a negative index is the reversed arc ~i."""
    rings = geometry["arcs"] if geometry["type"] == "Polygon" else \
        [ring for polygon in geometry["arcs"] for ring in polygon]
    return {i if i >= 0 else ~i for ring in rings for i in ring}


def inside(point: tuple[float, float]) -> bool:
    west, south, east, north = BOX
    return west <= point[0] <= east and south <= point[1] <= north


def clip_and_thin(arc: list[tuple[float, float]]) -> list[list[list[float]]]:
    """The runs of an arc inside the box, thinned to the tolerance."""
    runs, run = [], []
    for point in arc:
        if not inside(point):
            if len(run) > 1:
                runs.append(run)
            run = []
            continue
        if not run or max(abs(point[0] - run[-1][0]), abs(point[1] - run[-1][1])) >= TOLERANCE_DEG:
            run.append([round(point[0], 2), round(point[1], 2)])
    if len(run) > 1:
        runs.append(run)
    return runs


def main(argv: list[str]) -> int:
    source, target = map(Path, argv)
    topo = json.loads(source.read_text())
    arcs = decode_arcs(topo)
    wanted = set()
    for geometry in topo["objects"]["countries"]["geometries"]:
        if geometry.get("properties", {}).get("name") in COUNTRIES:
            wanted |= arc_indices(geometry)
    lines = [run for i in sorted(wanted) for run in clip_and_thin(arcs[i])]
    target.write_text(json.dumps({"source": SOURCE, "box": BOX, "lines": lines},
                                 separators=(",", ":")) + "\n")
    print(f"{target}: {len(lines)} lines, {sum(map(len, lines))} points, "
          f"{target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
