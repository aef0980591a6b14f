"""Running the delay line from the lab: its configuration, its statistics, start and reload.

The delay line (lab.delayline) is a process of its own; the lab talks to it through two
files and two signals. CONFIG (JSON, written atomically) lists the links with their hold,
span, jitter, loss and queue limit; SIGHUP makes the process re-read it without dropping
queued frames. STATS (JSON) is rewritten every second and on SIGUSR1 with per-link counters.
Both sides validate CONFIG with the same code, strictly: a typo never becomes a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lab.files import atomic_write
from lab.procs import child_env, stop_process

# How far chaining may move a frame's timing from its hold (a switch's wake-up is tenths of
# a ms; a congested HTB queue is milliseconds, and stays the link's): lab.delayline.
CHAIN_LIMIT = 0.5e-3
CONFIG_EXIT = 2
# The delay line's forwarding cores (lab.delaycore): auto takes the compiled one when built.
CORES = ("auto", "compiled", "python")


class ConfigError(ValueError):
    """The configuration file is not valid; the message is one line."""


class DelayLineError(RuntimeError):
    """The delay-line process could not be started."""


@dataclass
class LinkSpec:
    """One emulated link as the delay line applies it: hold_ms once per direction.

    A negative hold says the switches alone take longer than the link's delay: its frames
    leave on arrival, and a link they are chained to next makes up the difference.
    """

    name: str
    ifname_a: str
    ifname_b: str
    hold_ms: float
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    queue_packets: int = 1000
    reorder: bool = False
    # The link's configured one-way delay (0: off). A frame that comes to this link straight
    # from another link of this process (through a switch) leaves span_ms after it was due to
    # leave that one, whatever the switch between took (within CHAIN_LIMIT): "Chained links".
    span_ms: float = 0.0


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "ifname_a": (str,),
    "ifname_b": (str,),
    "hold_ms": (int, float),
    "jitter_ms": (int, float),
    "loss_pct": (int, float),
    "queue_packets": (int,),
    "reorder": (bool,),
    "span_ms": (int, float),
}
_REQUIRED = ("name", "ifname_a", "ifname_b", "hold_ms")


def _check_link(index: int, raw: Any) -> LinkSpec:
    where = f"links[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object, got {type(raw).__name__}")
    for key in raw:
        if key not in _FIELD_TYPES:
            raise ConfigError(f"{where}: unknown key {key!r}")
    for key in _REQUIRED:
        if key not in raw:
            raise ConfigError(f"{where}: missing key {key!r}")
    for key, value in raw.items():
        types = _FIELD_TYPES[key]
        # bool is an int subclass: accept it only where a bool is expected.
        if isinstance(value, bool) != (types == (bool,)) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{where}: {key!r} must be {names}, got {type(value).__name__}")
    spec = LinkSpec(**raw)
    if not math.isfinite(spec.hold_ms) or spec.hold_ms < -CHAIN_LIMIT * 1000:
        raise ConfigError(f"{where}: 'hold_ms' must be a finite number >= {-CHAIN_LIMIT * 1000:g}")
    for key in ("jitter_ms", "loss_pct", "span_ms"):
        value = getattr(spec, key)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}: {key!r} must be a finite number >= 0")
    if spec.loss_pct > 100:
        raise ConfigError(f"{where}: 'loss_pct' must be <= 100")
    if spec.queue_packets < 1:
        raise ConfigError(f"{where}: 'queue_packets' must be >= 1")
    if not spec.name:
        raise ConfigError(f"{where}: 'name' must not be empty")
    for key in ("ifname_a", "ifname_b"):
        if not 0 < len(getattr(spec, key)) < 16:
            raise ConfigError(f"{where}: {key!r} must be an interface name (1-15 characters)")
    if spec.ifname_a == spec.ifname_b:
        raise ConfigError(f"{where}: ifname_a and ifname_b are the same interface")
    return spec


def parse_config(data: Any) -> list[LinkSpec]:
    """Validate decoded JSON strictly: a typo must not silently become a default."""
    if not isinstance(data, dict):
        raise ConfigError("top level must be an object with a 'links' list")
    for key in data:
        if key != "links":
            raise ConfigError(f"unknown top-level key {key!r}")
    links = data.get("links")
    if not isinstance(links, list):
        raise ConfigError("'links' must be a list")
    specs = [_check_link(i, raw) for i, raw in enumerate(links)]
    names: set[str] = set()
    ifnames: set[str] = set()
    for spec in specs:
        if spec.name in names:
            raise ConfigError(f"duplicate link name {spec.name!r}")
        names.add(spec.name)
        for ifname in (spec.ifname_a, spec.ifname_b):
            if ifname in ifnames:
                raise ConfigError(f"interface {ifname!r} is used by more than one link")
            ifnames.add(ifname)
    return specs


def load_config(path: str | os.PathLike[str]) -> list[LinkSpec]:
    """Read and validate CONFIG; every problem becomes a one-line ConfigError."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    return parse_config(data)


def write_config(path: str | os.PathLike[str], links: Iterable[LinkSpec]) -> None:
    """Write CONFIG atomically, so a SIGHUP never reads a partial file."""
    specs = list(links)
    parse_config({"links": [dataclasses.asdict(s) for s in specs]})
    atomic_write(path, json.dumps({"links": [dataclasses.asdict(s) for s in specs]}, indent=2) + "\n")


def read_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the STATS document: {"links": {name: {"a_to_b": {...}, "b_to_a": {...}}}, ...}."""
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------
# The forwarding process


def start(config_path: str | os.PathLike[str], stats_path: str | os.PathLike[str] | None,
          ready_path: str | os.PathLike[str], timeout: float = 5.0,
          log_path: str | os.PathLike[str] | None = None, core: str = "auto") -> subprocess.Popen:
    """Start the delay line and return once it forwards (its ready file exists).

    stderr goes to log_path (default: CONFIG with suffix .log), never to a pipe
    nobody reads, which would eventually block the forwarding loop. core: one of CORES.
    """
    ready = Path(ready_path)
    ready.unlink(missing_ok=True)
    log = Path(log_path) if log_path else Path(config_path).with_suffix(".log")
    cmd = [sys.executable, "-m", "lab.delayline", "--config", str(config_path), "--ready", str(ready),
           "--core", core]
    if stats_path:
        cmd += ["--stats", str(stats_path)]
    with open(log, "ab") as log_file:
        # A session of its own: a Ctrl-C in the lab's terminal (the Mininet CLI) is not its.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                env=child_env(), start_new_session=True)
    end = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise DelayLineError(f"delay line exited with status {proc.returncode}: {_tail(log)}")
        if time.monotonic() > end:
            stop_process(proc)
            raise DelayLineError(f"delay line not ready after {timeout} s: {_tail(log)}")
        time.sleep(0.01)
    return proc


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def reload(proc: subprocess.Popen, stats_path: str | os.PathLike[str] | None = None,
           timeout: float = 2.0) -> None:
    """Ask the delay line to re-read its CONFIG (after write_config).

    With stats_path, wait until the new parameters are in force (the process
    rewrites STATS with an incremented "reloads" right after applying them).
    """
    before = -1
    if stats_path is not None:
        with contextlib.suppress(OSError, ValueError):
            before = read_stats(stats_path)["reloads"]
    proc.send_signal(signal.SIGHUP)
    if stats_path is None:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if read_stats(stats_path)["reloads"] > before:
                return
        if proc.poll() is not None:
            raise DelayLineError(f"delay line exited with status {proc.returncode} during reload")
        time.sleep(0.005)
    raise DelayLineError(f"delay line did not confirm the reload within {timeout} s")
