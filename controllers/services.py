"""Service virtual addresses and how each consumer's endpoint is chosen.

A service is a virtual IP (with a virtual MAC) and one protocol port, served by several
hosts. Its consumers address VIP:port; the controller picks one endpoint per consumer and
rewrites the addresses on the consumer's switch, the way DNS-based routing (Route 53) picks a
record per resolver: consumer -> VIP:port becomes consumer -> endpoint:port, and
endpoint:port -> consumer comes back from the VIP. Only that protocol and port are rewritten:
ICMP or any other connection between an endpoint and a consumer passes untouched.
The rewrite is stateless, so a consumer that opens a connection to an endpoint's own address
on the service's port gets its replies from the VIP: use the VIP for the service's port.
Services come from `default_services` (built from host roles) or a small YAML file validated
as strictly as the topology.

Defaults (addresses 10.0.0.x are free: hosts live in 10.<site index>.0.x, indices from 1,
past site 254 as topologies.model.host_ip says):
- "db"  10.0.0.10 TCP 5432 (PostgreSQL), the read address: the db-primary then the
  db-standby hosts, chosen per consumer by the strategy; consumed by monolith and service hosts.
- "db-write" 10.0.0.11 TCP 5432, the write address: the same servers, always the first
  endpoint (the current primary; whoever promotes a standby reorders the endpoints over the
  REST API). Each server serves it at a second address of its own, 10.<site>.1.<n>
  (`service_address`), so that the answers of the two services on one port stay apart.
- "app" 10.0.0.20 TCP 8080: the monolith then the service hosts; consumed by client hosts.
Endpoints are ordered (the first is the primary), each with a geo bias of 0.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import networkx as nx

from controllers.routing import NetworkState, Tree, path_delay_ms
from topologies.loader import read_yaml
from topologies.model import HOST_ROLES, Host, Topology, great_circle_km, one_line

PROTOCOLS = {"tcp": 6, "udp": 17}  # name -> IP protocol number
SERVICE_KEYS = ("name", "vip", "endpoints", "consumers", "protocol", "port", "policy")
VIP_NETWORK = ipaddress.ip_network("10.0.0.0/24")
MAX_BIAS = 99


class ServiceError(ValueError):
    """A service definition is invalid; str() names the field."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    bias: int = 0  # Route 53 geoproximity bias, -99..+99: positive attracts more consumers
    address: str | None = None  # where the host serves this service (None: its own address)


@dataclass(frozen=True)
class Service:
    name: str
    vip: str
    endpoints: tuple[Endpoint, ...]
    consumers: tuple[str, ...]  # host names
    port: int
    protocol: str = "tcp"  # a key of PROTOCOLS
    policy: str | None = None  # an ENDPOINT_POLICIES name that overrides the strategy's

    @property
    def ip_proto(self) -> int:
        return PROTOCOLS[self.protocol]

    @property
    def mac(self) -> str:
        return "02:4c:00:00:00:%02x" % int(ipaddress.ip_address(self.vip).packed[-1])


READ_SERVICE, WRITE_SERVICE = "db", "db-write"
# name, vip, protocol, port, endpoint roles, consumer roles, policy, served at a second address
DEFAULTS = (
    (READ_SERVICE, "10.0.0.10", "tcp", 5432, ("db-primary", "db-standby"),
     ("monolith", "service"), None, False),
    (WRITE_SERVICE, "10.0.0.11", "tcp", 5432, ("db-primary", "db-standby"),
     ("monolith", "service"), "fixed", True),
    ("app", "10.0.0.20", "tcp", 8080, ("monolith", "service"), ("client",), None, False),
)
DEFAULT_PORTS = {row[0]: (row[2], row[3]) for row in DEFAULTS}


def service_address(host: Host) -> str:
    """A host's second address, for a service sharing a port with another: the third octet
    one up (10.s.0.n -> 10.s.1.n), which hosts' own addresses leave free (topologies.model)."""
    a, s, t, n = host.ip.split(".")
    return f"{a}.{s}.{int(t) + 1}.{n}"


def default_services(topology: Topology) -> list[Service]:
    """The documented defaults, skipping a service the topology has no endpoints for."""
    services = []
    for name, vip, protocol, port, endpoint_roles, consumer_roles, policy, second in DEFAULTS:
        endpoints = tuple(Endpoint(h.name, address=service_address(h) if second else None)
                          for role in endpoint_roles for h in topology.hosts_with_role(role))
        consumers = tuple(h.name for h in topology.hosts.values() if h.role in consumer_roles)
        if endpoints:
            services.append(Service(name, vip, endpoints, consumers, port, protocol, policy))
    return services


