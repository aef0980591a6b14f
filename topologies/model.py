"""The topology model: sites, links and hosts, every link with its resolved one-way delay.

A `Topology` is what topologies.loader makes of a topology file: each link carries its
configured delay (`Link.delay_ms`) and the source of that figure (a cited number, or one
derived from great-circle distance). Every later stage reads these objects; none reads the
file again or gets a link's figures back from Mininet.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Iterator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SITE_KINDS = ("datacenter", "outpost", "localzone", "region", "clinic")
HOST_ROLES = ("db-primary", "db-standby", "monolith", "service", "client")

# Names end up in interface names ("hl<site>-eth<N>", at most 15 characters in Linux) and
# in shell commands, so they are short and made of lowercase letters and digits only.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,6}$")
NAME_RULE = "must be 1-7 lowercase letters or digits, starting with a letter"
LAB_PREFIX = "hl"  # every switch and root-namespace interface of the lab starts with this
MAX_PORTS_PER_SITE = 99  # "-eth<N>" leaves room for two digits

# Hosts' addresses: the n-th host of site s is 10.a.b.n, a = (s - 1) % 254 + 1 and
# b = 2 * ((s - 1) // 254), so sites 1-254 have 10.s.0.n and later ones take the same second
# octets again with the next even third one. The odd third octet above (b + 1) holds hosts'
# second addresses (controllers.services.service_address); 10.0.x.x is left to services.
SITES_PER_BLOCK = 254
MAX_SITES = SITES_PER_BLOCK * 128


def host_ip(site_index: int, n: int) -> str:
    """The address of site `site_index`'s n-th host (both 1-based)."""
    block, a = divmod(site_index - 1, SITES_PER_BLOCK)
    return f"10.{a + 1}.{2 * block}.{n}"


def host_mac(site_index: int, n: int) -> str:
    """A locally administered MAC unique per site and host (02:4c:00:00:s:n up to site 255)."""
    return f"02:4c:00:{site_index >> 8:02x}:{site_index & 0xFF:02x}:{n:02x}"


FIBER_MS_PER_KM = 0.0049  # ~4.9 us per km one way (refractive index ~1.468)
EARTH_RADIUS_KM = 6371.0
MAX_DELAY_MS = 10_000.0


class TopologyError(ValueError):
    """A topology file is invalid; str() is the one-line message for the user."""

    def __init__(self, file: str | Path, where: str, problem: str):
        self.file, self.where, self.problem = str(file), where, problem
        super().__init__(one_line(f"{file}: {where}: {problem}"))


# Every character str.splitlines() breaks at, shown escaped instead.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """`text` with its line breaks escaped: an error message stays one line."""
    return text.translate(_LINE_BREAKS)


