"""The failures `lab compare` injects, found on any topology that has the sites they need.

One table, one entry per scenario: a function that finds, on a topology, the links the
failure cuts (they drop 100 % of their frames: a silent cut) and the sites left with no
link at all, or None where the topology has no such site. One scenario changes delays
instead of cutting links: `congestion` plays the topology's schedules (topologies.trace:
in the default topology, the line between the data centers and the inter-Region link).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from measurements.arguments import ArgumentError


@dataclass(frozen=True)
class Scenario:
    """A failure: the links it cuts and the sites it leaves with no link at all."""

    name: str
    description: str
    links: tuple[int, ...] = ()  # link indices (1-based, file order)
    isolated: tuple[str, ...] = ()  # sites whose every link is cut
    scheduled: tuple[int, ...] = ()  # links whose schedule plays during the cell
    schedule_s: float = 0.0  # how long it plays (the longest schedule's one pass)


def _links_of(topo, site: str) -> tuple[int, ...]:
    return tuple(link.index for link in topo.links if site in (link.a, link.b))


def _normal(topo) -> Scenario:
    return Scenario("normal", "no failure")


def _dc_failure(topo) -> Scenario | None:
    primary = topo.hosts_with_role("db-primary")
    dc = primary[0].site if primary else next(
        (s.name for s in topo.sites.values() if s.kind == "datacenter"), None)
    if dc is None:
        return None
    return Scenario("dc-failure", f"data center {dc} (the database primary's) cut off "
                    f"silently: all its links drop every frame", _links_of(topo, dc), (dc,))


def _lz_cut(topo) -> Scenario | None:
    lz = next((s.name for s in topo.sites.values() if s.kind == "localzone"), None)
    if lz is None:
        return None
    return Scenario("lz-cut", f"Local Zone {lz} cut off: all its links drop every frame",
                    _links_of(topo, lz), (lz,))


def _service_link_cut(topo) -> Scenario | None:
    outpost = next((s for s in topo.sites.values() if s.kind == "outpost"), None)
    if outpost is None or not outpost.region:
        return None
    link = topo.link_between(outpost.name, outpost.region)
    return Scenario("service-link-cut", f"Outpost {outpost.name}'s service link to "
                    f"{outpost.region} cut", (link.index,))


def _congestion(topo) -> Scenario | None:
    scheduled = [link for link in topo.links if link.schedule is not None]
    if not scheduled:
        return None
    names = ", ".join(f"{link.name} ({Path(link.schedule.trace.file).name})" for link in scheduled)
    return Scenario("congestion", f"delays follow their schedules: {names}",
                    scheduled=tuple(link.index for link in scheduled),
                    schedule_s=max(min(link.schedule.period_s, MAX_SCHEDULE_S)
                                   for link in scheduled))


SCENARIOS: dict[str, Callable] = {"normal": _normal, "dc-failure": _dc_failure,
                                  "lz-cut": _lz_cut, "service-link-cut": _service_link_cut,
                                  "congestion": _congestion}
# What `lab compare` runs unless told: congestion adds about 20 s per strategy (its
# schedules' 14 s, the settling), so it is asked for by name.
DEFAULT_SCENARIOS = ("normal", "dc-failure", "lz-cut", "service-link-cut")
MAX_SCHEDULE_S = 120.0  # a cell plays at most this much of a longer (or looped) schedule


def scenarios_of(topology, names=DEFAULT_SCENARIOS) -> list[Scenario]:
    """The named scenarios on this topology (the primary's DC, the first LZ and Outpost)."""
    found = []
    for name in names:
        if name not in SCENARIOS:
            raise ArgumentError(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
        scenario = SCENARIOS[name](topology)
        if scenario is None:
            raise ArgumentError(f"scenario {name!r} needs a site (congestion: a link with a "
                             f"schedule) this topology does not have")
        found.append(scenario)
    return found
