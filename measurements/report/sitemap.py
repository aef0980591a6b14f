"""map.png: the sites near their coordinates, links labelled with their one-way delay, and an
inset per metro area, where sites a few km apart would otherwise sit on one another."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import networkx as nx
import numpy as np
from matplotlib.path import Path as Line
from matplotlib.transforms import Bbox

from measurements.report.figures import DPI, plt, save
from topologies.model import great_circle_km

# Scatter style per kind of site; "metro" is a metro area drawn as one node on the whole map.
KIND_STYLE = {
    "datacenter": dict(marker="s", color="#444444", edgecolor="white", s=80),
    "outpost": dict(marker="D", color="#ff7f0e", edgecolor="white", s=70),
    "localzone": dict(marker="^", color="#2ca02c", edgecolor="white", s=90),
    "region": dict(marker="o", color="#1f77b4", edgecolor="white", s=90),
    "clinic": dict(marker="P", color="#d62728", edgecolor="white", s=80),
    "metro": dict(marker="o", facecolor="white", edgecolor="black", linestyle="--", s=320,
                  label="metro area (see its inset)"),
}
METRO_KM = 50.0  # sites closer than this overlap on the whole map: they go in an inset
INSETS_PER_ROW = 3  # more would leave an inset too narrow for its names
MAP_GAP = 4.0  # degrees of latitude (about 440 km): the least distance between two map nodes


@dataclass
class _Node:
    """One marker of a map panel: a site, or in the whole map a metro area drawn as one."""

    xy: tuple[float, float]
    kind: str
    label: str


def _metros(topo: dict) -> list[list[str]]:
    """Groups of two or more sites chained within METRO_KM, in file order.

    At the whole map's scale such sites (a data center, its Outposts, a Local Zone and a
    clinic in one city) would sit on top of one another, so each group gets an inset.
    """
    names = [s["name"] for s in topo["sites"]]
    close = nx.Graph()
    close.add_nodes_from(names)
    close.add_edges_from((a["name"], b["name"]) for a, b in combinations(topo["sites"], 2)
                         if great_circle_km(a["lat"], a["lon"], b["lat"], b["lon"]) < METRO_KM)
    groups = [sorted(c, key=names.index) for c in nx.connected_components(close) if len(c) > 1]
    return sorted(groups, key=lambda g: names.index(g[0]))


def _area(topo: dict, members: list[str]) -> str:
    """A metro area's name: its data center's, the site a reader knows it by."""
    kinds = {s["name"]: s["kind"] for s in topo["sites"]}
    return next((n for n in members if kinds[n] == "datacenter"), members[0]) + " area"


def _delay_label(delays: list[float]) -> str:
    """A link's delay label, or the range and count of the links joining the same places."""
    low, high = f"{min(delays):.1f}", f"{max(delays):.1f}"
    if len(delays) == 1:
        return low
    return f"{low} ×{len(delays)}" if low == high else f"{low}–{high} ×{len(delays)}"


def _whole_map(topo: dict, metros: list[list[str]]) -> tuple[dict, list]:
    """Nodes and edges of the whole map: a metro area is one node at its sites' mean
    position, and the links between the same two nodes are one edge with all their delays."""
    node_of = {n: _area(topo, m) for m in metros for n in m}
    where: dict[str, list] = {}
    for s in topo["sites"]:
        where.setdefault(node_of.get(s["name"], s["name"]), []).append((s["lon"], s["lat"]))
    bundles: dict[tuple[str, str], list[float]] = {}
    for link in topo["links"]:
        a, b = node_of.get(link["a"], link["a"]), node_of.get(link["b"], link["b"])
        if a != b:
            bundles.setdefault((a, b) if (b, a) not in bundles else (b, a), []).append(
                link["delay_ms"])
    kinds = {s["name"]: s["kind"] for s in topo["sites"]}
    spread = _spread({n: np.mean(xy, 0) for n, xy in where.items()}, list(bundles),
                     _stretch(topo))
    nodes = {n: _Node(xy, kinds.get(n, "metro"), n) for n, xy in spread.items()}
    return nodes, [(a, b, d) for (a, b), d in bundles.items()]


