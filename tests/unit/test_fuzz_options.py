"""Every option of `lab` under fuzzing, parsed only: a bad value is one line naming the option
(exit 2) before anything runs or is created; a good one reaches the command. The commands are
replaced here, so no lab comes up. The services file (`lab controller --services`) too."""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controllers.forwarding import parse_controller
from controllers.services import ServiceError, load_services
from lab.cli import main as cli_main
from tests.unit.fuzzing import ENCODINGS, change, encode, fuzz, run_lab
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load

COMMANDS = [name for name in dir(cli_main) if name.startswith("cmd_")]
TOPO = load(DEFAULT_TOPOLOGY)


class Reached(Exception):
    """The command would have run: every option passed the checks."""


@contextlib.contextmanager
def commands_replaced(cwd: Path):
    """Every command raises Reached instead of running; the lab's bring-up fails the test."""
    def reached(args):
        raise Reached(args)

    def bring_up(*args, **kwargs):
        raise AssertionError("a lab was brought up")

    with contextlib.ExitStack() as stack:
        for name in COMMANDS:
            stack.enter_context(mock.patch.object(cli_main, name, reached))
        stack.enter_context(mock.patch("controllers.forwarding.Lab", bring_up))
        stack.enter_context(contextlib.chdir(cwd))
        yield


def parse(argv: list[str]) -> tuple[bool, int, str]:
    """(reached the command, exit status, stderr) of `lab ARGV`, in an empty directory that
    must stay empty when the options are refused."""
    with tempfile.TemporaryDirectory() as cwd, commands_replaced(Path(cwd)):
        try:
            code, _, err = run_lab(argv)
        except Reached:
            return True, 0, ""
        assert os.listdir(cwd) == [], f"{argv} refused but created {os.listdir(cwd)}"
    return False, code, err


def refused_in_one_line(argv: list[str], option: str) -> bool:
    """False if the command was reached; else checks exit 2 and one clear last line."""
    reached, code, err = parse(argv)
    if reached:
        return False
    last = err.splitlines()[-1] if err else ""
    assert code == 2, (argv, code, err)
    if "error: argument " in last:  # argparse's: usage, then one error line naming the option
        assert "error: argument " + option in last, (argv, err)
        return True
    assert len(err.splitlines()) == 1, err  # ours: exactly one line
    topology_error = option == "--topology" and not last.startswith("lab: ")  # FILE: ...
    assert last.startswith(f"lab: {option}:") or topology_error, (argv, err)
    return True


VALUES = st.one_of(
    st.text(max_size=20),
    st.integers(-10 ** 20, 10 ** 20).map(str),
    st.floats().map(str),
    st.sampled_from(["", " ", "0", "-0", "1", "65535", "65536", "1e3", "1_000", "0x10", "nan",
                     "inf", "-inf", "1e309", "²", "١", "latency,latency", "latency,", ",",
                     "hops,latency", "normal", "normal,dc-failure", "pg1", "pg2", "c1",
                     "/", "/etc", "/etc/passwd", "a\x00b", "results", "../x", "ü",
                     "tcp:127.0.0.1:6653", "tcp:ctl.example:1", "tcp:a_b:1", "tcp::1:6653",
                     "tcp:[::1]:1", "tcp:h:0", "tcp:h:99999", "tcp:-h:1", "tcp:h.:1",
                     "tcp:1.2.3.4:²", "tcp:" + "a" * 64 + ":1", "builtin", "static", "none"]))

OPTIONS = [
    (["run"], "--controller"), (["up"], "--controller"), (["verify"], "--samples"),
    (["run"], "--samples"), (["bench", "db"], "--samples"), (["compare"], "--samples"),
    (["verify"], "--tolerance-ms"), (["verify"], "--tolerance-pct"), (["verify"], "--json"),
    (["compare"], "--strategies"), (["compare"], "--scenarios"), (["compare"], "--out"),
    (["run"], "--out"), (["bench", "db"], "--out"), (["bench", "db"], "--replica"),
    (["bench", "db"], "--page-queries"), (["controller"], "--ofp-port"),
    (["controller"], "--rest-port"), (["up"], "--strategy"), (["up"], "--links"),
    (["run"], "--topology"), (["controller"], "--services"),
]


@fuzz(700)
@given(st.sampled_from(OPTIONS), VALUES)
def test_a_bad_option_value_is_one_line_and_nothing_runs(where, value):
    command, option = where
    refused_in_one_line([*command, f"{option}={value}"], option)


