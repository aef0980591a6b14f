"""Files the lab writes: whole or not at all, never through a link, never over earlier results.

The lab often runs as root inside directories another user owns. Every file it writes is
opened with O_NOFOLLOW (a link planted at the path is refused, never written through); new
files also with O_EXCL, and final files go to a new temporary file that is then renamed over
the path (a rename replaces a planted link itself, not what it points to), so a reader never
sees half of one. A results directory is new or empty: earlier results are never deleted or
overwritten.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
from pathlib import Path

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class OutDirError(ValueError):
    """A results directory cannot be used; str() says why, in one line."""


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write `data` to a new temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if path.is_symlink():
        raise OSError(errno.ELOOP, "a symbolic link is in the way (not written through)",
                      str(path))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], data) -> None:
    """`data` as indented JSON, written atomically."""
    atomic_write(path, json.dumps(data, indent=1) + "\n")


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """A copy of `src` (read without following a link), written atomically at `dst`."""
    fd = os.open(src, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        atomic_write(dst, f.read())


def open_append(path: str | os.PathLike[str], newline: str | None = None):
    """`path` opened to append text (created if missing), never through a link.

    Lines appended this way reach the file when the caller flushes or closes it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o644)
    return os.fdopen(fd, "a", newline=newline)


def open_new(path: str | os.PathLike[str], mode: str = "w"):
    """A file that must not exist yet ("w" or "wb"), never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
    return os.fdopen(fd, mode)


def check_out_dir(path: str | os.PathLike[str]) -> Path:
    """`path` if it can become a results directory (new, or an empty directory that is not a
    link, under a writable parent); OutDirError otherwise. Nothing is created."""
    path = Path(path)
    if path.is_symlink():
        raise OutDirError(f"{path} is a symbolic link (give the directory itself)")
    if path.exists():
        if not path.is_dir():
            raise OutDirError(f"{path} exists and is not a directory")
        if any(path.iterdir()):
            raise OutDirError(f"{path} already holds files (earlier results are never "
                              f"overwritten): give a new directory")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutDirError(f"cannot create {path}: {parent} is not a writable directory")
    return path


def results_dir(out: str | os.PathLike[str] | None, prefix: str,
                parent: str | os.PathLike[str] = "results") -> Path:
    """The results directory of a run, created: `out` (new or empty), or by default
    `parent/prefix-<date>-<time>`, with -2, -3 ... added if that one exists already."""
    if out is not None:
        path = check_out_dir(out)
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path(parent) / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(parent).mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise OutDirError(f"{base}: too many runs started this second")
