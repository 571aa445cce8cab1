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
second run from writing the same file.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np

from ..fileio import atomic_path, canonical_json, json_default
from .layout import (FORMAT, FORMAT_VERSION, ITEM_COLUMNS, FeatureSet, Items, StoreError, read_state, timestamp,
                     write_state)

__all__ = ["FORMAT", "FORMAT_VERSION", "ITEM_COLUMNS", "FeatureFile", "FeatureSet", "Items", "StoreError",
           "WriteLock", "journal_path", "pending_batches", "read_state", "timestamp", "write_state"]


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
        """Take the lock (creating the file's folder), or raise :class:`StoreError`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise StoreError(f"{self.path} is being written by another convfeat run"
                             f"{f' (pid {holder})' if holder else ''}; wait for it to finish "
                             f"or {self.advice}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go (a no-op when it is not held)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


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
        self._lock.acquire()
        try:
            if self.path.exists():
                self._load()
            else:
                self.dirty = True
            self._replay_journal()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def _load(self) -> None:
        """Read the existing file into memory (refusing one that is not a readable feature file)."""
        try:
            state = read_state(self.path)
        except OSError as exc:
            raise StoreError(f"{self.path} exists but is not a readable HDF5 file ({exc}); "
                             "refusing to overwrite it") from None
        self.attrs, self.items, self.sets = state

    # -- items and sets -------------------------------------------------------
    def add_items(self, rows: list[dict]) -> None:
        """Add items (``{"id", "path", "meta": {...}}``) not yet in the file, as pending;
        known ids and repeats are skipped."""
        known = self.items.index()
        fresh, seen = [], set()
        for r in rows:
            if r["id"] not in known and r["id"] not in seen:
                fresh.append(r)
                seen.add(r["id"])
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
                        np.zeros(n, bool), config, provenance)
        self.sets[name] = fs
        self.dirty = True
        self._apply(self._replayed)
        return fs

    # -- writing --------------------------------------------------------------
    def record(self, updates: list[dict]) -> None:
        """Record finished items, then journal them (durable before returning).

        Each update: ``{"id", "status", "reason", "duration", "source_sr",
        "channels", "windows", "features": {set: {dataset: (width,) array}}}``.
        """
        self._apply(updates)
        self.dirty = True
        self.journal_dir.mkdir(exist_ok=True)
        self._journal_seq += 1
        payload = {"updates": json.dumps([{k: v for k, v in u.items() if k != "features"} for u in updates],
                                         default=json_default),
                   "configs": canonical_json({name: fs.config for name, fs in self.sets.items()})}
        for j, u in enumerate(updates):
            for set_name, arrays in u.get("features", {}).items():
                for ds, vec in arrays.items():
                    payload[f"f{j}|{set_name}|{ds}"] = np.asarray(vec, np.float32)
        final = self.journal_dir / f"{time.time_ns():020d}-{os.getpid()}-{self._journal_seq:08d}.npz"
        with atomic_path(final, fsync=True) as tmp:   # a whole entry or none (replay skips *.tmp)
            with open(tmp, "wb") as f:
                np.savez(f, **payload)

    def _apply(self, updates: list[dict]) -> None:
        """Write updates into the in-memory tables (items and sets not declared yet are skipped)."""
        index = self.items.index()
        cols = self.items.columns
        for u in updates:
            i = index.get(u["id"])
            if i is None:
                continue  # journal of an item no longer in this file
            for key in ("status", "reason", "duration", "source_sr", "channels", "windows"):
                if key in u:
                    cols[key][i] = u[key]
            for set_name, arrays in u.get("features", {}).items():
                fs = self.sets.get(set_name)
                if fs is None:
                    continue
                if "configs" in u and canonical_json(u["configs"].get(set_name, {})) != canonical_json(fs.config):
                    continue  # journaled by a run with another configuration of this set
                for ds, vec in arrays.items():
                    fs.datasets[ds][i] = vec
                fs.done[i] = True

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
        with atomic_path(self.path, fsync=True, fsync_dir=True) as tmp:
            write_state(tmp, self.attrs, self.items, self.sets)
        if self.journal_dir.is_dir():
            for entry in self.journal_dir.iterdir():
                entry.unlink()
            self.journal_dir.rmdir()
        self._replayed = []
        self.dirty = False
        self.last_checkpoint_seconds = time.perf_counter() - start
