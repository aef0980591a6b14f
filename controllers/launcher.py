"""Start the controller: `python -m controllers.launcher` in the foreground, or as a child.

os-ken 4 has no `osken-manager`, so `main` does its job: parse options, configure os-ken's
OpenFlow listener, hand the app its configuration and run os-ken's AppManager.
`start_controller` runs that in a subprocess for `lab up` / `lab controller` and returns
once both the OpenFlow port and the REST API answer; `ControllerProcess.stop` ends it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from controllers.core import Options
from controllers.services import ServiceError, load_services
from lab.forwarding import ForwardingError
from lab.procs import child_env, stop_process
from controllers.strategies import DEFAULT_STRATEGY, STRATEGIES, UnknownStrategy, get_strategy
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load
from topologies.model import TopologyError

LOCALHOST = "127.0.0.1"
LOG = logging.getLogger("controllers.launcher")
# After a strategy change, before traffic may count on the new routes: the REST call returns
# once the flow mods are sent, not applied (no barrier is exposed).
ROUTE_SETTLE_S = 0.5


class ControllerError(ForwardingError):
    """The controller could not start or answer; the message carries the end of its log."""


def _port(low: int):
    """argparse type: a TCP port number from `low` to 65535 (a bad one: exit 2, one line)."""
    def port(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= 65535:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number ({low}-65535)")
        return int(text)
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="controllers.launcher", description=__doc__.splitlines()[0])
    p.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY, help="topology YAML file")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, help=f"one of {', '.join(STRATEGIES)}")
    p.add_argument("--services", type=Path, help="services YAML (default: built from host roles)")
    p.add_argument("--ofp-host", default=LOCALHOST, help="OpenFlow listen address")
    p.add_argument("--ofp-port", type=_port(1), default=6653)
    p.add_argument("--rest-host", default=LOCALHOST)
    p.add_argument("--rest-port", type=_port(0), default=8080, help="0 disables the REST API")
    p.add_argument("--probe-interval", type=float, default=Options.probe_interval_s,
                   help="least seconds between rounds of delay probes and echo requests "
                        "(more where the controller or the switches are slow)")
    p.add_argument("--probe-misses", type=int, default=Options.probe_misses,
                   help="probes proven lost in a row before a link counts as down "
                        "(controllers/monitor.py)")
    p.add_argument("--measured-delays", action="store_true",
                   help="let measured link delays override configured ones where they clearly differ")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _check_free(host: str, port: int, what: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ControllerError(f"{what} port {host}:{port} is not free: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the controller in this process until SIGTERM or SIGINT; returns an exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        topology = load(args.topology)
        services = load_services(args.services, topology) if args.services else None
        get_strategy(args.strategy)
        _check_free(args.ofp_host, args.ofp_port, "OpenFlow")
        if args.rest_port:
            _check_free(args.rest_host, args.rest_port, "REST")
    except (TopologyError, ServiceError, UnknownStrategy, ControllerError, OSError) as exc:
        print(f"controller: {exc}", file=sys.stderr)
        return 2

    from os_ken import cfg
    from os_ken.base.app_manager import AppManager
    import os_ken.controller.controller  # noqa: F401  (registers the ofp-* options)

    from controllers.app import AppConfig, HybridLabApp

    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", args.ofp_host)
    cfg.CONF.set_override("ofp_tcp_listen_port", args.ofp_port)
    HybridLabApp.config = AppConfig(
        topology=topology, strategy=args.strategy, services=services,
        options=Options(probe_interval_s=args.probe_interval, probe_misses=args.probe_misses,
                        use_measured=args.measured_delays),
        rest_host=args.rest_host, rest_port=args.rest_port)

    def stop(signum, frame):
        # os-ken's native hub cannot stop its threads, and the controller holds nothing that
        # needs cleanup (switches keep their flows), so leave at once.
        LOG.info("stopping on signal %d", signum)
        logging.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        AppManager.run_apps(["controllers.app"])
    except Exception:
        LOG.exception("controller failed")
        logging.shutdown()
        os._exit(1)
    return 0


@dataclass
class ControllerProcess:
    """A controller running as a child process, and its REST API."""

    process: subprocess.Popen
    rest_url: str
    ofp_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, method: str, resource: str, body: dict | None = None, timeout: float = 5.0) -> dict:
        """Call the REST API; an HTTP error raises ControllerError with the API's message."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.rest_url}/v1/{resource}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            raise ControllerError(json.load(exc).get("error", str(exc))) from None

    def get(self, resource: str) -> dict:
        return self.request("GET", resource)

    def set_strategy(self, name: str, measured_delays: bool | None = None) -> dict:
        body = {"name": name}
        if measured_delays is not None:
            body["measured_delays"] = measured_delays
        return self.request("PUT", "strategy", body)

    def set_endpoints(self, service: str, hosts: list[str]) -> dict:
        """Serve `service` by `hosts` in that order (PUT /v1/endpoints)."""
        return self.request("PUT", "endpoints", {"service": service, "endpoints": hosts})

    def wait_for_switches(self, timeout: float = 15.0) -> None:
        """Until every switch of the topology is connected (the controller's own view)."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [s["name"] for s in self.get("topology")["sites"] if not s["connected"]]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise ControllerError(f"switches not connected after {timeout:g} s: {', '.join(missing)}")
            time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        return stop_process(self.process, timeout)


def start_controller(topology: str | Path = DEFAULT_TOPOLOGY, strategy: str = DEFAULT_STRATEGY,
                     ofp_port: int = 6653, rest_port: int = 8080, log_path: str | Path | None = None,
                     extra_args: tuple[str, ...] = (), timeout: float = 20.0) -> ControllerProcess:
    """Run the controller as a child process and wait until it listens on both ports.

    Output goes to `log_path` (a temporary file if None). On failure the child is stopped
    and ControllerError carries the end of its log.
    """
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="hclab-controller-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    cmd = [sys.executable, "-m", "controllers.launcher", "--topology", str(topology),
           "--strategy", strategy, "--ofp-port", str(ofp_port), "--rest-port", str(rest_port), *extra_args]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=child_env(), start_new_session=True)
    ctl = ControllerProcess(process, f"http://{LOCALHOST}:{rest_port}", ofp_port, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ControllerError(f"controller exited with status {process.returncode}:\n{_tail(log_path)}")
        if _listening(ofp_port) and _rest_ready(ctl):
            return ctl
        if time.monotonic() > deadline:
            ctl.stop()
            raise ControllerError(f"controller not listening after {timeout:g} s:\n{_tail(log_path)}")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOCALHOST, port)) == 0


def _rest_ready(ctl: ControllerProcess) -> bool:
    try:
        ctl.get("strategy")
        return True
    except (OSError, ControllerError, ValueError):
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
