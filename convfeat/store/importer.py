"""Importing foreign embeddings into a convfeat feature file (``convfeat import``).

Features computed elsewhere — the study's own stored features, another
extractor's output — become a feature set of a convfeat HDF5 file, so that
``convfeat evaluate`` scores them with exactly the same protocol as extracted
ones.

Sources
-------
* ``.npy``: one ``(N, d)`` array;
* ``.npz``: several arrays (each one dataset, e.g. ``layer1`` … ``layer5``),
  optionally with the ids in an ``ids`` / ``id`` array;
* ``.csv`` / ``.tsv``: an id column plus numeric columns;
* several ``.npy`` files at once: one array per layer (``layer1``, ``layer2``,
  … in the order given), e.g. the study's ``<task>_layer_{0..4}.npy``.

Ids come from the source (npz ``ids``, the CSV's id column) or from
``ids=`` — a text file with one id per line, or a CSV and its ``id_column``
(the study's ``<task>.csv`` with ``filepath``).  Rows are matched to ids by
position.  The set's config records that it was imported, from which files,
with their sha256, so a later import of other data into the same set is
refused by :meth:`convfeat.store.FeatureFile.ensure_set`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import LAYER_NAMES
from ..fileio import sha256_of
from ..errors import InputError

__all__ = ["ImportError_", "read_source", "import_embeddings", "import_study", "study_tasks", "STUDY_TASKS"]

STUDY_TASKS = {  # task -> (file stem, label columns, task kind) of the three tasks in ../shared/paper
    "gtzan_genre": ("gtzan_genre", ["label"], "classification"),
    "gtzan_speechmusic": ("gtzan_speechmusic", ["label"], "classification"),
    "emoMusic_a": ("emoMusic", ["label_arousal"], "regression"),
    "emoMusic_v": ("emoMusic", ["label_valence"], "regression"),
}


class ImportError_(InputError):
    """A source cannot be imported as asked (one-line message)."""


def _read_ids(ids, id_column: str | None, path_column: str | None = None):
    """(ids, paths) from a list, a text file (one per line) or a CSV column."""
    if ids is None:
        return None, None
    if not isinstance(ids, (str, Path)):
        values = [str(v) for v in ids]
        return values, None
    path = Path(ids)
    if not path.exists():
        raise ImportError_(f"no such ids file: {path}")
    if path.suffix.lower() in (".csv", ".tsv"):
        import pandas as pd

        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        col = id_column or next((c for c in ("id", "path", "filepath", "filename") if c in df.columns), None)
        if col is None or col not in df.columns:
            raise ImportError_(f"{path} has no id column {id_column or 'id'!r}; columns: {', '.join(df.columns)} "
                               "(choose one with --id-column)")
        paths = df[path_column].tolist() if path_column and path_column in df.columns else None
        return df[col].tolist(), paths
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line], None


def read_source(sources: Sequence[str | Path], *, id_column: str | None = None, layers: bool | None = None,
                split_layers: int | None = None) -> tuple[dict, list | None]:
    """Read arrays from the source file(s).

    Returns
    -------
    arrays : dict
        dataset name -> ``(N, d)`` float array (``layer1`` … when the source
        has one array per layer; otherwise one dataset, named ``"features"``
        until :func:`import_embeddings` renames it after the set).
    ids : list of str or None
        Ids found in the source (npz ``ids``/``id`` array, CSV id column).
    """
    sources = [Path(s) for s in sources]
    for s in sources:
        if not s.exists():
            raise ImportError_(f"no such file: {s}")
    ids = None
    arrays: dict = {}
    if len(sources) > 1:
        if any(s.suffix.lower() != ".npy" for s in sources):
            raise ImportError_("several sources must all be .npy files, one array per layer")
        if len(sources) > len(LAYER_NAMES):
            raise ImportError_(f"at most {len(LAYER_NAMES)} per-layer arrays (layer1 … layer5), got {len(sources)}")
        for name, s in zip(LAYER_NAMES, sources):
            arrays[name] = np.load(s, allow_pickle=False)
    else:
        src = sources[0]
        ext = src.suffix.lower()
        if ext == ".npy":
            arrays["features"] = np.load(src, allow_pickle=False)
        elif ext == ".npz":
            with np.load(src, allow_pickle=False) as z:
                for key in z.files:
                    if key.lower() in ("ids", "id", "names", "keys"):
                        ids = [str(v) for v in z[key].tolist()]
                    else:
                        arrays[key] = z[key]
            if not arrays:
                raise ImportError_(f"{src} holds no feature arrays")
            if len(arrays) > 1 and layers is not False:
                # one array per layer: keep names that are already layerK, else number them in file order
                if all(k in LAYER_NAMES for k in arrays):
                    arrays = {k: arrays[k] for k in LAYER_NAMES if k in arrays}
                elif len(arrays) <= len(LAYER_NAMES):
                    arrays = {LAYER_NAMES[i]: a for i, a in enumerate(arrays.values())}
        elif ext in (".csv", ".tsv"):
            import pandas as pd

            df = pd.read_csv(src, sep="\t" if ext == ".tsv" else ",")
            df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed: ")])
            col = id_column or next((c for c in ("id", "path", "filepath", "filename") if c in df.columns), None)
            if col is None or col not in df.columns:
                raise ImportError_(f"{src} has no id column {id_column or 'id'!r} (choose one with --id-column)")
            ids = df[col].astype(str).tolist()
            num = df.drop(columns=[col]).select_dtypes(include="number")
            if num.shape[1] == 0:
                raise ImportError_(f"{src} has no numeric feature columns besides {col!r}")
            other = [c for c in df.columns if c != col and c not in num.columns]
            if other:
                raise ImportError_(f"{src} has non-numeric columns besides the id: {', '.join(map(str, other[:5]))}")
            arrays["features"] = num.to_numpy(dtype=np.float64)
        else:
            raise ImportError_(f"cannot import {src.name}: use .npy, .npz, .csv or .tsv")
    for name, a in list(arrays.items()):
        a = np.asarray(a)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ImportError_(f"array {name!r} has shape {a.shape}; expected (items, features)")
        if not np.issubdtype(a.dtype, np.number):
            raise ImportError_(f"array {name!r} is not numeric ({a.dtype})")
        arrays[name] = a
    n = {a.shape[0] for a in arrays.values()}
    if len(n) != 1:
        raise ImportError_("the arrays have different numbers of rows: "
                           + ", ".join(f"{k} {v.shape[0]}" for k, v in arrays.items()))
    if split_layers:
        if len(arrays) != 1:
            raise ImportError_("--split-layers needs a single array")
        (a,) = arrays.values()
        if split_layers > len(LAYER_NAMES) or a.shape[1] % split_layers:
            raise ImportError_(f"cannot split {a.shape[1]} columns into {split_layers} equal layers")
        w = a.shape[1] // split_layers
        arrays = {LAYER_NAMES[i]: a[:, i * w:(i + 1) * w] for i in range(split_layers)}
    return arrays, ids


def import_embeddings(sources: Sequence[str | Path] | str | Path, out: str | Path, name: str, *,
                      ids=None, id_column: str | None = None, path_column: str | None = None,
                      layers: bool | None = None, split_layers: int | None = None,
                      command: str | None = None) -> dict:
    """Import foreign embeddings as feature set ``name`` of the feature file ``out``.

    Parameters
    ----------
    sources : path or list of paths
        See the module docstring.
    out : path
        Feature file to create or extend (items are added; an existing set of
        the same name must come from the very same source files).
    name : str
        Feature set name (``"study"``, ``"openl3"``, ``"mfcc"`` …).  A set with
        one dataset stores it under the set's own name (columns ``name/j``);
        per-layer sets store ``layer1`` … (selectable with ``--layers``).
    ids, id_column, path_column
        Item ids when the source has none: a list, a text file (one per
        line) or a CSV and its column; ``path_column`` of that CSV becomes
        the items' path (default: the id).
    layers : bool, optional
        ``False`` keeps the arrays of an npz as separate named datasets
        without renaming them ``layer1`` ….
    split_layers : int, optional
        Split one ``(N, k·w)`` array into ``k`` layers of width ``w``.

    Returns
    -------
    dict
        ``path``, ``set``, ``n_items``, ``datasets`` (name -> width), ``config``.
    """
    from .. import __version__
    from .file import FeatureFile, timestamp

    if not name or "/" in name or "+" in name or name.strip() != name:
        raise ImportError_(f"feature set name {name!r} must be non-empty, without '/', '+' or surrounding spaces")
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = [Path(s) for s in sources]
    arrays, src_ids = read_source(sources, id_column=id_column, layers=layers, split_layers=split_layers)
    given_ids, paths = _read_ids(ids, id_column, path_column)
    if given_ids is not None and src_ids is not None and given_ids != src_ids:
        raise ImportError_("the source holds ids and other ids were given; give one")
    item_ids = given_ids if given_ids is not None else src_ids
    n = next(iter(arrays.values())).shape[0]
    if item_ids is None:
        raise ImportError_("the source has no ids: give them with --ids (a text file, one per line, or a CSV "
                           "with --id-column)")
    if len(item_ids) != n:
        raise ImportError_(f"{len(item_ids)} ids for {n} rows of features")
    if len(set(item_ids)) != len(item_ids):
        dup = next(i for i in item_ids if item_ids.count(i) > 1)
        raise ImportError_(f"ids must be unique; {dup!r} repeats (choose another --id-column)")
    if any(not str(i) for i in item_ids):
        raise ImportError_("empty id in the ids")
    for k, a in arrays.items():
        if not np.isfinite(a).all():
            raise ImportError_(f"array {k!r} holds NaN or infinite values")
    if len(arrays) == 1 and "features" in arrays or (len(arrays) == 1 and next(iter(arrays)) not in LAYER_NAMES):
        arrays = {name: next(iter(arrays.values()))}
    widths = {k: int(a.shape[1]) for k, a in arrays.items()}
    config = {"model": "imported", "imported": True, "sources": [s.name for s in sources],
              "sha256": {s.name: sha256_of(s) for s in sources}, "datasets": widths,
              "source_dtype": {k: str(a.dtype) for k, a in arrays.items()}}
    if isinstance(ids, (str, Path)):
        config["ids_from"] = {"file": Path(ids).name, "sha256": sha256_of(Path(ids)), "column": id_column}
    provenance = {**config, "convfeat_version": __version__, "numpy": np.__version__,
                  "python": sys.version.split()[0], "time": timestamp(),
                  "note": "features imported from another source; stored as float32"}
    paths = paths if paths is not None else item_ids
    with FeatureFile(out) as f:
        f.add_items([{"id": str(i), "path": str(p), "meta": {}} for i, p in zip(item_ids, paths)])
        f.ensure_set(name, widths, config, provenance)
        updates = []
        for r, item in enumerate(item_ids):
            updates.append({"id": str(item), "status": "ok", "reason": "", "duration": float("nan"), "source_sr": 0,
                            "channels": 0, "windows": 1,
                            "features": {name: {k: np.asarray(a[r], np.float32) for k, a in arrays.items()}}})
        for start in range(0, len(updates), 4096):
            f.record(updates[start:start + 4096])
        f.checkpoint({"command": command or f"convfeat import ({name})"})
    return {"path": str(out), "set": name, "n_items": n, "datasets": widths, "config": config}


def _study_label_tasks(stem: str, csv: Path) -> dict:
    """task -> (label columns, kind) of a study CSV whose stem is not in :data:`STUDY_TASKS`: a ``label``
    column is one task named after the file, each ``label_<x>`` column one task ``<stem>_<x>``;
    classification when every value is a whole number (the study's class codes), regression otherwise."""
    import pandas as pd

    df = pd.read_csv(csv)
    cols = [c for c in df.columns if str(c) == "label" or str(c).startswith("label_")]
    if not cols:
        raise ImportError_(f"{csv} has no label column (label or label_<name>); columns: {', '.join(map(str, df.columns))}")
    out = {}
    for c in cols:
        values = pd.to_numeric(df[c], errors="coerce")
        whole = values.notna().all() and bool(np.all(np.mod(values.to_numpy(float), 1) == 0))
        kind = "classification" if whole or values.isna().any() else "regression"
        out[stem if c == "label" else f"{stem}_{str(c)[len('label_'):]}"] = ([c], kind)
    return out


def study_tasks(paper_dir: str | Path) -> dict:
    """The study tasks a folder holds → ``{task: (file stem, label columns, kind)}``.

    A task's files are ``<stem>.csv`` (``filepath`` + label columns) and ``<stem>_layer_{0..4}.npy``
    (+ ``<stem>_mfcc.npy``), the layout of the study's release.  The three tasks of ``../shared/paper``
    keep their names (:data:`STUDY_TASKS`); any other stem is named after its label columns
    (:func:`_study_label_tasks`).  A CSV without layer files (``results.csv``) is not a task; one with
    only some of the five is an error naming the missing ones.
    """
    paper = Path(paper_dir)
    if not paper.is_dir():
        raise ImportError_(f"no such folder: {paper}")
    known: dict = {}
    for task, (stem, cols, kind) in STUDY_TASKS.items():
        known.setdefault(stem, {})[task] = (cols, kind)
    found: dict = {}
    for csv in sorted(paper.glob("*.csv")):
        stem = csv.stem
        layers = [paper / f"{stem}_layer_{i}.npy" for i in range(len(LAYER_NAMES))]
        missing = [p.name for p in layers if not p.exists()]
        if len(missing) == len(layers):
            continue
        if missing:
            raise ImportError_(f"{stem}.csv in {paper} has layer files but not {', '.join(missing)}; a study task "
                               f"needs {stem}_layer_0.npy … {stem}_layer_4.npy")
        tasks = known.get(stem) or _study_label_tasks(stem, csv)
        found.update({task: (stem, cols, kind) for task, (cols, kind) in tasks.items()})
    if not found:
        raise ImportError_(f"{paper} holds no study task: expected <task>.csv with <task>_layer_0.npy … "
                           "<task>_layer_4.npy (and optionally <task>_mfcc.npy), as the study's release")
    return found


def import_study(paper_dir: str | Path, out_dir: str | Path, tasks: Sequence[str] | None = None) -> dict:
    """Import the study's stored features (``../shared/paper``, or any folder of the release) into convfeat files.

    For each dataset found (:func:`study_tasks`: every ``<stem>.csv`` with
    ``<stem>_layer_{0..4}.npy``, e.g. ``gtzan_genre``, ``emoMusic`` or a
    task of the release outside ``../shared``) writes ``<out_dir>/<stem>.h5``
    with the sets ``choi2017`` (layer1 … layer5 from the layer files) and
    ``mfcc`` (from ``<stem>_mfcc.npy`` when present); item ids are the
    ``filepath`` column of ``<stem>.csv`` (its ``id`` column repeats values).
    An existing output file is extended, never replaced (importing the same
    files again changes nothing; other data under the same set name is refused).

    Returns
    -------
    dict
        task -> ``{"features": path, "labels": csv path, "columns": [label
        column], "task": kind}``.
    """
    paper = Path(paper_dir)
    found = study_tasks(paper)
    out = Path(out_dir)
    tasks = list(tasks or found)
    unknown = [t for t in tasks if t not in found]
    if unknown:
        raise ImportError_(f"no study task {unknown[0]!r} in {paper}; found: {', '.join(found)}")
    out.mkdir(parents=True, exist_ok=True)
    done: dict = {}
    result = {}
    for task in tasks:
        stem, cols, kind = found[task]
        csv = paper / f"{stem}.csv"
        h5 = out / f"{stem}.h5"
        if stem not in done:
            layer_files = [paper / f"{stem}_layer_{i}.npy" for i in range(len(LAYER_NAMES))]
            import_embeddings(layer_files, h5, "choi2017", ids=csv, id_column="filepath",
                              command=f"convfeat import {stem}_layer_{{0..4}}.npy --name choi2017")
            mfcc = paper / f"{stem}_mfcc.npy"
            if mfcc.exists():
                import_embeddings([mfcc], h5, "mfcc", ids=csv, id_column="filepath",
                                  command=f"convfeat import {stem}_mfcc.npy --name mfcc")
            done[stem] = h5
        result[task] = {"features": str(h5), "labels": str(csv), "columns": cols, "task": kind}
    return result
