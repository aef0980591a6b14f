"""Reading a topology file: YAML in, a validated `Topology` out, or one clear error.

A topology file is data, not code. Anything wrong in it raises `TopologyError`, whose text is
one line `FILE: path.to.field: what is wrong`; unknown keys and wrong types are errors, as in
Faucet's configuration classes.
"""

from __future__ import annotations

import codecs
import math
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from topologies.model import (HOST_ROLES, LAB_PREFIX, MAX_DELAY_MS, MAX_PORTS_PER_SITE,
                              MAX_SITES, NAME_PATTERN, NAME_RULE, SITE_KINDS, Host, Link, LinkClass, Site,
                              Schedule, Topology, TopologyError, derived_delay_ms,
                              great_circle_km, host_ip, host_mac)
from topologies.trace import load_trace


# Where the shipped topology files and their traces (traces/) are: a trace named relative to
# its topology file is also looked for here.
SHIPPED = Path(__file__).resolve().parent


class _Reader:
    """Typed access to one mapping of the YAML file, naming the field in every error."""

    def __init__(self, file: str, where: str, data: Any, allowed: set[str]):
        self.file, self.where = file, where
        if not isinstance(data, dict):
            self.fail("", f"must be a mapping, got {_type_name(data)}")
        self.data = data
        for key in data:
            if key not in allowed:
                self.fail(str(key), f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where and key else (self.where or key)

    def fail(self, key: str, problem: str):
        raise TopologyError(self.file, self.path(key) or "(top)", problem)

    def get(self, key: str, types: type | tuple, default: Any = ..., required: bool = False):
        if key not in self.data or self.data[key] is None:
            if required or default is ...:
                self.fail(key, "is required")
            return default
        value = self.data[key]
        numeric = types in (float, (float,))
        if numeric and isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > 1e300:
                self.fail(key, "must be a finite number")
            value = float(value)
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.fail(key, f"must be {_type_label(types)}, got a boolean")
        if not isinstance(value, types):
            self.fail(key, f"must be {_type_label(types)}, got {_type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, "must be a finite number")
        return value

    def number(self, key: str, low: float, high: float, default: Any = ...) -> float:
        value = self.get(key, float, default)
        if value is not None and value is not ... and not low <= value <= high:
            self.fail(key, f"must be between {low:g} and {high:g}, got {value:g}")
        return value

    def name(self, key: str) -> str:
        value = self.get(key, str, required=True)
        if not NAME_PATTERN.match(value):
            self.fail(key, f"{value!r} {NAME_RULE}")
        if value.startswith(LAB_PREFIX):
            self.fail(key, f"{value!r} must not start with {LAB_PREFIX!r} (reserved for the lab)")
        return value


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _type_label(types: type | tuple) -> str:
    types = types if isinstance(types, tuple) else (types,)
    labels = {str: "a string", float: "a number", int: "an integer", bool: "true or false",
              list: "a list", dict: "a mapping"}
    return " or ".join(labels.get(t, t.__name__) for t in types)


def _list(reader: _Reader, key: str, required: bool = True) -> list:
    items = reader.get(key, list, default=[], required=required)
    return items


def load(path: str | Path) -> Topology:
    """Read and validate a topology file; any problem is a one-line TopologyError."""
    path = Path(path)
    data = read_yaml(read_file(path, TopologyError), str(path), TopologyError)
    try:
        return parse(data, str(path))
    except RecursionError:
        raise TopologyError(path, "(top)", "nested too deeply") from None


def read_file(path: Path, error: Callable[[str, str, str], Exception]) -> bytes:
    """A file's bytes; one that cannot be read raises `error(path, "(file)", problem)`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # a path with a NUL byte
        raise error(path, "(file)", f"cannot read: {exc}") from None


def read_yaml(raw: bytes, file: str, error: Callable[[str, str, str], Exception]) -> Any:
    """YAML data from a file's bytes (UTF-8, or UTF-16/32 with a byte-order mark); a problem
    raises `error(file, where, problem)`. Shared with the controller's services file."""
    try:
        text = _decode(raw)
    except UnicodeDecodeError as exc:
        raise error(file, "(file)", f"not UTF-8 text (byte {exc.start}: "
                                    f"{exc.object[exc.start:exc.start + 1]!r})") from None
    try:
        _check_depth(text)
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(yaml)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(file, where, f"not valid YAML: {_one_line(problem)}") from None
    except RecursionError:
        raise error(file, "(yaml)", "not valid YAML: nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a timestamp's day 45
        raise error(file, "(yaml)", f"not valid YAML: {_one_line(str(exc))}") from None


# libyaml's parser where PyYAML has it (the same safe constructor, faster).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 64
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_depth(text: str) -> None:
    """A YAMLError for nesting deeper than MAX_DEPTH, found from the parser's events alone
    (building deeply nested data first would take seconds and end in a RecursionError)."""
    depth = 0
    for event in yaml.parse(text, Loader=_SAFE_LOADER):
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested more than {MAX_DEPTH} levels deep",
                                           problem_mark=event.start_mark)
        elif isinstance(event, _CLOSE):
            depth -= 1


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def _decode(raw: bytes) -> str:
    """UTF-8 text, or UTF-8/16/32 after a byte-order mark; NUL and other characters YAML
    forbids are left for the YAML parser to name."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return raw.decode(encoding)
    return raw.decode("utf-8")


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse(data: Any, file: str = "<topology>") -> Topology:
    """Validate already-parsed YAML data; `file` names it in error messages."""
    top = _Reader(file, "", data, {"name", "description", "link_classes", "sites", "links", "hosts"})
    name = top.name("name")
    classes = _parse_classes(file, top)
    sites = _parse_sites(file, top)
    links = _parse_links(file, top, sites, classes)
    hosts = _parse_hosts(file, top, sites)
    _check_ports(file, sites, links, hosts)
    return Topology(name=name, description=top.get("description", str, ""), classes=classes,
                    sites=sites, links=links, hosts=hosts, source=file)


def _parse_classes(file: str, top: _Reader) -> dict[str, LinkClass]:
    raw = top.get("link_classes", dict, required=True)
    classes = {}
    for cname, spec in raw.items():
        where = f"link_classes.{cname}"
        if not isinstance(cname, str) or not re.match(r"^[a-z][a-z0-9-]{0,31}$", cname):
            raise TopologyError(file, where, "class names are lowercase letters, digits and '-'")
        r = _Reader(file, where, spec, {"inflation", "equipment_ms", "bandwidth_mbit", "description",
                                        "schedule"})
        classes[cname] = LinkClass(
            name=cname,
            inflation=r.number("inflation", 1.0, 10.0),
            equipment_ms=r.number("equipment_ms", 0.0, MAX_DELAY_MS),
            bandwidth_mbit=r.number("bandwidth_mbit", 0.001, 100_000.0, default=None),
            description=r.get("description", str, ""),
            schedule=_schedule(r),
        )
    return classes


def _parse_sites(file: str, top: _Reader) -> dict[str, Site]:
    relations = {"outpost": ("datacenter", "region"), "localzone": ("datacenter", "region")}
    sites: dict[str, Site] = {}
    raw_sites = _list(top, "sites")
    for i, spec in enumerate(raw_sites):
        r = _Reader(file, f"sites[{i}]", spec,
                    {"name", "kind", "lat", "lon", "label", "datacenter", "region"})
        name = r.name("name")
        if name in sites:
            r.fail("name", f"duplicate site name {name!r}")
        kind = r.get("kind", str, required=True)
        if kind not in SITE_KINDS:
            r.fail("kind", f"{kind!r} is not one of {', '.join(SITE_KINDS)}")
        for key in ("datacenter", "region"):
            if key in spec and key not in relations.get(kind, ()):
                r.fail(key, f"a {kind} site has no {key} relation")
        sites[name] = Site(
            name=name, kind=kind, index=i + 1,
            lat=r.number("lat", -90.0, 90.0), lon=r.number("lon", -180.0, 180.0),
            label=r.get("label", str, ""),
            datacenter=r.get("datacenter", str, required=True) if kind in relations else None,
            region=r.get("region", str, required=True) if kind in relations else None,
        )
    if len(sites) > MAX_SITES:
        top.fail("sites", f"at most {MAX_SITES} sites (the hosts' address plan, topologies.model)")
    for i, site in enumerate(sites.values()):
        for key, wanted in (("datacenter", "datacenter"), ("region", "region")):
            ref = getattr(site, key)
            if ref is None:
                continue
            if ref not in sites:
                raise TopologyError(file, f"sites[{i}].{key}", f"unknown site {ref!r}")
            if sites[ref].kind != wanted:
                raise TopologyError(file, f"sites[{i}].{key}",
                                    f"{ref!r} is a {sites[ref].kind}, not a {wanted}")
    return sites


def _parse_links(file: str, top: _Reader, sites: dict[str, Site],
                 classes: dict[str, LinkClass]) -> list[Link]:
    links: list[Link] = []
    seen: set[frozenset] = set()
    for i, spec in enumerate(_list(top, "links")):
        r = _Reader(file, f"links[{i}]", spec, {"ends", "class", "delay_ms", "source",
                                                "bandwidth_mbit", "jitter_ms", "loss_pct",
                                                "queue_packets", "schedule"})
        ends = r.get("ends", list, required=True)
        if len(ends) != 2 or not all(isinstance(e, str) for e in ends):
            r.fail("ends", "must be a list of two site names")
        a, b = ends
        for j, end in enumerate(ends):
            if end not in sites:
                r.fail(f"ends[{j}]", f"unknown site {end!r}")
        if a == b:
            r.fail("ends", f"a link cannot join {a!r} to itself")
        if frozenset(ends) in seen:
            r.fail("ends", f"duplicate link between {a!r} and {b!r}")
        seen.add(frozenset(ends))
        cname = r.get("class", str, required=True)
        if cname not in classes:
            r.fail("class", f"unknown link class {cname!r} (defined: {', '.join(classes)})")
        cls = classes[cname]
        sa, sb = sites[a], sites[b]
        distance = great_circle_km(sa.lat, sa.lon, sb.lat, sb.lon)
        given = r.number("delay_ms", 0.0, MAX_DELAY_MS, default=None)
        if given is not None:
            source = r.get("source", str, required=True).strip()
            if not source:
                r.fail("source", "must say where the delay figure comes from")
            delay = given
        else:
            if "source" in spec:
                r.fail("source", "only allowed with delay_ms (derived delays explain themselves)")
            delay = derived_delay_ms(distance, cls)
            source = (f"derived: {distance:.0f} km x {cls.inflation:g} route inflation x "
                      f"4.9 us/km + {cls.equipment_ms:g} ms {cname} equipment")
        if delay > MAX_DELAY_MS:
            r.fail("delay_ms", f"derived delay {delay:.0f} ms exceeds {MAX_DELAY_MS:.0f} ms")
        queue = r.get("queue_packets", int, default=1000)
        if not 1 <= queue <= 1_000_000:
            r.fail("queue_packets", f"must be between 1 and 1000000, got {queue}")
        links.append(Link(
            a=a, b=b, link_class=cname, delay_ms=delay, delay_source=source,
            distance_km=distance,
            bandwidth_mbit=r.number("bandwidth_mbit", 0.001, 100_000.0, default=cls.bandwidth_mbit),
            jitter_ms=r.number("jitter_ms", 0.0, MAX_DELAY_MS, default=0.0),
            loss_pct=r.number("loss_pct", 0.0, 100.0, default=0.0),
            queue_packets=queue, index=i + 1, schedule=_schedule(r) or cls.schedule,
        ))
    return links


def _schedule(owner: _Reader) -> Schedule | None:
    """A `schedule:` mapping (trace file relative to the topology file, loop, speed), read."""
    if owner.data.get("schedule") is None:
        return None
    r = _Reader(owner.file, owner.path("schedule"), owner.data["schedule"], {"trace", "loop", "speed"})
    name = r.get("trace", str, required=True)
    path = Path(name) if Path(name).is_absolute() else Path(owner.file).parent / name
    if not path.is_file() and (SHIPPED / name).is_file():
        path = SHIPPED / name  # a shipped trace, from a copy of a shipped topology file
    if not path.is_file():
        r.fail("trace", f"no trace file {str(path)!r}")
    return Schedule(trace=load_trace(path), loop=r.get("loop", bool, True),
                    speed=r.number("speed", 1e-3, 1e6, default=1.0))


def _parse_hosts(file: str, top: _Reader, sites: dict[str, Site]) -> dict[str, Host]:
    hosts: dict[str, Host] = {}
    per_site: dict[str, int] = {}
    for i, spec in enumerate(_list(top, "hosts")):
        r = _Reader(file, f"hosts[{i}]", spec, {"name", "site", "role"})
        name = r.name("name")
        if name in hosts:
            r.fail("name", f"duplicate host name {name!r}")
        if name in sites:
            r.fail("name", f"{name!r} is already a site name")
        site = r.get("site", str, required=True)
        if site not in sites:
            r.fail("site", f"unknown site {site!r}")
        role = r.get("role", str, required=True)
        if role not in HOST_ROLES:
            r.fail("role", f"{role!r} is not one of {', '.join(HOST_ROLES)}")
        n = per_site[site] = per_site.get(site, 0) + 1
        s = sites[site].index
        hosts[name] = Host(name=name, site=site, role=role, ip=host_ip(s, n), mac=host_mac(s, n))
    for role in ("db-primary",):
        if sum(h.role == role for h in hosts.values()) > 1:
            top.fail("hosts", f"at most one host may have role {role}")
    return hosts


def _check_ports(file: str, sites: dict[str, Site], links: list[Link], hosts: dict[str, Host]):
    ports = {name: 0 for name in sites}
    for link in links:
        ports[link.a] += 1
        ports[link.b] += 1
    for host in hosts.values():
        ports[host.site] += 1
    for i, (name, count) in enumerate(ports.items()):
        if count > MAX_PORTS_PER_SITE:
            raise TopologyError(file, f"sites[{i}]",
                                f"site {name!r} has {count} ports, at most {MAX_PORTS_PER_SITE}")
