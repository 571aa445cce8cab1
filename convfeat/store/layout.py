"""The on-disk layout of a convfeat feature file and its in-memory copy.

The only module that writes the HDF5 layout (:func:`write_state`) and reads it
back whole (:func:`read_state`); :mod:`convfeat.store.access` is its read-only,
selective counterpart.  Layout (documented in the README, "File format")::

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
        frames/             (extract --frames) data (total_frames, 160) and
                            offsets (N + 1,): the ragged per-item frame features
                            (:mod:`convfeat.store.frames`)

Configs are stored as :func:`convfeat.fileio.canonical_json` text: its exact
spacing is part of the format (appending compares it).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..errors import ConvfeatError
from ..fileio import canonical_json, json_default, one_line, to_plain
from .frames import read_frames, write_frames

FORMAT = "convfeat-features"
FORMAT_VERSION = 1
ITEM_COLUMNS = ("id", "path", "duration", "source_sr", "channels", "windows", "status", "reason")
_STR = h5py.string_dtype()
_NUMERIC = {"duration": np.float64, "source_sr": np.int32, "channels": np.int16, "windows": np.int32}


class StoreError(ConvfeatError, RuntimeError):
    """A feature file cannot be used as asked (locked, other config, not ours, not writable)."""


# -- recognising a feature file ---------------------------------------------------
def header_problem(h) -> str | None:
    """What keeps the open HDF5 file ``h`` from being a convfeat feature file, said
    plainly (``"its 'format' attribute is missing"``, ``"it has no 'items'
    group"``, ``"its items lack the column(s) 'status'"``), or None when it is one.
    The format version is checked separately (:func:`format_version`)."""
    fmt = to_plain(h.attrs.get("format"))
    if fmt is None:
        return "its 'format' attribute is missing"
    if fmt != FORMAT:
        return f"its 'format' attribute is {fmt!r}, expected {FORMAT!r}"
    missing = [g for g in ("items", "features") if not isinstance(h.get(g), h5py.Group)]
    if missing:
        return f"it has no {' and no '.join(repr(g) for g in missing)} group"
    lacking = [c for c in ITEM_COLUMNS if not isinstance(h["items"].get(c), h5py.Dataset)]
    if lacking:
        return f"its items lack the column(s) {', '.join(map(repr, lacking))}"
    return None


def hdf5_problem(exc: OSError) -> str:
    """Why h5py could not open a file, in words: not HDF5 at all, or a damaged HDF5 file."""
    text = one_line(exc)
    if "signature not found" in text:
        return "not an HDF5 file"
    return f"not a readable HDF5 file: {text}; truncated or damaged?"


def format_version(h) -> int:
    """The ``format_version`` attribute of the open file ``h`` (0 when absent)."""
    raw = to_plain(h.attrs.get("format_version", 0))
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise StoreError(f"{h.filename}: its 'format_version' attribute is {raw!r}, not a number") from None


def newer_version_message(path, version: int, doing: str) -> str:
    """The one message for a file of a format newer than this convfeat's."""
    return (f"{path} uses feature-file format version {version}, newer than this convfeat "
            f"{doing} ({FORMAT_VERSION}); upgrade convfeat")


# -- text the file can hold ------------------------------------------------------
def storable_text(value) -> str:
    """``value`` as text HDF5 can store (UTF-8).  A name decoded from non-UTF-8 bytes
    (Python's surrogate escapes, e.g. a Latin-1 file name) becomes its bytes with
    the undecodable ones written ``\\xe9``; any other unencodable character its
    ``\\uXXXX`` escape.  The same input always gives the same text."""
    text = str(value)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class FeatureSet:
    """In-memory copy of one feature set: per-dataset arrays and a done mask."""

    name: str
    datasets: dict            # dataset name -> (N, width) float32
    done: np.ndarray          # (N,) bool
    config: dict              # what must match to append (model, weights, policies…)
    provenance: dict = field(default_factory=dict)
    calibration: dict | None = None  # {"indices": array, "layerK_mean": …, "layerK_var": …}
    frames: dict | None = None       # sets with config["frames"]: {row: (T, D) float32} (store/frames.py)

    def resize(self, n: int) -> None:
        """Grow to ``n`` items: new rows are zero and not done."""
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
        """A table with no items (and no metadata columns)."""
        cols = {c: np.zeros(0, _NUMERIC.get(c, object)) for c in ITEM_COLUMNS}
        return cls(cols, {})

    def __len__(self) -> int:
        """Number of items."""
        return len(self.columns["id"])

    def index(self) -> dict:
        """Item id -> row.  An id that was stored as :func:`storable_text` is found by
        its original text too (``index[original]``; ``.get`` takes the stored one)."""
        return _Index((k, i) for i, k in enumerate(self.columns["id"].tolist()))

    def append(self, rows: list[dict]) -> None:
        """Add new items (``{"id", "path", "meta": {...}}``) as pending."""
        if not rows:
            return
        n_old = len(self)
        new = {"id": [storable_text(r["id"]) for r in rows], "path": [storable_text(r["path"]) for r in rows],
               "duration": [np.nan] * len(rows), "source_sr": [0] * len(rows),
               "channels": [0] * len(rows), "windows": [0] * len(rows),
               "status": ["pending"] * len(rows), "reason": [""] * len(rows)}
        for c in ITEM_COLUMNS:
            self.columns[c] = np.concatenate([self.columns[c], np.array(new[c], dtype=self.columns[c].dtype)])
        keys = set(self.meta) | {k for r in rows for k in r.get("meta", {})}
        for k in keys:
            old = self.meta.get(k, np.array([""] * n_old, dtype=object))
            self.meta[k] = np.concatenate([old, np.array([storable_text(r.get("meta", {}).get(k, ""))
                                                          for r in rows], dtype=object)])


class _Index(dict):
    """Item id -> row, that also finds an id by the text it had before :func:`storable_text`."""

    def __missing__(self, key):
        stored = storable_text(key) if isinstance(key, str) else key
        if stored is not key and stored in self:
            return self[stored]
        raise KeyError(key)


# -- (de)serialisation ----------------------------------------------------------
def timestamp() -> str:
    """Local time as the store writes it (``created``, ``updated``, provenance ``time``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_state(path, attrs: dict, items: Items, sets: dict[str, FeatureSet]) -> None:
    """Write a whole feature file at ``path`` (callers write a temporary file and rename it).

    File attributes that are not ``str``/``int``/``float`` are stored as JSON text;
    each set's config as :func:`~convfeat.fileio.canonical_json`, its provenance as
    plain ``json.dumps`` text (both exactly as before: part of the format).
    """
    from .. import __version__

    with h5py.File(path, "w") as h:
        h.attrs["format"] = FORMAT
        h.attrs["format_version"] = FORMAT_VERSION
        h.attrs["convfeat_version"] = __version__
        for k, v in attrs.items():
            v = storable_text(v) if isinstance(v, str) else v
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
            if fs.frames is not None:
                write_frames(sg, fs.frames, n, fs.config["frames"])


def read_state(path) -> tuple[dict, Items, dict[str, FeatureSet]]:
    """Read a whole feature file: (file attributes less format/versions, items, sets).

    Raises :class:`StoreError` when ``path`` is HDF5 but not a convfeat feature file
    (saying what is missing) or one of a newer format version than this convfeat's
    (reading it whole to write it again would downgrade it).
    """
    with h5py.File(path, "r") as h:
        problem = header_problem(h)
        if problem:
            raise StoreError(f"{path} is an HDF5 file but not a convfeat feature file ({problem})")
        version = format_version(h)
        if version > FORMAT_VERSION:
            raise StoreError(newer_version_message(path, version, "writes"))
        attrs = {k: to_plain(v) for k, v in h.attrs.items()
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

        if "meta" in g:
            g["meta"].visititems(_visit)
        sets = {}
        for name, sg in h["features"].items():
            datasets = {k: sg[k][()].astype(np.float32) for k in sg if isinstance(sg[k], h5py.Dataset)
                        and k != "done"}
            cal = ({k: sg["calibration"][k][()] for k in sg["calibration"]} if "calibration" in sg else None)
            sets[name] = FeatureSet(name, datasets, sg["done"][()].astype(bool),
                                    json.loads(sg.attrs["config"]), json.loads(sg.attrs["provenance"]), cal,
                                    read_frames(sg["frames"]) if "frames" in sg else None)
    return attrs, Items(cols, meta), sets
