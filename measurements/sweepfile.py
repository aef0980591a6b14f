"""The sweep file: the points of a sweep, checked in full before any lab comes up.

A sweep file (YAML) names a topology, the settings every point shares (`base`), a `grid`
whose every combination of values is a point and/or a list of `points`, and how many
`repetitions` of each point run, with which `seed`. A point is a set of overrides, written as
dotted parameters (or the same keys nested):

    link.<a>-<b>.<field>          one link (its ends in either order)
    link_class.<class>.<field>    every link of that class
        delay_ms (one way), delay_scale (times the file's delay), bandwidth_mbit, loss_pct
    controller.strategies         the routing strategies the point compares (a list)
    controller.geo_bias.<host>    that service endpoint's geoproximity bias (-99..99)
    workload.samples              database requests per operation, placement and phase
    workload.failure_window_s     how long each failure lasts
    scenarios                     the failure scenarios (a list)
    lab.links, lab.calibrate      link emulation backend; calibration of the fabric

A point's entries override the grid's, both override `base`; a link's own change overrides
its class's. Anything wrong raises SweepError, whose text is one line `FILE: field: problem`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controllers.services import MAX_BIAS, default_services, parse_services
from controllers.strategies import COMPARED, STRATEGIES
from lab.emulation import CHOICES as LINK_BACKENDS
from measurements.cells import FAILURE_WINDOW_S
from measurements.compare import DEFAULT_SAMPLES
from measurements.scenarios import SCENARIOS, scenarios_of
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import _type_name as kind_of
from topologies.loader import parse, read_file, read_yaml
from topologies.model import MAX_DELAY_MS, Topology, TopologyError

MAX_REPETITIONS = 100
MAX_POINTS = 10_000
# libyaml's parser and emitter where PyYAML has them: the pure-Python ones take tens of ms
# a topology.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class SweepError(ValueError):
    """A sweep file is invalid; str() is the one-line message for the user."""

    def __init__(self, file: str | Path, where: str, problem: str):
        self.file, self.where, self.problem = str(file), where, problem
        super().__init__(f"{file}: {where}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class LinkChange(_Strict):
    """What a point changes on a link (or on every link of a class)."""

    delay_ms: float | None = Field(None, ge=0, le=MAX_DELAY_MS)
    delay_scale: float | None = Field(None, gt=0, le=1000)
    bandwidth_mbit: float | None = Field(None, ge=0.001, le=100_000)
    loss_pct: float | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_delay(self):
        if self.delay_ms is not None and self.delay_scale is not None:
            raise ValueError("give delay_ms or delay_scale, not both")
        return self


class ControllerChange(_Strict):
    strategies: list[Literal[tuple(STRATEGIES)]] | None = Field(None, min_length=1)
    geo_bias: dict[str, Annotated[int, Field(ge=-MAX_BIAS, le=MAX_BIAS)]] = {}


class WorkloadChange(_Strict):
    samples: int | None = Field(None, ge=1, le=10_000)
    failure_window_s: float | None = Field(None, gt=0, le=3600)


class LabChange(_Strict):
    links: Literal[tuple(LINK_BACKENDS)] | None = None
    calibrate: bool | None = None


class Overrides(_Strict):
    """One point's overrides (or the part of them one entry of the file gives)."""

    link: dict[str, LinkChange] = {}
    link_class: dict[str, LinkChange] = {}
    controller: ControllerChange = ControllerChange()
    workload: WorkloadChange = WorkloadChange()
    scenarios: list[Literal[tuple(SCENARIOS)]] | None = Field(None, min_length=1)
    lab: LabChange = LabChange()


