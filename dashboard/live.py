"""The running lab as the dashboard shows it, sampled once a second.

Each sample joins what the network does (lab.linkcontrol: links' parameters, ports, bytes
carried), what the controller decides (its REST API: strategy, measured link delays, every
client's endpoint and path) and what the clinics measure (one round of ICMP probes from each
clinic's client to the endpoint it uses now, lab.icmpprobe). The controller's link and
failover events come from its log; the sampler adds the reroutes it sees and the changes
made through the dashboard. Subscribers (the page's event stream) get every sample.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lab.icmpprobe import probe

INTERVAL_S = 1.0
EVENTS_KEPT = 200
# The controller's log lines that are link and failover events (controllers.app).
EVENT_LINE = re.compile(
    r"^(?P<date>\S+ \S+) \S+ \S+ (?P<text>(?:switch \S+ port \d+ (?:up|down))"
    r"|(?:link \S+ (?:silent: down|answers probes again: up))|(?:strategy \S+)"
    r"|(?:switch \S+ (?:dis)?connected))$")


class ControllerUnavailable(RuntimeError):
    """The lab runs without the builtin controller, or it did not answer."""


@dataclass
class Event:
    t: float
    kind: str  # port | probe | strategy | switch | reroute | control
    text: str


@dataclass
class Sample:
    """What one second of the lab looked like."""

    t: float
    topology: str
    strategy: dict | None
    links: list[dict]
    clients: list[dict]
    sites: list[dict]
    events: list[dict] = field(default_factory=list)


class Live:
    """Samples the lab every INTERVAL_S inside the server's event loop."""

    def __init__(self, lab, control, interval_s: float = INTERVAL_S):
        self.lab = lab
        self.control = control
        self.interval_s = interval_s
        self.topology = lab.topology
        self.rest_url = lab.controller.rest_url if lab.controller is not None else None
        self.log_path: Path | None = lab.controller.log_path if lab.controller else None
        self._log_offset = self.log_path.stat().st_size if self.log_path else 0
        self.events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self.latest: dict | None = None
        self.subscribers: set[asyncio.Queue] = set()
        self._bytes: tuple[float, dict[str, int]] | None = None
        self._routes: dict[str, tuple[str | None, tuple[str, ...]]] = {}
        self.client: httpx.AsyncClient | None = None  # the server's, while it runs
        self.wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- controller ----------------------------------------------------------------------

    async def controller(self, method: str, resource: str, body: dict | None = None) -> dict:
        """One call to the controller's REST API; its JSON error becomes ValueError."""
        if self.rest_url is None or self.client is None:
            raise ControllerUnavailable("this lab runs without the builtin controller "
                                        "(lab up --controller builtin)")
        try:
            resp = await self.client.request(method, f"{self.rest_url}/v1/{resource}", json=body)
        except httpx.HTTPError as exc:
            raise ControllerUnavailable(f"the controller did not answer: {exc}") from None
        data = resp.json()
        if resp.status_code >= 400:
            raise ValueError(data.get("error", f"controller answered {resp.status_code}"))
        return data

    # -- sampling ------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample every interval (sooner when poked) until cancelled; needs self.client."""
        self.loop = asyncio.get_running_loop()
        self.note("control", f"dashboard started: {len(self.topology.sites)} sites, "
                             f"{len(self.topology.links)} links")
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except Exception as exc:  # noqa: BLE001 - the page shows it; sampling goes on
                self.note("control", f"sampling failed: {exc}")
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(),
                                       max(0.05, self.interval_s - (time.monotonic() - started)))
            except asyncio.TimeoutError:
                pass

    def poke(self) -> None:
        """Sample again now (after a change), not at the next second; from any thread."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.wake.set)

    async def sample(self) -> None:
        now = time.time()
        strategy = links_view = paths = endpoints = None
        if self.rest_url is not None:
            try:
                strategy, links_view, paths, endpoints = await asyncio.gather(
                    *(self.controller("GET", r) for r in ("strategy", "links", "paths", "endpoints")))
            except (ControllerUnavailable, ValueError) as exc:
                self.note("control", str(exc))
        self._read_controller_log()
        clients = self._clients(paths, endpoints)
        await self._measure(clients)
        sample = Sample(t=now, topology=self.topology.name, strategy=strategy, links=self._links(links_view, now),
                        clients=clients, sites=self._sites(),
                        events=[e.__dict__ for e in self.events])
        self.latest = sample.__dict__
        for queue in list(self.subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(self.latest)

    def _sites(self) -> list[dict]:
        return [{"name": s.name, "kind": s.kind, "lat": s.lat, "lon": s.lon, "label": s.label,
                 "cut": s.name in self.control.cut_sites} for s in self.topology.sites.values()]

    def _links(self, view: dict | None, now: float) -> list[dict]:
        measured = {f"{r['a']}-{r['b']}": r for r in (view or {}).get("links", [])}
        counters = self.control.traffic()
        rates = {}
        if self._bytes is not None:
            then, before = self._bytes
            rates = {n: max(0, counters[n] - before.get(n, 0)) * 8 / 1e6 / max(now - then, 1e-3)
                     for n in counters}
        self._bytes = (now, counters)
        rows = []
        for link in self.control.views():
            ctl = measured.get(link["name"], {})
            rows.append({**link, "measured_ms": ctl.get("measured_ms"),
                         "controller_up": ctl.get("up"), "down_by": ctl.get("down_by", []),
                         "traffic_mbit": round(rates.get(link["name"], 0.0), 3)})
        return rows

    def _clients(self, paths: dict | None, endpoints: dict | None) -> list[dict]:
        """Each clinic client, the app endpoint the controller gives it and the path there."""
        choice = {}
        for service in (endpoints or {}).get("services", []):
            if service["name"] == "app":
                choice = service["choices"]
        route = {(p["src"], p["dst"]): p for p in (paths or {}).get("paths", [])}
        clients = []
        for host in self.topology.hosts_with_role("client"):
            endpoint = choice.get(host.name)
            row = route.get((host.name, endpoint), {})
            clients.append({"host": host.name, "site": host.site, "endpoint": endpoint,
                            "endpoint_site": (self.topology.hosts[endpoint].site
                                              if endpoint in self.topology.hosts else None),
                            "path": row.get("path", []), "model_rtt_ms": (
                                round(2 * row["delay_ms"], 3) if row.get("delay_ms") is not None
                                else None), "rtt_ms": None})
            key = (endpoint, tuple(row.get("path", [])))
            before = self._routes.get(host.name)
            if before is not None and before != key:
                self.note("reroute", f"{host.name}: {before[0]} via {'>'.join(before[1]) or '-'}"
                                     f" -> {endpoint} via {'>'.join(key[1]) or '-'}")
            self._routes[host.name] = key
        return clients

    async def _measure(self, clients: list[dict]) -> None:
        """A short round of ICMP probes from each client to its endpoint (median RTT)."""
        pairs = []
        for c in clients:
            if c["endpoint"] is None:
                continue
            node = self.lab.net.get(c["host"])
            pairs.append({"key": c["host"], "pid": node.pid, "src": node.IP(),
                          "dst": self.topology.hosts[c["endpoint"]].ip})
        if not pairs:
            return
        result = await asyncio.to_thread(probe, pairs, 3, 0, 20.0, 0.3)
        for c in clients:
            rtts = result["rtt_ms"].get(c["host"])
            if rtts:
                c["rtt_ms"] = round(statistics.median(rtts), 3)

    def _read_controller_log(self) -> None:
        if self.log_path is None:
            return
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                data = log.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # a line being written waits for the next read
        self._log_offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            match = EVENT_LINE.match(line)
            if match:
                text = match["text"]
                kind = ("port" if " port " in text else "probe" if text.startswith("link")
                        else text.split()[0])
                self.events.append(Event(_log_time(match["date"]), kind, text))

    def note(self, kind: str, text: str) -> None:
        self.events.append(Event(time.time(), kind, text))


def _log_time(stamp: str) -> float:
    """logging's asctime ('2026-12-04 16:03:03,123', local time) as epoch seconds."""
    day, _, millis = stamp.partition(",")
    return time.mktime(time.strptime(day, "%Y-%m-%d %H:%M:%S")) + int(millis or 0) / 1000