def read_text(path: Path) -> str:
    """A topology or trace file's text, or the TopologyError that says why not."""
    try:
        return path.read_text()
    except OSError as exc:
        raise TopologyError(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TopologyError(path, "(file)", "not a text file (UTF-8)") from None


@dataclass(frozen=True)
class TracePoint:
    """What a link applies from `time_s` on: None keeps the link's own jitter or loss."""

    time_s: float
    delay_ms: float
    jitter_ms: float | None = None
    loss_pct: float | None = None


@dataclass(frozen=True)
class Trace:
    file: str
    points: tuple[TracePoint, ...]
    header: tuple[tuple[str, str], ...] = ()  # (key, value) from the comment lines

    @property
    def period_s(self) -> float:
        """Length of one pass: the last row's offset (a single row: for ever)."""
        return self.points[-1].time_s if len(self.points) > 1 else math.inf

    def meta(self, key: str) -> str:
        return dict(self.header).get(key, "")


@dataclass(frozen=True)
class Schedule:
    """A trace played on a link: from the moment the player starts, at `speed`, looped or once."""

    trace: Trace
    loop: bool = True
    speed: float = 1.0

    @property
    def period_s(self) -> float:
        """One pass of the trace in run time (seconds)."""
        return self.trace.period_s / self.speed

    def at(self, t: float) -> TracePoint:
        """The point in force `t` seconds (run time) after the start."""
        offset = max(0.0, t) * self.speed
        if self.loop and math.isfinite(self.trace.period_s):
            offset %= self.trace.period_s
        times = [p.time_s for p in self.trace.points]
        return self.trace.points[max(0, bisect.bisect_right(times, offset) - 1)]

    def changes(self, until: float) -> list[tuple[float, TracePoint]]:
        """Every (run time, point) at which the schedule changes, from 0 to `until` seconds."""
        return list(itertools.takewhile(lambda change: change[0] <= until, self.iter_changes()))

    def iter_changes(self) -> Iterator[tuple[float, TracePoint]]:
        """(run time, point) at each change, in order; without end when looped."""
        looped = self.loop and math.isfinite(self.period_s)
        points = self.trace.points[:-1] if looped else self.trace.points
        start = 0.0
        while True:
            for p in points:
                yield start + p.time_s / self.speed, p
            if not looped:
                return
            start += self.period_s

    def as_dict(self) -> dict:
        return {"trace": self.trace.file, "loop": self.loop, "speed": self.speed,
                "source": self.trace.meta("source"), "license": self.trace.meta("license")}


@dataclass(frozen=True)
class LinkClass:
    """Defaults shared by links of one kind (route inflation, equipment delay, bandwidth)."""

    name: str
    inflation: float
    equipment_ms: float
    bandwidth_mbit: float | None = None
    description: str = ""
    schedule: Schedule | None = None  # every link of the class follows it (unless its own)


@dataclass(frozen=True)
class Site:
    name: str
    kind: str
    lat: float
    lon: float
    index: int  # 1-based position in the file; used for addresses and datapath ids
    label: str = ""
    datacenter: str | None = None  # outpost: its data center; localzone: the one it serves
    region: str | None = None  # outpost: home Region; localzone: parent Region

    @property
    def switch(self) -> str:
        """Name of the site's switch (an OVS bridge), prefixed so cleanup can find it."""
        return LAB_PREFIX + self.name

    @property
    def dpid(self) -> str:
        return f"4c{self.index:014x}"


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    link_class: str
    delay_ms: float  # one way, applied once per direction
    delay_source: str
    distance_km: float
    bandwidth_mbit: float | None
    jitter_ms: float
    loss_pct: float
    queue_packets: int
    index: int  # 1-based position in the file
    # The delay over time (topologies.trace), replacing delay_ms while a player runs it.
    schedule: Schedule | None = None

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"


@dataclass(frozen=True)
class Host:
    name: str
    site: str
    role: str
    ip: str
    mac: str


@dataclass(eq=False)  # compared by identity, so its methods can be cached
class Topology:
    name: str
    description: str
    classes: dict[str, LinkClass]
    sites: dict[str, Site]
    links: list[Link]
    hosts: dict[str, Host]
    source: str = ""
    _graph: Any = field(default=None, repr=False, compare=False)

    def graph(self):
        """Sites as nodes, links as edges weighted by one-way delay (networkx.Graph)."""
        if self._graph is None:
            import networkx as nx

            g = nx.Graph()
            g.add_nodes_from(self.sites)
            for link in self.links:
                g.add_edge(link.a, link.b, delay_ms=link.delay_ms, link=link)
            self._graph = g
        return self._graph

    def hosts_at(self, site: str) -> list[Host]:
        return [h for h in self.hosts.values() if h.site == site]

    def hosts_with_role(self, role: str) -> list[Host]:
        return [h for h in self.hosts.values() if h.role == role]

    def link_between(self, a: str, b: str) -> Link:
        return self.graph().edges[a, b]["link"]

    @functools.cache
    def switch_ports(self, site: str) -> dict[int, str]:
        """OpenFlow port number -> the host or neighbouring site behind it.

        Deterministic, so the lab, the controller and Mininet agree without talking: first the
        site's hosts, then its links, each in file order, numbered from 1. The switch's
        interface for port N is named "<switch>-eth<N>".
        """
        peers = [h.name for h in self.hosts_at(site)]
        for link in self.links:
            if site in (link.a, link.b):
                peers.append(link.b if link.a == site else link.a)
        return {port: peer for port, peer in enumerate(peers, start=1)}

    @functools.cache
    def port_to(self, site: str, peer: str) -> int:
        """The port of `site`'s switch that leads to `peer` (a host or a neighbouring site)."""
        for port, name in self.switch_ports(site).items():
            if name == peer:
                return port
        raise KeyError(f"site {site!r} has no port to {peer!r}")

    def lowest_latency_paths(self) -> list[dict]:
        """Expected round trip between every pair of sites along its lowest-latency path."""
        import networkx as nx

        g = self.graph()
        names = list(self.sites)
        paths = []
        for i, src in enumerate(names):
            lengths, routes = nx.single_source_dijkstra(g, src, weight="delay_ms")
            for dst in names[i + 1:]:
                if dst not in routes:
                    paths.append({"src": src, "dst": dst, "path": [], "expected_rtt_ms": None})
                    continue
                paths.append({
                    "src": src,
                    "dst": dst,
                    "path": routes[dst],
                    "expected_rtt_ms": round(2 * lengths[dst], 4),
                })
        return paths


    def as_dict(self, paths: bool = True) -> dict:
        """The topology as JSON-ready data (`lab topo show --json`, a run's setup.json)."""
        data = {
            "name": self.name, "description": self.description,
            "sites": [{"name": s.name, "kind": s.kind, "lat": s.lat, "lon": s.lon,
                       "label": s.label, "datacenter": s.datacenter, "region": s.region}
                      for s in self.sites.values()],
            "links": [{"index": l.index, "a": l.a, "b": l.b, "class": l.link_class,
                       "delay_ms": round(l.delay_ms, 4), "source": l.delay_source,
                       "distance_km": round(l.distance_km, 1),
                       "bandwidth_mbit": l.bandwidth_mbit, "jitter_ms": l.jitter_ms,
                       "loss_pct": l.loss_pct, "queue_packets": l.queue_packets,
                       "schedule": l.schedule.as_dict() if l.schedule else None}
                      for l in self.links],
            "hosts": [{"name": h.name, "site": h.site, "role": h.role, "ip": h.ip,
                       "mac": h.mac} for h in self.hosts.values()],
        }
        if paths:
            data["paths"] = self.lowest_latency_paths()
        return data


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a spherical Earth."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def derived_delay_ms(distance_km: float, link_class: LinkClass) -> float:
    """One-way delay of a fiber path: distance x route inflation x 4.9 us/km + equipment."""
    return distance_km * link_class.inflation * FIBER_MS_PER_KM + link_class.equipment_ms


