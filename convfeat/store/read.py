"""Reading convfeat feature files back: arrays, tables, summaries, exports.

Everything here reads files with plain :mod:`h5py`, read-only, and never
modifies them (merging shards is :mod:`convfeat.store.merge`).  The layout is described in
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

import json
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from ..constants import LAYER_NAMES
from ..fileio import atomic_path
from ..layers import parse_layers
from .file import FORMAT, FORMAT_VERSION, ITEM_COLUMNS
from ..errors import InputError

__all__ = ["load", "load_frame", "info", "format_info", "export", "feature_columns", "items_table", "EXPORT_FORMATS"]

EXPORT_FORMATS = ("npy", "csv", "parquet")
_NUMERIC_ITEM_COLUMNS = ("duration", "source_sr", "channels", "windows")


# -- opening and selecting -------------------------------------------------------------
@contextmanager
def _open(path):
    """Open ``path`` read-only and check that it is a convfeat feature file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such feature file: {path}")
    try:
        h = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path} is not a convfeat feature file: not a readable HDF5 file ({exc})") from None
    with h:
        fmt = h.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode(errors="replace")
        if fmt != FORMAT or "items" not in h or "features" not in h:
            raise InputError(f"{path} is an HDF5 file but not a convfeat feature file (its 'format' "
                             f"attribute is {fmt!r}, expected {FORMAT!r}); convfeat reads the files "
                             "written by `convfeat extract`")
        version = int(h.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise InputError(f"{path} uses feature-file format version {version}, newer than this "
                             f"convfeat reads ({FORMAT_VERSION}); upgrade convfeat")
        yield h


def _strings(ds) -> np.ndarray:
    """A string dataset as an object array of ``str``."""
    return np.asarray(ds.asstr()[()], dtype=object)


def _meta_datasets(h) -> dict:
    """Metadata column name -> dataset (names may contain ``/``: nested groups)."""
    out = {}
    if "meta" not in h["items"]:
        return out
    meta = h["items/meta"]

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj

    meta.visititems(visit)
    return out


def _set_names(features) -> list[str]:
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


def _feature_datasets(sg) -> list[str]:
    return [k for k in sg if isinstance(sg[k], h5py.Dataset) and k != "done"]


def _plan(h, path, features, layers) -> list[tuple[str, str, int, str]]:
    """(set, dataset, width, column prefix) for each block, in output order."""
    names = _set_names(features)
    available = sorted(h["features"])
    plan = []
    layer_names = None
    for name in names:
        if name not in h["features"]:
            raise InputError(f"{path} has no feature set {name!r}; available: "
                             f"{', '.join(available) if available else '(none)'}")
        sg = h["features"][name]
        present = _feature_datasets(sg)
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
            plan.append((name, d, int(sg[d].shape[1]), name if single else f"{name}/{d}"))
    return plan


def _status_mask(status_col: np.ndarray, status) -> np.ndarray:
    if status is None:
        return np.ones(len(status_col), bool)
    wanted = {status} if isinstance(status, str) else set(status)
    return np.isin(status_col.astype(str), list(wanted)) if len(status_col) else np.zeros(0, bool)


def _select(h, path, features, layers, status):
    """rows (int indices), X (len(rows), d) float32, column names."""
    plan = _plan(h, path, features, layers)
    mask = _status_mask(_strings(h["items/status"]), status)
    for name in dict.fromkeys(p[0] for p in plan):
        mask &= h["features"][name]["done"][()].astype(bool)
    rows = np.flatnonzero(mask)
    d = sum(p[2] for p in plan)
    X = np.empty((len(rows), d), np.float32)
    columns = []
    col = 0
    everything = len(rows) == mask.shape[0]
    for name, ds, width, prefix in plan:
        data = h["features"][name][ds][()]
        X[:, col:col + width] = data if everything else data[rows]
        col += width
        columns += [f"{prefix}/{j}" for j in range(width)]
    return rows, X, columns


# -- public readers ------------------------------------------------------------------
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
    ValueError
        Not a convfeat feature file, unknown feature set (the message lists
        the available ones), or a bad layer selection.
    """
    with _open(path) as h:
        rows, X, _ = _select(h, path, features, layers, status)
        ids = _strings(h["items/id"])[rows]
    return np.asarray(ids.tolist(), dtype=str), X


def feature_columns(path, features: str | Sequence[str] = "choi2017",
                    layers: str | Iterable[int] = "12345") -> list[str]:
    """Names of the ``d`` columns :func:`load` returns (``choi2017/layer1/0`` …).

    Returns
    -------
    list of str, length d
    """
    with _open(path) as h:
        return [f"{prefix}/{j}" for _, _, width, prefix in _plan(h, path, features, layers)
                for j in range(width)]


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
    import pandas as pd

    with _open(path) as h:
        rows, X, columns = _select(h, path, features, layers, status)
        items = h["items"]
        ids = _strings(items["id"])[rows]
        data = {}
        for c in ITEM_COLUMNS:
            if c == "id":
                continue
            data[c] = items[c][()][rows] if c in _NUMERIC_ITEM_COLUMNS else _strings(items[c])[rows]
        for name, ds in _meta_datasets(h).items():
            data[f"meta/{name}" if name in data or name == "id" else name] = _strings(ds)[rows]
    index = pd.Index(ids.tolist(), name="id", dtype=object)
    table = pd.DataFrame(data, index=index)
    feats = pd.DataFrame(X, index=index, columns=columns, copy=False)
    return pd.concat([table, feats], axis=1)


# -- info -------------------------------------------------------------------------------
def _attr_value(v):
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _journal_entries(path) -> int:
    journal = Path(str(path) + ".journal")
    return len(list(journal.glob("*.npz"))) if journal.is_dir() else 0


def info(path) -> dict:
    """Summary of a feature file (nothing is loaded but the items table).

    Returns
    -------
    dict
        ``path`` (str), ``size_bytes``, ``attrs`` (file attributes: format,
        format_version, convfeat_version, created, updated, command, … with
        JSON values decoded), ``n_items``, ``status`` (status -> count; "ok",
        "failed" and "pending" always present), ``failures`` (list of
        ``{"id", "reason"}`` in item order), ``meta_columns`` (list of str),
        ``sets`` (name -> ``{"n_done", "n_usable"`` (done and status ok),
        ``"datasets"`` (dataset -> shape tuple), ``"config"``,
        ``"provenance"`` (dicts), ``"calibration"`` (dataset -> shape, or
        None)``}``) and ``pending_journal`` (number of journaled batches in
        ``<path>.journal/`` that the next run on the file will fold in; 0
        when there is none).
    """
    path = Path(path)
    with _open(path) as h:
        attrs = {k: _attr_value(v) for k, v in h.attrs.items()}
        status = _strings(h["items/status"])
        ids = _strings(h["items/id"])
        reasons = _strings(h["items/reason"])
        counts = {"ok": 0, "failed": 0, "pending": 0}
        values, n = np.unique(status.astype(str), return_counts=True) if len(status) else ([], [])
        counts.update({str(v): int(c) for v, c in zip(values, n)})
        failed = np.flatnonzero(status == "failed")
        failures = [{"id": str(ids[i]), "reason": str(reasons[i])} for i in failed]
        ok = status == "ok"
        sets = {}
        for name, sg in h["features"].items():
            done = sg["done"][()].astype(bool)
            sets[name] = {
                "n_done": int(done.sum()),
                "n_usable": int((done & ok).sum()),
                "datasets": {d: tuple(int(s) for s in sg[d].shape) for d in _feature_datasets(sg)},
                "config": json.loads(sg.attrs.get("config", "{}")),
                "provenance": json.loads(sg.attrs.get("provenance", "{}")),
                "calibration": ({k: tuple(int(s) for s in v.shape) for k, v in sg["calibration"].items()
                                 if isinstance(v, h5py.Dataset)} if "calibration" in sg else None),
            }
        meta_columns = list(_meta_datasets(h))
    return {"path": str(path), "size_bytes": path.stat().st_size, "attrs": attrs, "n_items": int(len(ids)),
            "status": counts, "failures": failures, "meta_columns": meta_columns, "sets": sets,
            "pending_journal": _journal_entries(path)}


def _short(value, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _shapes(datasets: dict) -> str:
    """``{"layer1": (5, 32), …, "layer5": (5, 32)}`` -> ``"layer1…layer5 5x32 each"``."""
    groups: list[list] = []
    for name, shape in datasets.items():
        if groups and groups[-1][1] == tuple(shape):
            groups[-1][0].append(name)
        else:
            groups.append([[name], tuple(shape)])
    parts = []
    for names, shape in groups:
        dims = "x".join(map(str, shape))
        parts.append(f"{names[0]} {dims}" if len(names) == 1 else
                     f"{', '.join(names)} {dims} each" if len(names) == 2 else f"{names[0]}…{names[-1]} {dims} each")
    return ", ".join(parts)


def format_info(d: dict, max_failures: int = 20) -> str:
    """Human-readable multi-line summary of :func:`info`'s dict (``convfeat info``).

    Parameters
    ----------
    d : dict
        The output of :func:`info`.
    max_failures : int
        Failures listed before the rest are counted only.

    Returns
    -------
    str
        Lines without a trailing newline.
    """
    attrs = d.get("attrs", {})
    size = d.get("size_bytes", 0)
    human = next((f"{size / 1024 ** k:.1f} {u}" for k, u in ((3, "GiB"), (2, "MiB"), (1, "KiB"))
                  if size >= 1024 ** k), f"{size} B")
    lines = [f"{d['path']}  ({human}; format v{attrs.get('format_version', '?')}, "
             f"written by convfeat {attrs.get('convfeat_version', '?')})"]
    when = ", ".join(f"{k} {attrs[k]}" for k in ("created", "updated") if attrs.get(k))
    if when:
        lines.append(f"  {when}")
    if attrs.get("command"):
        lines.append(f"  last command: {attrs['command']}")
    if attrs.get("shard"):
        lines.append(f"  shard {attrs['shard']}")
    if "merged_from" in attrs:
        merged = attrs["merged_from"]
        lines.append(f"  merged from: {', '.join(merged) if isinstance(merged, list) else merged}")
    counts = d["status"]
    lines.append(f"  items: {d['n_items']} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")
    if d.get("meta_columns"):
        lines.append(f"  metadata columns: {', '.join(d['meta_columns'])}")
    if d["sets"]:
        lines.append("  feature sets:")
        width = max(len(n) for n in d["sets"])
        for name, s in d["sets"].items():
            shapes = _shapes(s["datasets"])
            lines.append(f"    {name:<{width}}  {s['n_usable']} usable, {s['n_done']}/{d['n_items']} done;"
                         f"  {shapes}")
            pad = " " * (width + 6)
            if s["config"]:
                text = "config: " + ", ".join(f"{k}={_short(v, 40)}" for k, v in sorted(s["config"].items()))
                lines += textwrap.wrap(text, 100, initial_indent=pad, subsequent_indent=pad + "  ",
                                       break_long_words=False, break_on_hyphens=False)
            if s.get("calibration"):
                lines.append(f"{pad}calibration: {_shapes(s['calibration'])}")
    else:
        lines.append("  feature sets: (none)")
    failures = d["failures"]
    if failures:
        lines.append(f"  failures ({len(failures)}):")
        for f in failures[:max_failures]:
            lines.append(f"    {f['id']}: {f['reason']}")
        if len(failures) > max_failures:
            lines.append(f"    … and {len(failures) - max_failures} more")
    if d.get("pending_journal"):
        lines.append(f"  journal: {d['pending_journal']} batch(es) finished since the last checkpoint, "
                     "not in the file yet (the next run on this file folds them in)")
    return "\n".join(lines)


# -- export ----------------------------------------------------------------------------
def export(path, out, format: str = "npy", features: str | Sequence[str] = "choi2017",
           layers: str | Iterable[int] = "12345", status: str | Iterable[str] | None = "ok") -> list[Path]:
    """Write the usable rows of a feature file in a format other tools read.

    Parameters
    ----------
    path : str or Path
        The feature file.
    out : str or Path
        ``format="npy"``: a directory (created if needed) that receives
        ``X.npy`` (float32, shape (n, d), as :func:`load`), ``ids.txt`` (the n
        item ids, one per line, UTF-8, same order) and ``columns.txt`` (the d
        feature column names, one per line).  ``"csv"`` / ``"parquet"``: the
        table file itself: :func:`load_frame`'s table with the id as its first
        column (``id, path, duration, …, <metadata>, choi2017/layer1/0, …``),
        no index; CSV is UTF-8 with a header row and floats written to
        round-trip exactly to float32.  Parquet needs ``pyarrow``.
    format : {"npy", "csv", "parquet"}
    features, layers, status
        As in :func:`load`.

    Returns
    -------
    list of Path
        The files written.  Each is written to a temporary file beside it and
        renamed into place, so none is ever left half-written.
    """
    fmt = str(format).lower()
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if fmt == "npy":
        with _open(path) as h:
            rows, X, columns = _select(h, path, features, layers, status)
            ids = _strings(h["items/id"])[rows].tolist()
        bad = [i for i in ids if "\n" in i or "\r" in i]
        if bad:
            raise InputError(f"item id {bad[0]!r} contains a line break; export to csv or parquet instead")
        if out.exists() and not out.is_dir():
            raise InputError(f"npy export writes a directory; {out} is a file")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        with atomic_path(out / "X.npy", ".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, X)
        written.append(out / "X.npy")
        for name, lines in (("ids.txt", ids), ("columns.txt", columns)):
            with atomic_path(out / name, ".txt") as tmp:
                with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                    f.write("".join(f"{line}\n" for line in lines))
            written.append(out / name)
        return written
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError("parquet export needs pyarrow: pip install pyarrow") from None
    table = load_frame(path, features, layers, status).reset_index()
    with atomic_path(out, f".{fmt}") as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False, encoding="utf-8")
        else:
            table.to_parquet(tmp, index=False)
    return [out]


def items_table(path):
    """The items of a feature file as a DataFrame: ``id``, ``path`` and the metadata
    columns (all text), one row per item in file order, whatever their status."""
    import pandas as pd

    with _open(path) as h:
        data = {"id": _strings(h["items/id"]), "path": _strings(h["items/path"])}
        for name, ds in _meta_datasets(h).items():
            data.setdefault(name, _strings(ds))
    return pd.DataFrame({k: list(v) for k, v in data.items()})
