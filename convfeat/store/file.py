"""The convfeat HDF5 feature file: layout, crash-safe writing, reading back.

Layout (documented in the README, "File format")::

    /                       attrs: format="convfeat-features", format_version,
                            convfeat_version, created, updated, command (last run)
    /items/                 one dataset per column, N rows, in item order
        id, path            str   unique id; path relative to its input root
        duration            f8    seconds of the source (NaN if unknown)
        source_sr           i4    sample rate of the source file (0 if unknown)
        channels            i2    channels of the source (0 if unknown)
        windows             i4    29-s windows that make up the feature
        status              str   "ok" | "failed" | "pending"
        reason              str   why it failed ("" otherwise)
        meta/<column>       str   metadata columns from a manifest
    /features/<set>/        one group per feature set; attrs: config (JSON) and
                            provenance (JSON: model, weights sha256, bn_mode,
                            frontend, length policy, versions, command, time)
        layer1 … layer5     f4 (N, 32)   convnet sets      (chunked, gzip)
        mfcc                f4 (N, 120)  the MFCC set
        done                u1 (N,)      1 where this set holds the item's feature
        calibration/        (bn_mode "calibrated") layerK_mean, layerK_var, and
                            ids: item ids of the calibration sample, drawn
                            from the whole collection so shards share it

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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..fileio import canonical_json, json_default
from ..errors import ConvfeatError

FORMAT = "convfeat-features"
FORMAT_VERSION = 1
ITEM_COLUMNS = ("id", "path", "duration", "source_sr", "channels", "windows", "status", "reason")
_STR = h5py.string_dtype()
_NUMERIC = {"duration": np.float64, "source_sr": np.int32, "channels": np.int16, "windows": np.int32}


class StoreError(ConvfeatError, RuntimeError):
    """A feature file cannot be used as asked (locked, other config, not ours)."""


@dataclass
class FeatureSet:
    """In-memory copy of one feature set: per-dataset arrays and a done mask."""

    name: str
    datasets: dict            # dataset name -> (N, width) float32
    done: np.ndarray          # (N,) bool
    config: dict              # what must match to append (model, weights, policies…)
    provenance: dict = field(default_factory=dict)
    calibration: dict | None = None  # {"indices": array, "layerK_mean": …, "layerK_var": …}

    def resize(self, n: int) -> None:
        old = self.done.shape[0]
        if n == old:
            return
        self.done = np.concatenate([self.done, np.zeros(n - old, bool)])
        for key, arr in self.datasets.items():
            self.datasets[key] = np.concatenate([arr, np.zeros((n - old, arr.shape[1]), np.float32)])


@dataclass
class Items:
    """The items table, column-wise."""

    columns: dict  # column -> numpy array (object for strings)
    meta: dict     # metadata column -> object array

    @classmethod
    def empty(cls) -> "Items":
        cols = {c: np.zeros(0, _NUMERIC.get(c, object)) for c in ITEM_COLUMNS}
        return cls(cols, {})

    def __len__(self) -> int:
        return len(self.columns["id"])

    def index(self) -> dict:
        return {k: i for i, k in enumerate(self.columns["id"].tolist())}

    def append(self, rows: list[dict]) -> None:
        """Add new items (``{"id", "path", "meta": {...}}``) as pending."""
        if not rows:
            return
        n_old = len(self)
        new = {"id": [r["id"] for r in rows], "path": [r["path"] for r in rows],
               "duration": [np.nan] * len(rows), "source_sr": [0] * len(rows),
               "channels": [0] * len(rows), "windows": [0] * len(rows),
               "status": ["pending"] * len(rows), "reason": [""] * len(rows)}
        for c in ITEM_COLUMNS:
            self.columns[c] = np.concatenate([self.columns[c], np.array(new[c], dtype=self.columns[c].dtype)])
        keys = set(self.meta) | {k for r in rows for k in r.get("meta", {})}
        for k in keys:
            old = self.meta.get(k, np.array([""] * n_old, dtype=object))
            self.meta[k] = np.concatenate([old, np.array([str(r.get("meta", {}).get(k, "")) for r in rows],
                                                         dtype=object)])


class FeatureFile:
    """A feature file opened for writing: in-memory state + journal + lock.

    Use as a context manager; :meth:`checkpoint` writes the file atomically.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.journal_dir = Path(str(self.path) + ".journal")
        self.lock_path = Path(str(self.path) + ".lock")
        self._lock_fd = None
        self.attrs: dict = {}
        self.items = Items.empty()
        self.sets: dict[str, FeatureSet] = {}
        self._journal_seq = 0
        self._replayed: list[dict] = []
        self.last_checkpoint_seconds = 0.0
        self.dirty = False  # anything to write at the next checkpoint

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self) -> "FeatureFile":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._lock_fd, 64, 0).decode(errors="replace").strip()
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StoreError(f"{self.path} is being written by another convfeat run"
                             f"{f' (pid {holder})' if holder else ''}; wait for it to finish "
                             "or write to another file") from None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, str(os.getpid()).encode(), 0)
        if self.path.exists():
            self._load()
        else:
            self.dirty = True
        self._replay_journal()
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _load(self) -> None:
        try:
            state = read_state(self.path)
        except OSError as exc:
            raise StoreError(f"{self.path} exists but is not a readable HDF5 file ({exc}); "
                             "refusing to overwrite it") from None
        self.attrs, self.items, self.sets = state

    # -- items and sets -------------------------------------------------------
    def add_items(self, rows: list[dict]) -> None:
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
        fd, tmp = tempfile.mkstemp(dir=self.journal_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def _apply(self, updates: list[dict]) -> None:
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
        self.attrs["updated"] = _now()
        self.attrs.setdefault("created", self.attrs["updated"])
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write_state(tmp, self.attrs, self.items, self.sets)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)  # make the rename durable before
            os.fsync(dfd)                                  # the journal it replaces is deleted
            os.close(dfd)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if self.journal_dir.is_dir():
            for entry in self.journal_dir.iterdir():
                entry.unlink()
            self.journal_dir.rmdir()
        self._replayed = []
        self.dirty = False
        self.last_checkpoint_seconds = time.perf_counter() - start


