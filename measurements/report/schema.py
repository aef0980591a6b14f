"""What a comparison's raw records must hold for the report, checked before any number is
computed: a record that does not fit is named (file, line, field) in one line.

A spec is a type (`NUM`, `INT`, `str`, `bool`, `ANY`), `Opt(spec)` (may be missing or
null), `[spec]` (a list of such), `Pair(a, b)` (a list of exactly two), `Map(spec)` (a
mapping with any string keys) or a dict of required (and Opt) keys; other keys are allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class _Number:
    """A finite int or float, not a boolean."""


class _Whole:
    """An int, not a boolean."""


class _Any:
    """Any value."""


NUM, INT, ANY = _Number, _Whole, _Any


@dataclass(frozen=True)
class Opt:
    spec: Any


@dataclass(frozen=True)
class Map:
    spec: Any


@dataclass(frozen=True)
class Pair:
    first: Any
    second: Any


SITE = {"name": str, "kind": str, "lat": NUM, "lon": NUM, "label": str}
LINK = {"a": str, "b": str, "class": str, "distance_km": NUM, "delay_ms": NUM, "source": str}
HOST = {"name": str, "site": str, "role": str}
SETTINGS = {"samples": INT, "page_queries": INT, "client_interval_s": NUM,
            "service_interval_s": NUM, "request_timeout_s": NUM, "writer_interval_s": Opt(NUM),
            "failover": Opt({"misses": Opt(INT), "interval_s": Opt(NUM), "timeout_s": Opt(NUM)})}
CALIBRATION = {"access_rtt_ms": NUM, "links": [{"uncompensated_ms": NUM}]}
SETUP = {"topology": {"name": str, "description": Opt(str), "sites": [SITE], "links": [LINK],
                      "hosts": [HOST]},
         "strategies": [str], "scenarios": [{"name": str, "description": str}],
         "settings": SETTINGS, "versions": Map(ANY), "calibration": Opt(CALIBRATION),
         "bring_up_s": Opt(NUM), "total_s": Opt(NUM)}
REQUEST = {"scenario": str, "strategy": str, "kind": str, "src": str, "start": NUM, "ok": bool,
           "latency_ms": Opt(NUM), "served_by": Opt(str), "error": Opt(str)}
CELL = {"scenario": str, "strategy": str, "failure": Opt(NUM), "repair": Opt(NUM),
        "links_cut": Opt([ANY]), "invalid": Opt(str), "db_phases": Opt([Pair(NUM, Opt(NUM))]),
        "cut_off_hosts": Opt([str]),
        "no_data": Opt({"client": Opt(str), "service": Opt(str), "writers": Opt(Map(str))}),
        "promotion": Opt({"promoted": NUM}), "db_listen_drops": Opt(Map(INT)),
        "expected_rtt_ms": Opt(Map(Map(Opt(NUM))))}


def problem(value: Any, spec: Any, where: str = "") -> str | None:
    """What is wrong with `value` for `spec` ("field: problem"), or None."""
    if isinstance(spec, Opt):
        return None if value is None else problem(value, spec.spec, where)
    if isinstance(spec, dict):
        return _mapping(value, spec, where)
    if isinstance(spec, Map):
        if not isinstance(value, dict):
            return f"{where or '(record)'}: must be a mapping"
        return next((p for k, v in value.items()
                     if (p := problem(v, spec.spec, f"{where}.{k}" if where else str(k)))), None)
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where or '(record)'}: must be a list"
        return next((p for i, v in enumerate(value)
                     if (p := problem(v, spec[0], f"{where}[{i}]"))), None)
    if isinstance(spec, Pair):
        if not isinstance(value, list) or len(value) != 2:
            return f"{where}: must be a list of two"
        return problem(value[0], spec.first, f"{where}[0]") or \
            problem(value[1], spec.second, f"{where}[1]")
    if not _fits(value, spec):
        return f"{where or '(record)'}: must be {_LABELS[spec]}, got {_short(value)}"
    return None


def drop_nulls(value: Any, spec: Any) -> None:
    """Remove, in a checked value, the optional lists and mappings given as null: a reader
    then finds them missing and takes its default."""
    if isinstance(spec, Opt):
        spec = spec.spec
    if isinstance(spec, dict) and isinstance(value, dict):
        for key, inner in spec.items():
            if isinstance(inner, Opt) and isinstance(inner.spec, (list, dict, Map)) \
                    and key in value and value[key] is None:
                del value[key]
            elif key in value:
                drop_nulls(value[key], inner)
    elif isinstance(spec, list) and isinstance(value, list):
        for item in value:
            drop_nulls(item, spec[0])
    elif isinstance(spec, Map) and isinstance(value, dict):
        for item in value.values():
            drop_nulls(item, spec.spec)


def _mapping(value: Any, spec: dict, where: str) -> str | None:
    if not isinstance(value, dict):
        return f"{where or '(record)'}: must be a mapping, got {_short(value)}"
    for key, inner in spec.items():
        path = f"{where}.{key}" if where else key
        if key not in value and not isinstance(inner, Opt):
            return f"{path}: is missing"
        found = problem(value.get(key), inner, path)
        if found:
            return found
    return None


_LABELS = {_Number: "a finite number", _Whole: "a whole number", str: "a string",
           bool: "true or false"}


def _fits(value: Any, spec: Any) -> bool:
    if spec is _Any:
        return True
    if isinstance(value, bool):
        return spec is bool
    if spec is _Number:
        return isinstance(value, (int, float)) and abs(value) < 1e300 and math.isfinite(value)
    if spec is _Whole:
        return isinstance(value, int)
    return isinstance(value, spec)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
# schedule.jsonl: one line per change a schedule made (measurements/congestion.py)
SCHEDULE = {"scenario": str, "strategy": str, "time": NUM, "t_s": NUM, "name": str,
            "delay_ms": NUM}