def _stretch(topo: dict) -> float:
    """Length of a degree of longitude over one of latitude, at the map's mean latitude."""
    return float(np.cos(np.radians(np.mean([s["lat"] for s in topo["sites"]]))))


def _away(fixed: np.ndarray, moving: np.ndarray, gap: float) -> np.ndarray:
    """How far to move a point to put it gap away from another (zero if it already is)."""
    d = moving - fixed
    dist = float(np.hypot(*d))
    return (d / dist if dist else np.array([1.0, 0.0])) * max(0.0, gap - dist)


def _spread(pos: dict[str, np.ndarray], edges: list[tuple[str, str]],
            stretch: float) -> dict[str, tuple]:
    """Pushes apart, a little at a time, nodes closer than MAP_GAP as drawn, and nodes from
    links passing by closer than half that: crowded sites (New York, Philadelphia, N.
    Virginia) keep their rough place but no longer overlap or sit on another site's link."""
    p = {k: np.array([x * stretch, y]) for k, (x, y) in pos.items()}
    for _ in range(200):
        for a, b in combinations(p, 2):
            push = _away(p[a], p[b], MAP_GAP) / 2
            p[a], p[b] = p[a] - push, p[b] + push
        for a, b in edges:
            ab = p[b] - p[a]
            for n in [n for n in p if n not in (a, b)]:
                t = np.clip(np.dot(p[n] - p[a], ab) / (np.dot(ab, ab) or 1.0), 0, 1)
                p[n] = p[n] + _away(p[a] + t * ab, p[n], MAP_GAP / 2) / 2
    return {k: (x / stretch, y) for k, (x, y) in p.items()}


def _frame(ax, points: list, pad: tuple[float, float], aspect: float) -> None:
    """Limits around the points with room for labels, widened one way to keep the aspect
    (the limits stay automatic: fixed ones would make matplotlib warn and ignore them)."""
    ax.update_datalim([np.min(points, 0) - pad, np.max(points, 0) + pad])
    ax.margins(0)
    ax.set_aspect(aspect, adjustable="datalim")


def _schematic(sites: list[dict]) -> dict[str, tuple[float, float]]:
    """The data center at the centre, the other sites evenly on a ring in the order of their
    true bearing from it: at their real distance (a few km, often 0) they would overlap."""
    hub = next((s for s in sites if s["kind"] == "datacenter"), None)
    lat = hub["lat"] if hub else np.mean([s["lat"] for s in sites])
    lon = hub["lon"] if hub else np.mean([s["lon"] for s in sites])
    ring = sorted((s for s in sites if s is not hub), key=lambda s: np.arctan2(
        s["lat"] - lat, (s["lon"] - lon) * np.cos(np.radians(lat))))
    pos = {hub["name"]: (0.0, 0.0)} if hub else {}
    for i, s in enumerate(ring):
        angle = np.pi / 2 + i * 2 * np.pi / len(ring)
        pos[s["name"]] = (np.cos(angle), np.sin(angle))
    return pos


def _inset(topo: dict, members: list[str]) -> tuple[dict, list]:
    """Nodes and edges of one metro area's inset; a link leaving the area is a line
    '→ site delay' under its end's name: the whole map may show only a range for it."""
    sites = [s for s in topo["sites"] if s["name"] in members]
    kinds = {s["name"]: s["kind"] for s in sites}
    nodes = {n: _Node(xy, kinds[n], n) for n, xy in _schematic(sites).items()}
    edges = []
    for link in topo["links"]:
        a, b = link["a"], link["b"]
        if a in members and b in members:
            edges.append((a, b, [link["delay_ms"]]))
        elif a in members or b in members:
            inside, outside = (a, b) if a in members else (b, a)
            nodes[inside].label += f"\n→ {outside} {_delay_label([link['delay_ms']])}"
    return nodes, edges


