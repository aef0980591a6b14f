"""`lab report DIR` on truncated and corrupt results directories: a report, or one line
naming the file (ReportError, exit 2), never a traceback."""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from measurements.report.markdown import render_markdown
from measurements.report.raw import ReportError, load_raw
from measurements.report.results import compute
from measurements.report.tables import main_tables
from tests.unit import test_report
from tests.unit.fuzzing import change, fuzz, run_lab

RAW_FILES = ("setup.json", "cells.jsonl", "requests.jsonl", "db.csv")
TEMPLATE = Path(tempfile.mkdtemp(prefix="hclab-raw-"))
atexit.register(shutil.rmtree, TEMPLATE, True)
test_report.raw_dir.__wrapped__(TEMPLATE)  # the report tests' small comparison


def fresh() -> Path:
    work = Path(tempfile.mkdtemp(prefix="hclab-corrupt-"))
    shutil.copytree(TEMPLATE, work / "run")
    return work / "run"


@st.composite
def corruption(draw):
    """A list of (file, how, argument) to apply to a copy of the template directory."""
    return draw(st.lists(st.tuples(st.sampled_from(RAW_FILES),
                                   st.sampled_from(["truncate", "empty", "delete", "bytes",
                                                    "field", "null", "line", "directory"]),
                                   st.integers(0, 10 ** 6)), min_size=1, max_size=3))


def corrupt(run: Path, how_list, draw) -> None:
    for name, how, n in how_list:
        path = run / name
        if path.is_dir() or (not path.exists() and how != "directory"):
            continue
        try:
            corrupt_one(path, name, how, n, draw)
        except (ValueError, ZeroDivisionError):  # an earlier step left nothing to change
            continue


def corrupt_one(path: Path, name: str, how: str, n: int, draw) -> None:
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[:n % (len(data) + 1)])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        path.unlink()
    elif how == "bytes":
        data = bytearray(path.read_bytes())
        extra = draw(st.binary(min_size=1, max_size=8))
        at = n % (len(data) + 1)
        path.write_bytes(bytes(data[:at]) + extra + bytes(data[at + len(extra):]))
    elif how == "directory":
        if path.exists():
            path.unlink()
        path.mkdir()
    elif name == "setup.json":
        path.write_text(json.dumps(change(json.loads(path.read_text()), draw,
                                               how == "null")))
    elif name.endswith(".jsonl"):
        lines = path.read_text().splitlines()
        i = n % len(lines) if lines else 0
        if lines:
            lines[i] = json.dumps(change(json.loads(lines[i]), draw, how == "null")) \
                if how in ("field", "null") else draw(st.text(max_size=40))
        path.write_text("".join(line + "\n" for line in lines))
    else:  # db.csv: one cell of one row replaced
        rows = path.read_text().splitlines()
        i = n % len(rows)
        cols = rows[i].split(",")
        cols[n % len(cols)] = draw(st.sampled_from(["", "x", "nan", "inf", "-1", "1e999",
                                                    '"', "2", "1,2"]))
        rows[i] = ",".join(cols)
        path.write_text("\n".join(rows) + "\n")


def report_or_one_line(run: Path) -> None:
    """The report's numbers, tables and markdown; or a ReportError naming a file of run."""
    try:
        results = compute(load_raw(run))
    except ReportError as exc:
        text = str(exc)
        assert len(text.splitlines()) == 1 and text.startswith(str(run)), text
        return
    main_tables(results)
    render_markdown(results)


@contextlib.contextmanager
def corrupted(how, draw):
    """A copy of the small comparison with the corruptions `how` applied; removed after."""
    run = fresh()
    try:
        corrupt(run, how, draw)
        yield run
    finally:
        shutil.rmtree(run.parent)


@fuzz(300)
@given(corruption(), st.data())
def test_corrupt_raw_files_give_a_report_or_one_line_naming_the_file(how, data):
    with corrupted(how, data.draw) as run:
        report_or_one_line(run)


@fuzz(15)
@given(corruption(), st.data())
def test_lab_report_on_a_corrupt_directory_exits_2_with_one_line(how, data):
    with corrupted(how, data.draw) as run:
        code, _, err = run_lab(["report", str(run)])
        assert code == 0 or (code == 2 and len(err.splitlines()) == 1
                             and err.startswith(f"lab: {run}")), (code, err)


OPTIONAL = ["db_phases", "cut_off_hosts", "links_cut", "no_data", "db_listen_drops",
            "expected_rtt_ms", "promotion", "failure", "repair", "invalid"]


@pytest.mark.parametrize("key", OPTIONAL)
def test_an_optional_cell_field_given_as_null_reads_as_missing(key):
    run = fresh()
    path = run / "cells.jsonl"
    cells = [{**json.loads(line), key: None} for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(c) + "\n" for c in cells))
    compute(load_raw(run))
    shutil.rmtree(run.parent)


@pytest.mark.parametrize("name", ["a file", "an empty directory", "a missing path"])
def test_lab_report_on_what_is_not_a_results_directory_exits_2(tmp_path, name):
    target = tmp_path / "x"
    if name == "a file":
        target.write_text("hello")
    elif name == "an empty directory":
        target.mkdir()
    code, _, err = run_lab(["report", str(target)])
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"lab: {target}"), err
