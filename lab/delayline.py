"""Userspace link emulation ("delay line") for kernels without sch_netem: the process.

The lab starts, reconfigures and reads it through lab.delayline_control. This module is the
process (configuration, signals, reload, statistics) and its Python core, the forwarding
loop kept in one class because it is one hot loop: every frame of every link passes
`PythonCore._drain` and `_send_due`. The compiled core (lab/_delaycore.c, wrapped by
lab.delaycore) does the same work frame for frame in C, with batched reads and sends;
`--core auto` (the default) uses it when it is built and this Python core otherwise.

One process serves every emulated link: two interfaces in the root namespace each; frames
read from one leave the other after the link's hold time, in both directions.

Why it is built this way (measured on the project's machines, DESIGN.md decision 1;
the sockets and the wake-up tuning: lab.packetio): kernel receive timestamps
(CLOCK_REALTIME) are the time base, so the time a frame waits in the socket before we
read it does not add to its delay (TCP frames may instead carry their CLOCK_MONOTONIC
departure time across the veth; those are converted). One heap of deadlines and ONE
loop for all links: one process per link with real-time priority starved the rest of the
machine. The sockets sit in one epoll set (a 50x topology has thousands of link ends, more
than ``select`` takes); Python's ``epoll.poll`` rounds timeouts up to whole milliseconds in
3.11, so the Python core waits in ``select`` on the epoll descriptor itself (readable when
any socket is), which keeps microseconds. We wake a calibrated lead before a deadline and
spin only for the short rest, so the process sleeps most of the time.

Jitter is uniform in [delay - jitter, delay + jitter] (clipped at 0), as netem's default,
so both backends agree. Unless ``reorder`` is set a frame never leaves before the previous
frame of its direction, except by what chaining (below) moves it. Loss is applied before
the queue limit, as in netem.

At hold 0 a frame also waits for this process to wake (15-40 us here; a longer hold hides
it), and the process must not saturate its core (real-time throttling then stalls every
link): docs/fidelity.md. STATS counts frames sent over 250 us late, per direction.

Chained links (docs/fidelity.md): a frame that comes to a link straight from another link
of this process, through a switch, leaves it `span` after it was due to leave the previous
one, so the switch's own varying latency is taken out frame by frame; the timing moves at
most CHAIN_LIMIT from what the hold alone gives (a congested HTB queue stays the link's). A
negative hold (the switches alone take longer than the link's delay): frames leave on
arrival, and the next link chained makes up the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import heapq
import itertools
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab import delaycore
from lab.delayline_control import CHAIN_LIMIT, CONFIG_EXIT, CORES, ConfigError, LinkSpec, load_config
from lab.files import atomic_write
from lab.packetio import (MSG_DONTWAIT, RX_BUFFER, calibrate_lead, open_socket,
                          rx_overflow, set_realtime, set_timer_slack)

MSG_TRUNC = socket.MSG_TRUNC
VNET_HDR_LEN = 10
# Frames read from one socket per wake-up before deadlines are checked again.
DRAIN_BATCH = 64
STATS_INTERVAL = 1.0
# Frames sent later than this after their deadline are counted per direction.
LATE_THRESHOLD = 250e-6
# Chained links: the bytes that recognise a frame again (the IP packet's start, after
# virtio_net_hdr and Ethernet); how long a departure is remembered (at least CHAIN_MEMORY,
# at most twice that). How far a frame's timing may move: CHAIN_LIMIT.
CHAIN_KEY = slice(VNET_HDR_LEN + 14, VNET_HDR_LEN + 14 + 64)
CHAIN_MEMORY = 5e-3
# Timestamps further than this from CLOCK_REALTIME are not realtime stamps.
CLOCK_SANITY = 1.0
CLOSE_THREADS = 64  # sockets closed at once at the end (DelayLine.close)


class _Direction:
    """Per-direction queue state and counters of one link (Python core)."""

    __slots__ = ("link", "inp", "out", "last_due", "queued", "forwarded", "lost", "dropped",
                 "tx_errors", "truncated", "late_sum", "late_max", "late_over",
                 "before_start", "chained")

    def __init__(self, link: "_Link", inp: socket.socket, out: socket.socket) -> None:
        self.link = link
        self.inp = inp
        self.out = out
        self.last_due = 0.0
        self.queued = 0
        self.forwarded = 0
        self.lost = 0
        self.dropped = 0
        self.tx_errors = 0
        self.truncated = 0
        self.late_sum = 0.0
        self.late_max = 0.0
        self.late_over = 0
        self.before_start = 0
        self.chained = 0  # frames timed from their departure off the previous link

    def send(self, frame: bytes, late: float) -> None:
        """Send a frame out of this direction, counting it and how late it leaves."""
        self.late_sum += late
        if late > self.late_max:
            self.late_max = late
        if late > LATE_THRESHOLD:
            self.late_over += 1
        try:
            self.out.send(frame, MSG_DONTWAIT)
            self.forwarded += 1
        except OSError:
            self.tx_errors += 1

    def raw(self) -> dict[str, int | float]:
        return {key: getattr(self, key) for key in delaycore.RAW_COUNTERS}


class _Link:
    """Parameters of one link in the units the hot loop uses (seconds, fraction)."""

    __slots__ = ("delay", "span", "jitter", "loss", "limit", "reorder", "a_to_b", "b_to_a")

    def __init__(self, sock_a: socket.socket, sock_b: socket.socket) -> None:
        self.apply(delaycore.HotParams(0.0, 0.0, 0.0, 0.0, 1000, False))
        self.a_to_b = _Direction(self, sock_a, sock_b)
        self.b_to_a = _Direction(self, sock_b, sock_a)

    def apply(self, params: delaycore.HotParams) -> None:
        (self.delay, self.span, self.jitter, self.loss, self.limit, self.reorder) = params


class PythonCore:
    """The forwarding loop in Python: the fallback when the compiled core is not built.

    Same interface as lab.delaycore.CompiledCore: links by index, parameters in seconds
    and fractions, run() until a time or until the signal wake-up descriptor is readable.
    """

    name = "python"

    def __init__(self) -> None:
        # Created before any socket, so its descriptor is low enough for select().
        self.epoll = select.epoll()
        self.links: list[_Link] = []
        self.ingress: dict[int, _Direction] = {}
        # (deadline, sequence, direction, frame, chain key, due): see _drain
        self.heap: list[tuple[float, int, _Direction, bytes, bytes, float]] = []
        # Frames that left a link lately: key -> (when due, direction); two generations,
        # the older dropped every CHAIN_MEMORY.
        self.departed: dict[bytes, tuple[float, _Direction]] = {}
        self.departed_before: dict[bytes, tuple[float, _Direction]] = {}
        self.seq = itertools.count()
        self.lead = 40e-6
        self.spin_cap = 100e-6
        self.mono_offset = time.time() - time.monotonic()
        self.forwarding_since = float("inf")
        self.next_generation = 0.0
        self.kinds = {"realtime": 0, "monotonic": 0, "none": 0}

    def wait(self, seconds: float) -> None:
        """The loop's own wait: select on the epoll descriptor (microsecond timeouts)."""
        select.select([self.epoll.fileno()], [], [], seconds)

    def set_lead(self, lead: float, spin_cap: float) -> None:
        self.lead = lead
        self.spin_cap = spin_cap

    def add_link(self, sock_a: socket.socket, sock_b: socket.socket) -> int:
        link = _Link(sock_a, sock_b)
        for direction in (link.a_to_b, link.b_to_a):
            self.ingress[direction.inp.fileno()] = direction
            self.epoll.register(direction.inp.fileno(), select.EPOLLIN)
        self.links.append(link)
        return len(self.links) - 1

    def set_params(self, index: int, params: delaycore.HotParams) -> None:
        self.links[index].apply(params)

    def counters(self, index: int) -> tuple[dict[str, int | float], dict[str, int | float]]:
        link = self.links[index]
        return link.a_to_b.raw(), link.b_to_a.raw()

    def clock_kinds(self) -> dict[str, int]:
        return dict(self.kinds)

    def start(self, since: float) -> None:
        self.forwarding_since = since
        self.next_generation = since

    def close(self) -> None:
        self.epoll.close()

    def _drain(self, sock: socket.socket, direction: _Direction) -> None:
        """Read frames from one socket, stamp them and send or queue each.

        One function on purpose: it runs for every frame, and Python pays for every call
        and attribute lookup (the per-frame state lives in locals).

        Stops early when a queued deadline is within the lead, so a bulk flow on
        one link cannot delay the frames of the others (each 64 KiB GSO frame
        costs tens of microseconds to copy and deliver).
        """
        link = direction.link
        heap = self.heap
        push = heapq.heappush
        clock = time.time
        seq = self.seq
        rand = random.random
        kinds = self.kinds
        lead = self.lead
        since = self.forwarding_since
        departed, departed_before = self.departed, self.departed_before
        for _ in range(DRAIN_BATCH):
            try:
                frame, anc, flags, _addr = sock.recvmsg(RX_BUFFER, 64, MSG_DONTWAIT)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            now = clock()
            if flags & MSG_TRUNC:
                direction.truncated += 1
            elif link.loss and rand() < link.loss:
                direction.lost += 1
            elif direction.queued >= link.limit:
                direction.dropped += 1
            else:
                if anc:
                    sec, nsec = struct.unpack_from("qq", anc[0][2])
                    stamp = sec + nsec * 1e-9
                    if stamp < now - CLOCK_SANITY:
                        # An skb delivery time (TCP's EDT) that survived the veth: CLOCK_MONOTONIC.
                        stamp += self.mono_offset
                        kinds["monotonic"] += 1
                        if not now - CLOCK_SANITY < stamp <= now:
                            stamp = now
                    else:
                        kinds["realtime"] += 1
                else:
                    kinds["none"] += 1
                    stamp = now
                if stamp < since:
                    # Queued while the sockets were still being opened (binding dozens of
                    # packet sockets takes tenths of a second): its delay starts now.
                    direction.before_start += 1
                    stamp = now
                key = frame[CHAIN_KEY]
                # When the frame is due to leave; it cannot leave before it came (deadline),
                # but the next link it is chained to takes the due time as its start.
                due = stamp + link.delay
                if link.jitter:
                    due += link.jitter * (2.0 * rand() - 1.0)
                if not link.reorder:
                    if due < direction.last_due:
                        due = direction.last_due
                    direction.last_due = due
                if link.span:
                    came = departed.get(key) or departed_before.get(key)
                    if came is not None and came[1] is not direction and came[0] <= stamp:
                        # Due span after it was due off the previous link: move it by what
                        # the switch took more or less than usual, at most CHAIN_LIMIT.
                        shift = came[0] + link.span - stamp - link.delay
                        due += (shift if -CHAIN_LIMIT <= shift <= CHAIN_LIMIT
                                else CHAIN_LIMIT if shift > 0 else -CHAIN_LIMIT)
                        direction.chained += 1
                deadline = due if due > stamp else stamp
                if deadline <= now and not direction.queued:
                    # Already due and nothing ahead of it: skip the heap (hold 0, or read late).
                    direction.send(frame, now - deadline)
                    departed[key] = (due, direction)
                else:
                    push(heap, (deadline, next(seq), direction, frame, key, due))
                    direction.queued += 1
            if heap and heap[0][0] - lead <= now:
                return

    def _send_due(self) -> None:
        """Send every frame whose deadline has come; spin briefly for one that is close."""
        heap = self.heap
        pop = heapq.heappop
        clock = time.time
        spin_cap = self.spin_cap
        departed = self.departed
        now = clock()
        while heap:
            deadline = heap[0][0]
            if deadline > now:
                now = clock()
                if deadline - now > spin_cap:
                    return
                while deadline > now:
                    now = clock()
            _, _, direction, frame, key, due = pop(heap)
            direction.queued -= 1
            direction.send(frame, now - deadline)
            departed[key] = (due, direction)

    def run(self, until: float, wake_fd: int) -> None:
        """Forward until `until` (time.time()) or until wake_fd is readable (a signal)."""
        ingress = self.ingress
        heap = self.heap
        clock = time.time
        poll = self.epoll.poll
        waiting = [self.epoll.fileno()]
        wait = select.select
        if wake_fd >= 0:
            with contextlib.suppress(FileExistsError):
                self.epoll.register(wake_fd, select.EPOLLIN)
        self.mono_offset = clock() - time.monotonic()
        while True:
            now = clock()
            if now >= self.next_generation:
                self.departed_before, self.departed = self.departed, {}
                self.next_generation = now + CHAIN_MEMORY
            if now >= until:
                return
            timeout = until - now
            if heap:
                timeout = min(timeout, heap[0][0] - now - self.lead)
                if timeout < 0:
                    timeout = 0
            wait(waiting, [], [], timeout)
            woken = False
            for fd, _ in poll(0):
                if fd == wake_fd:
                    woken = True
                    continue
                direction = ingress[fd]
                self._drain(direction.inp, direction)
            self._send_due()
            if woken:
                return


