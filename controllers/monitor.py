"""Link delay measurement and silent-failure detection from timestamped probes.

The controller sends a probe out of a switch port (packet-out), the neighbour switch sends
it back (packet-in); the time between, minus half the control-channel round trip to each
of the two switches (OpenFlow echo), is the link's one-way delay. A link direction that
stops returning probes is down even when no port went down (a failure in the middle of an
emulated link changes no carrier). A probe only counts as lost once something that left
after it came back (below): when the controller, a switch or the data plane stalls (a
loaded machine), every probe is late but no link is blamed. Pure bookkeeping: the caller
passes `now` and sends.

Probing adapts to the machine's speed, so that it neither overloads a slow controller nor
blames a healthy link there, and still notices a silent failure within about two probe
intervals on a fast one. Probes go out in rounds, each followed by an echo request to every switch (which the
switch answers after the round's packet-outs, on the same connection):
- a switch gets no new round before it answered the last one, so at most one round waits
  in any control channel;
- rounds are at least the configured interval apart, at least twice the slowest switch's
  echo round trip (the switches spend at most about half their control time on probes),
  and far enough apart that probing takes at most CPU_SHARE of the controller's CPU (the
  CPU time from round to round, averaged, measured by the caller like `now`);
- the margin a probe gets beyond its link's round trip grows with how much later than the
  echoes probes have recently come back.

A probe is proven lost by the data plane where it can be: its destination switch returned a
probe from another of its links that was due to arrive later. The delay line and a switch
pass frames in the order they are due, so on a loaded machine a late probe is overtaken by
nothing. "Due" is bounded on both sides without trusting the controller's clock: a probe has
left its source switch once that switch answered the echo request sent after it (at the
latest when the reply came back), and a witness cannot have left before the controller sent
it; the slack between them covers only the link's jitter and full queue and ORDER_SLACK_S.
A witness counts once its switch answered an echo sent after the witness came back (a
"drain" echo, sent at once when a witness would prove something): the switch has by then
read every port again, so a probe it read just after the witness was not lost. The echoes
are answered by the control channel, which does not wait for the data plane, and prove only
that the switches are alive. They decide alone for a switch with one link, and with a longer
margin (FALLBACK_MARGIN_S) where the destination switch hears no other link.

A direction with a proven loss is suspect: the next round goes out at once and the ones
after as soon as they can prove a suspect's probe lost (`_proof_gap`, at most four rounds an
interval) instead of a whole period later, so `misses` losses in a row take about one period
and a link's round trip to prove, not `misses` periods.

Fixed 5 Hz probing of every link direction once took a Python controller under software
emulation (QEMU TCG) tens of seconds behind: answers came back after they were given up
on, the echoes behind them proved the switches alive, and healthy links were declared down.
"""

from __future__ import annotations

import statistics
import struct
from collections import Counter, deque
from dataclasses import dataclass, field

from controllers.flows import ETH_TYPE_PROBE
from controllers.routing import Measurement, link_id
from topologies.model import Topology

PROBE_DST = "01:80:c2:00:00:0e"  # LLDP nearest-bridge group: never forwarded by a bridge
PROBE_SRC = "02:4c:ff:00:00:01"
PROBE_MAGIC = b"HLPR"
CPU_SHARE = 0.2  # the most of one CPU that the controller's probing may take
MAX_PERIOD_S = 5.0  # however slow the machine, a round at least this often
FALLBACK_MARGIN_S = 1.0  # echo proof's margin where the data plane can prove it instead
# How much earlier than due a switch may return a witness than a probe of another port: the
# order it polls its ports in within one pass.
ORDER_SLACK_S = 0.005
FRAME_BITS = 1514 * 8  # a full frame, for the time a full queue takes to drain
# Open vSwitch revalidates its datapath's cached flows after a flow change in the background:
# for a while after a switch connects, probes may still meet a cached drop. A direction never
# heard from counts its losses only from this long after both switches had their flows.
STARTUP_GRACE_S = 2.0
_PAYLOAD = struct.Struct("!4sQIQ")  # magic, source dpid, source port, sequence number
ETH_HEADER = struct.Struct("!6s6sH")


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


