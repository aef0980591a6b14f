"""What the network needs from whatever programs its switches: the `Forwarding` protocol.

The network stage brings switches, hosts and links up; who decides where frames go comes
later in the flow (controllers/forwarding.py: the lab's own os-ken controller, its flows
installed statically, a controller of the user's, or none). The Lab is handed one of those
and calls it at fixed points of its life, so the network never imports the controller.
"""

from __future__ import annotations

from pathlib import Path
from typing import ContextManager, Protocol


class ForwardingError(RuntimeError):
    """Forwarding could not be set up; the message says what and why."""


class Forwarding(Protocol):
    kind: str  # "builtin" | "static" | "remote" | "none": what `--controller` named
    strategy: str  # the routing strategy the lab runs with (static and builtin)
    # The lab's own routing: calibration may pin probe flows and expect the model's paths.
    owns_flows: bool

    @property
    def controller(self):
        """The lab's own controller (REST: get, set_strategy, rest_url), or None."""

    def openflow_address(self) -> tuple[str, int] | None:
        """Where switches connect over OpenFlow (None: no controller)."""

    def start(self, run_dir: Path) -> None:
        """Before the switches come up (a controller they will connect to)."""

    def ready(self, lab) -> None:
        """Once the network runs: return when forwarding is in place (ForwardingError if not)."""

    def lowest_latency_routes(self) -> ContextManager[bool]:
        """Within the block, traffic takes the model's lowest-latency paths; yields False
        where that cannot be had."""

    def processes(self) -> list:
        """(name, subprocess.Popen) of each process `start` started: the lab watches them."""

    def stop(self) -> None:
        """Stop what `start` started; safe to call twice and after a failed start."""
