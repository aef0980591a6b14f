"""One Open vSwitch per site, each in a network namespace of its own (userspace datapath).

Why: with the userspace datapath one ovs-vswitchd reads every port of every bridge from its
main loop, so each packet waits for a loop over all of them. Measured here with 19 bridges
in one daemon: 0.86 ms host-switch-host round trip, 0.4-1 ms per switch traversal, varying
by tenths of a ms - more than an Outpost's whole delay. Two daemons in two namespaces: 0.24 ms
for a round trip through both switches. The userspace datapath also names its internal
port "ovs-netdev" in whatever namespace it runs, so a second daemon needs a namespace of its
own.

Each switch's ovs-vswitchd allocates memory with tcmalloc (gperftools' minimal build,
preloaded) where it is installed (setup.sh installs it). The main thread polls every port's socket in
each loop and allocates packet buffers for it: glibc's malloc and free took a quarter of the
thread's time (perf on dc1's switch at 500 pings a second; which OVS paths allocate was not
traced, Debian's binary is stripped). With tcmalloc (ping p50 at 100 a second, `lab up
--no-calibrate --controller static`, two runs each): pg1 -> mono1 on one switch 0.280-0.287 ->
0.214-0.231 ms, pg1 -> svop1a over one 0.2 ms link 0.989-0.991 -> 0.888-0.904 ms (jemalloc:
0.205-0.231 and 0.919-0.921 ms).

Memory (10x the default topology, 190 switches, PSS per daemon, medians): ovs-vswitchd 16.7
MiB, 13.8 of it heap, mostly the main thread's exact-match and signature-match flow caches
(about 9.5 MiB, allocated and filled with empty entries whatever other_config says:
smc-enable=false changed nothing, and the daemon already runs one handler and one
revalidator thread; neither did a smaller stack limit); ovsdb-server 5.9 MiB. The
ovsdb-server runs with glibc's malloc, not tcmalloc: it is not on the forwarding path, and
tcmalloc's arenas cost it 4.0 MiB (6.05 -> 2.00, 19 switches). Both daemons' pages may be
merged by the kernel (lab.pagemerge): identical pages are kept once, ovs-vswitchd 16.7 ->
3.1 MiB and ovsdb-server 2.0 -> 1.6 once merged. TCMALLOC_AGGRESSIVE_DECOMMIT would save
another 0.55 MiB and was left out (it returns memory to the kernel on the forwarding path).

Each switch node runs an ovsdb-server and an ovs-vswitchd inside its namespace, with its
database, sockets and logs in <run dir>/ovs/<switch>/. Switches reach the controller through
a Unix socket relayed to its TCP port (a namespace's 127.0.0.1 is its own; OVS accepts only
sockets in its run directory, hence a symbolic link there to the relay's), and the lab
programs them with ovs-ofctl on unix:<dir>/<switch>.mgmt. Where the kernel has the
openvswitch module the lab uses the system's Open vSwitch instead (lab.network.LabSwitch).
"""

from __future__ import annotations

import ctypes.util
import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from mininet.node import Switch

from lab import pagemerge

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
# Seconds for every switch to be ready: a floor, and as much again per switch as the 190 of
# 10x the default topology took here at most (15.6 s with page merging on, 14.2 s without).
START_TIMEOUT_S = 60
START_TIMEOUT_PER_SWITCH_S = 0.2
# The malloc the switches' daemons get, by soname (the loader finds it on any architecture).
ALLOCATOR = ctypes.util.find_library("tcmalloc_minimal")


