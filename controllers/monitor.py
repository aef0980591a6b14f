"""Link delay measurement and silent-failure detection from timestamped probes.

The controller sends a probe out of a switch port (packet-out), the neighbour switch sends
it back (packet-in); the time between, minus half the control-channel round trip to each
of the two switches (OpenFlow echo), is the link's one-way delay. A link direction that
stops returning probes is down even when no port went down (a failure in the middle of an
emulated link changes no carrier). A probe only counts as lost once both switches have
answered an echo request sent after it: when the controller or the switch stalls (a loaded
machine), every probe is late but no link is blamed. Pure bookkeeping: the caller passes
`now` and sends.
"""

from __future__ import annotations

import statistics
import struct
from collections import deque
from dataclasses import dataclass, field

from controllers.flows import ETH_TYPE_PROBE
from controllers.routing import Measurement, link_id
from topologies.model import Topology

PROBE_DST = "01:80:c2:00:00:0e"  # LLDP nearest-bridge group: never forwarded by a bridge
PROBE_SRC = "02:4c:ff:00:00:01"
PROBE_MAGIC = b"HLPR"
_PAYLOAD = struct.Struct("!4sQIQ")  # magic, source dpid, source port, sequence number
ETH_HEADER = struct.Struct("!6s6sH")


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


@dataclass(frozen=True)
class Direction:
    """One direction of one link, as switch ports."""

    src_site: str
    src_dpid: int
    src_port: int
    dst_site: str
    dst_dpid: int
    dst_port: int


@dataclass(frozen=True)
class Probe:
    dpid: int
    port: int
    data: bytes


def probe_frame(dpid: int, port: int, seq: int) -> bytes:
    header = ETH_HEADER.pack(_mac_bytes(PROBE_DST), _mac_bytes(PROBE_SRC), ETH_TYPE_PROBE)
    frame = header + _PAYLOAD.pack(PROBE_MAGIC, dpid, port, seq)
    return frame + bytes(max(0, 60 - len(frame)))  # Ethernet minimum without FCS


def parse_probe(data: bytes) -> tuple[int, int, int] | None:
    """(source dpid, source port, sequence) of a probe frame, or None if it is not one."""
    start = ETH_HEADER.size
    if len(data) < start + _PAYLOAD.size:
        return None
    magic, dpid, port, seq = _PAYLOAD.unpack_from(data, start)
    return (dpid, port, seq) if magic == PROBE_MAGIC else None


@dataclass
class _DirectionState:
    started: float | None = None  # when probing began (both switches connected)
    last_rx: float | None = None
    samples: deque = field(default_factory=lambda: deque(maxlen=5))
    unanswered: deque = field(default_factory=lambda: deque(maxlen=64))  # send times since last answer


class DelayMonitor:
    def __init__(self, topology: Topology, interval_s: float = 0.2, misses: int = 3,
                 margin_s: float = 0.05):
        self.topology = topology
        self.interval_s = interval_s
        self.misses = misses
        self.margin_s = margin_s  # beyond the link's round trip, time a probe gets to return
        self.directions: dict[tuple[int, int], Direction] = {}  # (src dpid, src port) -> it
        for link in topology.links:
            for a, b in ((link.a, link.b), (link.b, link.a)):
                d = Direction(a, int(topology.sites[a].dpid, 16), topology.port_to(a, b),
                              b, int(topology.sites[b].dpid, 16), topology.port_to(b, a))
                self.directions[(d.src_dpid, d.src_port)] = d
        self.state = {key: _DirectionState() for key in self.directions}
        self.rtt_s: dict[int, float] = {}
        self.echo_ok: dict[int, float] = {}  # dpid -> send time of the latest answered echo
        self._echo_pending: dict[tuple[int, int], float] = {}
        self._pending: dict[int, tuple[tuple[int, int], float]] = {}
        self._seq = 0
        self.connected: set[int] = set()

    def switch_connected(self, dpid: int, now: float) -> None:
        self.connected.add(dpid)
        for key, d in self.directions.items():
            if d.src_dpid in self.connected and d.dst_dpid in self.connected:
                st = self.state[key]
                if st.started is None:
                    st.started, st.last_rx = now, None

    def switch_disconnected(self, dpid: int) -> None:
        self.connected.discard(dpid)
        self.rtt_s.pop(dpid, None)
        self.echo_ok.pop(dpid, None)
        for key, d in self.directions.items():
            if dpid in (d.src_dpid, d.dst_dpid):
                self.state[key] = _DirectionState()

    def next_probes(self, now: float) -> list[Probe]:
        """One probe per direction whose two switches are connected."""
        probes = []
        self._pending = {s: p for s, p in self._pending.items() if now - p[1] < 10 * self.interval_s + 1}
        for key, st in self.state.items():
            if st.started is None:
                continue
            self._seq += 1
            self._pending[self._seq] = (key, now)
            st.unanswered.append(now)
            probes.append(Probe(key[0], key[1], probe_frame(key[0], key[1], self._seq)))
        return probes

    def echo_sent(self, dpid: int, xid: int, now: float) -> None:
        self._echo_pending[(dpid, xid)] = now

    def echo_replied(self, dpid: int, xid: int, now: float) -> None:
        sent = self._echo_pending.pop((dpid, xid), None)
        if sent is not None:
            self.rtt_s[dpid] = now - sent
            self.echo_ok[dpid] = max(self.echo_ok.get(dpid, sent), sent)

    def probe_received(self, dpid: int, in_port: int, data: bytes, now: float) -> Direction | None:
        """Record a probe that came back; returns its direction if it was one of ours."""
        parsed = parse_probe(data)
        if parsed is None:
            return None
        src_dpid, src_port, seq = parsed
        pending = self._pending.pop(seq, None)
        d = self.directions.get((src_dpid, src_port))
        if pending is None or d is None or (d.dst_dpid, d.dst_port) != (dpid, in_port):
            return None
        st = self.state[(src_dpid, src_port)]
        control = (self.rtt_s.get(d.src_dpid, 0.0) + self.rtt_s.get(d.dst_dpid, 0.0)) / 2
        st.samples.append(max(0.0, now - pending[1] - control) * 1000)
        st.last_rx = now
        st.unanswered.clear()
        return d

    def silent(self) -> set[frozenset[str]]:
        """Links with a direction that lost `misses` probes in a row while both switches
        answered echo requests sent after those probes (plus the link's round trip)."""
        quiet = set()
        for key, st in self.state.items():
            d = self.directions[key]
            if st.started is None or d.src_dpid not in self.echo_ok or d.dst_dpid not in self.echo_ok:
                continue
            proof = min(self.echo_ok[d.src_dpid], self.echo_ok[d.dst_dpid])
            allowance = 2 * self.topology.link_between(d.src_site, d.dst_site).delay_ms / 1000 + self.margin_s
            if sum(1 for sent in st.unanswered if sent + allowance <= proof) >= self.misses:
                quiet.add(link_id(d.src_site, d.dst_site))
        return quiet

    def measurements(self) -> dict[frozenset[str], Measurement]:
        """Median of recent samples of both directions of every link heard from."""
        by_link: dict[frozenset[str], list[float]] = {}
        last: dict[frozenset[str], float] = {}
        for key, st in self.state.items():
            if st.samples and st.last_rx is not None:
                d = self.directions[key]
                lid = link_id(d.src_site, d.dst_site)
                by_link.setdefault(lid, []).extend(st.samples)
                last[lid] = max(last.get(lid, 0.0), st.last_rx)
        return {lid: Measurement(statistics.median(v), last[lid]) for lid, v in by_link.items()}