def _overlap(box: Bbox, other: Bbox) -> float:
    """The area two boxes share, in square pixels."""
    both = Bbox.intersection(box, other)
    return both.width * both.height if both is not None else 0.0


def _place(text, spots: list[dict], taken: list[Bbox], frame: Bbox, lines: list) -> None:
    """Moves a label to the first spot that overlaps no label or marker placed before it,
    crosses no other link and stays inside the panel, else to the least crowded one (a link
    crossed costs a quarter of an overlap: better across a line than on another label)."""
    renderer = text.figure.canvas.get_renderer()

    def crowding(spot: dict) -> float:
        text.update(spot)
        box = text.get_window_extent(renderer).padded(2)
        area = box.width * box.height
        return (sum(_overlap(box, t) for t in taken) + area - _overlap(box, frame)
                + area / 4 * sum(line.intersects_bbox(box) for line in lines))

    text.update(min(spots, key=crowding))
    taken.append(text.get_window_extent(renderer).padded(2))


def _radius(kind: str) -> float:
    """Half the width of a kind's marker, in points (scatter sizes are areas)."""
    return float(np.sqrt(KIND_STYLE[kind]["s"])) / 2


def _beside(radius: float) -> list[dict]:
    """Spots for a name around a marker of that radius (points): diagonals first, so the name
    reads as the marker's and leaves the straight lines of its links free."""
    g = radius + 2
    return [{"position": (x, y), "ha": ha, "va": va} for x, y, ha, va in [
        (g, g, "left", "bottom"), (-g, g, "right", "bottom"), (g, -g, "left", "top"),
        (-g, -g, "right", "top"), (g, 0, "left", "center"), (-g, 0, "right", "center"),
        (0, g, "center", "bottom"), (0, -g, "center", "top")]]


def _draw_graph(ax, nodes: dict[str, _Node], edges: list[tuple[str, str, list[float]]],
                size: float) -> None:
    """Markers by kind, names beside them and delays on the links, every label where it
    overlaps no marker and no label drawn before it (the panel's limits must be set)."""
    for a, b, delays in edges:  # the more links an edge stands for, the thicker
        ax.plot(*zip(nodes[a].xy, nodes[b].xy), color="#999999", lw=0.5 + 0.5 * len(delays),
                zorder=1)
    for kind, style in KIND_STYLE.items():
        xy = [n.xy for n in nodes.values() if n.kind == kind]
        if xy:
            ax.scatter(*zip(*xy), **{"label": kind, **style}, zorder=4)
    ax.apply_aspect()
    frame, taken = ax.get_window_extent(), []
    lines = [Line(ax.transData.transform([nodes[a].xy, nodes[b].xy])) for a, b, _ in edges]
    for n in nodes.values():
        half = _radius(n.kind) * ax.figure.dpi / 72
        taken.append(Bbox.from_bounds(*ax.transData.transform(n.xy) - half, 2 * half, 2 * half))
    for n in nodes.values():
        label = ax.annotate(n.label, n.xy, (0, 0), textcoords="offset points", fontsize=size,
                            zorder=5, bbox=dict(boxstyle="round,pad=0.15", fc="white",
                                                ec="none", alpha=0.8))
        _place(label, _beside(_radius(n.kind)), taken, frame, lines)
    for i, (a, b, delays) in enumerate(edges):
        (x1, y1), (x2, y2) = nodes[a].xy, nodes[b].xy
        label = ax.text(0, 0, _delay_label(delays), fontsize=size - 1, ha="center",
                        va="center", zorder=3, bbox=dict(boxstyle="round,pad=0.15", fc="white",
                                                         ec="#cccccc", lw=0.5))
        _place(label, [{"position": (x1 + t * (x2 - x1), y1 + t * (y2 - y1))}
                       for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8)], taken, frame,
               lines[:i] + lines[i + 1:])


