"""A calibration reused while nothing it depends on changed: `lab up` in seconds.

Calibrating the fabric takes most of a bring-up (about 27 s of 30 on the default topology)
and gives the same holds as long as the same code runs the same topology on the same
machine. The fingerprint covers exactly that: the machine (CPU model, cores, memory), the
kernel, Open vSwitch, the topology's sites, links and hosts, the lab's own network code
(lab/*.py) and the link backend and datapath. Anything else changed, a new fingerprint, a
new calibration. `--recalibrate` measures anyway; `lab verify` measures whether the holds
in force still give the model's delays. The cache lives in the checkout (.cache/, not
tracked), so a fresh clone, such as CI's, calibrates for itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

from lab.calibration import Calibration
from lab.files import write_json
from lab.procs import ROOT

CACHE_DIR_ENV = "HCLAB_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV, ROOT / ".cache" / "calibration"))


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_kb": int(memory)}


def _code() -> str:
    """The lab's network code: a hash of every lab/*.py (the command line's are not)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "lab").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fingerprint(topology, caps, backend: str) -> str:
    """What a calibration depends on, as one hash."""
    model = topology.as_dict(paths=False)
    facts = {"machine": _machine(), "kernel": caps.kernel, "ovs": caps.ovs,
             "datapath": caps.datapath, "backend": backend, "code": _code(),
             "sites": [s["name"] for s in model["sites"]],
             "links": [{k: v for k, v in link.items() if k != "source"}
                       for link in model["links"]],
             "hosts": model["hosts"]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def load(key: str) -> Calibration | None:
    """The calibration saved under this fingerprint, marked reused; None if there is none."""
    try:
        data = json.loads((cache_dir() / f"{key}.json").read_text())
        calibration = Calibration.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    calibration.reused = True
    return calibration


def save(key: str, calibration: Calibration) -> None:
    cache_dir().mkdir(parents=True, exist_ok=True)
    write_json(cache_dir() / f"{key}.json", {**calibration.as_dict(), "reused": False})
