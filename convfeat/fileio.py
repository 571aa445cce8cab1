"""File primitives every writer shares: atomic replacement, content hashes, plain and canonical JSON.

Readers see the old file or the new one, never a half-written one: every atomic
write in convfeat goes through :func:`atomic_path`.  :func:`to_plain` is the one
coercer of NumPy / HDF5 values into JSON-able Python, :func:`canonical_json` the
one canonical JSON text.  Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | Path, suffix: str = ".tmp", fsync_dir: bool = False, fsync: bool = False):
    """Yield a temporary path beside ``target``; rename it over ``target`` on
    success, remove it on failure.  Creates ``target``'s folder.

    ``fsync``: flush the written file's bytes to disk before the rename (whoever
    wrote it, e.g. h5py), so the new name never points at unwritten data.
    ``fsync_dir``: also flush the folder entry after the rename, so the new name
    survives a power loss (the feature store wants this; caches do not need it).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, target)
        if fsync_dir:
            fsync_folder(target.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_file(path: str | Path) -> None:
    """Flush a file's written bytes to disk (an fsync through a fresh descriptor
    flushes what any descriptor of the file wrote)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


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
    with atomic_path(target, fsync=True) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


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


def to_plain(value, decode_json: bool = False):
    """The one coercer of NumPy and HDF5 values into plain, JSON-able Python.

    Bytes (HDF5 fixed-length strings) become ``str`` (undecodable bytes replaced),
    NumPy scalars their Python value, arrays nested lists, paths ``str``; anything
    else is returned unchanged.  ``decode_json``: a string that starts with ``[``
    or ``{`` and parses as JSON becomes the parsed value (HDF5 attributes that
    hold JSON text); one that does not parse stays a string.
    """
    import numpy as np

    if isinstance(value, bytes):          # before np.generic: np.bytes_ is both
        value = value.decode(errors="replace")
    elif isinstance(value, np.generic):
        return value.item()
    elif isinstance(value, np.ndarray):
        return value.tolist()
    elif isinstance(value, Path):
        return str(value)
    if decode_json and isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def json_default(o):
    """``json.dumps`` fallback for NumPy scalars and arrays and paths (via :func:`to_plain`);
    bytes and anything else are refused with a ``TypeError``."""
    plain = o if isinstance(o, bytes) else to_plain(o)
    if plain is o:
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")
    return plain


def canonical_json(obj) -> str:
    """Deterministic JSON (sorted keys): equal objects give equal text.  The feature
    file stores configs in this form, so its spacing is part of the file format."""
    return json.dumps(obj, sort_keys=True, default=json_default)