@pytest.mark.parametrize("argv,option", [
    (["run", "--samples=0"], "--samples"), (["run", "--samples=2000000"], "--samples"),
    (["verify", "--tolerance-ms=nan"], "--tolerance-ms"),
    (["verify", "--tolerance-pct=-1"], "--tolerance-pct"),
    (["verify", "--tolerance-ms=inf"], "--tolerance-ms"),
    (["compare", "--strategies=latency,nope"], "--strategies"),
    (["compare", "--strategies=latency,latency"], "--strategies"),
    (["compare", "--scenarios="], "--scenarios"), (["bench", "db", "--replica=c1"], "--replica"),
    (["bench", "db", "--page-queries=0"], "--page-queries"),
    (["controller", "--ofp-port=70000"], "--ofp-port"),
    (["controller", "--rest-port=-1"], "--rest-port"),
    (["run", "--controller=tcp:a_b:6653"], "--controller"),
    (["run", "--controller=tcp:1.2.3.4:0"], "--controller"),
    (["run", "--controller=tcp:host:²"], "--controller"),
    (["compare", "--out=/etc"], "--out"), (["compare", "--out=/etc/passwd"], "--out"),
    (["run", "--samples=x"], "--samples"), (["up", "--links=x"], "--links"),
])
def test_bad_values_are_refused_in_one_line(argv, option):
    assert refused_in_one_line(argv, option)


@pytest.mark.parametrize("argv", [
    ["run"], ["run", "--controller=tcp:127.0.0.1:6653"], ["run", "--controller=tcp:ctl.lan:1"],
    ["compare", "--strategies=hops,latency", "--scenarios=normal"],
    ["bench", "db", "--replica=pg2", "--page-queries=5"],
    ["verify", "--tolerance-ms=0.5", "--tolerance-pct=0"], ["controller", "--rest-port=0"],
])
def test_good_values_reach_the_command(argv):
    assert parse(argv)[0]


def test_controller_addresses():
    assert parse_controller("tcp:10.0.0.1:6653") == ("remote", "10.0.0.1", 6653)
    assert parse_controller("tcp:ctl-1.example.org:1") == ("remote", "ctl-1.example.org", 1)
    for bad in ("tcp:10.0.0.256:1", "tcp:a..b:1", "tcp:-a:1", "tcp:a:65536", "tcp:a:0",
                "tcp:a: 1", "tcp:a:+1", "udp:a:1", "tcp:a", "tcp:" + "a" * 64 + ":1",
                "tcp:123:1", "tcp:a b:1"):
        with pytest.raises(ValueError, match="^--controller: "):
            parse_controller(bad)


SERVICES = {"services": [
    {"name": "app", "vip": "10.0.0.20", "consumers": ["client"], "protocol": "tcp", "port": 8080,
     "endpoints": ["mono1", {"host": "svrga", "bias": 10}]},
    {"name": "db", "vip": "10.0.0.10", "consumers": ["monolith", "service"],
     "endpoints": ["pg1", "pg2"]}]}
WORK = Path(tempfile.mkdtemp(prefix="hclab-services-"))
atexit.register(shutil.rmtree, WORK, True)


@st.composite
def services_files(draw) -> bytes:
    data = copy.deepcopy(SERVICES)
    for _ in range(draw(st.integers(0, 3))):
        data = change(data, draw, null=draw(st.booleans()))
    text = yaml.safe_dump(data, allow_unicode=True)
    return encode(text, draw(st.sampled_from(ENCODINGS)))


def services_or_one_line(raw: bytes) -> bool:
    path = WORK / "services ü.yaml"
    path.write_bytes(raw)
    try:
        load_services(path, TOPO)
        return True
    except ServiceError as exc:
        assert len(str(exc).splitlines()) == 1 and str(exc).startswith(f"{path}: "), str(exc)
        return False


@fuzz(500)
@given(st.one_of(services_files(), st.binary(max_size=300)))
def test_a_services_file_gives_services_or_one_line_naming_it(raw):
    services_or_one_line(raw)


@fuzz(60)
@given(services_files())
def test_lab_controller_services_bad_file_is_one_line(raw):
    path = WORK / "cli services.yaml"
    path.write_bytes(raw)
    refused_in_one_line(["controller", f"--services={path}"], "--services")


def test_handmade_services_files():
    for raw in (b"[" * 5000, b"\xff\xfe\x00", b"services: !!float x", b"services: [[[]]]",
                b"services:\n- {name: a, vip: 10.0.0.30, port: 1, endpoints: [[pg1]], "
                b"consumers: [client]}\n",
                b"services:\n- {name: a, vip: 10.0.0.30, port: 1, endpoints: [pg1], "
                b"consumers: [{a: 1}]}\n",
                b"services:\n- {name: a, vip: 167772190, port: 1, endpoints: [pg1], "
                b"consumers: [client]}\n",
                b"services:\n- {name: \"a\\nb\", vip: 10.0.0.30, port: 1, endpoints: [pg1], "
                b"consumers: [client]}\n- {name: \"a\\nb\", vip: 10.0.0.31, port: 1, "
                b"endpoints: [pg1], consumers: [client]}\n"):
        assert not services_or_one_line(raw), raw
    assert services_or_one_line(yaml.safe_dump(SERVICES).encode())