def _legend(fig, top: float) -> None:
    """One legend for all panels (Outposts and data centers may appear in the insets only)."""
    handles = {label: h for ax in fig.axes for h, label in zip(*ax.get_legend_handles_labels())}
    order = [style.get("label", kind) for kind, style in KIND_STYLE.items()]
    labels = sorted(handles, key=order.index)
    fig.legend([handles[k] for k in labels], labels, loc="upper center", ncol=len(labels),
               bbox_to_anchor=(0.5, top), frameon=False, fontsize=10)


def _draw_whole_map(ax, topo: dict, metros: list[list[str]]) -> None:
    """Every site but those of a metro area, which is one node: the country at a glance."""
    nodes, edges = _whole_map(topo, metros)
    _frame(ax, [n.xy for n in nodes.values()], (5, 1.5), 1 / _stretch(topo))
    moved = max((great_circle_km(s["lat"], s["lon"], *nodes[s["name"]].xy[::-1])
                 for s in topo["sites"] if s["name"] in nodes), default=0.0)
    ax.set(xticks=[], yticks=[], xlabel=f"sites at their coordinates, moved up to {moved:.0f} "
           "km where they crowd" + ("; each metro area (dashed circle) is drawn in its inset "
                                    "below" if metros else ""))
    _draw_graph(ax, nodes, edges, 9.5)


def _draw_inset(ax, topo: dict, members: list[str]) -> None:
    """One metro area's sites, spread out around its data center, with every link's delay."""
    _frame(ax, [(-1, -1), (1, 1)], (1.1, 0.45), 1)
    ax.set(xticks=[], yticks=[])
    _draw_graph(ax, *_inset(topo, members), 10)
    spread = max(great_circle_km(a["lat"], a["lon"], b["lat"], b["lon"]) for a, b in
                 combinations([s for s in topo["sites"] if s["name"] in members], 2))
    ax.set_title(f"{_area(topo, members)}: {len(members)} sites within {spread:.0f} km",
                 fontsize=11)
    ax.set_xlabel("positions schematic; '→ site ms': a link leaving the area", fontsize=9)


def site_map(setup: dict, path: Path) -> None:
    save(map_figure(setup["topology"]), path)


def map_figure(topo: dict):
    """The whole map on top and one inset per metro area below it, so that every name and
    delay is legible where sites a few km apart would otherwise overlap."""
    metros = _metros(topo)
    rows = -(-len(metros) // INSETS_PER_ROW)
    height = 7.2 + 4.8 * rows  # inches: the header, the whole map, then the rows of insets
    fig = plt.figure(figsize=(15, height), dpi=DPI)
    grid = fig.add_gridspec(1 + rows, max(1, min(len(metros), INSETS_PER_ROW)), left=0.05,
                            right=0.98, top=1 - 1.1 / height, bottom=0.6 / height,
                            hspace=0.18, wspace=0.06, height_ratios=[1.4] + [1] * rows)
    _draw_whole_map(fig.add_subplot(grid[0, :]), topo, metros)
    for i, members in enumerate(metros):
        inset = fig.add_subplot(grid[1 + i // INSETS_PER_ROW, i % INSETS_PER_ROW])
        _draw_inset(inset, topo, members)
    _legend(fig, 1 - 0.62 / height)
    about = f": {topo['description']}" if topo.get("description") else ""
    fig.suptitle(f"Sites and links of topology {topo['name']}{about}", fontsize=14,
                 y=1 - 0.12 / height)
    fig.text(0.5, 1 - 0.5 / height, "Numbers on links: one-way delay in ms (a round trip sees "
             "it twice); 'a–b ×n': n links join the same two places, delays a to b ms.",
             ha="center", fontsize=10)
    return fig