class _File(_Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    topology: str | None = None
    repetitions: int = Field(1, ge=1, le=MAX_REPETITIONS)
    seed: int = Field(0, ge=0, le=2**31)
    base: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    points: list[dict[str, Any]] = []


@dataclass(frozen=True)
class Point:
    """One point of the sweep: everything its lab runs need, whichever machine runs them."""

    id: str  # a hash of what the run depends on: the same point keeps its id across runs
    label: str  # the swept parameters and their values
    swept: dict[str, Any]  # dotted parameter -> value, for the parameters that vary
    params: dict[str, Any]  # every override of the point, dotted
    topology_name: str  # the topology file's name
    topology_yaml: str  # the topology with the point's overrides, as the lab reads it
    services_yaml: str | None  # services with the point's geo biases (None: the defaults)
    strategies: tuple[str, ...]
    scenarios: tuple[str, ...]
    samples: int
    failure_window_s: float
    links: str
    calibrate: bool


@dataclass(frozen=True)
class Sweep:
    file: str
    name: str
    description: str
    topology: Topology  # as in its file, before any point's overrides
    repetitions: int
    seed: int
    points: tuple[Point, ...]
    parameters: tuple[str, ...]  # the swept parameters, in file order

    def seeds(self) -> list[int]:
        """The seed of each repetition: the same for every point, so points compare alike."""
        return [self.seed + r for r in range(self.repetitions)]


# -- reading ---------------------------------------------------------------------------------

def load(path: str | Path) -> Sweep:
    """Read and check a sweep file and the topology it names; SweepError names the field."""
    path = Path(path)
    data = read_yaml(read_file(path, SweepError), str(path), SweepError)
    return parse_sweep(data, str(path), base_dir=path.parent, default_name=path.stem)


def parse_sweep(data: Any, file: str = "<sweep>", base_dir: Path = Path("."),
                default_name: str = "sweep") -> Sweep:
    """Check already-parsed YAML data; `file` names it in error messages."""
    if not isinstance(data, dict):
        raise SweepError(file, "(top)", f"must be a mapping, got {kind_of(data)}")
    top = _validate(_File, data, file, "")
    topology_path = (base_dir / top.topology) if top.topology else DEFAULT_TOPOLOGY
    topology_text, topology_data, topology = _read_topology(file, topology_path)

    base = _entry(file, "base", top.base, topology)
    grid = {}
    for key, values in top.grid.items():
        where = f"grid.{key}"
        if not values:
            raise SweepError(file, where, "needs at least one value")
        grid[key] = []
        for i, value in enumerate(values):
            try:
                grid[key].append(_entry(file, "grid", {key: value}, topology))
            except SweepError as exc:
                raise SweepError(file, exc.where, f"{exc.problem} (value [{i}]: {value!r})") \
                    from None
    listed = [_entry(file, f"points[{i}]", p, topology) for i, p in enumerate(top.points)]
    combos = list(itertools.product(*grid.values()))
    if len(combos) * max(1, len(listed)) > MAX_POINTS:
        raise SweepError(file, "grid", f"{len(combos) * max(1, len(listed))} points, "
                                       f"at most {MAX_POINTS}")
    # Where each point comes from, for the messages: its grid combination and/or list entry.
    entries = [(" and ".join(filter(None, (f"grid combination {c + 1}" if grid else "",
                                           f"points[{p}]" if listed else ""))) or "base",
                [*combo, point])
               for c, combo in enumerate(combos)
               for p, point in enumerate(listed or [{}])]
    merged = [_merge([base, *parts]) for _, parts in entries]
    # The swept parameters: the grid's, and any other whose value differs between points.
    swept_keys = list(dict.fromkeys([*(k for g in grid.values() for k in g[0]), *(
        k for k in dict.fromkeys(k for m in merged for k in m)
        if len({json.dumps(m.get(k), sort_keys=True) for m in merged}) > 1)]))
    digest = hashlib.sha256(topology_text.encode()).hexdigest()
    points, seen = [], {}
    for (where, _), params in zip(entries, merged):
        point = _point(file, where, params, swept_keys, topology, topology_data,
                       topology_path.name, digest)
        if point.id in seen:
            raise SweepError(file, where, f"the same point as {seen[point.id]} ({point.label})")
        seen[point.id] = where
        points.append(point)
    return Sweep(file=file, name=top.name or default_name, description=top.description,
                 topology=topology, repetitions=top.repetitions, seed=top.seed,
                 points=tuple(points), parameters=tuple(swept_keys))


def _read_topology(file: str, path: Path) -> tuple[str, Any, Topology]:
    """The topology file's text, its data and its model."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepError(file, "topology", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=LOADER)
        _absolute_traces(data, path.parent)
        return text, data, parse(copy.deepcopy(data), str(path))
    except (TopologyError, yaml.YAMLError) as exc:
        raise SweepError(file, "topology", f"{path} is not a valid topology: {exc}") from None


def _absolute_traces(data: Any, base: Path) -> None:
    """Schedules' trace files named by absolute path: a point's topology file is written
    elsewhere than the one it derives from."""
    if not isinstance(data, dict):
        return
    owners = list((data.get("link_classes") or {}).values()) + list(data.get("links") or [])
    for owner in owners:
        schedule = owner.get("schedule") if isinstance(owner, dict) else None
        if (isinstance(schedule, dict) and isinstance(schedule.get("trace"), str)
                and (base / schedule["trace"]).is_file()):
            schedule["trace"] = str((base / schedule["trace"]).resolve())


def _entry(file: str, where: str, raw: dict, topology: Topology) -> dict[str, Any]:
    """One entry's overrides, checked (types, ranges, names in the topology), dotted."""
    nested = _nest(file, where, raw)
    overrides = _validate(Overrides, nested, file, where)
    for key in overrides.link:
        if _link(topology, key) is None:
            raise SweepError(file, _join(where, f"link.{key}"),
                             f"no link {key!r} in topology {topology.name} "
                             f"(links are named <a>-<b>, e.g. {topology.links[0].name})"
                             if topology.links else f"topology {topology.name} has no links")
    for key in overrides.link_class:
        if not any(l.link_class == key for l in topology.links):
            raise SweepError(file, _join(where, f"link_class.{key}"),
                             f"no link of class {key!r} in topology {topology.name} "
                             f"(classes: {', '.join(topology.classes)})")
    endpoints = {e.host for s in default_services(topology) for e in s.endpoints}
    for host in overrides.controller.geo_bias:
        if host not in endpoints:
            raise SweepError(file, _join(where, f"controller.geo_bias.{host}"),
                             f"{host!r} is not a service endpoint of topology {topology.name} "
                             f"(endpoints: {', '.join(sorted(endpoints))})")
    if overrides.scenarios:
        try:
            scenarios_of(topology, overrides.scenarios)
        except ValueError as exc:
            raise SweepError(file, _join(where, "scenarios"), str(exc)) from None
    return _flatten(overrides.model_dump(exclude_defaults=True))


def _validate(model: type[BaseModel], data: Any, file: str, where: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in error["loc"])
        loc = loc.replace(".[", "[")
        problem = error["msg"]
        if error["type"] == "extra_forbidden":
            parent = _model_at(model, error["loc"][:-1])
            problem = "unknown key" + (f" (allowed: {', '.join(parent.model_fields)})"
                                       if parent else "")
        elif problem.startswith("Value error, "):
            problem = problem[len("Value error, "):]
        raise SweepError(file, _join(where, loc) or "(top)", problem[:1].lower() + problem[1:]) \
            from None


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that holds the field at `loc` (through mappings and optional fields)."""
    node: Any = model
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            node = node.model_fields[part].annotation if part in node.model_fields else None
        elif typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]
        else:
            return None
        if isinstance(node, types.UnionType):  # X | None
            node = next(a for a in typing.get_args(node) if a is not type(None))
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _nest(file: str, where: str, raw: Any) -> dict:
    """Dotted keys as nested mappings ({"a.b": 1} -> {"a": {"b": 1}}), mappings merged."""
    if not isinstance(raw, dict):
        raise SweepError(file, where or "(top)", f"must be a mapping, got {kind_of(raw)}")
    nested: dict = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise SweepError(file, _join(where, str(key)), "keys are strings")
        parts = key.split(".")
        if not all(parts):
            raise SweepError(file, _join(where, key), "empty part in a dotted key")
        if isinstance(value, dict):
            value = _nest(file, _join(where, key), value)
        for part in reversed(parts):
            value = {part: value}
        nested = _deep_merge(nested, value, file, where)
    return nested


def _deep_merge(a: dict, b: dict, file: str, where: str) -> dict:
    out = dict(a)
    for key, value in b.items():
        if key in out:
            if not (isinstance(out[key], dict) and isinstance(value, dict)):
                raise SweepError(file, _join(where, key), "given twice")
            out[key] = _deep_merge(out[key], value, file, _join(where, key))
        else:
            out[key] = value
    return out


def _flatten(nested: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in nested.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name))
        elif not isinstance(value, dict):
            flat[name] = value
    return flat


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Later entries win; a link's delay_ms and delay_scale replace each other."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            owner, _, field = key.rpartition(".")
            if field in ("delay_ms", "delay_scale"):
                merged.pop(f"{owner}.delay_ms", None)
                merged.pop(f"{owner}.delay_scale", None)
            merged[key] = value
    return dict(sorted(merged.items()))


# -- one point ------------------------------------------------------------------------------

def _point(file: str, where: str, params: dict[str, Any], swept_keys: list[str],
           topology: Topology, topology_data: dict, topology_name: str, digest: str) -> Point:
    nested = _nest(file, where, params)
    overrides = Overrides.model_validate(nested)
    data = apply_links(topology, topology_data, overrides)
    try:
        changed = parse(data, topology_name)
    except TopologyError as exc:
        raise SweepError(file, where, f"the point's topology is invalid: {exc.where}: "
                                      f"{exc.problem}") from None
    services = None
    if overrides.controller.geo_bias:
        services = services_with_bias(changed, overrides.controller.geo_bias)
    swept = {k: params.get(k) for k in swept_keys}
    label = ", ".join(f"{k}={value_text(v)}" for k, v in swept.items()) or "base"
    c, w, lab = overrides.controller, overrides.workload, overrides.lab
    fields = dict(
        topology_yaml=yaml.dump(data, Dumper=DUMPER, sort_keys=False),
        services_yaml=yaml.dump(services, Dumper=DUMPER, sort_keys=False) if services else None,
        strategies=tuple(c.strategies or COMPARED),
        scenarios=tuple(overrides.scenarios or SCENARIOS),
        samples=w.samples or DEFAULT_SAMPLES,
        failure_window_s=w.failure_window_s or FAILURE_WINDOW_S,
        links=lab.links or "auto",
        calibrate=True if lab.calibrate is None else lab.calibrate)
    identity = json.dumps({**fields, "topology_sha256": digest}, sort_keys=True)
    point_id = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return Point(id=point_id, label=label, swept=swept, params=params,
                 topology_name=topology_name, **fields)


def _link(topology: Topology, name: str):
    a, _, b = name.partition("-")
    if a not in topology.sites or b not in topology.sites:
        return None
    return topology.graph().edges[a, b]["link"] if topology.graph().has_edge(a, b) else None


def apply_links(topology: Topology, data: dict, overrides: Overrides) -> dict:
    """The topology file's data with the point's link changes: classes first, then links.

    A changed delay is written as a cited figure whose source says what the sweep did."""
    data = copy.deepcopy(data)
    changes: dict[int, list[tuple[str, LinkChange]]] = {}
    for cname, change in overrides.link_class.items():
        for link in topology.links:
            if link.link_class == cname:
                changes.setdefault(link.index, []).append((f"class {cname}", change))
    for name, change in overrides.link.items():
        link = _link(topology, name)
        changes.setdefault(link.index, []).append((f"link {name}", change))
    for index, found in changes.items():
        link, spec = topology.links[index - 1], data["links"][index - 1]
        for what, change in found:
            if change.delay_ms is not None or change.delay_scale is not None:
                delay = (change.delay_ms if change.delay_ms is not None
                         else round(link.delay_ms * change.delay_scale, 6))
                how = (f"set to {delay:g} ms" if change.delay_ms is not None
                       else f"x{change.delay_scale:g} of {link.delay_ms:.4g} ms "
                            f"({link.delay_source})")
                spec["delay_ms"], spec["source"] = delay, f"sweep ({what}): {how}"
            for key in ("bandwidth_mbit", "loss_pct"):
                if getattr(change, key) is not None:
                    spec[key] = getattr(change, key)
    return data


def services_with_bias(topology: Topology, bias: dict[str, int]) -> dict:
    """The default services as a services file, each endpoint with its host's bias."""
    data = {"services": [
        {"name": s.name, "vip": s.vip, "protocol": s.protocol, "port": s.port,
         "endpoints": [{"host": e.host, "bias": bias.get(e.host, e.bias)} for e in s.endpoints],
         "consumers": list(s.consumers)}
        for s in default_services(topology)]}
    parse_services(data, topology)  # the controller will read it: it must pass its checks
    return data


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where and key else (where or key)


def value_text(value: Any) -> str:
    """A parameter's value as the report and the labels show it."""
    if isinstance(value, list):
        return "+".join(map(str, value))
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

