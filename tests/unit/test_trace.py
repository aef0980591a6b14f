"""Delay traces: the strict reader (exact errors, fuzzed), schedules in time, the shipped
traces and the generator, the topology's `schedule:` key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import DEFAULT_TOPOLOGY
from topologies.loader import load, parse
from topologies.model import Schedule, TopologyError, Trace, TracePoint
from topologies.trace import format_trace, load_trace, parse_trace
from topologies.tracegen import sine, spikes, step

TRACES = sorted((DEFAULT_TOPOLOGY.parent / "traces").glob("*.csv"))
GOOD = "# source: test\ntime_s,delay_ms,loss_pct\n0,10,0\n2.5,30,1\n4,10,0\n"


def error_of(text: str) -> str:
    with pytest.raises(TopologyError) as info:
        parse_trace(text, "t.csv")
    message = str(info.value)
    assert "\n" not in message and message.startswith("t.csv: ")
    return message


def test_a_good_trace_reads_back_row_by_row():
    trace = parse_trace(GOOD, "t.csv")
    assert trace.points == (TracePoint(0, 10, None, 0), TracePoint(2.5, 30, None, 1),
                            TracePoint(4, 10, None, 0))
    assert trace.meta("source") == "test" and trace.period_s == 4


@pytest.mark.parametrize("text, expected", [
    ("time_s,delay_ms\n0,1\n", "t.csv: (header): needs a '# source: ...' line"),
    ("# source: x\n", "t.csv: (table): needs a column row"),
    ("# source: x\ntime_s,delay_ms\n", "t.csv: (table): needs a column row"),
    ("# sauce: x\ntime_s,delay_ms\n0,1\n", "t.csv: line 1: header lines are '# KEY: value'"),
    ("# source:\ntime_s,delay_ms\n0,1\n", "t.csv: line 1: source: must not be empty"),
    ("# source: x\ntime_s,dealy_ms\n0,1\n", "t.csv: line 2: unknown column 'dealy_ms'"),
    ("# source: x\ntime_s\n0\n", "t.csv: line 2: column 'delay_ms' is required"),
    ("# source: x\ntime_s,delay_ms,delay_ms\n0,1,1\n", "t.csv: line 2: a column is named twice"),
    ("# source: x\ntime_s,delay_ms\n0,1,2\n", "t.csv: line 3: 3 values for 2 columns"),
    ("# source: x\ntime_s,delay_ms\n0,abc\n", "t.csv: line 3, delay_ms: 'abc' is not a number"),
    ("# source: x\ntime_s,delay_ms\n0,-1\n", "t.csv: line 3, delay_ms: must be between 0 and"),
    ("# source: x\ntime_s,delay_ms\n0,nan\n", "t.csv: line 3, delay_ms: must be between"),
    ("# source: x\ntime_s,delay_ms,loss_pct\n0,1,101\n", "line 3, loss_pct: must be between 0 and 100"),
    ("# source: x\ntime_s,delay_ms\n1,1\n", "t.csv: line 3, time_s: the first row must be at 0 s"),
    ("# source: x\ntime_s,delay_ms\n0,1\n0,2\n", "line 4, time_s: must be later than the row before (0 s)"),
    ("# source: x\ntime_s,delay_ms\n0,1\n# late\n", "t.csv: line 4: comments belong in the header"),
])
def test_every_mistake_is_one_line_naming_the_line_and_column(text, expected):
    assert expected in error_of(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="#:,. \n-0123456789eEnaistourcedlymjp_x", max_size=200))
def test_any_text_is_a_trace_or_one_line_error(text):
    try:
        trace = parse_trace(text, "t.csv")
    except TopologyError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("t.csv: ")
    else:
        times = [p.time_s for p in trace.points]
        assert times[0] == 0 and times == sorted(set(times))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.001, 1e4), st.floats(0, 1e4), st.floats(0, 100)),
                min_size=1, max_size=30))
def test_written_traces_read_back_the_same(rows):
    t, points = 0.0, []
    for gap, delay, loss in rows:
        points.append(TracePoint(round(t, 3), round(delay, 4), None, round(loss, 3)))
        t += gap
    text = format_trace(points, [("source", "hypothesis")])
    assert parse_trace(text).points == tuple(points)


def schedule(text: str = GOOD, loop: bool = True, speed: float = 1.0) -> Schedule:
    return Schedule(parse_trace(text, "t.csv"), loop=loop, speed=speed)


def test_a_looped_schedule_starts_again_at_its_last_offset():
    s = schedule()
    assert [s.at(t).delay_ms for t in (0, 2.4, 2.5, 3.9, 4.0, 6.6)] == [10, 10, 30, 30, 10, 30]
    assert [(t, p.delay_ms) for t, p in s.changes(7)] == [(0, 10), (2.5, 30), (4, 10), (6.5, 30)]


def test_a_schedule_played_once_keeps_its_last_row_and_speed_compresses_time():
    s = schedule(loop=False, speed=2.0)
    assert s.at(1.25).delay_ms == 30 and s.at(100).delay_ms == 10
    assert [t for t, _ in s.changes(1000)] == [0, 1.25, 2.0]


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name)
def test_shipped_traces_say_where_they_come_from_and_under_which_license(path):
    trace = load_trace(path)
    assert trace.meta("source") and trace.meta("license")


def test_the_default_topology_schedules_the_dc_line_and_the_inter_region_link():
    topo = load(DEFAULT_TOPOLOGY)
    scheduled = {l.name: l.schedule for l in topo.links if l.schedule}
    assert set(scheduled) == {"dc1-dc2", "rga-rgb"}
    dc = scheduled["dc1-dc2"]
    # The trace starts at the link's configured delay, and rises above the detour by the
    # Regions (dc1-rga-rgb-dc2), so that a latency-routing controller has a reason to move.
    detour = sum(topo.link_between(a, b).delay_ms for a, b in (("dc1", "rga"), ("rga", "rgb"),
                                                                 ("rgb", "dc2")))
    assert dc.at(0).delay_ms == pytest.approx(topo.link_between("dc1", "dc2").delay_ms, abs=1e-3)
    assert max(p.delay_ms for p in dc.trace.points) > detour + 5
    assert topo.as_dict(paths=False)["links"][18]["schedule"]["loop"] is False


def topology_with(change) -> dict:
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    change(data)
    return data


@pytest.mark.parametrize("schedule_spec, expected", [
    ({"trace": "traces/none.csv"}, "links[0].schedule.trace: no trace file"),
    ({"trace": "traces/dc-wan-congestion.csv", "lop": True}, "links[0].schedule.lop: unknown key"),
    ({"trace": "traces/dc-wan-congestion.csv", "loop": "yes"}, "links[0].schedule.loop: must be true or false"),
    ({"trace": "traces/dc-wan-congestion.csv", "speed": 0}, "links[0].schedule.speed: must be between"),
    ({"loop": True}, "links[0].schedule.trace: is required"),
])
def test_a_bad_schedule_in_a_topology_names_its_field(schedule_spec, expected):
    data = topology_with(lambda d: d["links"][0].update(schedule=schedule_spec))
    with pytest.raises(TopologyError) as info:
        parse(data, str(DEFAULT_TOPOLOGY))
    assert expected in str(info.value)


def test_a_link_class_schedule_reaches_every_link_of_the_class_but_one_with_its_own():
    def change(d):
        d["link_classes"]["internet"]["schedule"] = {"trace": "traces/dc-wan-route-change.csv",
                                                     "speed": 240}
    topo = parse(topology_with(change), str(DEFAULT_TOPOLOGY))
    internet = [l for l in topo.links if l.link_class == "internet"]
    assert internet and all(l.schedule.speed == 240 for l in internet)
    assert topo.link_between("dc1", "dc2").schedule.trace.file.endswith("dc-wan-congestion.csv")


def test_a_broken_trace_file_is_named_in_the_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("# source: x\ntime_s,delay_ms\n0,fast\n")
    data = topology_with(lambda d: d["links"][0].update(schedule={"trace": str(bad)}))
    with pytest.raises(TopologyError) as info:
        parse(data, str(DEFAULT_TOPOLOGY))
    assert str(info.value) == f"{bad}: line 3, delay_ms: 'fast' is not a number"


def test_patterns_have_the_shape_they_are_named_for():
    day = sine(30, 5, step_s=3600)
    assert len(day) == 25 and day[0].delay_ms == 25 and day[12].delay_ms == 35
    assert [(p.time_s, p.delay_ms) for p in step(10, 20, 5, 8)] == [(0, 10), (5, 20), (8, 20)]
    assert [(p.time_s, p.delay_ms) for p in spikes(10, 5, 10, 2, 25)] == [
        (0, 10), (8, 15), (10, 10), (18, 15), (20, 10), (25, 10)]
    with pytest.raises(ValueError):
        sine(5, 6)


def lab_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_lab_trace_generate_writes_a_trace_that_checks(tmp_path):
    out = tmp_path / "spikes.csv"
    result = lab_cli("trace", "generate", "spikes", "--out", str(out), "--base-ms", "20",
                     "--height-ms", "30", "--every-s", "10", "--width-s", "3",
                     "--duration-s", "30")
    assert result.returncode == 0, result.stderr
    trace = load_trace(out)
    assert trace.meta("source").startswith("synthetic: lab trace generate spikes")
    assert max(p.delay_ms for p in trace.points) == 50
    assert lab_cli("trace", "check", str(out)).returncode == 0


def test_lab_trace_check_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("# source: x\ntime_s,delay_ms\n0,1\n0,2\n")
    result = lab_cli("trace", "check", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"{bad}: line 4, time_s: must be later than the row "
                                      "before (0 s)")