_PROBE_HEADER = ETH_HEADER.pack(_mac_bytes(PROBE_DST), _mac_bytes(PROBE_SRC), ETH_TYPE_PROBE)


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
    frame = _PROBE_HEADER + _PAYLOAD.pack(PROBE_MAGIC, dpid, port, seq)
    return frame + bytes(max(0, 60 - len(frame)))  # Ethernet minimum without FCS


def parse_probe(data: bytes) -> tuple[int, int, int] | None:
    """(source dpid, source port, sequence) of a probe frame, or None if it is not one."""
    start = ETH_HEADER.size
    if len(data) < start + _PAYLOAD.size:
        return None
    magic, dpid, port, seq = _PAYLOAD.unpack_from(data, start)
    return (dpid, port, seq) if magic == PROBE_MAGIC else None


@dataclass(frozen=True)
class Round:
    """What to send at one tick: the probes, then an echo request to each of `echoes`."""

    probes: list[Probe] = field(default_factory=list)
    echoes: list[int] = field(default_factory=list)  # dpids


@dataclass
class _Sent:
    """A probe not answered yet: when the controller sent it, and by when it surely left its
    source switch (the reply to the echo request sent after it; None before that)."""

    at: float
    left_by: float | None = None


@dataclass
class _DirectionState:
    started: float | None = None  # when probing began (both switches connected)
    last_rx: float | None = None
    samples: deque = field(default_factory=lambda: deque(maxlen=5))
    unanswered: deque = field(default_factory=lambda: deque(maxlen=64))  # _Sent since last answer


