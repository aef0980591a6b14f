"""Every option of the command line, checked before a command runs: a bad value is one line
`--option: what is wrong` (UsageError, exit 2), and nothing has been brought up, created or
changed yet."""

from __future__ import annotations

import math
import os
from pathlib import Path

from controllers.forwarding import parse_controller
from controllers.services import ServiceError, load_services
from controllers.strategies import STRATEGIES
from lab.cli.output import UsageError
from lab.files import OutDirError, check_out_dir, results_dir
from measurements.scenarios import SCENARIOS, scenarios_of
from topologies.loader import load
from topologies.model import Topology

MAX_SAMPLES = 1_000_000
MAX_PAGE_QUERIES = 10_000
MAX_TOLERANCE = {"tolerance_ms": 10_000.0, "tolerance_pct": 100.0}
DATABASE_ROLES = ("db-primary", "db-standby")


def check_options(args) -> None:
    """UsageError (or TopologyError) for the first bad option of `args`; for `lab run`
    without --out, its new results directory is chosen here."""
    if getattr(args, "controller", None) is not None:
        try:
            parse_controller(args.controller)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    for option, high in (("samples", MAX_SAMPLES), ("page_queries", MAX_PAGE_QUERIES)):
        _whole(args, option, 1, high)
    _whole(args, "ofp_port", 1, 65535)
    _whole(args, "rest_port", 0, 65535)
    for option, high in MAX_TOLERANCE.items():
        _amount(args, option, high)
    if getattr(args, "strategies", None) is not None:
        _names("strategies", args.strategies, STRATEGIES)
    _output(args)
    topo = load(args.topology) if getattr(args, "topology", None) else None
    if topo is not None:
        _with_topology(args, topo)
    if getattr(args, "command", None) == "run" and args.out is None:
        args.out = str(results_dir(None, "run"))


def _option(attr: str) -> str:
    return "--" + attr.replace("_", "-")


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _whole(args, attr: str, low: int, high: int) -> None:
    value = getattr(args, attr, None)
    if value is not None and not low <= value <= high:
        raise UsageError(f"{_option(attr)}: must be a whole number from {low} to {high}, "
                         f"got {_shown(value)}")


def _amount(args, attr: str, high: float) -> None:
    value = getattr(args, attr, None)
    if value is not None and not (math.isfinite(value) and 0 <= value <= high):
        raise UsageError(f"{_option(attr)}: must be a number from 0 to {high:g}, "
                         f"got {_shown(value)}")


def _names(attr: str, text: str, known) -> list[str]:
    """A comma-separated list of known names, none twice."""
    names = text.split(",")
    for name in names:
        if name not in known:
            raise UsageError(f"{_option(attr)}: {_shown(name)} is not one of "
                             f"{', '.join(known)} (comma-separated, no spaces)")
    if len(set(names)) < len(names):
        raise UsageError(f"{_option(attr)}: a name is given twice")
    return names


def _output(args) -> None:
    """--out: new or empty (earlier results are never overwritten; a sweep's --out is where
    it resumes, and it skips what is there); --json: a new file."""
    if getattr(args, "out", None) is not None and getattr(args, "command", None) != "sweep":
        try:
            check_out_dir(args.out)
        except (OutDirError, OSError, ValueError) as exc:
            raise UsageError(f"--out: {exc}") from None
    if getattr(args, "json", None) not in (None, True, False):
        path = Path(args.json)
        try:
            if path.exists() or path.is_symlink():
                raise UsageError(f"--json: {path} already exists (earlier results are never "
                                 f"overwritten)")
            parent = path.absolute().parent
            if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"--json: {parent} is not a writable directory")
        except (OSError, ValueError) as exc:
            raise UsageError(f"--json: {exc}") from None


def _with_topology(args, topo: Topology) -> None:
    """The options that name something in the topology."""
    if getattr(args, "scenarios", None) is not None:
        try:
            scenarios_of(topo, _names("scenarios", args.scenarios, SCENARIOS))
        except ValueError as exc:
            raise UsageError(f"--scenarios: {exc}") from None
    replica = getattr(args, "replica", None)
    if replica is not None:
        databases = [h.name for role in DATABASE_ROLES for h in topo.hosts_with_role(role)]
        if replica not in databases:
            raise UsageError(f"--replica: {_shown(replica)} is not a database host of "
                             f"{topo.name} ({', '.join(databases) or 'none'})")
    if getattr(args, "services", None) is not None:
        try:
            load_services(args.services, topo)
        except ServiceError as exc:
            raise UsageError(f"--services: {exc}") from None
