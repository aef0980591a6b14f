"""The calibration's path fit (lab.calibration): which holds a path's round trip uses, and
that the fit recovers per-link hold errors and the per-hop term from path errors."""

from __future__ import annotations

import random

from lab.calibration import fit_path_errors, path_design
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load


def test_design_counts_the_first_and_last_links_holds_and_the_further_links():
    topo = load(DEFAULT_TOPOLOGY)
    index = {frozenset((link.a, link.b)): i for i, link in enumerate(topo.links)}
    lengths = set()
    for p in topo.lowest_latency_paths():
        (row,), links = path_design(topo, [(p, None, None)])
        assert links == [link.index for link in topo.links]
        sites = p["path"]
        first, last = index[frozenset(sites[:2])], index[frozenset(sites[-2:])]
        assert row[first] == (2 if first == last else 1) and row[last] >= 1, (sites, row)
        assert sum(row[:-1]) == 2
        assert row[-1] == len(sites) - 2
        lengths.add(len(sites) - 1)
    assert {1, 2, 3} <= lengths  # one-link paths and longer ones were both checked


def test_fit_recovers_hold_errors_and_per_hop_cost():
    rng = random.Random(7)
    n_links, n_paths = 6, 200
    truth = [rng.uniform(-0.2, 0.2) for _ in range(n_links)] + [0.05]
    rows = []
    for _ in range(n_paths):
        row = [0.0] * (n_links + 1)
        first, last = rng.randrange(n_links), rng.randrange(n_links)
        row[first] += 1
        row[last] += 1
        row[-1] = 0 if first == last else rng.randrange(1, 5)
        rows.append(row)
    errors = [sum(r * t for r, t in zip(row, truth)) + rng.gauss(0, 0.01) for row in rows]
    fitted = fit_path_errors(rows, errors, ridge=0.1)
    assert all(abs(f - t) < 0.02 for f, t in zip(fitted, truth)), (fitted, truth)


def test_ridge_keeps_a_link_without_evidence_where_it_is():
    # Link 2 starts or ends no path: nothing says its hold is off.
    rows = [[2.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0], [0.0, 2.0, 0.0, 0.0]]
    fitted = fit_path_errors(rows, [0.2, 0.3, 0.2])
    assert fitted[2] == 0.0


def test_a_path_known_only_roughly_barely_moves_the_holds():
    # Four precise paths say link 0's hold is right; one over a jittery link (its median known
    # to +-0.3 ms) says it is 1 ms off.
    rows = [[2.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 2.0, 0.0], [1.0, 1.0, 2.0], [2.0, 0.0, 0.0]]
    errors = [0.0, 0.0, 0.0, 0.0, 1.0]
    spreads = [0.02, 0.02, 0.02, 0.02, 0.3]
    weighted = fit_path_errors(rows, errors, spreads)
    unweighted = fit_path_errors(rows, errors)
    assert abs(weighted[0]) < 0.01 < 0.1 < unweighted[0]
