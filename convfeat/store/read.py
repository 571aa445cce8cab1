"""Reading convfeat feature files back: arrays, tables, summaries, exports.

Everything here reads files with plain :mod:`h5py`, read-only, and never
modifies them (merging shards is :mod:`convfeat.store.merge`).  This module holds
the array and table readers; :func:`info` / :func:`format_info` live in
:mod:`convfeat.store.summary` and :func:`export` in :mod:`convfeat.store.export`,
and are exported from here too.  The layout is described in
:mod:`convfeat.store`; in short, ``/items/*`` holds one row per item and
``/features/<set>/*`` one ``(N, width)`` float32 dataset per block plus a
``done`` flag per item.

A row is *usable* when its item's ``status`` is ``"ok"`` and the ``done`` flag
of every requested feature set is set; the readers return usable rows only, in
item order (the order of ``/items``).

Feature selection
-----------------
``features`` names one feature set (``"choi2017"``, ``"mfcc"``, …) or several
joined by ``+`` (``"mfcc+choi2017"``), concatenated in the order given; rows are
then the items usable in *all* of them.  ``layers`` (``"12345"``, ``"5"``,
``"135"``, see :func:`convfeat.layers.parse_layers`) picks the 32-wide blocks
of every convnet set (a set holding ``layer1`` … ``layer5``), always in
ascending block order; sets without layer datasets (``mfcc``, 120 wide) are
taken whole and ignore ``layers``.

Feature columns are named ``<set>/<dataset>/<j>`` (``choi2017/layer1/0`` …
``choi2017/layer5/31``), or ``<set>/<j>`` for a set whose only dataset has the
set's own name (``mfcc/0`` … ``mfcc/119``).

The file is always readable without convfeat, e.g.::

    pd.DataFrame(h5py.File("features.h5", "r")["features/choi2017/layer1"][()])
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .access import column_names, frame, meta_datasets, open_features, plan, select, strings
from .export import EXPORT_FORMATS, export
from .summary import format_info, info

__all__ = ["load", "load_frame", "info", "format_info", "export", "feature_columns", "items_table", "EXPORT_FORMATS"]


def load(path, features: str | Sequence[str] = "choi2017", layers: str | Iterable[int] = "12345",
         status: str | Iterable[str] | None = "ok") -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix of the usable items of a feature file.

    Parameters
    ----------
    path : str or Path
        A feature file written by ``convfeat extract`` (or :func:`merge`).
    features : str or sequence of str
        Feature set name, or several joined by ``+`` (``"mfcc+choi2017"``),
        concatenated in that order.
    layers : str or iterable of int
        Convnet blocks (``"12345"``, ``"5"``, ``"135"``), always taken in
        ascending order, 32 columns each.  Ignored by sets without layer
        datasets (``mfcc``).
    status : str, iterable of str or None
        Item status(es) to keep (default ``"ok"``); None keeps every item
        whose features are done.

    Returns
    -------
    ids : np.ndarray of str, shape (n,)
        Item ids, in item order (the order of ``/items``).
    X : np.ndarray of float32, shape (n, d)
        Features; ``d = 32 * len(layers)`` per convnet set plus each other
        set's width (120 for ``mfcc``).

    Raises
    ------
    InputError (a ValueError)
        Not a convfeat feature file, unknown feature set (the message lists
        the available ones), or a bad layer selection.
    """
    with open_features(path) as h:
        rows, X, _ = select(h, path, features, layers, status)
        ids = strings(h["items/id"])[rows]
    return np.asarray(ids.tolist(), dtype=str), X


def feature_columns(path, features: str | Sequence[str] = "choi2017",
                    layers: str | Iterable[int] = "12345") -> list[str]:
    """Names of the ``d`` columns :func:`load` returns (``choi2017/layer1/0`` …).

    Returns
    -------
    list of str, length d
    """
    with open_features(path) as h:
        return column_names(plan(h, path, features, layers))


def load_frame(path, features: str | Sequence[str] = "choi2017", layers: str | Iterable[int] = "12345",
               status: str | Iterable[str] | None = "ok"):
    """The usable items of a feature file as a :class:`pandas.DataFrame`.

    Parameters
    ----------
    path, features, layers, status
        As in :func:`load`.

    Returns
    -------
    pandas.DataFrame, shape (n, 7 + n_meta + d)
        Index ``id`` (item ids, item order).  Columns: the item columns
        ``path, duration, source_sr, channels, windows, status, reason``, then
        the metadata columns (their manifest names; ``meta/<name>`` where a
        name collides with an item column), then the ``d`` float32 feature
        columns (``choi2017/layer1/0`` …, ``mfcc/0`` …), equal to
        ``load(...)[1]``.
    """
    with open_features(path) as h:
        return frame(h, path, features, layers, status)


def items_table(path):
    """The items of a feature file as a DataFrame: ``id``, ``path`` and the metadata
    columns (all text), one row per item in file order, whatever their status."""
    import pandas as pd

    with open_features(path) as h:
        data = {"id": strings(h["items/id"]), "path": strings(h["items/path"])}
        for name, ds in meta_datasets(h).items():
            data.setdefault(name, strings(ds))
    return pd.DataFrame({k: list(v) for k, v in data.items()})
