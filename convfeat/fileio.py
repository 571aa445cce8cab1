"""File primitives every writer shares: atomic replacement, content hashes, plain and canonical JSON,
operating-system errors said in one line.

Readers see the old file or the new one, never a half-written one: every atomic
write in convfeat goes through :func:`atomic_path`, whose files get the
permissions an ordinary ``open(..., "w")`` gives (not ``mkstemp``'s 0600), and
whose temporaries a killed process left are found by :func:`stale_temporaries`.
:func:`describe_os_error` turns an ``OSError`` into one line naming the file and
what to do (the store's messages and the command line's error mapper use it).  :func:`to_plain` is the one
coercer of NumPy / HDF5 values into JSON-able Python, :func:`canonical_json` the
one canonical JSON text.  Torch-free.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path


# The random part of a temporary name: 8 characters (hex now; mkstemp's [a-z0-9_] before).
_TEMP_TAG = "[a-z0-9_]{8}"


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}."


@contextmanager
def temporary_beside(target: str | Path, suffix: str = ".tmp"):
    """Yield the path of a new, empty temporary file beside ``target``
    (``.<name>.<8 random characters><suffix>``), removed on exit unless it was
    renamed away.  Creates ``target``'s folder.

    The file gets the permissions an ordinary ``open(target, "w")`` would give:
    those of ``target`` when it exists, else ``0o666`` less the umask (the kernel
    applies the umask: no process-wide ``os.umask`` call).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = _temporary_prefix(target)
    for _ in range(100):
        tmp = target.parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(target.parent / f"{prefix}*{suffix}"))
    try:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode) & 0o777
        except OSError:
            mode = None
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    try:
        yield str(tmp)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


@contextmanager
def atomic_path(target: str | Path, suffix: str = ".tmp", fsync_dir: bool = False, fsync: bool = False):
    """Yield a temporary path beside ``target``; rename it over ``target`` on
    success, remove it on failure.  Creates ``target``'s folder.

    The temporary file (see :func:`temporary_beside`) is created with the
    permissions ``open(target, "w")`` would give: ``target``'s own when it
    exists, else ``0o666`` less the umask (``0o644`` under the usual ``022``).
    A temporary left by a killed process is found by :func:`stale_temporaries`.

    ``fsync``: flush the written file's bytes to disk before the rename (whoever
    wrote it, e.g. h5py), so the new name never points at unwritten data.
    ``fsync_dir``: also flush the folder entry after the rename, so the new name
    survives a power loss (the feature store wants this; caches do not need it).
    """
    target = Path(target)
    with temporary_beside(target, suffix) as tmp:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, target)
        if fsync_dir:
            fsync_folder(target.parent)


def stale_temporaries(target: str | Path, suffix: str = ".tmp") -> list[Path]:
    """The temporary files :func:`atomic_path` made for ``target`` that are still
    there (a process killed while writing one).  Only names of exactly that form
    (``.<name>.<8 characters><suffix>``) are listed, so a temporary of another
    file in the folder never is; whether one is still being written is for the
    caller to know (the feature store asks while holding the file's write lock).
    """
    target = Path(target)
    pattern = re.compile(re.escape(_temporary_prefix(target)) + _TEMP_TAG + re.escape(suffix) + r"\Z")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return sorted(target.parent / n for n in names if pattern.match(n))


def remove_stale_temporaries(target: str | Path, suffix: str = ".tmp") -> list[Path]:
    """Delete :func:`stale_temporaries` of ``target`` (those already gone or not
    removable are skipped); returns the paths removed.  Call it only while no
    other process can be writing ``target`` (holding its lock)."""
    removed = []
    for path in stale_temporaries(target, suffix):
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
        except OSError:
            pass
    return removed


# -- operating-system errors as one line ------------------------------------------
_HINTS = {
    errno.ENOSPC: "disk full: free some space or write to another disk, then run again",
    errno.EDQUOT: "disk quota exceeded: free some space or write to another disk, then run again",
    errno.EROFS: "the file system is read-only: write to another place",
    errno.EIO: "input/output error: the disk or network file system failed; check it and run again",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ELOOP: "too many symbolic links: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer workers",
    errno.ENFILE: "too many open files in the system: try again later",
}
if hasattr(errno, "ENOTEMPTY"):
    _HINTS[errno.ENOTEMPTY] = "the folder is not empty"
# errnos that are the environment's doing, never convfeat's: worth one line, not a traceback
EXPECTED_ERRNOS = frozenset(_HINTS) | {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EEXIST}


def os_errno(exc: BaseException) -> int | None:
    """The errno of an ``OSError``: its ``errno`` attribute, or the ``errno = N`` that
    HDF5 writes into its messages (h5py does not always set the attribute)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    m = re.search(r"errno = (\d+)", str(exc))
    return int(m.group(1)) if m else None


def one_line(text: str) -> str:
    """``text`` with its whitespace runs (HDF5 messages hold newlines) made single spaces."""
    return " ".join(str(text).split())


def describe_os_error(exc: BaseException, path: str | Path | None = None, action: str | None = None) -> str:
    """One line for an ``OSError``: which file, what went wrong, what to do.

    ``path``: the file the caller was working on (default: the error's own
    ``filename``); ``action``: ``"write"`` or ``"read"``, to say *not writable*
    or *not readable* for a permission error.  E.g. ``cannot write out/f.h5:
    No space left on device (disk full: free some space …)``.
    """
    code = os_errno(exc)
    filename = getattr(exc, "filename", None)
    if filename is None:    # HDF5 names the file inside its message
        m = re.search(r"\b(?:file)?name = '([^']*)'", str(exc))
        filename = m.group(1) if m else None
    where = str(path) if path is not None else (os.fsdecode(filename) if filename is not None else None)
    if isinstance(exc, OSError) and exc.strerror and not str(exc.strerror).startswith("Unable to"):
        what = one_line(exc.strerror)
    elif code:
        what = os.strerror(code)
    else:
        what = one_line(str(exc))
    if code in (errno.EACCES, errno.EPERM):
        hint = {"write": "not writable by you: check its permissions and its folder's, or choose another path",
                "read": "not readable by you: check its permissions"}.get(
            action, "check its permissions and its folder's, or choose another path")
    elif code == errno.ENOENT:
        hint = "check the path"
    elif code == errno.EEXIST:
        hint = (f"{os.fsdecode(filename)} exists and is not a folder: choose another path" if filename is not None
                else "it exists already: choose another path")
    else:
        hint = _HINTS.get(code)
    if filename is not None and path is not None and os.fsdecode(filename) != str(path) and code != errno.EEXIST:
        what = f"{what}: {os.fsdecode(filename)}"
    head = f"cannot {action} {where}" if action and where else (where or "")
    text = f"{head}: {what}" if head else what
    return f"{text} ({hint})" if hint else text


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