class DelayMonitor:
    def __init__(self, topology: Topology, interval_s: float = 0.2, misses: int = 3,
                 margin_s: float = 0.05):
        self.topology = topology
        self.interval_s = interval_s  # the shortest time between two rounds
        self.misses = misses
        self.margin_s = margin_s  # the least time a probe gets beyond its link's round trip
        self.directions: dict[tuple[int, int], Direction] = {}  # (src dpid, src port) -> it
        self.delay_s: dict[tuple[int, int], float] = {}  # the same -> the link's one-way delay
        self.slack_s: dict[tuple[int, int], float] = {}  # the same -> how late it may still be
        self.jitter_s: dict[tuple[int, int], float] = {}
        for link in topology.links:
            queue_s = (link.queue_packets * FRAME_BITS / (link.bandwidth_mbit * 1e6)
                       if link.bandwidth_mbit else 0.0)
            for a, b in ((link.a, link.b), (link.b, link.a)):
                d = Direction(a, int(topology.sites[a].dpid, 16), topology.port_to(a, b),
                              b, int(topology.sites[b].dpid, 16), topology.port_to(b, a))
                key = (d.src_dpid, d.src_port)
                self.directions[key] = d
                self.delay_s[key] = link.delay_ms / 1000
                self.jitter_s[key] = link.jitter_ms / 1000
                self.slack_s[key] = ORDER_SLACK_S + 3 * link.jitter_ms / 1000 + queue_s
        self.inbound = Counter(d.dst_dpid for d in self.directions.values())
        self._toward: dict[int, list[tuple[int, int]]] = {}  # dpid -> directions into it
        self._from: dict[int, list[tuple[int, int]]] = {}  # dpid -> directions out of it
        for key, d in self.directions.items():
            self._toward.setdefault(d.dst_dpid, []).append(key)
            self._from.setdefault(d.src_dpid, []).append(key)
        # dpid -> the latest time a probe it returned (before it answered a later echo) was
        # due to arrive there at the earliest (data plane).
        self.heard_due: dict[int, float] = {}
        self._undrained: dict[int, list[tuple[float, float]]] = {}  # dpid -> (arrival, due)
        self._drains: set[int] = set()  # dpids that should get an echo request now
        self.suspects: set[tuple[int, int]] = set()  # directions with a proven loss, not down
        self._rushed = False  # whether there were suspects at the last round
        self.cut_off: set[frozenset[str]] = set()  # links down with a cut-off switch
        # Whether anything came back since `silent` last looked: its answer can change only
        # then (a new round adds only probes not proven lost).
        self.news = True
        self.state = {key: _DirectionState() for key in self.directions}
        self.rtt_s: dict[int, float] = {}
        self.echo_ok: dict[int, float] = {}  # dpid -> send time of the latest answered echo
        # dpid -> send time of the first echo it answered: its flows (sent before the echo
        # on the same connection) are in its tables from then on.
        self.ready_at: dict[int, float] = {}
        self._echo_pending: dict[tuple[int, int], float] = {}
        # (dpid, xid) of pending drain echoes: they wait behind no probes, so they keep no
        # switch from its next round
        self._drain_pending: set[tuple[int, int]] = set()
        self._draining: set[int] = set()  # dpids whose drain echo is about to be sent
        self._pending: dict[int, tuple[tuple[int, int], float]] = {}
        self._seq = 0
        self._last_round: tuple[float, float] | None = None  # (now, CPU time) at the last round
        self.round_cpu_s = 0.0  # the controller's CPU time from one round to the next (average)
        # How much later than an echo to its destination switch each recent probe came back
        # (beyond its link's one-way delay): what the margin must cover.
        self.lateness_s: deque = deque(maxlen=256)
        self.connected: set[int] = set()

    @property
    def period_s(self) -> float:
        """Time between rounds: the interval, or longer on a slow machine (see above)."""
        slow = max(2 * max(self.rtt_s.values(), default=0.0), self.round_cpu_s / CPU_SHARE)
        return max(self.interval_s, min(slow, MAX_PERIOD_S))

    @property
    def fast_period_s(self) -> float:
        """Time between rounds while a direction is suspect (a few rounds): long enough for
        the next round to prove lost the probe of the suspect that needs the least, and at
        most four rounds an interval."""
        gap = min((self._proof_gap(key) for key in self.suspects), default=self.interval_s)
        return min(self.period_s, max(gap, self.interval_s / 4))

    def _proof_gap(self, key: tuple[int, int]) -> float:
        """How much later than a probe of this direction a witness must be sent to be due
        after it, wherever it comes from."""
        return self.rtt_s.get(key[0], 0.0) + self.delay_s[key] + self.slack_s[key]

    @property
    def margin(self) -> float:
        """Time a probe gets beyond its link's round trip before an echo can prove it lost."""
        return max(self.margin_s, 2 * max(self.lateness_s, default=0.0))

    @property
    def wait_s(self) -> float:
        """How long an unanswered probe or echo is waited for."""
        return 10 * self.period_s + 1

    def switch_connected(self, dpid: int, now: float) -> None:
        self.connected.add(dpid)
        for key, d in self.directions.items():
            if d.src_dpid in self.connected and d.dst_dpid in self.connected:
                st = self.state[key]
                if st.started is None:
                    st.started, st.last_rx = now, None

    def switch_disconnected(self, dpid: int) -> None:
        self.connected.discard(dpid)
        self.news = True
        self.rtt_s.pop(dpid, None)
        self.echo_ok.pop(dpid, None)
        self.ready_at.pop(dpid, None)
        self.heard_due.pop(dpid, None)
        self._undrained.pop(dpid, None)
        self._drains.discard(dpid)
        self._drain_pending = {k for k in self._drain_pending if k[0] != dpid}
        self._echo_pending = {k: t for k, t in self._echo_pending.items() if k[0] != dpid}
        for key, d in self.directions.items():
            if dpid in (d.src_dpid, d.dst_dpid):
                self.state[key] = _DirectionState()
                self.cut_off.discard(link_id(d.src_site, d.dst_site))

    def next_round(self, now: float, cpu_s: float, tick_s: float = 0.0) -> Round:
        """The probes and echo requests due now (none before the period is over, less half
        of `tick_s`, the caller's timer interval); `cpu_s` is the controller's CPU time so
        far (time.process_time()).

        Every connected switch that answered its last echo gets one, and every direction
        between two such switches a probe; a switch still busy with its last round waits
        (up to `wait_s`, then it is asked again).
        """
        last = self._last_round
        if self.suspects and not self._rushed:  # the first suspect: its next probe goes now
            period = 0.0
        else:
            period = self.fast_period_s if self.suspects else self.period_s
        if last is not None and now - last[0] < period - tick_s / 2:
            return Round()
        wait = self.wait_s
        self._pending = {s: p for s, p in self._pending.items() if now - p[1] < wait}
        self._echo_pending = {k: t for k, t in self._echo_pending.items() if now - t < wait}
        self._drain_pending &= self._echo_pending.keys()
        busy = {dpid for dpid, xid in self._echo_pending if (dpid, xid) not in self._drain_pending}
        ready = sorted(self.connected - busy)
        if not ready:
            return Round()
        if last is not None:  # averaged over about 4 rounds: a reroute's cost passes
            self.round_cpu_s += (cpu_s - last[1] - self.round_cpu_s) / 4
        self._last_round = (now, cpu_s)
        self._rushed = bool(self.suspects)
        probes = []
        for key, st in self.state.items():
            d = self.directions[key]
            if st.started is None or d.src_dpid in busy or d.dst_dpid in busy:
                continue
            self._seq += 1
            self._pending[self._seq] = (key, now)
            st.unanswered.append(_Sent(now))
            probes.append(Probe(key[0], key[1], probe_frame(key[0], key[1], self._seq)))
        return Round(probes, ready)

    def drains(self) -> Round:
        """Echo requests to send now: to switches that returned a witness (see above)."""
        waiting = {dpid for dpid, _ in self._echo_pending}
        echoes = sorted(self._drains - waiting)
        self._drains.clear()
        self._draining = set(echoes)
        return Round([], echoes)

    def echo_sent(self, dpid: int, xid: int, now: float) -> None:
        self._echo_pending[(dpid, xid)] = now
        if dpid in self._draining:
            self._draining.discard(dpid)
            self._drain_pending.add((dpid, xid))

    def echo_replied(self, dpid: int, xid: int, now: float) -> None:
        sent = self._echo_pending.pop((dpid, xid), None)
        self._drain_pending.discard((dpid, xid))
        if sent is None:
            return
        self.news = True
        self.rtt_s[dpid] = now - sent
        self.echo_ok[dpid] = max(self.echo_ok.get(dpid, sent), sent)
        self.ready_at.setdefault(dpid, sent)
        for key in self._from.get(dpid, []):  # its probes sent before the echo have left
            for probe in self.state[key].unanswered:
                if probe.at <= sent and probe.left_by is None:
                    probe.left_by = now
        witnesses = self._undrained.get(dpid, [])
        drained = [due for arrival, due in witnesses if arrival <= sent]
        if drained:
            self.heard_due[dpid] = max(self.heard_due.get(dpid, max(drained)), max(drained))
            self._undrained[dpid] = [w for w in witnesses if w[0] > sent]

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
        key, sent = pending
        st = self.state[key]
        control = (self.rtt_s.get(d.src_dpid, 0.0) + self.rtt_s.get(d.dst_dpid, 0.0)) / 2
        st.samples.append(max(0.0, now - sent - control) * 1000)
        echo = self.rtt_s.get(d.dst_dpid, 0.0)
        self.lateness_s.append(max(0.0, now - sent - self.delay_s[key] - echo))
        st.last_rx = now
        self.news = True
        self.cut_off.discard(link_id(d.src_site, d.dst_site))
        while st.unanswered and st.unanswered[0].at <= sent:  # it and the probes before it
            st.unanswered.popleft()
        due = sent + self.delay_s[key] - 3 * self.jitter_s[key]
        self._undrained.setdefault(dpid, []).append((now, due))
        if self._would_prove(dpid, due):
            self._drains.add(dpid)
        return d

    def _would_prove(self, dpid: int, due: float) -> bool:
        """Whether a witness due then at this switch proves a probe toward it lost that is
        not proven yet."""
        heard = self.heard_due.get(dpid, float("-inf"))
        for key in self._toward.get(dpid, []):
            bound = self.delay_s[key] + self.slack_s[key]
            for probe in self.state[key].unanswered:
                if probe.left_by is not None and heard <= probe.left_by + bound < due:
                    return True
        return False

    def silent(self) -> set[frozenset[str]]:
        """Links with a direction that lost `misses` probes in a row (see `_proven`),
        counting only probes sent once both switches had their flows (and, until the
        direction was first heard from, STARTUP_GRACE_S more), and the links of a cut-off
        switch (`_cut_off`). Directions with fewer proven losses become `suspects`."""
        self.news = False
        quiet, lost = set(), {}
        for key, st in self.state.items():
            if not st.unanswered or st.started is None:
                continue
            d = self.directions[key]
            if d.src_dpid not in self.ready_at or d.dst_dpid not in self.ready_at:
                continue
            ready = max(self.ready_at[d.src_dpid], self.ready_at[d.dst_dpid])
            if st.last_rx is None:
                ready += STARTUP_GRACE_S
            proven = self._proven(key)
            times = [probe.at for probe in st.unanswered if ready <= probe.at and proven(probe)]
            if times:
                lost[key] = times
            if len(times) >= self.misses:
                quiet.add(link_id(d.src_site, d.dst_site))
        quiet |= self.cut_off
        self.suspects = {key for key in lost if link_id(
            self.directions[key].src_site, self.directions[key].dst_site) not in quiet}
        self.cut_off |= self._cut_off({key: lost[key] for key in self.suspects})
        self.suspects = {key for key in self.suspects if link_id(
            self.directions[key].src_site, self.directions[key].dst_site) not in self.cut_off}
        return quiet | self.cut_off

    def _cut_off(self, lost: dict[tuple[int, int], list[float]]) -> set[frozenset[str]]:
        """The suspect links, when they are `misses` or more links of one switch whose
        probes stopped arriving anywhere (a silent data center): as much evidence as
        `misses` losses in a row on one link, found a round or two sooner. Only when every
        proven loss in the network is that switch's: a machine-wide stall that loses frames
        everywhere looks nothing like it. They stay down until they answer a probe."""
        sources = {self.directions[key].src_dpid for key in lost}
        if len(sources) != 1 or len(lost) < self.misses:
            return set()
        dpid = sources.pop()
        since = min(min(times) for times in lost.values())
        if any((self.state[key].last_rx or float("-inf")) > since for key in self._from[dpid]):
            return set()  # something it sent after the losses came back
        return {link_id(self.directions[key].src_site, self.directions[key].dst_site)
                for key in lost}

    def _proven(self, key: tuple[int, int]):
        """Whether an unanswered probe of this direction is proven lost: by a witness its
        destination returned that was due later, or by echo requests both switches answered
        after it (its link's round trip and a margin later)."""
        d = self.directions[key]
        delay = self.delay_s[key]
        heard = self.heard_due.get(d.dst_dpid, float("-inf")) - delay - self.slack_s[key]
        margin = self.margin if self.inbound[d.dst_dpid] == 1 else FALLBACK_MARGIN_S
        echoed = min(self.echo_ok[d.src_dpid], self.echo_ok[d.dst_dpid]) - 2 * delay - margin
        return lambda probe: probe.at <= echoed or (
            probe.left_by is not None and probe.left_by < heard)

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
