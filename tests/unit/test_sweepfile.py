"""The sweep file: points from a grid and a list, the overrides they make, and one-line errors
that name the field (checked case by case, then fuzzed with hypothesis)."""

from __future__ import annotations

import re
import socket

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from measurements.sweepfile import LOADER, SweepError, load, parse_sweep
from tests.helpers import DEFAULT_TOPOLOGY, run_lab
from topologies.loader import parse

SMALL = {"controller.strategies": ["latency"], "scenarios": ["normal"],
         "workload": {"samples": 1}}


def sweep(**fields):
    return parse_sweep({"base": SMALL, **fields}, "s.yaml")


def topology_of(point):
    """The topology a point's lab will read."""
    return parse(yaml.load(point.topology_yaml, Loader=LOADER), "t.yaml")


def link_delays(point) -> dict[str, float]:
    return {l.name: l.delay_ms for l in topology_of(point).links}


def error(data) -> str:
    with pytest.raises(SweepError) as info:
        parse_sweep(data, "s.yaml")
    return str(info.value)


def test_a_grid_makes_every_combination_and_a_list_entry_refines_each():
    s = sweep(grid={"link_class.metro.delay_scale": [0.5, 2], "controller.strategies":
                    [["latency"], ["geo", "hops"]]},
              points=[{}, {"workload.samples": 3}], repetitions=2, seed=10)
    assert len(s.points) == 2 * 2 * 2
    assert s.parameters == ("link_class.metro.delay_scale", "controller.strategies",
                            "workload.samples")  # the grid's, then those the list varies
    assert s.seeds() == [10, 11]
    assert len({p.id for p in s.points}) == 8
    assert {p.samples for p in s.points} == {1, 3}
    assert {p.strategies for p in s.points} == {("latency",), ("geo", "hops")}


def test_a_class_scale_changes_only_that_class_and_says_so_in_the_source():
    base = link_delays(sweep(points=[{}]).points[0])
    [point] = sweep(points=[{"link_class.metro.delay_scale": 2}]).points
    topo = topology_of(point)
    for link in topo.links:
        if link.link_class == "metro":
            assert link.delay_ms == pytest.approx(2 * base[link.name])
            assert link.delay_source.startswith("sweep (class metro): x2 of")
        else:
            assert link.delay_ms == pytest.approx(base[link.name])


def test_a_link_of_its_own_wins_over_its_class_and_either_end_order_names_it():
    [point] = sweep(points=[{"link_class.metro.delay_scale": 3,
                             "link.lz1a-dc1": {"delay_ms": 9.5, "loss_pct": 1,
                                               "bandwidth_mbit": 100}}]).points
    topo = topology_of(point)
    link = topo.link_between("dc1", "lz1a")
    assert (link.delay_ms, link.loss_pct, link.bandwidth_mbit) == (9.5, 1.0, 100.0)


def test_a_later_entry_replaces_an_earlier_delay_whether_given_or_scaled():
    s = parse_sweep({"base": {**SMALL, "link.dc1-dc2.delay_scale": 2},
                     "points": [{"link.dc1-dc2.delay_ms": 40}]}, "s.yaml")
    assert s.points[0].params["link.dc1-dc2.delay_ms"] == 40
    assert "link.dc1-dc2.delay_scale" not in s.points[0].params


def test_geo_bias_becomes_a_services_file_the_controller_accepts():
    [point] = sweep(points=[{"controller.geo_bias.mono1": 40}]).points
    services = yaml.safe_load(point.services_yaml)["services"]
    app = next(s for s in services if s["name"] == "app")
    assert {"host": "mono1", "bias": 40} in app["endpoints"]
    assert sweep(points=[{}]).points[0].services_yaml is None


