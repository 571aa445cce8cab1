"""Read-only access to a feature file's layout: opening and checking, string and
metadata columns, choosing feature blocks and usable rows.

The shared ground of :mod:`~convfeat.store.read`, :mod:`~convfeat.store.summary`
and :mod:`~convfeat.store.export`; the names here are internal to the store.
Files are opened read-only with plain :mod:`h5py` and never modified.  The
feature-selection rules are described in :mod:`convfeat.store.read`.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from ..constants import LAYER_NAMES
from ..errors import ConvfeatError, InputError
from ..fileio import describe_os_error
from ..layers import parse_layers
from .layout import (FORMAT_VERSION, ITEM_COLUMNS, StoreError, format_version, hdf5_problem, header_problem,
                     newer_version_message)

NUMERIC_ITEM_COLUMNS = ("duration", "source_sr", "channels", "windows")


class FeatureFileNotFound(ConvfeatError, FileNotFoundError):
    """No feature file at the given path (a ``FileNotFoundError`` too)."""


@contextmanager
def open_features(path):
    """Open ``path`` read-only and check that it is a convfeat feature file.

    Raises :class:`FeatureFileNotFound` (a ``FileNotFoundError``) when it does not
    exist, :class:`InputError` when it is not a (readable) convfeat feature file
    (saying what is missing) or one of a newer format version.
    """
    path = Path(path)
    if not path.exists():
        raise FeatureFileNotFound(f"no such feature file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a feature file")
    try:
        h = h5py.File(path, "r")
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise InputError(describe_os_error(exc, path, "read")) from None
        raise InputError(f"{path} is not a convfeat feature file: {hdf5_problem(exc)}") from None
    with h:
        problem = header_problem(h)
        if problem:
            raise InputError(f"{path} is an HDF5 file but not a convfeat feature file ({problem}); "
                             "convfeat reads the files written by `convfeat extract`")
        try:
            version = format_version(h)
        except StoreError as exc:
            raise InputError(str(exc)) from None
        if version > FORMAT_VERSION:
            raise InputError(newer_version_message(path, version, "reads"))
        yield h


def strings(ds) -> np.ndarray:
    """A string dataset as an object array of ``str``."""
    return np.asarray(ds.asstr()[()], dtype=object)


def meta_datasets(h) -> dict:
    """Metadata column name -> dataset (names may contain ``/``: nested groups)."""
    out = {}
    if "meta" not in h["items"]:
        return out

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj

    h["items/meta"].visititems(visit)
    return out


def feature_datasets(sg) -> list[str]:
    """The feature datasets of set group ``sg`` (everything but ``done`` and subgroups)."""
    return [k for k in sg if isinstance(sg[k], h5py.Dataset) and k != "done"]


def set_names(features) -> list[str]:
    """``"mfcc+choi2017"`` or ``["mfcc", "choi2017"]`` -> ``["mfcc", "choi2017"]`` (checked)."""
    if isinstance(features, str):
        names = [part.strip() for part in features.split("+")]
    else:
        names = [str(part).strip() for part in features]
    if not names or any(not n for n in names):
        raise InputError(f"features must name feature sets such as 'choi2017' or 'mfcc+choi2017', "
                         f"got {features!r}")
    if len(set(names)) != len(names):
        raise InputError(f"features names a set twice: {features!r}")
    return names


def plan(h, path, features, layers) -> list[tuple[str, str, int, str]]:
    """(set, dataset, width, column prefix) for each block, in output order."""
    names = set_names(features)
    available = sorted(h["features"])
    out = []
    layer_names = None
    for name in names:
        if name not in h["features"]:
            raise InputError(f"{path} has no feature set {name!r}; available: "
                             f"{', '.join(available) if available else '(none)'}")
        sg = h["features"][name]
        present = feature_datasets(sg)
        if any(d in LAYER_NAMES for d in present):  # a convnet set: choose blocks
            if layer_names is None:
                layer_names = parse_layers(layers)
            missing = [d for d in layer_names if d not in present]
            if missing:
                raise InputError(f"feature set {name!r} in {path} has no {', '.join(missing)} "
                                 f"(it holds {', '.join(sorted(present))})")
            chosen = layer_names
        else:
            chosen = sorted(present)
        single = chosen == [name]
        for d in chosen:
            out.append((name, d, int(sg[d].shape[1]), name if single else f"{name}/{d}"))
    return out


def column_names(blocks) -> list[str]:
    """Feature column names (``<prefix>/<j>``) of a :func:`plan`."""
    return [f"{prefix}/{j}" for _, _, width, prefix in blocks for j in range(width)]


def status_mask(status_col: np.ndarray, status) -> np.ndarray:
    """Rows whose status is ``status`` (a name or several); all rows for None."""
    if status is None:
        return np.ones(len(status_col), bool)
    wanted = {status} if isinstance(status, str) else set(status)
    return np.isin(status_col.astype(str), list(wanted)) if len(status_col) else np.zeros(0, bool)


def select(h, path, features, layers, status):
    """The usable rows: (row indices, X (len(rows), d) float32, column names)."""
    blocks = plan(h, path, features, layers)
    mask = status_mask(strings(h["items/status"]), status)
    for name in dict.fromkeys(b[0] for b in blocks):
        mask &= h["features"][name]["done"][()].astype(bool)
    rows = np.flatnonzero(mask)
    X = np.empty((len(rows), sum(b[2] for b in blocks)), np.float32)
    col = 0
    everything = len(rows) == mask.shape[0]
    for name, ds, width, _ in blocks:
        data = h["features"][name][ds][()]
        X[:, col:col + width] = data if everything else data[rows]
        col += width
    return rows, X, column_names(blocks)


def frame(h, path, features, layers, status):
    """The usable rows as a DataFrame: index ``id``, the item columns but ``id``, the
    metadata columns (``meta/<name>`` where a name collides), then the features."""
    import pandas as pd

    rows, X, columns = select(h, path, features, layers, status)
    items = h["items"]
    ids = strings(items["id"])[rows]
    data = {}
    for c in ITEM_COLUMNS:
        if c == "id":
            continue
        data[c] = items[c][()][rows] if c in NUMERIC_ITEM_COLUMNS else strings(items[c])[rows]
    for name, ds in meta_datasets(h).items():
        data[f"meta/{name}" if name in data or name == "id" else name] = strings(ds)[rows]
    index = pd.Index(ids.tolist(), name="id", dtype=object)
    table = pd.DataFrame(data, index=index)
    feats = pd.DataFrame(X, index=index, columns=columns, copy=False)
    return pd.concat([table, feats], axis=1)
