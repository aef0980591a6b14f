"""The delay line's compiled core (lab/_delaycore.c): whether it is built, and its wrapper.

lab.delayline forwards with it under `--core compiled`, and under `--core auto` when it is
built (setup.sh compiles it with gcc); otherwise with its own Python core, which does the
same work frame for frame. Both cores take a link's parameters as HotParams.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

from lab.delayline_control import LinkSpec

try:
    from lab import _delaycore
    MISSING: str | None = None
except ImportError as exc:
    _delaycore = None
    MISSING = f"lab/_delaycore.c is not built ({exc}); run ./setup.sh"

# The raw per-direction counters both cores keep (lab.delayline turns them into STATS).
RAW_COUNTERS = ("forwarded", "lost", "dropped", "tx_errors", "truncated", "queued",
                "before_start", "chained", "late_sum", "late_max", "late_over")


class CoreMissing(RuntimeError):
    """`--core compiled` was asked for and the extension is not built."""


class HotParams(NamedTuple):
    """A link's parameters in the hot loop's units: seconds, a fraction, frames."""

    delay: float
    span: float
    jitter: float
    loss: float
    limit: int
    reorder: bool


def hot_params(spec: LinkSpec) -> HotParams:
    return HotParams(spec.hold_ms / 1000.0, spec.span_ms / 1000.0, spec.jitter_ms / 1000.0,
                     spec.loss_pct / 100.0, spec.queue_packets, spec.reorder)


def resolve(requested: str) -> str:
    """`auto`: compiled when built, else python; `compiled` when it is not built: CoreMissing."""
    if requested == "auto":
        return "python" if MISSING else "compiled"
    if requested == "compiled" and MISSING:
        raise CoreMissing(f"--core compiled: {MISSING}")
    return requested


class CompiledCore:
    """lab.delayline.PythonCore's interface over the C extension's Core."""

    name = "compiled"

    def __init__(self, chain_limit: float, chain_memory: float, late_threshold: float,
                 clock_sanity: float, drain_batch: int) -> None:
        if _delaycore is None:
            raise CoreMissing(str(MISSING))
        self._core = _delaycore.Core(chain_limit, chain_memory, late_threshold, clock_sanity,
                                     drain_batch)
        self.wait = self._core.wait
        self.set_lead = self._core.set_lead
        self.start = self._core.start
        self.run = self._core.run
        self.clock_kinds = self._core.clock_kinds

    @property
    def lead(self) -> float:
        return self._core.lead

    def add_link(self, sock_a: socket.socket, sock_b: socket.socket) -> int:
        return self._core.add_link(sock_a.fileno(), sock_b.fileno())

    def set_params(self, index: int, params: HotParams) -> None:
        self._core.set_params(index, *params)

    def counters(self, index: int) -> tuple[dict[str, int | float], dict[str, int | float]]:
        return self._core.counters(index, 0), self._core.counters(index, 1)

    def close(self) -> None:
        """The extension's Core closes its epoll descriptor when it is freed."""