def test_the_same_point_keeps_its_id_and_a_changed_one_does_not():
    a = sweep(grid={"link.dc1-dc2.delay_ms": [30, 40]})
    b = sweep(grid={"link.dc1-dc2.delay_ms": [40, 30, 50]})
    assert {p.id for p in a.points} < {p.id for p in b.points}
    changed = parse_sweep({"base": {**SMALL, "workload": {"samples": 2}},
                           "grid": {"link.dc1-dc2.delay_ms": [30, 40]}}, "s.yaml")
    assert not {p.id for p in a.points} & {p.id for p in changed.points}


def test_the_topology_is_read_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "topo.yaml").write_text(DEFAULT_TOPOLOGY.read_text().replace(
        "name: hybrid", "name: copy", 1))
    (tmp_path / "s.yaml").write_text("topology: topo.yaml\nbase: {scenarios: [normal]}\n")
    s = load(tmp_path / "s.yaml")
    assert s.topology.name == "copy" and s.name == "s"


@pytest.mark.parametrize("data, where, problem", [
    ({"grid": {"link_class.metro.dealy_ms": [1]}}, "grid.link_class.metro.dealy_ms",
     "unknown key (allowed: delay_ms, delay_scale"),
    ({"grid": {"link.dc1-dc2.delay_ms": [1, -2]}}, "grid.link.dc1-dc2.delay_ms",
     "greater than or equal to 0 (value [1]: -2)"),
    ({"grid": {"link.dc1-dc2.delay_ms": []}}, "grid.link.dc1-dc2.delay_ms", "at least one"),
    ({"points": [{"link.dc1-zz.delay_ms": 1}]}, "points[0].link.dc1-zz", "no link 'dc1-zz'"),
    ({"points": [{"link_class.nope.loss_pct": 1}]}, "points[0].link_class.nope",
     "no link of class 'nope'"),
    ({"points": [{"link.dc1-dc2": {"delay_ms": 1, "delay_scale": 2}}]}, "points[0].link.dc1-dc2",
     "not both"),
    ({"points": [{"link.dc1-dc2.loss_pct": 101}]}, "points[0].link.dc1-dc2.loss_pct",
     "less than or equal to 100"),
    ({"points": [{"controller.strategies": ["fast"]}]}, "points[0].controller.strategies[0]",
     "'hops'"),
    ({"points": [{"controller.strategies": []}]}, "points[0].controller.strategies",
     "at least 1"),
    ({"points": [{"controller.geo_bias.pg9": 3}]}, "points[0].controller.geo_bias.pg9",
     "not a service endpoint"),
    ({"points": [{"controller.geo_bias.mono1": 100}]}, "points[0].controller.geo_bias.mono1",
     "less than or equal to 99"),
    ({"points": [{"controller.geo_bias.mono1": True}]}, "points[0].controller.geo_bias.mono1",
     "valid integer"),
    ({"base": {"workload": {"samples": "3"}}}, "base.workload.samples", "valid integer"),
    ({"base": {"workload.failure_window_s": 0}}, "base.workload.failure_window_s",
     "greater than 0"),
    ({"base": {"scenarios": ["flood"]}}, "base.scenarios[0]", "'normal'"),
    ({"base": {"lab.links": "fast"}}, "base.lab.links", "'auto'"),
    ({"points": [{"link.dc1-dc2.delay_ms": 1, "link": {"dc1-dc2": {"delay_ms": 2}}}]},
     "points[0].link.dc1-dc2.delay_ms", "given twice"),
    ({"points": [{"a..b": 1}]}, "points[0].a..b", "empty part"),
    ({"repetitions": 0}, "repetitions", "greater than or equal to 1"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"bogus": 1}, "bogus", "unknown key (allowed: name, description, topology"),
    ({"topology": "/nonexistent.yaml"}, "topology", "cannot read"),
    ({"grid": {"scenarios": [["normal"], ["normal"]]}}, "grid combination 2",
     "the same point as grid combination 1"),
    (["a list"], "(top)", "must be a mapping, got a list"),
])
def test_each_mistake_is_one_line_naming_the_field(data, where, problem):
    message = error(data)
    assert "\n" not in message
    assert message.startswith(f"s.yaml: {where}: "), message
    assert problem in message, message


