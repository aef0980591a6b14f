"""Result files: written whole, never through a planted link, never over earlier results."""

from __future__ import annotations

import json
import os
import time

import pytest

from lab.files import (OutDirError, atomic_write, check_out_dir, copy_file, open_append,
                       open_new, results_dir, write_json)
from measurements.compare import run_compare
from measurements.dbbench import run_db_bench
from measurements.report.raw import ReportError
from measurements.report.writer import write_report
from tests.unit.fuzzing import run_lab
from topologies import DEFAULT_TOPOLOGY

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (writes as root into "
                                                         "another user's directory)")


def no_lab(*args, **kwargs):
    raise AssertionError("the lab was brought up")


def test_an_atomic_write_leaves_no_temporary_file_and_replaces_the_whole(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    atomic_write(tmp_path / "a.json", "new\n")
    assert os.listdir(tmp_path) == ["a.json"] and (tmp_path / "a.json").read_text() == "new\n"


def test_default_results_directories_never_collide(tmp_path):
    made = [results_dir(None, "compare", parent=tmp_path) for _ in range(3)]
    assert len(set(made)) == 3 and all(p.is_dir() for p in made)
    stamp = time.strftime("%Y%m%d")
    assert all(p.name.startswith(f"compare-{stamp}") for p in made)


def test_an_out_dir_that_holds_anything_is_refused(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "requests.jsonl").write_text("{}\n")
    for bad in (tmp_path / "old", tmp_path / "old" / "requests.jsonl"):
        with pytest.raises(OutDirError):
            check_out_dir(bad)
    (tmp_path / "empty").mkdir()
    assert results_dir(tmp_path / "empty", "x") == tmp_path / "empty"
    assert results_dir(tmp_path / "new" / "deeper", "x").is_dir()


def test_compare_and_dbbench_refuse_earlier_results_before_the_lab_comes_up(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("requests.jsonl", "db.csv", "cells.jsonl", "samples.csv"):
        (old / name).write_text("earlier results\n")
    with pytest.raises(OutDirError):
        run_compare(DEFAULT_TOPOLOGY, out_dir=old, lab_factory=no_lab)
    with pytest.raises(OutDirError):
        run_db_bench(DEFAULT_TOPOLOGY, out_dir=old, lab_factory=no_lab)
    assert all((old / n).read_text() == "earlier results\n" for n in os.listdir(old))


def test_lab_compare_out_with_results_is_one_line_and_changes_nothing(tmp_path):
    (tmp_path / "cells.jsonl").write_text("earlier\n")
    for argv in (["compare"], ["bench", "db"], ["run"]):
        code, _, err = run_lab([*argv, "--out", str(tmp_path)])
        assert code == 2 and err == (f"lab: --out: {tmp_path} already holds files (earlier "
                                     f"results are never overwritten): give a new directory\n")
    assert os.listdir(tmp_path) == ["cells.jsonl"]


@pytest.fixture
def nobodys_dir(tmp_path):
    """A directory another user owns, a file of root's elsewhere, and links to it planted
    at every name the lab writes."""
    precious = tmp_path / "precious"
    precious.write_text("root's file\n")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    for name in ("setup.json", "requests.jsonl", "report.md", "results.json", "new.txt"):
        (theirs / name).symlink_to(precious)
        os.lchown(theirs / name, NOBODY, NOBODY)
    return theirs, precious


@as_root
def test_root_never_writes_through_a_link_planted_in_another_users_directory(nobodys_dir):
    theirs, precious = nobodys_dir
    attempts = [lambda: write_json(theirs / "setup.json", {"x": 1}),
                lambda: atomic_write(theirs / "results.json", "x"),
                lambda: copy_file(DEFAULT_TOPOLOGY, theirs / "report.md"),
                lambda: open_append(theirs / "requests.jsonl").write("{}\n"),
                lambda: open_new(theirs / "new.txt").write("x")]
    for attempt in attempts:
        with pytest.raises(OSError):
            attempt()
    assert precious.read_text() == "root's file\n"
    assert all((theirs / n).is_symlink() for n in os.listdir(theirs))


@as_root
def test_lab_report_refuses_a_planted_link_in_one_line(nobodys_dir):
    from tests.unit.test_report import raw_dir
    theirs, precious = nobodys_dir
    for name in ("setup.json", "requests.jsonl"):  # the raw files are the run's own
        (theirs / name).unlink()
    raw_dir.__wrapped__(theirs)  # report.md and results.json stay planted links
    with pytest.raises(ReportError, match="results.json: cannot write"):
        write_report(theirs)
    code, _, err = run_lab(["report", str(theirs)])
    assert code == 2 and len(err.splitlines()) == 1 and "cannot write" in err
    assert precious.read_text() == "root's file\n"


@as_root
def test_a_link_planted_as_the_out_dir_is_refused(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OutDirError, match="symbolic link"):
        check_out_dir(tmp_path / "link")


def test_open_append_adds_whole_lines(tmp_path):
    for i in range(2):
        with open_append(tmp_path / "a.jsonl") as f:
            f.write(json.dumps({"i": i}) + "\n")
    assert (tmp_path / "a.jsonl").read_text() == '{"i": 0}\n{"i": 1}\n'
