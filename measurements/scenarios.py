"""The failures `lab compare` injects, found on any topology that has the sites they need.

One table, one entry per scenario: a function that finds, on a topology, the links the
failure cuts (they drop 100 % of their frames: a silent cut) and the sites left with no
link at all, or None where the topology has no such site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Scenario:
    """A failure: the links it cuts and the sites it leaves with no link at all."""

    name: str
    description: str
    links: tuple[int, ...] = ()  # link indices (1-based, file order)
    isolated: tuple[str, ...] = ()  # sites whose every link is cut


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


SCENARIOS: dict[str, Callable] = {"normal": _normal, "dc-failure": _dc_failure,
                                  "lz-cut": _lz_cut, "service-link-cut": _service_link_cut}


def scenarios_of(topology, names=tuple(SCENARIOS)) -> list[Scenario]:
    """The named scenarios on this topology (the primary's DC, the first LZ and Outpost)."""
    found = []
    for name in names:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
        scenario = SCENARIOS[name](topology)
        if scenario is None:
            raise ValueError(f"scenario {name!r} needs a site this topology does not have")
        found.append(scenario)
    return found
