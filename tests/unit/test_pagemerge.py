"""The lab's use of the kernel's page merging: on while the lab is up, then as it was."""

from lab import pagemerge
from lab.pagemerge import PAGES_TO_SCAN, Merging


def fake_ksm(tmp_path, monkeypatch, run="0", pages="100"):
    (tmp_path / "run").write_text(run + "\n")
    (tmp_path / "pages_to_scan").write_text(pages + "\n")
    monkeypatch.setattr(pagemerge, "KSM", tmp_path)
    return lambda name: (tmp_path / name).read_text().strip()


def test_merging_scans_while_switches_start_stops_once_up_then_restores(tmp_path, monkeypatch):
    read = fake_ksm(tmp_path, monkeypatch, run="0", pages="321")
    merging = Merging().start()
    assert (read("run"), read("pages_to_scan")) == ("1", str(PAGES_TO_SCAN))
    merging.settle()
    assert read("run") == "0"
    merging.stop()
    assert (read("run"), read("pages_to_scan")) == ("0", "321")


def test_a_kernel_without_page_merging_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(pagemerge, "KSM", tmp_path / "missing")
    merging = Merging().start()
    merging.settle()
    merging.stop()
    assert not (tmp_path / "missing").exists()


def test_stopping_twice_restores_once(tmp_path, monkeypatch):
    read = fake_ksm(tmp_path, monkeypatch, run="1", pages="50")
    merging = Merging().start()
    merging.stop()
    (tmp_path / "run").write_text("1")
    merging.stop()
    assert (read("run"), read("pages_to_scan")) == ("1", "50")


def test_a_scanner_the_machines_owner_runs_keeps_running_once_the_lab_is_up(tmp_path, monkeypatch):
    read = fake_ksm(tmp_path, monkeypatch, run="1", pages="50")
    merging = Merging().start()
    assert read("pages_to_scan") == str(PAGES_TO_SCAN)
    merging.settle()
    assert (read("run"), read("pages_to_scan")) == ("1", "50")
    merging.stop()
    assert (read("run"), read("pages_to_scan")) == ("1", "50")
