"""Link emulation: the exact tc commands of the netem backend, backend choice, and what the
delay line's configuration accepts."""

from __future__ import annotations

import pytest

from lab.capabilities import Capabilities
from lab.delayline import ConfigError, parse_config
from lab.emulation import (EmulationError, delay_line_ends, htb_commands, netem_commands,
                           resolve_backend)
from lab.links import LinkParams


def caps(netem: bool) -> Capabilities:
    return Capabilities(netem=netem, ovs_kernel=netem, ovs_running=True, ovs="3.1.0",
                        mininet="2.3.0", postgres="15", os_ken="4.2.2", kernel="test")


def test_netem_delay_only():
    assert netem_commands("hldc1-eth3", LinkParams(delay_ms=27.4634), 27.4634) == [
        ["tc", "qdisc", "replace", "dev", "hldc1-eth3", "root", "handle", "10:", "netem",
         "delay", "27.4634ms", "limit", "1000"]]


def test_netem_everything_under_htb():
    params = LinkParams(delay_ms=5, jitter_ms=0.5, loss_pct=1.5, rate_mbit=500, queue_packets=200)
    assert netem_commands("hlop1a-eth2", params, 4.75) == [
        ["tc", "qdisc", "replace", "dev", "hlop1a-eth2", "root", "handle", "5:", "htb",
         "default", "1"],
        ["tc", "class", "replace", "dev", "hlop1a-eth2", "parent", "5:", "classid", "5:1",
         "htb", "rate", "500mbit", "burst", "15k"],
        ["tc", "qdisc", "replace", "dev", "hlop1a-eth2", "parent", "5:1", "handle", "10:",
         "netem", "delay", "4.75ms", "0.5ms", "loss", "1.5%", "limit", "200"],
    ]


def test_netem_hold_is_what_is_applied_not_the_configured_delay():
    cmd = netem_commands("x", LinkParams(delay_ms=0.2), 0.0)[-1]
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
    cmd = netem_commands("x", LinkParams(delay_ms=0.2), -0.1)[-1]
    assert cmd[cmd.index("delay") + 1] == "0ms"


def test_delay_line_config_takes_spans_and_bounded_negative_holds():
    link = {"name": "l", "ifname_a": "a", "ifname_b": "b"}
    spec, = parse_config({"links": [{**link, "delay_ms": -0.4, "span_ms": 0.2}]})
    assert (spec.delay_ms, spec.span_ms) == (-0.4, 0.2)
    with pytest.raises(ConfigError, match="'delay_ms' must be a finite number >= -0.5"):
        parse_config({"links": [{**link, "delay_ms": -0.6}]})
    with pytest.raises(ConfigError, match="'span_ms' must be a finite number >= 0"):
        parse_config({"links": [{**link, "delay_ms": 1, "span_ms": -1}]})


def changed_commands(monkeypatch, backend: str, old: LinkParams, new: LinkParams):
    """The tc commands set_params runs to change one link from `old` to `new`."""
    import lab.emulation as emulation

    ran = []
    monkeypatch.setattr(emulation, "run_batch", lambda program, cmds: ran.extend(cmds))
    link = emulation.EmulatedLink(index=1, name="sa-sb", intf1="hlsa-eth2", intf2="hlsb-eth2",
                                  params=old, ns1=11)
    link.hold_ms = old.delay_ms - 0.25  # as calibration leaves it
    emu = emulation.LinkEmulation(backend, [link], workdir=None)
    emu.set_params(1, new)
    assert link.params == new and link.hold_ms == pytest.approx(new.delay_ms - 0.25)
    return [(ns, " ".join(cmd[1:])) for ns, cmd in ran]


def test_a_run_time_delay_change_under_netem_replaces_only_the_netem_qdiscs(monkeypatch):
    old = LinkParams(delay_ms=5, rate_mbit=100)
    assert changed_commands(monkeypatch, "netem", old, LinkParams(delay_ms=20, rate_mbit=100)) == [
        (11, "qdisc replace dev hlsa-eth2 parent 5:1 handle 10: netem delay 19.75ms limit 1000"),
        (None, "qdisc replace dev hlsb-eth2 parent 5:1 handle 10: netem delay 19.75ms limit 1000")]


def test_a_run_time_change_of_loss_alone_leaves_the_delay_lines_rate_limit_alone(monkeypatch):
    old = LinkParams(delay_ms=5, rate_mbit=100)
    assert changed_commands(monkeypatch, "userspace", old,
                            LinkParams(delay_ms=5, loss_pct=3, rate_mbit=100)) == []


def test_a_new_rate_replaces_the_htb_class_and_a_first_rate_rebuilds_the_qdiscs(monkeypatch):
    got = changed_commands(monkeypatch, "userspace", LinkParams(rate_mbit=100),
                           LinkParams(rate_mbit=10))
    assert got == [(11, "class replace dev hlsa-eth2 parent 5: classid 5:1 htb rate 10mbit burst 15k"),
                   (None, "class replace dev hlsb-eth2 parent 5: classid 5:1 htb rate 10mbit burst 15k")]
    got = changed_commands(monkeypatch, "netem", LinkParams(delay_ms=1), LinkParams(delay_ms=1, rate_mbit=10))
    assert [cmd for ns, cmd in got if ns == 11] == [
        "qdisc del dev hlsa-eth2 root",
        "qdisc replace dev hlsa-eth2 root handle 5: htb default 1",
        "class replace dev hlsa-eth2 parent 5: classid 5:1 htb rate 10mbit burst 15k",
        "qdisc replace dev hlsa-eth2 parent 5:1 handle 10: netem delay 0.75ms limit 1000"]