class NamespacedOVSSwitch(Switch):
    """A Mininet switch whose Open vSwitch daemons live in the switch's own namespace."""

    def __init__(self, name, ovs_dir: Path, controller_socket: Path | None = None,
                 failMode: str = "secure", protocols: str = "OpenFlow13", **params):
        self.ovs_dir = Path(ovs_dir) / name
        self.controller_socket = controller_socket
        self.fail_mode = failMode
        self.protocols = protocols
        self.starter: subprocess.Popen | None = None  # the start script, until it is done
        params["inNamespace"] = True  # whatever Mininet's default says
        super().__init__(name, **params)

    @property
    def db(self) -> str:
        return f"unix:{self.ovs_dir}/db.sock"

    @property
    def ofctl_target(self) -> str:
        """What ovs-ofctl takes to reach this switch from any namespace."""
        return f"unix:{self.ovs_dir}/{self.name}.mgmt"

    def start(self, controllers) -> None:
        """Start the daemons and the bridge in the background; `batchStartup` waits.

        A script in the switch's namespace, started straight from here (not through the
        node's shell, a round trip that waits on the shell under load), from a copy of an
        empty database made once per run: at 10x the default topology, 11 processes a switch
        and a shell round trip took 11.8 s of 17.6 s starting 190 switches.
        """
        d = self.ovs_dir
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_database(d.parent), d / "conf.db")
        env = f"OVS_RUNDIR={d} OVS_LOGDIR={d} OVS_DBDIR={d}"
        forwarder_env = f"{env} LD_PRELOAD={ALLOCATOR}" if ALLOCATOR else env
        ports = [intf for intf in self.intfList() if self.ports[intf] and intf.name != "lo"]
        bridge = (f"ovs-vsctl --db={self.db} --timeout=30 -- add-br {self.name}"
                  f" -- set bridge {self.name} datapath_type=netdev fail_mode={self.fail_mode}"
                  f" protocols={self.protocols} other_config:datapath-id={self.dpid}"
                  f" other-config:disable-in-band=true")
        if self.controller_socket:
            # OVS only connects to sockets inside its own run directory: link the relay in.
            link = d / "controller.sock"
            link.unlink(missing_ok=True)
            link.symlink_to(self.controller_socket)
            bridge += (f" -- --id=@c create controller target=\\\"unix:{link}\\\""
                       f" max_backoff=1000 -- set bridge {self.name} controller=@c")
        for intf in ports:
            bridge += (f" -- add-port {self.name} {intf}"
                       f" -- set interface {intf} ofport_request={self.ports[intf]}")
        up = "\\n".join(f"link set dev {intf} up" for intf in ["lo", *ports])
        steps = [
            f"printf '{up}\\n' | ip -batch -",
            f"{env} ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock --pidfile={d}/ovsdb.pid"
            f" --unixctl={d}/ovsdb.ctl --log-file={d}/ovsdb.log --detach --no-chdir",
            f"{forwarder_env} ovs-vswitchd {self.db} --pidfile={d}/vswitchd.pid --unixctl={d}/vswitchd.ctl"
            f" --log-file={d}/vswitchd.log --detach --no-chdir -vconsole:off",
            bridge,
        ]
        (d / "start.sh").write_text("set -e\n" + "".join(step + "\n" for step in steps))
        with open(d / "start.log", "wb") as log:
            self.starter = subprocess.Popen(["mnexec", "-a", str(self.pid), "sh", str(d / "start.sh")],
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            preexec_fn=pagemerge.allow_merging)

    @classmethod
    def batchStartup(cls, switches, run=None):
        """Wait until every switch started in the background is ready."""
        timeout = START_TIMEOUT_S + START_TIMEOUT_PER_SWITCH_S * len(switches)
        deadline = time.monotonic() + timeout
        waiting = list(switches)
        while waiting:
            for sw in list(waiting):
                code = sw.starter.poll()
                if code is None:
                    continue
                waiting.remove(sw)
                if code != 0:
                    log = (sw.ovs_dir / "start.log").read_text(errors="replace").strip()
                    raise RuntimeError(f"switch {sw.name} did not start: "
                                       f"{log.splitlines()[-1] if log else 'no log'}")
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"switches not ready after {timeout:.0f} s: "
                                   f"{', '.join(s.name for s in waiting)}")
            time.sleep(0.02)
        return switches

    def daemon_pids(self) -> list[int]:
        pids = [self._pid(name) for name in ("vswitchd.pid", "ovsdb.pid")]
        return [pid for pid in pids if pid is not None]

    def vswitchd_pid(self) -> int | None:
        """ovs-vswitchd's process id, which is also its main (forwarding) thread's."""
        return self._pid("vswitchd.pid")

    def _pid(self, name: str) -> int | None:
        try:
            return int((self.ovs_dir / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def dpctl(self, *args):
        """ovs-ofctl against this switch (Mininet's `dpctl` CLI command uses it)."""
        return self.cmd("ovs-ofctl -O", self.protocols, args[0], self.ofctl_target,
                        *(shlex.quote(a) for a in args[1:]))

    def stop(self, deleteIntfs=True):
        """The daemons and the shell go; the namespace, and with it the ports, go too."""
        self.terminate()


def _empty_database(ovs_dir: Path) -> Path:
    """An Open vSwitch database with its root record, made once per run for every switch."""
    path = ovs_dir / "empty.db"
    if not path.exists():
        made = ovs_dir / "empty.db.new"
        made.unlink(missing_ok=True)
        subprocess.run(["ovsdb-tool", "create", str(made), SCHEMA], check=True,
                       capture_output=True, timeout=30)
        subprocess.run(["ovsdb-tool", "transact", str(made), json.dumps(
            ["Open_vSwitch", {"op": "insert", "table": "Open_vSwitch", "row": {}}])],
                       check=True, capture_output=True, timeout=30)
        made.rename(path)
    return path
