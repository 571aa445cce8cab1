"""File primitives every writer shares: atomic replacement, content hashes, canonical JSON.

Readers see the old file or the new one, never a half-written one.  Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | Path, suffix: str = ".tmp", fsync_dir: bool = False):
    """Yield a temporary path beside ``target``; rename it over ``target`` on
    success, remove it on failure.  Creates ``target``'s folder.

    ``fsync_dir``: also flush the folder entry after the rename, so the new name
    survives a power loss (the feature store wants this; caches do not need it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
        if fsync_dir:
            fsync_folder(target.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries to disk (no-op where the OS does not allow it)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically, fsynced before the rename."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(target: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(target, text.encode("utf-8"))


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def json_default(o):
    """``json.dumps`` fallback for NumPy scalars and arrays and paths."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def canonical_json(obj) -> str:
    """Deterministic JSON (sorted keys): equal objects give equal text.  The feature
    file stores configs in this form, so its spacing is part of the file format."""
    return json.dumps(obj, sort_keys=True, default=json_default)
