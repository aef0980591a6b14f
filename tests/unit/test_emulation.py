"""Link emulation: the exact tc commands of the netem backend, backend choice, and what the
delay line's configuration accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.capabilities import Capabilities
from lab.delayline_control import ConfigError, parse_config
from lab.emulation import (EmulatedLink, EmulationError, htb_commands, netem_commands,
                           resolve_backend)
from lab.links import delay_line_ends
from topologies.model import Link


def emulated(delay_ms: float, hold_ms: float | None = None, jitter_ms: float = 0.0,
             loss_pct: float = 0.0, bandwidth_mbit: float | None = None,
             queue_packets: int = 1000) -> EmulatedLink:
    """A model link as the emulation gets it, held `hold_ms` (default: its delay)."""
    link = EmulatedLink(Link(a="sa", b="sb", link_class="test", delay_ms=delay_ms,
                             delay_source="test", distance_km=0.0, bandwidth_mbit=bandwidth_mbit,
                             jitter_ms=jitter_ms, loss_pct=loss_pct, queue_packets=queue_packets,
                             index=1), intf1="hlsa-eth1", intf2="hlsb-eth1")
    if hold_ms is not None:
        link.hold_ms = hold_ms
    return link


def caps(netem: bool) -> Capabilities:
    return Capabilities(netem=netem, ovs_kernel=netem, ovs_running=True, ovs="3.1.0",
                        mininet="2.3.0", postgres="15", os_ken="4.2.2", kernel="test")


def test_netem_delay_only():
    assert netem_commands("hldc1-eth3", emulated(27.4634)) == [
        ["tc", "qdisc", "replace", "dev", "hldc1-eth3", "root", "handle", "10:", "netem",
         "delay", "27.4634ms", "limit", "1000"]]


def test_netem_everything_under_htb():
    link = emulated(5, hold_ms=4.75, jitter_ms=0.5, loss_pct=1.5, bandwidth_mbit=500,
                    queue_packets=200)
    assert netem_commands("hlop1a-eth2", link) == [
        ["tc", "qdisc", "replace", "dev", "hlop1a-eth2", "root", "handle", "5:", "htb",
         "default", "1"],
        ["tc", "class", "replace", "dev", "hlop1a-eth2", "parent", "5:", "classid", "5:1",
         "htb", "rate", "500mbit", "burst", "15k"],
        ["tc", "qdisc", "replace", "dev", "hlop1a-eth2", "parent", "5:1", "handle", "10:",
         "netem", "delay", "4.75ms", "0.5ms", "loss", "1.5%", "limit", "200"],
    ]


def test_netem_hold_is_what_is_applied_not_the_configured_delay():
    cmd = netem_commands("x", emulated(0.2, hold_ms=0.0))[-1]
    assert cmd[cmd.index("delay") + 1] == "0ms"


def test_htb_rate():
    assert htb_commands("x", 100)[1][-4:] == ["rate", "100mbit", "burst", "15k"]


def test_auto_picks_netem_only_where_the_kernel_has_it():
    assert resolve_backend("auto", caps(True)) == "netem"
    assert resolve_backend("auto", caps(False)) == "userspace"
    assert resolve_backend("userspace", caps(True)) == "userspace"


def test_netem_requested_without_sch_netem_is_a_clear_error():
    with pytest.raises(EmulationError, match="no sch_netem"):
        resolve_backend("netem", caps(False))
    with pytest.raises(EmulationError, match="unknown link backend"):
        resolve_backend("tc", caps(True))


def test_delay_line_interface_names_fit_linux_limits():
    a, b = delay_line_ends(34)
    assert (a, b) == ("hld34a", "hld34b")
    assert len(delay_line_ends(99999)[0]) <= 15


def test_netem_never_gets_a_negative_hold():
    # The delay line's negative holds (chained links) mean "no hold" to netem.
    cmd = netem_commands("x", emulated(0.2, hold_ms=-0.1))[-1]
    assert cmd[cmd.index("delay") + 1] == "0ms"


def test_delay_line_config_takes_spans_and_bounded_negative_holds():
    link = {"name": "l", "ifname_a": "a", "ifname_b": "b"}
    spec, = parse_config({"links": [{**link, "hold_ms": -0.4, "span_ms": 0.2}]})
    assert (spec.hold_ms, spec.span_ms) == (-0.4, 0.2)
    with pytest.raises(ConfigError, match="'hold_ms' must be a finite number >= -0.5"):
        parse_config({"links": [{**link, "hold_ms": -0.6}]})
    with pytest.raises(ConfigError, match="'span_ms' must be a finite number >= 0"):
        parse_config({"links": [{**link, "hold_ms": 1, "span_ms": -1}]})


def test_an_injected_loss_changes_the_link_not_the_model():
    link = emulated(5.0)
    link.loss_pct = 100.0
    assert "100%" in netem_commands("x", link)[-1] and link.model.loss_pct == 0.0


def changed_commands(monkeypatch, backend: str, old: dict, new: dict):
    """The tc commands set_params runs to change one link from `old` to `new` (figures)."""
    import lab.emulation as emulation

    ran = []
    monkeypatch.setattr(emulation, "run_batch", lambda program, cmds: ran.extend(cmds))
    link = emulated(old.get("delay_ms", 0.0), bandwidth_mbit=old.get("bandwidth_mbit"),
                    loss_pct=old.get("loss_pct", 0.0))
    link.intf1, link.intf2, link.ns1 = "hlsa-eth2", "hlsb-eth2", 11
    link.hold_ms = link.delay_ms - 0.25  # as calibration leaves it
    emu = emulation.LinkEmulation(backend, [link], workdir=None)
    emu.set_params(1, new.get("delay_ms", link.delay_ms), link.jitter_ms,
                   new.get("loss_pct", link.loss_pct), new.get("bandwidth_mbit"), rate=True)
    assert link.applied_hold_ms == pytest.approx(link.delay_ms - 0.25)
    assert link.model.delay_ms == old.get("delay_ms", 0.0)  # the model stays as configured
    return [(ns, " ".join(cmd[1:])) for ns, cmd in ran]


def test_a_run_time_delay_change_under_netem_replaces_only_the_netem_qdiscs(monkeypatch):
    old = {"delay_ms": 5, "bandwidth_mbit": 100}
    assert changed_commands(monkeypatch, "netem", old, {"delay_ms": 20, "bandwidth_mbit": 100}) == [
        (11, "qdisc replace dev hlsa-eth2 parent 5:1 handle 10: netem delay 19.75ms limit 1000"),
        (None, "qdisc replace dev hlsb-eth2 parent 5:1 handle 10: netem delay 19.75ms limit 1000")]


def test_a_run_time_change_of_loss_alone_leaves_the_delay_lines_rate_limit_alone(monkeypatch):
    old = {"delay_ms": 5, "bandwidth_mbit": 100}
    assert changed_commands(monkeypatch, "userspace", old,
                            {"delay_ms": 5, "loss_pct": 3, "bandwidth_mbit": 100}) == []


def test_a_new_rate_replaces_the_htb_class_and_a_first_rate_rebuilds_the_qdiscs(monkeypatch):
    got = changed_commands(monkeypatch, "userspace", {"bandwidth_mbit": 100},
                           {"bandwidth_mbit": 10})
    assert got == [(11, "class replace dev hlsa-eth2 parent 5: classid 5:1 htb rate 10mbit burst 15k"),
                   (None, "class replace dev hlsb-eth2 parent 5: classid 5:1 htb rate 10mbit burst 15k")]
    got = changed_commands(monkeypatch, "netem", {"delay_ms": 1},
                           {"delay_ms": 1, "bandwidth_mbit": 10})
    assert [cmd for ns, cmd in got if ns == 11] == [
        "qdisc del dev hlsa-eth2 root",
        "qdisc replace dev hlsa-eth2 root handle 5: htb default 1",
        "class replace dev hlsa-eth2 parent 5: classid 5:1 htb rate 10mbit burst 15k",
        "qdisc replace dev hlsa-eth2 parent 5:1 handle 10: netem delay 0.75ms limit 1000"]


def test_a_scheduled_delay_moves_the_calibrated_hold_and_netem_changes_in_place(monkeypatch):
    from lab.emulation import LinkEmulation
    from topologies.model import TracePoint

    ran = []
    monkeypatch.setattr("lab.emulation.run_batch", lambda program, commands: ran.extend(commands))
    link = emulated(27.5, hold_ms=27.3)  # calibration found 0.2 ms of fabric on this link
    emulation = LinkEmulation("netem", [link], Path("/nonexistent"))
    emulation.set_points({1: TracePoint(4.0, 70.0, 0.5, 2.0)})
    assert (link.delay_ms, link.jitter_ms, link.loss_pct) == (70.0, 0.5, 2.0)
    assert link.applied_hold_ms == pytest.approx(69.8)
    assert [c for _, c in ran] == [
        ["tc", "qdisc", "change", "dev", intf, "root", "handle", "10:", "netem", "delay",
         "69.8ms", "0.5ms", "loss", "2%", "limit", "1000"] for intf in ("hlsa-eth1", "hlsb-eth1")]
    ran.clear()
    emulation.set_points({1: TracePoint(0.0, 27.5)})  # no jitter or loss column: kept
    assert link.applied_hold_ms == 27.3 and "0.5ms" in ran[0][1]


def test_the_delay_line_gets_the_scheduled_hold_and_span(tmp_path):
    from lab.emulation import LinkEmulation
    from topologies.model import TracePoint

    link = emulated(0.3, hold_ms=-0.2)
    emulation = LinkEmulation("userspace", [link], tmp_path)
    emulation.span_trim_ms = 0.1
    emulation.set_points({1: TracePoint(0.0, 10.3)})
    spec, = emulation._specs()
    assert (spec.hold_ms, spec.span_ms) == (pytest.approx(9.8), pytest.approx(10.2))
    emulation.set_points({1: TracePoint(0.0, 0.0)})  # below the fabric: the least hold
    assert emulation._specs()[0].hold_ms == -0.5