# -- plain (de)serialisation ----------------------------------------------------------
def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_state(path, attrs: dict, items: Items, sets: dict[str, FeatureSet]) -> None:
    from .. import __version__

    with h5py.File(path, "w") as h:
        h.attrs["format"] = FORMAT
        h.attrs["format_version"] = FORMAT_VERSION
        h.attrs["convfeat_version"] = __version__
        for k, v in attrs.items():
            h.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v, default=json_default)
        g = h.create_group("items")
        for c in ITEM_COLUMNS:
            arr = items.columns[c]
            g.create_dataset(c, data=arr.astype(object) if c not in _NUMERIC else arr,
                             dtype=_STR if c not in _NUMERIC else arr.dtype)
        m = g.create_group("meta")
        for k, arr in items.meta.items():
            m.create_dataset(k, data=arr.astype(object), dtype=_STR)
        fg = h.create_group("features")
        n = len(items)
        for name, fs in sets.items():
            sg = fg.create_group(name)
            sg.attrs["config"] = canonical_json(fs.config)
            sg.attrs["provenance"] = json.dumps(fs.provenance, default=json_default)
            for ds, arr in fs.datasets.items():
                sg.create_dataset(ds, data=arr, chunks=(max(1, min(n, 4096)), arr.shape[1]) if n else None,
                                  compression="gzip" if n else None, compression_opts=4 if n else None,
                                  maxshape=(None, arr.shape[1]))
            sg.create_dataset("done", data=fs.done.astype(np.uint8))
            if fs.calibration:
                cg = sg.create_group("calibration")
                for k, v in fs.calibration.items():
                    cg.create_dataset(k, data=np.asarray(v))


def read_state(path) -> tuple[dict, Items, dict[str, FeatureSet]]:
    with h5py.File(path, "r") as h:
        if h.attrs.get("format") != FORMAT:
            raise StoreError(f"{path} is not a convfeat feature file")
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in h.attrs.items()
                 if k not in ("format", "format_version", "convfeat_version")}
        g = h["items"]
        cols = {}
        for c in ITEM_COLUMNS:
            arr = g[c][()]
            cols[c] = (np.array([x.decode() if isinstance(x, bytes) else x for x in arr], dtype=object)
                       if c not in _NUMERIC else arr.astype(_NUMERIC[c]))
        meta = {}

        def _visit(name, obj):  # names may contain "/" (nested groups in HDF5)
            if isinstance(obj, h5py.Dataset):
                meta[name] = np.array([x.decode() if isinstance(x, bytes) else x for x in obj[()]], dtype=object)

        g["meta"].visititems(_visit)
        sets = {}
        for name, sg in h["features"].items():
            datasets = {k: sg[k][()].astype(np.float32) for k in sg if isinstance(sg[k], h5py.Dataset)
                        and k != "done"}
            cal = ({k: sg["calibration"][k][()] for k in sg["calibration"]} if "calibration" in sg else None)
            sets[name] = FeatureSet(name, datasets, sg["done"][()].astype(bool),
                                    json.loads(sg.attrs["config"]), json.loads(sg.attrs["provenance"]), cal)
    return attrs, Items(cols, meta), sets