def make_core(name: str) -> PythonCore | delaycore.CompiledCore:
    """The forwarding core `name` ("compiled" or "python"), with this module's constants."""
    if name == "compiled":
        return delaycore.CompiledCore(CHAIN_LIMIT, CHAIN_MEMORY, LATE_THRESHOLD, CLOCK_SANITY, DRAIN_BATCH)
    return PythonCore()


class DelayLine:
    """The process: its links and sockets, one core that forwards, signals and statistics."""

    def __init__(self, config_path: str, stats_path: str | None, core: str) -> None:
        self.config_path = config_path
        self.stats_path = stats_path
        self.core = make_core(core)
        # name -> (spec, the core's index, socket a, socket b)
        self.links: dict[str, tuple[LinkSpec, int, socket.socket, socket.socket]] = {}
        self.rx_overflow: dict[str, list[int]] = {}
        self.realtime = False
        self.started = time.time()
        self.reloads = 0
        self._wake_r = -1
        self._stop = False
        self._reload = False
        self._dump = False

    def install_signals(self) -> None:
        """Handlers only set flags; the wake-up pipe makes the core's wait return at once."""
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                             (signal.SIGHUP, self._on_reload), (signal.SIGUSR1, self._on_dump)):
            signal.signal(sig, handler)

    def open(self, specs: list[LinkSpec]) -> None:
        for spec in specs:
            sock_a = open_socket(spec.ifname_a)
            try:
                sock_b = open_socket(spec.ifname_b)
            except OSError:
                sock_a.close()
                raise
            index = self.core.add_link(sock_a, sock_b)
            self.core.set_params(index, delaycore.hot_params(spec))
            self.links[spec.name] = (spec, index, sock_a, sock_b)
            self.rx_overflow[spec.name] = [0, 0]

    def tune(self) -> None:
        """Real-time priority, fine timers and the wake-up lead, before any socket fills."""
        self.realtime = set_realtime()
        set_timer_slack()
        lead = calibrate_lead(self.core.wait)
        self.core.set_lead(lead, lead + max(lead, 30e-6))

    def close(self) -> None:
        """Close every link's sockets, many at once: each close of a packet socket waits for
        an RCU grace period in the kernel (about 16 ms), one after another at exit (a 10x
        topology's 698 sockets: 11 s; 200 on lo with 64 threads: 0.07 s instead of 2.8 s)."""
        socks = [sock for _spec, _index, a, b in self.links.values() for sock in (a, b)]
        with ThreadPoolExecutor(max_workers=CLOSE_THREADS) as pool:
            list(pool.map(socket.socket.close, socks))
        self.core.close()

    def reload(self) -> None:
        """Apply new parameters to existing links; queued frames keep their deadlines."""
        try:
            specs = load_config(self.config_path)
        except ConfigError as exc:
            _log(f"reload ignored, config error: {exc}")
            return
        for spec in specs:
            known = self.links.get(spec.name)
            if known is None:
                _log(f"reload: new link {spec.name!r} ignored (restart to add links)")
            elif (spec.ifname_a, spec.ifname_b) != (known[0].ifname_a, known[0].ifname_b):
                _log(f"reload: interfaces of {spec.name!r} changed, ignored (restart to change)")
            else:
                self.core.set_params(known[1], delaycore.hot_params(spec))
                self.links[spec.name] = (spec, *known[1:])
        self.reloads += 1
        missing = set(self.links) - {s.name for s in specs}
        if missing:
            _log(f"reload: links {sorted(missing)} not in config, left unchanged")
        _log("reloaded " + self.config_path)
        self.write_stats()

    def counters(self, name: str) -> dict[str, dict[str, int | float]]:
        """Counters for STATS; lateness is send time minus deadline, as this process sees it.
        before_start: frames queued while the sockets were being opened, delayed from the
        moment forwarding began (bring-up's own ARP and discovery; not lateness)."""
        _spec, index, sock_a, sock_b = self.links[name]
        out = {}
        overflow = self.rx_overflow[name]
        for side, (label, raw, inp) in enumerate(zip(("a_to_b", "b_to_a"), self.core.counters(index),
                                                     (sock_a, sock_b))):
            overflow[side] += rx_overflow(inp)
            sent = raw["forwarded"] + raw["tx_errors"]
            out[label] = {
                "forwarded": raw["forwarded"], "lost": raw["lost"], "dropped": raw["dropped"],
                "rx_overflow": overflow[side], "tx_errors": raw["tx_errors"],
                "truncated": raw["truncated"], "queued": raw["queued"],
                "before_start": raw["before_start"], "chained": raw["chained"],
                "late_mean_us": round(raw["late_sum"] / sent * 1e6, 2) if sent else 0.0,
                "late_max_us": round(raw["late_max"] * 1e6, 1),
                f"late_over_{int(LATE_THRESHOLD * 1e6)}us": raw["late_over"]}
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "time": time.time(),
            "started": self.started,
            "reloads": self.reloads,
            "core": self.core.name,
            "realtime_priority": self.realtime,
            "lead_us": round(self.core.lead * 1e6, 1),
            "timestamps": self.core.clock_kinds(),
            "links": {name: self.counters(name) for name in self.links},
        }

    def write_stats(self) -> None:
        """Best effort: a missing run directory must not stop the forwarding."""
        if not self.stats_path:
            return
        try:
            atomic_write(self.stats_path, json.dumps(self.stats(), indent=1) + "\n")
        except OSError as exc:
            _log(f"cannot write stats: {exc}")

    def run(self, ready_path: str | None) -> None:
        """Let the core forward; between its runs, statistics and the signals' work."""
        # The hot loop allocates many short-lived tuples and no cycles; collector
        # passes would only add millisecond pauses.
        gc.collect()
        gc.freeze()
        gc.disable()

        clock = time.time
        next_stats = clock()
        self.write_stats()
        self.core.start(clock())
        if ready_path:
            atomic_write(ready_path, f"{os.getpid()}\n")
        _log(f"forwarding {len(self.links)} links, {self.core.name} core, lead "
             f"{self.core.lead * 1e6:.0f} us, SCHED_FIFO {'on' if self.realtime else 'off'}")
        while not self._stop:
            now = clock()
            if now >= next_stats:
                self.write_stats()
                next_stats = now + STATS_INTERVAL
            self.core.run(next_stats, self._wake_r)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
            if self._reload:
                self._reload = False
                self.reload()
            if self._dump:
                self._dump = False
                self.write_stats()
        self.write_stats()

    def _on_stop(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _on_reload(self, signum: int, frame: Any) -> None:
        self._reload = True

    def _on_dump(self, signum: int, frame: Any) -> None:
        self._dump = True


def _log(message: str) -> None:
    print(f"delayline[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.delayline", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON file with the links")
    parser.add_argument("--stats", help="JSON file rewritten with counters every second and on SIGUSR1")
    parser.add_argument("--ready", help="file created once every socket is bound and forwarding runs")
    parser.add_argument("--core", choices=CORES, default="auto",
                        help="compiled (lab/_delaycore.c), python, or auto: compiled when built "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        specs = load_config(args.config)
    except ConfigError as exc:
        print(f"delayline: config error: {exc}", file=sys.stderr)
        return CONFIG_EXIT
    try:
        core = delaycore.resolve(args.core)
    except delaycore.CoreMissing as exc:
        print(f"delayline: {exc}", file=sys.stderr)
        return CONFIG_EXIT
    if core != args.core:
        _log(f"--core auto: {core} core" + (f" ({delaycore.MISSING})" if delaycore.MISSING else ""))
    line = DelayLine(args.config, args.stats, core)
    try:
        line.install_signals()
        line.tune()
        try:
            line.open(specs)
        except OSError as exc:
            print(f"delayline: cannot open interfaces: {exc}", file=sys.stderr)
            return 1
        line.run(args.ready)
    finally:
        line.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