def with_endpoints(service: Service, hosts: list[str]) -> Service:
    """The service served by `hosts`, in that order (a promotion moves the write address):
    each one of its defined endpoints, none twice, at least one."""
    known = {e.host: e for e in service.endpoints}
    if not hosts or len(set(hosts)) != len(hosts) or not set(hosts) <= set(known):
        raise ServiceError(f"service {service.name}: endpoints must be distinct hosts among "
                           f"{', '.join(known)}, got {hosts!r}")
    return Service(service.name, service.vip, tuple(known[h] for h in hosts), service.consumers,
                   service.port, service.protocol, service.policy)


def load_services(path: str | Path, topology: Topology) -> list[Service]:
    """Read services from YAML: `services: [{name, vip, endpoints, consumers, protocol, port}]`.

    `endpoints` is a list of host names or `{host: NAME, bias: N, address: IP}` (address: where
    the host serves this service, default its own); `consumers` a list of host names or roles;
    `protocol` tcp (default) or udp; `port` 1-65535, required except for the default services'
    names (db, db-write: 5432, app: 8080); `policy` an endpoint policy that overrides the
    strategy's (e.g. fixed: always the first endpoint).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise ServiceError(one_line(f"{path}: (file): cannot read: "
                                    f"{getattr(exc, 'strerror', None) or exc}")) from None
    data = read_yaml(raw, str(path), lambda *parts: ServiceError(one_line(": ".join(parts))))
    return parse_services(data, topology, str(path))


def parse_services(data: Any, topology: Topology, file: str = "<services>") -> list[Service]:
    def fail(where: str, problem: str):
        raise ServiceError(one_line(f"{file}: {where}: {problem}"))

    if not isinstance(data, dict) or set(data) != {"services"} or not isinstance(data["services"], list):
        fail("(top)", "must be a mapping with one key, services, holding a list")
    services: list[Service] = []
    for i, spec in enumerate(data["services"]):
        where = f"services[{i}]"
        if not isinstance(spec, dict):
            fail(where, "must be a mapping")
        for key in spec:
            if key not in SERVICE_KEYS:
                fail(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(SERVICE_KEYS))})")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            fail(f"{where}.name", "is required (a string)")
        if not isinstance(spec.get("vip"), str):
            fail(f"{where}.vip", f"must be an IPv4 address in {VIP_NETWORK}, as a string")
        try:
            vip = ipaddress.ip_address(spec["vip"])
        except ValueError:
            fail(f"{where}.vip", f"{spec.get('vip')!r} is not an IPv4 address")
        if vip not in VIP_NETWORK or int(vip.packed[-1]) in (0, 255):
            fail(f"{where}.vip", f"must be a host address in {VIP_NETWORK} (hosts use the rest)")
        endpoints = [_endpoint(e, topology, f"{where}.endpoints[{j}]", fail)
                     for j, e in enumerate(_nonempty_list(spec, "endpoints", where, fail))]
        consumers = []
        for j, c in enumerate(_nonempty_list(spec, "consumers", where, fail)):
            if not isinstance(c, str):
                fail(f"{where}.consumers[{j}]", "must be a host name or a role")
            if c in topology.hosts:
                consumers.append(c)
            elif c in HOST_ROLES:
                consumers += [h.name for h in topology.hosts_with_role(c)]
            else:
                fail(f"{where}.consumers[{j}]", f"{c!r} is neither a host nor a role")
        protocol, port = _protocol_port(spec, name, where, fail)
        policy = spec.get("policy")
        if policy is not None and policy not in ENDPOINT_POLICIES:
            fail(f"{where}.policy", f"must be one of {', '.join(ENDPOINT_POLICIES)}, "
                                    f"got {policy!r}")
        if any(s.name == name or s.vip == str(vip) for s in services):
            fail(where, f"duplicate service name or vip ({name!r}, {vip})")
        services.append(Service(name, str(vip), tuple(endpoints), tuple(dict.fromkeys(consumers)),
                                port, protocol, policy))
    return services


def _protocol_port(spec: dict, name: str, where: str, fail) -> tuple[str, int]:
    default_protocol, default_port = DEFAULT_PORTS.get(name, ("tcp", None))
    protocol = spec.get("protocol", default_protocol)
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        fail(f"{where}.protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    port = spec.get("port", default_port)
    if port is None:
        fail(f"{where}.port", "is required (1-65535) for a service other than "
                              f"{', '.join(DEFAULT_PORTS)}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        fail(f"{where}.port", f"must be an integer from 1 to 65535, got {port!r}")
    return protocol, port


def _nonempty_list(spec: dict, key: str, where: str, fail) -> list:
    value = spec.get(key)
    if not isinstance(value, list) or not value:
        fail(f"{where}.{key}", "is required (a non-empty list)")
    return value


def _endpoint(spec: Any, topology: Topology, where: str, fail) -> Endpoint:
    if isinstance(spec, str):
        spec = {"host": spec}
    if not isinstance(spec, dict) or not set(spec) <= {"host", "bias", "address"}:
        fail(where, "must be a host name or {host: NAME, bias: N, address: IP}")
    host, bias, address = spec.get("host"), spec.get("bias", 0), spec.get("address")
    if not isinstance(host, str) or host not in topology.hosts:
        fail(f"{where}.host", f"unknown host {host!r}")
    if isinstance(bias, bool) or not isinstance(bias, int) or not -MAX_BIAS <= bias <= MAX_BIAS:
        fail(f"{where}.bias", f"must be an integer from -{MAX_BIAS} to {MAX_BIAS}, got {bias!r}")
    if address is not None:
        try:
            address = str(ipaddress.ip_address(str(address)))
        except ValueError:
            fail(f"{where}.address", f"{address!r} is not an IPv4 address")
    return Endpoint(host, bias, address)


def biased_distance_km(topology: Topology, consumer: Host, endpoint: Endpoint) -> float:
    """Route 53 geoproximity: biased distance = actual distance x (1 - bias / 100)."""
    a, b = topology.sites[consumer.site], topology.sites[topology.hosts[endpoint.host].site]
    return great_circle_km(a.lat, a.lon, b.lat, b.lon) * (1 - endpoint.bias / 100)


@dataclass(frozen=True)
class Choice:
    """One consumer of one service, and what an endpoint policy judges by: the network as the
    controller sees it and `trees`, the paths packets will really take."""

    service: Service
    consumer: Host
    topology: Topology
    state: NetworkState
    graph: nx.Graph
    trees: dict[str, Tree]

    def path_to(self, endpoint: Endpoint) -> list[str] | None:
        tree = self.trees.get(self.topology.hosts[endpoint.host].site)
        return tree.paths.get(self.consumer.site) if tree else None

    def delay_ms(self, endpoint: Endpoint) -> float:
        return path_delay_ms(self.graph, self.path_to(endpoint))

    def candidates(self) -> list[Endpoint]:
        """The endpoints that are up and reachable, other than the consumer, in the service's
        order (so ties go to the earlier one)."""
        return [e for e in self.service.endpoints if e.host != self.consumer.name
                and self.state.host_up(self.topology, e.host) and self.path_to(e)]


def fewest_hops(c: Choice) -> Endpoint | None:
    """The endpoint with the fewest hops on the way, ties by path latency."""
    return min(c.candidates(), key=lambda e: (len(c.path_to(e)), c.delay_ms(e)), default=None)


def lowest_latency(c: Choice) -> Endpoint | None:
    """The endpoint with the lowest latency along the path."""
    return min(c.candidates(), key=c.delay_ms, default=None)


def geo(c: Choice) -> Endpoint | None:
    """Route 53 geoproximity: the shortest biased distance."""
    return min(c.candidates(), key=lambda e: biased_distance_km(c.topology, c.consumer, e),
               default=None)


def primary_standby(c: Choice) -> Endpoint | None:
    """The first endpoint while it is reachable, else the next."""
    return next(iter(c.candidates()), None)


def fixed(c: Choice) -> Endpoint | None:
    """Baseline: always the first endpoint, reachable or not (no failover)."""
    return c.service.endpoints[0]


# Endpoint policy name (a Strategy's endpoint_policy) -> the rule that picks the endpoint, or
# None if none is reachable. A new policy is a new row.
ENDPOINT_POLICIES: dict[str, Callable[[Choice], Endpoint | None]] = {
    "fewest-hops": fewest_hops,
    "lowest-latency": lowest_latency,
    "geo": geo,
    "primary-standby": primary_standby,
    "fixed": fixed,
}


def choose_endpoint(policy: str, service: Service, consumer: Host, topology: Topology,
                    state: NetworkState, graph: nx.Graph, trees: dict[str, Tree]) -> Endpoint | None:
    """The endpoint `consumer` should reach for `service` by `policy`, or None if none is
    reachable."""
    try:
        rule = ENDPOINT_POLICIES[policy]
    except (KeyError, TypeError):
        raise ValueError(f"unknown endpoint policy {policy!r} "
                         f"(choose from {', '.join(ENDPOINT_POLICIES)})") from None
    return rule(Choice(service, consumer, topology, state, graph, trees))
