"""The ways a lab's switches get their flows, as the network's `Forwarding` (lab.forwarding).

`--controller` names one: builtin (the lab's os-ken controller, started as a child), static
(the same controller's flows for one strategy, installed with ovs-ofctl, no controller),
tcp:HOST:PORT (an OpenFlow 1.3 controller of the user's) or none (no flows at all).
`make_lab` puts a topology, a forwarding and the network together: the one way to get a Lab.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
from pathlib import Path
from typing import Iterator

from controllers.flows import render_ofctl
from controllers.launcher import ControllerProcess, ROUTE_SETTLE_S, start_controller
from controllers.planner import static_flows
from controllers.strategies import DEFAULT_STRATEGY
from lab.network import Lab
from topologies.model import Topology

CONTROLLER_HELP = "builtin (the lab's os-ken controller), static (its flows, no controller), " \
                  "none (no flows), or tcp:HOST:PORT (your OpenFlow 1.3 controller)"
LOCALHOST = "127.0.0.1"
SWITCHES_TIMEOUT_S = 30.0


class _Forwarding:
    """What every kind shares: no controller of the lab's, no pinned routes."""

    kind = ""
    owns_flows = False
    controller = None

    def __init__(self, strategy: str):
        self.strategy = strategy

    def openflow_address(self) -> tuple[str, int] | None:
        return None

    def start(self, run_dir: Path) -> None:
        pass

    def ready(self, lab) -> None:
        pass

    def processes(self) -> list:
        return []

    @contextlib.contextmanager
    def lowest_latency_routes(self) -> Iterator[bool]:
        yield self.strategy == "latency" and self.owns_flows

    def stop(self) -> None:
        pass


class BuiltinController(_Forwarding):
    """The lab's os-ken controller, a child process listening on 127.0.0.1."""

    kind = "builtin"
    owns_flows = True

    def __init__(self, topology: Topology, strategy: str, ofp_port: int, rest_port: int,
                 services: str | Path | None = None, measured_delays: bool = False):
        super().__init__(strategy)
        self.topology, self.ofp_port, self.rest_port = topology, ofp_port, rest_port
        self.services = services  # a services file (None: from the hosts' roles)
        # route by the delays it measures where they clearly differ from the configured ones
        self.measured_delays = measured_delays
        self.controller: ControllerProcess | None = None

    def openflow_address(self) -> tuple[str, int]:
        return LOCALHOST, self.ofp_port

    def start(self, run_dir: Path) -> None:
        self.controller = start_controller(
            self.topology.source, strategy=self.strategy, ofp_port=self.ofp_port,
            rest_port=self.rest_port, log_path=run_dir / "controller.log",
            extra_args=(("--services", str(self.services)) if self.services else ())
            + (("--measured-delays",) if self.measured_delays else ()))

    def ready(self, lab) -> None:
        self.controller.wait_for_switches(timeout=SWITCHES_TIMEOUT_S)

    @contextlib.contextmanager
    def lowest_latency_routes(self) -> Iterator[bool]:
        if self.strategy == "latency":
            yield True
            return
        self.controller.set_strategy("latency")
        time.sleep(ROUTE_SETTLE_S)
        try:
            yield True
        finally:
            self.controller.set_strategy(self.strategy)
            time.sleep(ROUTE_SETTLE_S)

    def processes(self) -> list:
        return [("controller", self.controller.process)] if self.controller else []

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class StaticFlows(_Forwarding):
    """The builtin controller's flows for one strategy, installed once, no controller."""

    kind = "static"
    owns_flows = True

    def __init__(self, topology: Topology, strategy: str):
        super().__init__(strategy)
        self.topology = topology

    def ready(self, lab) -> None:
        lab.ofctl("add-flows", {switch: [render_ofctl(f) for f in flows] for switch, flows
                                in static_flows(self.topology, self.strategy).items()})


class RemoteController(_Forwarding):
    """A controller of the user's: the switches connect to it, the lab leaves flows to it."""

    kind = "remote"

    def __init__(self, host: str, port: int, strategy: str):
        super().__init__(strategy)
        self.address = (host, port)

    def openflow_address(self) -> tuple[str, int]:
        return self.address


class NoForwarding(_Forwarding):
    """No flows: the switches drop everything until someone programs them."""

    kind = "none"


def parse_controller(spec: str) -> tuple[str, str, int]:
    """'builtin' | 'static' | 'none' | 'tcp:HOST:PORT' -> (kind, host, port).

    HOST is an IPv4 address or a host name (RFC 1123 labels; the lab's OpenFlow relay speaks
    IPv4); PORT 1-65535. Anything else is a ValueError whose text is one line."""
    if spec in ("builtin", "static", "none"):
        return spec, LOCALHOST, 6653
    kind, _, rest = spec.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port:
        raise ValueError(f"--controller: {_shown(spec)}: expected {CONTROLLER_HELP}")
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise ValueError(f"--controller: {_shown(spec)}: the port must be a number from 1 to "
                         f"65535")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not _valid_host_name(host):
            raise ValueError(f"--controller: {_shown(spec)}: {_shown(host)} is neither an "
                             f"IPv4 address nor a valid host name") from None
    return "remote", host, int(port)


_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _valid_host_name(name: str) -> bool:
    """RFC 1123: dot-separated labels of letters, digits and inner hyphens, 253 at most."""
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    return (len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit())


def _shown(text: str) -> str:
    """User input in a message: quoted, escaped, and cut short if long."""
    return repr(text if len(text) <= 80 else text[:80] + "...")


def forwarding_for(spec: str, topology: Topology, strategy: str = DEFAULT_STRATEGY,
                   ofp_port: int = 6653, rest_port: int = 8080,
                   services: str | Path | None = None, measured_delays: bool = False):
    """The Forwarding that `--controller SPEC` names (ValueError for a bad SPEC)."""
    kind, host, port = parse_controller(spec)
    if kind == "builtin":
        return BuiltinController(topology, strategy, ofp_port, rest_port, services,
                                 measured_delays)
    if kind == "static":
        return StaticFlows(topology, strategy)
    if kind == "remote":
        return RemoteController(host, port, strategy)
    return NoForwarding(strategy)


def make_lab(topology: Topology, controller: str = "builtin", strategy: str = DEFAULT_STRATEGY,
             ofp_port: int = 6653, rest_port: int = 8080, services: str | Path | None = None,
             measured_delays: bool = False, **lab_options) -> Lab:
    """A Lab (not yet up) of `topology` whose forwarding `--controller CONTROLLER` names.

    services: a services file for the builtin controller (None: from the hosts' roles);
    measured_delays: it routes by the delays it measures where they clearly differ.
    lab_options: the Lab's own (links, core, calibrate, caps, log). ValueError for a bad CONTROLLER.
    """
    return Lab(topology, forwarding_for(controller, topology, strategy, ofp_port, rest_port,
                                        services, measured_delays), **lab_options)
