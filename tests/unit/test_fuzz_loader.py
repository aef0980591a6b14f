"""The topology loader under fuzzing: any bytes give a Topology or one error line naming the
file, through the loader and through `lab topo check`, never another exception."""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.fuzzing import (ENCODINGS, NASTY, deep, encode, fuzz, paths_of, run_lab,
                                values)
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load
from topologies.model import Topology, TopologyError

DEFAULT_TEXT = DEFAULT_TOPOLOGY.read_text()
DEFAULT_DATA = yaml.safe_load(DEFAULT_TEXT)
WORK = Path(tempfile.mkdtemp(prefix="hclab-fuzz-"))
atexit.register(shutil.rmtree, WORK, True)
LAB = Path(sys.executable).parent / "lab"
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def write(raw: bytes, name: str = "topo ü.yaml") -> Path:
    path = WORK / name
    path.write_bytes(raw)
    return path


def loads_or_one_line(raw: bytes) -> Topology | TopologyError:
    """The loader's answer for these bytes; fails the test on anything but the two."""
    path = write(raw)
    try:
        return load(path)
    except TopologyError as exc:
        text = str(exc)
        assert len(text.splitlines()) == 1 and text.startswith(f"{path}: "), text
        return exc


def dump(data, **options) -> str:
    try:
        return yaml.dump(data, Dumper=DUMPER, **options)
    except UnicodeEncodeError:  # libyaml refuses lone surrogates; PyYAML escapes them
        return yaml.safe_dump(data, **options)


PATHS = [p for p in paths_of(DEFAULT_DATA, items=1000) if p]


@st.composite
def mutated_default(draw) -> bytes:
    """The default file with one to three fields changed, removed, retyped or duplicated."""
    data = copy.deepcopy(DEFAULT_DATA)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = data
        try:
            for step in path[:-1]:
                parent = parent[step]
            key = path[-1]
            parent[key]  # noqa: B018 - an earlier mutation may have removed it
        except (KeyError, IndexError, TypeError):
            continue
        how = draw(st.sampled_from(["remove", "nasty", "random", "duplicate", "rename"]))
        if how == "remove":
            del parent[key]
        elif how == "nasty":
            parent[key] = draw(st.sampled_from(NASTY))
        elif how == "random":
            parent[key] = draw(values)
        elif how == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(NASTY[:22]))] = parent.pop(key)
    text = dump(data, allow_unicode=draw(st.booleans()), sort_keys=False)
    return encode(text, draw(st.sampled_from(ENCODINGS)))


@fuzz(400)
@given(st.binary(max_size=3000))
def test_random_bytes_give_a_topology_or_one_line_naming_the_file(raw):
    loads_or_one_line(raw)


@fuzz(300)
@given(values, st.sampled_from(ENCODINGS))
def test_random_yaml_documents_give_one_line_naming_the_file(data, encoding):
    text = dump(data, allow_unicode=True)
    assert isinstance(loads_or_one_line(encode(text, encoding)), TopologyError)


@fuzz(300)
@given(mutated_default())
def test_mutations_of_the_default_file_give_a_topology_or_one_line(raw):
    loads_or_one_line(raw)


@fuzz(200)
@given(st.text(alphabet=st.sampled_from(list("[]{}:,-?&*!|>'\"%@` \n\t#ab1.")), max_size=400))
def test_yaml_punctuation_gives_one_line_naming_the_file(text):
    loads_or_one_line(text.encode())


HANDMADE = {
    "deep-flow-list": b"[" * 20000 + b"]" * 20000,
    "deep-block-map": "".join(" " * i + "a:\n" for i in range(3000)).encode(),
    "deep-sites": yaml.safe_dump({**DEFAULT_DATA, "sites": deep(300)}).encode(),
    "invalid-utf8": DEFAULT_TEXT.encode() + b"\xff\xfe\xfa",
    "utf16-no-bom": DEFAULT_TEXT.encode("utf-16-le"),
    "latin1": DEFAULT_TEXT.replace("Boston", "Bóston").encode("latin-1"),
    "bad-timestamp": b"name: 2001-13-45\n",
    "bad-float-tag": b"name: !!float abc\n",
    "bad-int-tag": b"name: !!int abc\n",
    "bad-binary": b"name: !!binary '@@@'\n",
    "python-tag": b"name: !!python/object:os.system ls\n",
    "unhashable-key": b"? [a, b]\n: 1\n",
    "huge-int": DEFAULT_TEXT.replace("inflation: 1.0", "inflation: 1" + "0" * 400).encode(),
    "too-many-digits": DEFAULT_TEXT.replace("inflation: 1.0", "inflation: 1" + "0" * 5000).encode(),
    "nan": DEFAULT_TEXT.replace("inflation: 1.0", "inflation: .nan").encode(),
    "alias-bomb": b"a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nname: [*c, *c]\n",
    "recursive-alias": b"name: &a [*a]\n",
    "nul": b"name: a\x00b\n",
    "two-documents": b"name: a\n---\nname: b\n",
    "empty": b"",
    "bom-only": b"\xef\xbb\xbf",
    "newline-key": yaml.safe_dump({**DEFAULT_DATA, "x\ny": 1}).encode(),
    "duplicate-site": yaml.safe_dump({**DEFAULT_DATA, "sites": DEFAULT_DATA["sites"] * 2}).encode(),
}


def test_handmade_bad_files_give_one_line_naming_the_file():
    for name, raw in HANDMADE.items():
        assert isinstance(loads_or_one_line(raw), TopologyError), name


def test_the_default_file_in_any_unicode_encoding_with_a_bom_loads():
    for encoding in ("utf-8-sig", "utf-16", "utf-32"):
        assert isinstance(loads_or_one_line(DEFAULT_TEXT.encode(encoding)), Topology), encoding


def topo_check_rejects(raw: bytes) -> None:
    path = write(raw, "check me.yaml")
    code, _, err = run_lab(["topo", "check", str(path)])
    if code == 0:
        return
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"{path}: "), err


@fuzz(150)
@given(st.one_of(mutated_default(), st.binary(max_size=500)))
def test_lab_topo_check_exits_2_with_one_line_naming_the_file(raw):
    topo_check_rejects(raw)


def test_lab_topo_check_on_the_handmade_files():
    for raw in HANDMADE.values():
        topo_check_rejects(raw)


def test_the_installed_lab_command_says_one_line_and_exits_2():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for name in ("deep-flow-list", "invalid-utf8", "newline-key"):
        path = write(HANDMADE[name], f"{name}.yaml")
        done = subprocess.run([str(LAB), "topo", "check", str(path)], capture_output=True,
                              text=True, env=env, timeout=60)
        assert done.returncode == 2, (name, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"{path}: "), \
            (name, done.stderr)