def test_unreadable_and_invalid_yaml_files_name_the_file(tmp_path):
    with pytest.raises(SweepError, match=r"^.*missing\.yaml: \(file\): cannot read"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("grid: [1\n")
    with pytest.raises(SweepError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load(tmp_path / "bad.yaml")


# -- fuzzing -----------------------------------------------------------------------------

KEYS = ["name", "topology", "repetitions", "seed", "base", "grid", "points", "link",
        "link_class", "controller", "workload", "scenarios", "lab", "strategies", "geo_bias",
        "samples", "failure_window_s", "delay_ms", "delay_scale", "loss_pct", "bandwidth_mbit",
        "dc1-dc2", "metro", "mono1", "link.dc1-dc2.delay_ms", "link_class.metro.delay_scale",
        "controller.strategies", "workload.samples", "lab.calibrate", "x.y", "..", ""]
SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(["latency", "geo", "normal", "auto", "fast", "dc1-dc2", "", "1"]))
YAMLISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner,
                                         max_size=4), max_leaves=20)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one_line_naming_the_file(exc: SweepError) -> bool:
    return "\n" not in str(exc) and re.match(r"^s\.yaml: \S.*?: \S", str(exc)) is not None


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), YAMLISH, max_size=5))
def test_any_data_gives_a_sweep_or_one_line_error(data):
    try:
        s = parse_sweep(data, "s.yaml")
    except SweepError as exc:
        assert one_line_naming_the_file(exc), str(exc)
    else:
        assert s.points and len({p.id for p in s.points}) == len(s.points)


@FUZZ
@given(st.text(max_size=200))
def test_any_text_gives_a_sweep_or_one_line_error(text):
    try:
        parse_sweep(yaml.safe_load(text), "s.yaml")
    except yaml.YAMLError:
        pass  # load() turns these into SweepError; covered above
    except SweepError as exc:
        assert one_line_naming_the_file(exc), str(exc)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["link.dc1-dc2.delay_ms", "link_class.metro.delay_scale",
                     "link.rga-rgb.loss_pct", "workload.samples", "controller.geo_bias.svrga"]),
    st.lists(st.integers(1, 60), min_size=1, max_size=2, unique=True), min_size=1, max_size=3),
    st.integers(1, 3))
def test_a_valid_grid_has_one_point_per_combination_each_with_its_values(grid, repetitions):
    s = sweep(grid=grid, repetitions=repetitions)
    expected = 1
    for values in grid.values():
        expected *= len(values)
    assert len(s.points) == expected == len({p.id for p in s.points})
    assert len(s.seeds()) == repetitions
    for point in s.points:
        assert set(point.swept) == set(grid)
        topo = topology_of(point)
        if "link.dc1-dc2.delay_ms" in grid:
            assert topo.link_between("dc1", "dc2").delay_ms == point.swept["link.dc1-dc2.delay_ms"]
        if "link.rga-rgb.loss_pct" in grid:
            assert topo.link_between("rga", "rgb").loss_pct == point.swept["link.rga-rgb.loss_pct"]
    assert [p.id for p in sweep(grid=grid, repetitions=repetitions).points] == \
        [p.id for p in s.points]  # the same file gives the same ids


def test_lab_sweep_with_a_bad_file_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  link.dc1-dc2.dealy_ms: [1, 2]\n")
    result = run_lab("sweep", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (f"{bad}: grid.link.dc1-dc2.dealy_ms: unknown key (allowed: "
                             f"delay_ms, delay_scale, bandwidth_mbit, loss_pct) "
                             f"(value [0]: 1)\n")
    assert not (tmp_path / "out").exists()  # nothing was made


def test_lab_sweep_says_at_once_when_no_cluster_answers(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("base: {scenarios: [normal]}\n")
    with socket.socket() as s:  # a port of this machine's loopback that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_lab("sweep", str(good), "--out", str(tmp_path / "out"), "--cluster",
                     f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"lab: no Ray cluster answers at 127.0.0.1:{port}: Connection refused\n"
