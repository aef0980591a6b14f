"""The map's layout: metro areas in insets, every link's own delay written, no label on
another label or on a marker."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.transforms import Bbox

from measurements.report import sitemap
from tests.helpers import DEFAULT_TOPOLOGY
from tests.unit.test_report import SETUP
from topologies.loader import load


@pytest.fixture(scope="module")
def default():
    return load(DEFAULT_TOPOLOGY).as_dict(paths=False)


def test_sites_a_few_km_apart_share_one_inset():
    topo = SETUP["topology"]
    metros = sitemap._metros(topo)
    assert metros == [["dc1", "lz1"]]  # 34 km apart; the clinic is 200 km away
    nodes, edges = sitemap._whole_map(topo, metros)
    assert {n: node.kind for n, node in nodes.items()} == {"dc1 area": "metro", "cl1": "clinic"}
    assert edges == [("cl1", "dc1 area", [5.0])]
    nodes, edges = sitemap._inset(topo, ["dc1", "lz1"])
    assert nodes["dc1"].label == "dc1\n→ cl1 5.0" and edges == [("dc1", "lz1", [1.5])]


def test_every_links_own_delay_is_written(default):
    metros = sitemap._metros(default)
    assert [m[0] for m in metros] == ["dc1", "dc2"]
    written = set()  # {site, site, delay label} wherever the map writes one link's delay
    for members in metros:
        nodes, edges = sitemap._inset(default, members)
        written |= {frozenset((a, b, sitemap._delay_label(d))) for a, b, d in edges}
        for name, node in nodes.items():  # "→ site delay" lines: links leaving the area
            written |= {frozenset((name, *line[2:].split(" ")))
                        for line in node.label.split("\n")[1:]}
    nodes, edges = sitemap._whole_map(default, metros)
    written |= {frozenset((a, b, sitemap._delay_label(d))) for a, b, d in edges if len(d) == 1}
    assert written >= {frozenset((link["a"], link["b"], f"{link['delay_ms']:.1f}"))
                       for link in default["links"]}
    assert any(len(d) == 4 for _, _, d in edges)  # Outposts, LZ and DC to their Region: one line


def test_no_label_overlaps_another_a_marker_or_the_panel_edge(default):
    fig = sitemap.map_figure(default)
    renderer = fig.canvas.get_renderer()
    try:
        for ax in fig.axes:
            frame = ax.get_window_extent(renderer)
            labels = [t.get_window_extent(renderer) for t in ax.texts]
            markers = [Bbox.from_bounds(*ax.transData.transform(xy) - half, 2 * half, 2 * half)
                       for c in ax.collections for xy in c.get_offsets()
                       for half in [c.get_sizes()[0] ** 0.5 / 2 * fig.dpi / 72]]
            assert len(labels) > len(markers) > 3
            for i, box in enumerate(labels):
                assert not any(box.overlaps(other) for other in labels[i + 1:] + markers), \
                    (ax.get_title(), ax.texts[i].get_text())
                assert frame.contains(*box.min) and frame.contains(*box.max)
    finally:
        plt.close(fig)
