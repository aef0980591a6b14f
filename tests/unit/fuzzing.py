"""What the fuzz tests share: a reproducible hypothesis profile and nasty values.

`derandomize=True` and no example database: every run (here and in CI) tries the same
examples, and a failure is found again by running the test again.
"""

from __future__ import annotations

import contextlib
import io
import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lab.cli.main import main


def fuzz(examples: int) -> settings:
    """The settings of a fuzz test that tries `examples` inputs."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def deep(depth: int, kind: str = "list"):
    """A value nested `depth` levels deep."""
    value: object = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


NASTY = [None, True, False, 0, -1, 1, 2 ** 70, -(2 ** 70), 10 ** 400 // 10 ** 100, 1e308,
         -1e308, math.nan, math.inf, -math.inf, 0.5, "", " ", "x" * 5000, "ü", "名前",
         "a\nb", "a\u2028b", "\x00", "\ud800", "..", "/etc/passwd", "-1", "nan", "1e999",
         [], {}, [1, 2], {"a": 1}, {1: 2}, {None: 1}, {True: "x"}, deep(60), deep(60, "map")]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(NASTY[:30]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.booleans()), inner,
                    max_size=4)), max_leaves=12)

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1",
             "cp1252", "shift_jis"]


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


def run_lab(argv: list[str]) -> tuple[int, str, str]:
    """`lab ARGV` in this process: (exit status, stdout, stderr); argparse's exits count."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def paths_of(data, prefix=(), items: int = 3):
    """Every path into a document (mapping keys, the first `items` list indices)."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths_of(value, prefix + (key,), items)
    elif isinstance(data, list):
        for i, value in enumerate(data[:items]):
            yield from paths_of(value, prefix + (i,), items)


def change(data, draw, null: bool = False):
    """One field of a document removed, or replaced by null, a nasty or a random value."""
    paths = [p for p in paths_of(data) if p]
    if not paths:
        return draw(values)
    path = draw(st.sampled_from(paths))
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    if null:
        parent[path[-1]] = None
    elif draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(st.one_of(st.sampled_from(NASTY[:30]), values))
    return data
