"""Run-time changes to a running lab's links: impairments, ports down or up, whole sites cut.

The network stage only: it changes what the emulation and the switches' ports do, and the
controller finds out the way it would in a real network (a port-status message when a port
goes down, its own probes when frames stop or slow down). `lab up` owns the Lab object, so
it serves these changes (dashboard.server); `lab link set` and `lab site cut` ask it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.emulation import EmulatedLink, run_batch
from lab.links import LinkParamError
from topologies.model import MAX_DELAY_MS

# Bounds of the figures a run-time change may set (the API's schema states the same ones).
RATE_MBIT = (0.001, 100_000.0)


class UnknownName(KeyError):
    """No link or site of that name in the running lab."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class LinkChange:
    """What to change on one link; None leaves a parameter as it is."""

    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    rate_mbit: float | None = None
    up: bool | None = None

    def changed(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Applied:
    """A change as applied: the link's (or site's) state afterwards and how long applying
    it took."""

    state: dict
    apply_ms: float


class LinkControl:
    """Applies run-time changes to a running lab's links; safe to call from any thread."""

    def __init__(self, lab):
        self.lab = lab
        self.links: dict[str, EmulatedLink] = {link.name: link for link in lab.emulation.links}
        self.down: set[str] = set()  # links whose two switch ports are down now
        self.cut_links: set[str] = set()  # links put down on their own (--down)
        self.cut_sites: set[str] = set()  # sites cut off: all their links down
        self._lock = threading.Lock()

    def link(self, name: str) -> EmulatedLink:
        try:
            return self.links[name]
        except KeyError:
            raise UnknownName(f"no link {name!r} in the running lab (links are named A-B as in "
                              f"the topology file, e.g. {next(iter(self.links))})") from None

    def site_links(self, site: str) -> list[str]:
        if site not in self.lab.topology.sites:
            raise UnknownName(f"no site {site!r} in the running lab")
        return [k.name for k in self.lab.topology.links if site in (k.a, k.b)]

    def set_link(self, name: str, change: LinkChange) -> Applied:
        """Apply `change` to link `name`; invalid values raise LinkParamError, nothing changed."""
        link = self.link(name)
        for key, value, low, high in (("delay_ms", change.delay_ms, 0.0, MAX_DELAY_MS),
                                      ("jitter_ms", change.jitter_ms, 0.0, MAX_DELAY_MS),
                                      ("loss_pct", change.loss_pct, 0.0, 100.0),
                                      ("rate_mbit", change.rate_mbit, *RATE_MBIT)):
            if value is not None and not low <= value <= high:
                raise LinkParamError(f"{key} must be between {low:g} and {high:g}, got {value!r}")
        now = (link.delay_ms, link.jitter_ms, link.loss_pct, link.bandwidth_mbit)
        wanted = tuple(n if v is None else v for n, v in zip(now, (
            change.delay_ms, change.jitter_ms, change.loss_pct, change.rate_mbit)))
        t0 = time.monotonic()
        with self._lock:
            if wanted != now:
                self.lab.emulation.set_params(link.index, *wanted[:3], bandwidth_mbit=wanted[3],
                                              rate=True)
            if change.up is not None:
                (self.cut_links.discard if change.up else self.cut_links.add)(name)
                self._apply_ports()
        return Applied(self.view(name), (time.monotonic() - t0) * 1000)

    def set_site(self, site: str, cut: bool) -> Applied:
        """Cut a site off (every link's ports down) or restore it (its links come back
        unless they were cut on their own or belong to another cut site)."""
        self.site_links(site)
        t0 = time.monotonic()
        with self._lock:
            (self.cut_sites.add if cut else self.cut_sites.discard)(site)
            self._apply_ports()
        return Applied(self.view_site(site), (time.monotonic() - t0) * 1000)

    def _apply_ports(self) -> None:
        """Ports down for every link cut on its own or by its site, up for the others."""
        want = self.cut_links | {n for s in self.cut_sites for n in self.site_links(s)}
        commands = [(ns, ["ip", "link", "set", "dev", intf, "down" if name in want else "up"])
                    for name in sorted(want ^ self.down)
                    for ns, intf in ((self.links[name].ns1, self.links[name].intf1),
                                     (self.links[name].ns2, self.links[name].intf2))]
        if commands:
            run_batch("ip", commands)
        self.down = want

    def view(self, name: str) -> dict:
        link = self.links[name]
        configured = link.model
        return {"name": name, "a": configured.a, "b": configured.b,
                "up": name not in self.down, "hold_ms": round(link.applied_hold_ms, 4),
                "delay_ms": link.delay_ms, "jitter_ms": link.jitter_ms,
                "loss_pct": link.loss_pct, "rate_mbit": link.bandwidth_mbit,
                "configured": {"delay_ms": configured.delay_ms, "jitter_ms": configured.jitter_ms,
                               "loss_pct": configured.loss_pct,
                               "rate_mbit": configured.bandwidth_mbit}}

    def view_site(self, site: str) -> dict:
        return {"name": site, "cut": site in self.cut_sites,
                "links": [self.view(n) for n in self.site_links(site)]}

    def views(self) -> list[dict]:
        return [self.view(name) for name in self.links]

    def traffic(self) -> dict[str, int]:
        """Bytes each link has carried so far (both ways), from its first switch port's
        counters in that port's namespace (/proc/PID/net/dev: no process started)."""
        by_ns: dict[int | None, dict[str, int]] = {}
        totals = {}
        for name, link in self.links.items():
            if link.ns1 not in by_ns:
                by_ns[link.ns1] = interface_bytes(link.ns1)
            totals[name] = by_ns[link.ns1].get(link.intf1, 0)
        return totals


def interface_bytes(pid: int | None) -> dict[str, int]:
    """Received + sent bytes per interface of the network namespace of process `pid`
    (None: this process's)."""
    path = Path("/proc/self/net/dev" if pid is None else f"/proc/{pid}/net/dev")
    counters = {}
    try:
        lines = path.read_text().splitlines()[2:]
    except OSError:
        return counters
    for line in lines:
        name, _, fields = line.partition(":")
        values = fields.split()
        counters[name.strip()] = int(values[0]) + int(values[8])
    return counters

