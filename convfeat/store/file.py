"""Writing a convfeat feature file crash-safely: :class:`FeatureFile`, its journal and its lock.

The layout itself (and the in-memory tables) live in :mod:`convfeat.store.layout`;
this module re-exports them, so ``from convfeat.store.file import FeatureFile,
StoreError, read_state`` keeps working.

Crash safety.  The file is never modified in place: every checkpoint writes a
complete new file beside it and renames it over the old one (atomic on POSIX),
so whatever moment a run is killed at, ``OUT.h5`` is a valid file.  Batches
finished since the last checkpoint are kept in ``OUT.h5.journal/`` (each batch
one ``.npz``, itself written then renamed), and the next run folds them in, so
a kill loses at most the batch in flight.  ``OUT.h5.lock`` (``flock``) keeps a
second run from writing the same file; it is removed when its holder lets it go.
Temporaries a killed checkpoint left beside the file (``.OUT.h5.XXXXXXXX.tmp``)
are removed by the next writer, holding the lock, when it starts and when it ends.

What a writer may write over.  :func:`check_target` is the one rule, shared by
:class:`FeatureFile` (``convfeat extract -o``, ``import``) and
:func:`convfeat.store.merge`: a writer never replaces a file that is not a
convfeat feature file, nor one of a newer format version than this convfeat's
(rewriting it would downgrade it and drop what this version does not know).

Values that do not fit.  :meth:`FeatureFile.record` checks each item's values
against its columns (``source_sr`` int32, ``channels`` int16, …, feature widths)
before touching its row: an item whose values cannot be stored is recorded as
``failed`` with a reason naming the value and the column, and the run goes on.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import h5py
import numpy as np

from ..fileio import (atomic_path, canonical_json, describe_os_error, json_default, one_line,
                      remove_stale_temporaries)
from .frames import checked_frames
from .layout import (_NUMERIC, FORMAT, FORMAT_VERSION, ITEM_COLUMNS, FeatureSet, Items, StoreError, format_version,
                     hdf5_problem, header_problem, newer_version_message, read_state, storable_text, timestamp,
                     write_state)

__all__ = ["FORMAT", "FORMAT_VERSION", "ITEM_COLUMNS", "STATUSES", "FeatureFile", "FeatureSet", "Items",
           "StoreError", "WriteLock", "check_target", "journal_path", "pending_batches", "read_state", "timestamp",
           "write_state"]

STATUSES = ("ok", "failed", "pending")


# -- the file's companions: journal and lock -------------------------------------------
def journal_path(path: str | Path) -> Path:
    """``<path>.journal``: the folder of batches finished since the last checkpoint."""
    return Path(str(path) + ".journal")


def pending_batches(path: str | Path) -> int:
    """Journaled batches of ``path`` not yet folded into it (0 when there is no journal)."""
    journal = journal_path(path)
    return len(list(journal.glob("*.npz"))) if journal.is_dir() else 0


class WriteLock:
    """The write lock of a feature file: ``<path>.lock``, held with ``flock`` and
    holding the writer's pid.  Every writer of a feature file takes it
    (:class:`FeatureFile`, :func:`convfeat.store.merge`); a second writer is refused
    at once with a :class:`StoreError` that names the holder.

    ``advice`` ends that message (what the refused caller may do instead).
    Use as a context manager, or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, path: str | Path, advice: str = "write to another file"):
        self.path = Path(path)
        self.lock_path = Path(str(self.path) + ".lock")
        self.advice = advice
        self._fd: int | None = None

    def acquire(self) -> "WriteLock":
        """Take the lock (creating the file's folder), or raise :class:`StoreError`.

        The lock file is removed by :meth:`release`, so after taking the ``flock``
        the path must still name the very file locked: a run that opened the old
        lock file just before its holder removed it would otherwise hold a lock
        nobody else sees.  When it does not, the lock is taken again.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, self.path, "write")) from None
        for _ in range(1000):
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise StoreError(describe_os_error(exc, self.path, "write")) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                raise StoreError(f"{self.path} is being written by another convfeat run"
                                 f"{f' (pid {holder})' if holder else ''}; wait for it to finish "
                                 f"or {self.advice}") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                locked = os.fstat(fd)
                named = os.stat(self.lock_path)
                same = (locked.st_dev, locked.st_ino) == (named.st_dev, named.st_ino)
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if not same:          # its holder removed it meanwhile: lock the file the path names now
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise StoreError(f"could not lock {self.path}: its lock file {self.lock_path} keeps being replaced")

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and let the lock go (a no-op when it is not held).

        The file is unlinked while the ``flock`` is still held, so no other run can
        hold it then; one that opened it before is sent to the new file by the
        check in :meth:`acquire`.
        """
        if self._fd is None:
            return
        try:
            try:
                named = os.stat(self.lock_path)
                locked = os.fstat(self._fd)
                if (named.st_dev, named.st_ino) == (locked.st_dev, locked.st_ino):   # never another's
                    os.unlink(self.lock_path)
            except OSError:
                pass          # gone already, or the folder turned read-only: the flock still goes
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def check_target(path: str | Path) -> bool:
    """The one check of every writer of a feature file: may ``path`` be written?

    Returns False when nothing is there (a new file) and True when ``path`` is
    a convfeat feature file this version can read and rewrite.  Raises
    :class:`StoreError` (one line: what the file is, what to do) when ``path``
    is a folder, not readable, not a convfeat feature file (not HDF5, or HDF5
    without the layout: the message says what is missing), or a feature file of
    a newer format version than this convfeat's.  Such a file is never touched.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return False
    advice = "write to another path, or delete it first if it is yours to replace"
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a feature file; give a file path such as {path / 'features.h5'}")
    try:
        h = h5py.File(path, "r")
    except OSError as exc:
        if isinstance(exc, (PermissionError, IsADirectoryError, FileNotFoundError)):
            raise StoreError(describe_os_error(exc, path, "read")) from None
        raise StoreError(f"{path} exists and is not a convfeat feature file ({hdf5_problem(exc)}); "
                         f"refusing to overwrite it: {advice}") from None
    with h:
        problem = header_problem(h)
        if problem:
            raise StoreError(f"{path} exists and is an HDF5 file but not a convfeat feature file ({problem}); "
                             f"refusing to overwrite it: {advice}")
        version = format_version(h)
    if version > FORMAT_VERSION:
        raise StoreError(newer_version_message(path, version, "writes")
                         + ", or write to another file (refusing to rewrite it: it would be downgraded "
                           "and lose what this version does not know)")
    return True


def _int_range(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _fit(column: str, value):
    """``value`` converted for numeric item ``column``; raises ValueError (the message
    names the value and the column) when the column cannot hold it."""
    dtype = np.dtype(_NUMERIC[column])
    if dtype.kind == "f":
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{column} {value!r} does not fit the file's {column} column (a number)") from None
    lo, hi = _int_range(dtype)
    number = None
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        number = int(value)
    elif isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        number = int(value)
    if number is None or not lo <= number <= hi:
        raise ValueError(f"{column} {value!r} does not fit the file's {column} column "
                         f"({dtype.name}: whole numbers {lo} to {hi})")
    return number


class FeatureFile:
    """A feature file opened for writing: in-memory state + journal + lock.

    Use as a context manager; :meth:`checkpoint` writes the file atomically.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.journal_dir = journal_path(self.path)
        self._lock = WriteLock(self.path)
        self.lock_path = self._lock.lock_path
        self.attrs: dict = {}
        self.items = Items.empty()
        self.sets: dict[str, FeatureSet] = {}
        self._journal_seq = 0
        self._replayed: list[dict] = []
        self.last_checkpoint_seconds = 0.0
        self.dirty = False  # anything to write at the next checkpoint

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self) -> "FeatureFile":
        """Take the write lock, remove temporaries a killed run left, and load the
        file (refused by :func:`check_target` unless it is absent or ours)."""
        self._lock.acquire()
        try:
            remove_stale_temporaries(self.path)
            if check_target(self.path):
                self._load()
            else:
                self.dirty = True
            self._replay_journal()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        """Remove temporaries left beside the file and let the lock go (removing its file)."""
        try:
            remove_stale_temporaries(self.path)
        finally:
            self._lock.release()

    def _load(self) -> None:
        """Read the existing file into memory (refusing one that is not a readable feature file)."""
        try:
            state = read_state(self.path)
        except OSError as exc:
            raise StoreError(f"{self.path} exists but is not a readable HDF5 file ({one_line(exc)}); "
                             "refusing to overwrite it") from None
        self.attrs, self.items, self.sets = state

    # -- items and sets -------------------------------------------------------
    def add_items(self, rows: list[dict]) -> None:
        """Add items (``{"id", "path", "meta": {...}}``) not yet in the file, as pending;
        known ids and repeats are skipped."""
        known = self.items.index()
        fresh, seen = [], set()
        for r in rows:
            key = storable_text(r["id"])
            if key not in known and key not in seen:
                fresh.append(r)
                seen.add(key)
        self.items.append(fresh)
        self.dirty |= bool(fresh)
        for fs in self.sets.values():
            fs.resize(len(self.items))
        self._apply(self._replayed)

    def ensure_set(self, name: str, widths: dict, config: dict, provenance: dict) -> FeatureSet:
        """Get feature set ``name``, creating it; refuse one made with another config."""
        if name in self.sets:
            fs = self.sets[name]
            if canonical_json(fs.config) != canonical_json(config):
                diff = sorted(k for k in set(fs.config) | set(config) if fs.config.get(k) != config.get(k))
                raise StoreError(f"feature set {name!r} in {self.path} was made with another "
                                 f"configuration (differs in: {', '.join(diff)}); write to another "
                                 "file or give the set another name")
            return fs
        n = len(self.items)
        fs = FeatureSet(name, {k: np.zeros((n, w), np.float32) for k, w in widths.items()},
                        np.zeros(n, bool), config, provenance, frames={} if "frames" in config else None)
        self.sets[name] = fs
        self.dirty = True
        self._apply(self._replayed)
        return fs

    # -- writing --------------------------------------------------------------
    def record(self, updates: list[dict]) -> list[tuple[str, str]]:
        """Record finished items, then journal them (durable before returning).

        Each update: ``{"id", "status", "reason", "duration", "source_sr",
        "channels", "windows", "features": {set: {dataset: (width,) array}}}``.

        Every value is checked against its column before the item's row is
        touched: an item with a value the file cannot hold (a ``source_sr`` past
        int32, a feature vector of the wrong width, an unknown status, …) is
        recorded as ``failed``, without features, with a reason naming the value
        and the column; the other items are recorded as given.

        Returns
        -------
        list of (id, reason)
            The items recorded as failed for that reason (empty when all fit).
        """
        checked = [self._checked(u) for u in updates]
        self._apply(checked)
        self.dirty = True
        payload = {"updates": json.dumps([{k: v for k, v in u.items() if k not in ("features", "frames")
                                           and not k.startswith("_")}
                                          for u in checked],
                                         default=json_default),
                   "configs": canonical_json({name: fs.config for name, fs in self.sets.items()})}
        for j, u in enumerate(checked):
            for set_name, arrays in u.get("features", {}).items():
                for ds, vec in arrays.items():
                    payload[f"f{j}|{set_name}|{ds}"] = np.asarray(vec, np.float32)
            for set_name, arr in u.get("frames", {}).items():
                payload[f"r{j}|{set_name}"] = arr
        final = self.journal_dir / f"{time.time_ns():020d}-{os.getpid()}-{self._journal_seq + 1:08d}.npz"
        try:
            self.journal_dir.mkdir(exist_ok=True)
            with atomic_path(final, fsync=True) as tmp:   # a whole entry or none (replay skips *.tmp)
                with open(tmp, "wb") as f:
                    np.savez(f, **payload)
        except OSError as exc:
            raise StoreError(f"{describe_os_error(exc, self.journal_dir, 'write')}; the items finished since "
                             f"the last checkpoint were not saved") from None
        self._journal_seq += 1
        return [(u["id"], u["reason"]) for u in checked if u.get("_refused")]

    def _checked(self, u: dict) -> dict:
        """``u`` with its values converted for their columns, or, when one does not fit,
        ``u`` as a failure (no features) whose reason names the value and the column.

        Features of sets not declared yet pass unchecked (they are checked when
        :meth:`_apply` meets them again after :meth:`ensure_set`); those of a set
        journaled with another configuration are dropped.
        """
        out = {"id": storable_text(u["id"])}
        problems = []
        for key in ("status", "reason", "duration", "source_sr", "channels", "windows"):
            if key not in u:
                continue
            value = u[key]
            if key == "status":
                if value not in STATUSES:
                    problems.append(f"status {value!r} is not one of {', '.join(STATUSES)}")
                    value = "failed"
            elif key == "reason":
                value = storable_text("" if value is None else value)
            else:
                try:
                    value = _fit(key, value)
                except ValueError as exc:
                    problems.append(str(exc))
                    value = np.nan if key == "duration" else 0
            out[key] = value
        features = {}
        for set_name, arrays in (u.get("features") or {}).items():
            fs = self.sets.get(set_name)
            if fs is None:
                features[set_name] = arrays
                continue
            if "configs" in u and canonical_json(u["configs"].get(set_name, {})) != canonical_json(fs.config):
                continue  # journaled by a run with another configuration of this set
            converted = {}
            for ds, vec in arrays.items():
                if ds not in fs.datasets:
                    problems.append(f"feature set {set_name!r} has no dataset {ds!r} "
                                    f"(it holds {', '.join(fs.datasets)})")
                    continue
                width = fs.datasets[ds].shape[1]
                try:
                    raw = np.asarray(vec)
                    with np.errstate(over="ignore", invalid="ignore"):
                        arr = raw.astype(np.float32) if raw.dtype.kind in "biuf" else None
                except (TypeError, ValueError):
                    arr = None
                if arr is None:
                    problems.append(f"{set_name}/{ds} is not numeric ({type(vec).__name__}); "
                                    "the column holds float32")
                elif arr.size != width:
                    problems.append(f"{set_name}/{ds} has {arr.size} values; the column holds {width}")
                elif raw.dtype.kind == "f" and np.any(np.isfinite(raw) & ~np.isfinite(arr)):
                    problems.append(f"{set_name}/{ds} holds values too large for the float32 column")
                else:
                    converted[ds] = arr.reshape(width)
            features[set_name] = converted
        if features:
            out["features"] = features
        frames = {}
        for set_name, arr in (u.get("frames") or {}).items():
            fs = self.sets.get(set_name)
            if fs is not None and fs.frames is not None and set_name in features:
                arr, problem = checked_frames(arr, sum(a.shape[1] for a in fs.datasets.values()))
                if problem:
                    problems.append(f"{set_name}: {problem}")
                else:
                    frames[set_name] = arr
            elif fs is None:
                frames[set_name] = arr            # checked when the set is declared
        if frames:
            out["frames"] = frames
        if "configs" in u:
            out["configs"] = u["configs"]
        if problems:
            given = u.get("reason")
            reason = "cannot store the item: " + "; ".join(problems)
            if given:
                reason += f" (it was reported {u.get('status')!r}: {storable_text(given)})"
            out = {"id": out["id"], "status": "failed", "reason": reason,
                   **{k: out[k] for k in ("duration", "source_sr", "channels", "windows") if k in out},
                   "_refused": True}
            if "configs" in u:
                out["configs"] = u["configs"]
        return out

    def _apply(self, updates: list[dict]) -> None:
        """Write updates into the in-memory tables (items and sets not declared yet are skipped).

        Each update is checked first (:meth:`_checked`): a row is written whole or
        as a failure, never half.
        """
        index = self.items.index()
        cols = self.items.columns
        for u in updates:
            i = index.get(storable_text(u["id"]))
            if i is None:
                continue  # journal of an item no longer in this file
            u = self._checked(u)
            for key in ("status", "reason", "duration", "source_sr", "channels", "windows"):
                if key in u:
                    cols[key][i] = u[key]
            for set_name, arrays in u.get("features", {}).items():
                fs = self.sets.get(set_name)
                if fs is None:
                    continue
                for ds, vec in arrays.items():
                    fs.datasets[ds][i] = vec
                fs.done[i] = True
            for set_name, arr in u.get("frames", {}).items():
                fs = self.sets.get(set_name)
                if fs is not None and fs.frames is not None:
                    fs.frames[i] = arr

    def _replay_journal(self) -> None:
        """Load batches journaled since the last checkpoint (kept until the next one,
        because their items and sets may only be declared later in this run)."""
        self._replayed = []
        if not self.journal_dir.is_dir():
            return
        for entry in sorted(self.journal_dir.glob("*.npz")):
            try:
                with np.load(entry, allow_pickle=False) as z:
                    updates = json.loads(str(z["updates"]))
                    configs = json.loads(str(z["configs"]))
                    for key in z.files:
                        if key.startswith("f"):
                            j, set_name, ds = key[1:].split("|")
                            updates[int(j)].setdefault("features", {}).setdefault(set_name, {})[ds] = z[key]
                        elif key.startswith("r"):         # frame features (extract --frames)
                            j, set_name = key[1:].split("|")
                            updates[int(j)].setdefault("frames", {})[set_name] = z[key]
            except (OSError, ValueError, KeyError):
                continue  # not one of ours (entries are renamed into place whole)
            for u in updates:
                u["configs"] = configs
            self._replayed.extend(updates)
            self.dirty = True
        self._apply(self._replayed)

    def checkpoint(self, attrs: dict | None = None) -> None:
        """Write the whole state to a temporary file and rename it over the file."""
        start = time.perf_counter()
        if attrs:
            self.attrs.update(attrs)
        self.attrs["updated"] = timestamp()
        self.attrs.setdefault("created", self.attrs["updated"])
        # the folder is fsynced too: the rename must be durable before the journal it replaces is deleted
        try:
            with atomic_path(self.path, fsync=True, fsync_dir=True) as tmp:
                write_state(tmp, self.attrs, self.items, self.sets)
        except OSError as exc:
            kept = (f"; the items finished since are kept in {self.journal_dir.name} and the next run folds "
                    "them in" if self.journal_dir.is_dir() else "")
            was = "left as it was" if self.path.exists() else "not written"
            raise StoreError(f"{describe_os_error(exc, self.path, 'write')}; {self.path.name} was {was}{kept}") \
                from None
        if self.journal_dir.is_dir():
            for entry in self.journal_dir.iterdir():
                entry.unlink()
            self.journal_dir.rmdir()
        self._replayed = []
        self.dirty = False
        self.last_checkpoint_seconds = time.perf_counter() - start
