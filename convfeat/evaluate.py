"""How good is a feature on a labelled task: protocols, heads, honest scores, reports.

The pieces, each usable alone (scikit-learn style, plain arrays in and out):

* :func:`load_labels` matches a manifest (CSV or DataFrame) to feature-file
  items by id or path and returns the labels in manifest order, with the
  items that have no label and the labels that have no item *reported*
  (:attr:`Labels.items_without_labels`, :attr:`Labels.labels_without_items`),
  never silently dropped.
* :func:`make_splits` builds the outer folds: stratified k-fold (scikit-learn's
  defaults, not shuffled unless asked), predefined folds from a column, a fixed
  train/test split from a column, or group-aware folds (no group is ever in
  both the training and the test side of a fold).
* :func:`evaluate` scores one feature matrix with one head under one protocol:

  - ``protocol="study"`` — the study's procedure (SPEC §4) exactly: every
    grid point is cross-validated on the same folds and the reported score is
    the best grid point's mean CV score (scikit-learn ``GridSearchCV.best_score_``
    with the ``iid=True`` fold weighting of the version the study ran).  It is
    optimistically biased: the folds that choose the hyper-parameters also
    score them.
  - ``protocol="nested"`` (default) — inside each outer training fold an inner
    CV chooses the hyper-parameters; the chosen head is refitted on the outer
    training fold and scored on the outer test fold, which took no part in
    the choice.

* :func:`sweep` evaluates many feature matrices on the same folds, in
  parallel across cores (one work unit per feature set and outer fold).
* :func:`paired_test`, :func:`compare` and :func:`write_report` produce the
  per-fold scores, mean ± std, 95 % intervals, paired tests against
  baselines, per-item predictions, confusion matrices and layer-subset plots
  (Markdown, JSON, CSV, PNG).

Heads (``head=``): ``"svm"`` — the study's SVC/SVR grid (:func:`svm_grid`),
computed with precomputed kernels (the squared-distance and Gram matrices of
a fold are computed once and every γ reuses them; identical to the RBF/linear
estimators, tested); ``"linear"`` — logistic regression / ridge, fast for
large sets.  Multi-label tasks fit one binary head per tag (one-vs-rest).

Tasks and metrics: ``classification`` (accuracy, macro-F1), ``regression``
(r², RMSE; one target at a time), ``multilabel`` (macro ROC-AUC, macro
PR-AUC = average precision).  The first metric of each task chooses the
hyper-parameters.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "TASKS", "PROTOCOLS", "HEADS", "METRICS", "EvaluationError", "Labels", "Splits", "Result",
    "load_labels", "make_splits", "legacy_stratified_folds", "svm_grid", "linear_grid", "grid_for",
    "evaluate", "sweep", "paired_test", "compare", "layer_subsets", "write_report", "format_table",
]

TASKS = ("classification", "regression", "multilabel")
PROTOCOLS = ("nested", "study")
HEADS = ("svm", "linear")
METRICS = {"classification": ("accuracy", "macro_f1"),
           "regression": ("r2", "rmse"),
           "multilabel": ("roc_auc", "pr_auc")}
PROTOCOL_LABELS = {
    "study": "study protocol: best grid point's mean CV score, hyper-parameters chosen on the same folds "
             "(optimistically biased)",
    "nested": "nested CV: hyper-parameters chosen by an inner CV inside each outer training fold, "
              "scored on the outer test fold",
}

STUDY_C = (0.1, 2.0, 8.0, 32.0)
STUDY_GAMMAS = tuple(0.5 ** i for i in (3, 5, 7, 9, 11, 13)) + ("auto",)
LINEAR_C = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)         # logistic regression
RIDGE_ALPHA = (1e-2, 0.1, 1.0, 10.0, 100.0, 1e3)        # ridge
PRECOMPUTE_MAX_ITEMS = 5000   # above this the SVM head uses the plain estimators (memory)
# libsvm iterations per fit.  The study's scikit-learn had no cap; a few linear-kernel SVR points on
# features need 10^7-10^9 iterations (seconds to hours per fit; ~1 µs per iteration).  Fits stopped at the cap are
# recorded in Result.capped and the report; a best (reported) point that stopped at the cap is re-run
# without it, so the reported figure always comes from converged fits.  -1 removes the cap.
DEFAULT_MAX_ITER = 1_000_000


class EvaluationError(ValueError):
    """The inputs cannot be evaluated as asked (the message says why, on one line)."""


# =====================================================================================
# labels
# =====================================================================================
@dataclass
class Labels:
    """Labels matched to feature-file items.

    Attributes
    ----------
    ids : list of str
        Item ids that have a label, in manifest row order (the order unshuffled
        folds follow, as in the study).
    y : np.ndarray
        ``classification``: ``(n,)`` str class names; ``regression``: ``(n, t)``
        float64, one column per target; ``multilabel``: ``(n, T)`` int8 0/1.
    task : str
    names : list of str
        Class names (sorted), target column names or tag names.
    folds, split, groups : np.ndarray or None
        Per-item fold values, train/test split (True = test) and groups, from
        the manifest columns when given.
    items_without_labels : list of str
        Item ids not in the manifest, or whose label cell is empty.
    labels_without_items : list of str
        Manifest keys that match no (usable) item.
    matched_on : str
        Which manifest column was matched to which item key.
    dropped : dict
        Other things left out, with the reason (e.g. tags without positives).
    """

    ids: list
    y: np.ndarray
    task: str
    names: list
    folds: np.ndarray | None = None
    split: np.ndarray | None = None
    groups: np.ndarray | None = None
    items_without_labels: list = field(default_factory=list)
    labels_without_items: list = field(default_factory=list)
    matched_on: str = ""
    dropped: dict = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def target(self, j: int = 0) -> np.ndarray:
        """The ``y`` of one regression target (column ``j``), else ``y`` itself."""
        return self.y[:, j] if self.task == "regression" else self.y

    def report(self) -> dict:
        """JSON-ready summary of the matching (what was used, what was not)."""
        return {"source": self.source, "task": self.task, "matched_on": self.matched_on, "n_labelled": len(self.ids),
                "names": list(map(str, self.names)),
                "items_without_labels": {"count": len(self.items_without_labels), "ids": self.items_without_labels},
                "labels_without_items": {"count": len(self.labels_without_items), "keys": self.labels_without_items},
                "dropped": self.dropped}

    def summary_lines(self, limit: int = 5) -> list[str]:
        """One-line notes for the user about unmatched items and labels."""
        out = []
        for what, seq in (("items without labels", self.items_without_labels),
                          ("labels without items", self.labels_without_items)):
            if seq:
                shown = ", ".join(map(str, seq[:limit])) + (", …" if len(seq) > limit else "")
                out.append(f"{len(seq)} {what} (not evaluated): {shown}")
        for what, why in self.dropped.items():
            out.append(f"dropped {what}: {why}")
        return out


_KEY_COLUMNS = ("id", "path", "filepath", "file_path", "filename", "file", "item", "track", "clip")
_SPLIT_TRAIN = {"train", "training", "valid", "validation", "val", "dev", "development", "trainval"}
_SPLIT_TEST = {"test", "testing", "eval", "evaluation", "heldout", "held-out"}


def _norm_path(value: str) -> str:
    text = str(value).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _is_empty(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _read_manifest(manifest):
    import pandas as pd

    if isinstance(manifest, pd.DataFrame):
        return manifest.copy(), "DataFrame"
    path = Path(manifest)
    if not path.exists():
        raise EvaluationError(f"no such labels file: {path}")
    try:
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
    except Exception as exc:  # pandas raises many kinds
        raise EvaluationError(f"cannot read labels file {path}: {exc}") from None
    df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed: ")])
    return df, str(path)


def _column(df, name: str | None, what: str):
    if name is None:
        return None
    if name not in df.columns:
        raise EvaluationError(f"the labels have no {what} column {name!r}; columns: {', '.join(map(str, df.columns))}")
    return name


def _match(df, item_ids: Sequence[str], item_paths: Sequence[str] | None, key_column: str | None):
    """(manifest column, item key kind, row index per item or -1)."""
    ids = [str(i) for i in item_ids]
    keys = {"id": ids}
    if item_paths is not None:
        keys["path"] = [_norm_path(p) for p in item_paths]
    if key_column is not None:
        _column(df, key_column, "key")
        candidates = [key_column]
    else:
        candidates = [c for c in df.columns if str(c).lower() in _KEY_COLUMNS]
        if not candidates:
            raise EvaluationError("cannot tell which labels column names the items: give --key-column "
                                  f"(columns: {', '.join(map(str, df.columns))})")
    best = None
    for col in candidates:
        values = [_norm_path(v) for v in df[col].astype(str)]
        counts: dict = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        for kind, item_keys in keys.items():
            n = sum(1 for k in item_keys if k in counts)
            dup = sorted({k for k in item_keys if counts.get(k, 0) > 1})
            if key_column is None and dup:
                continue  # a column that repeats values is not a key (e.g. the study's genre 'id')
            score = (n, kind == "id", -candidates.index(col))
            if best is None or score > best[0]:
                best = (score, col, kind, values, counts, dup)
    if best is None or best[0][0] == 0:
        tried = ", ".join(f"{c!r}" for c in candidates)
        example = ids[0] if ids else "(no items)"
        raise EvaluationError(f"no labels row matches any item: tried column(s) {tried} against item ids and paths "
                              f"(e.g. item id {example!r})")
    _, col, kind, values, counts, dup = best
    if dup:
        raise EvaluationError(f"labels column {col!r} repeats {len(dup)} item key(s), e.g. {dup[0]!r}; "
                              "each item needs one row")
    row_of = {v: r for r, v in enumerate(values)}
    rows = np.array([row_of.get(k, -1) for k in keys[kind]], dtype=int)
    return col, kind, rows, values


def _split_tags(text: str, sep: str | None) -> list[str]:
    if sep is None:
        sep = next((s for s in (";", "|", ",") if s in text), None)
    parts = text.split(sep) if sep else text.split()
    return [p.strip() for p in parts if p.strip()]


def load_labels(manifest, item_ids: Sequence[str], item_paths: Sequence[str] | None = None, *,
                label_column: str | None = None, target_columns: Sequence[str] | str | None = None,
                tags_column: str | None = None, tag_separator: str | None = None,
                key_column: str | None = None, fold_column: str | None = None,
                split_column: str | None = None, group_column: str | None = None) -> Labels:
    """Match a manifest to items and read the labels.

    Parameters
    ----------
    manifest : path or pandas.DataFrame
        CSV (or TSV) with one row per item.  Values are read as text.
    item_ids, item_paths : sequences of str
        The feature-file items that have usable features, their ids and
        (optionally) paths.  The manifest is matched on the key column
        (``key_column``, or the first of ``id``, ``path``, ``filepath``,
        ``filename``, … whose values are unique and match the most items, against
        item ids or item paths).
    label_column : str
        Class label column → ``task="classification"``.
    target_columns : str or sequence of str
        Numeric target column(s) → ``task="regression"`` (each target is
        evaluated on its own).
    tags_column : str
        Tag-list column (``"rock;guitar"``; separator ``;``, ``|``, ``,`` or
        whitespace, or ``tag_separator``) → ``task="multilabel"``.
    fold_column, split_column, group_column : str
        Optional protocol columns: predefined fold per item; ``train``/``test``
        per item (``valid``/``validation``/``dev`` count as train); a group
        (artist, speaker, …) that must never be split across train and test.

    Returns
    -------
    Labels
        Items that have a label, in manifest row order, and the report of what
        was not matched (:meth:`Labels.summary_lines`).

    Raises
    ------
    EvaluationError
        No or several label kinds given, unknown columns, no match at all,
        repeated keys, non-numeric targets, unknown split values.
    """
    df, source = _read_manifest(manifest)
    given = [k for k, v in (("label_column", label_column), ("target_columns", target_columns),
                            ("tags_column", tags_column)) if v]
    if len(given) != 1:
        raise EvaluationError("give exactly one of a label column (classification), target column(s) "
                              f"(regression) or a tags column (multi-label); got {', '.join(given) or 'none'}")
    if isinstance(target_columns, str):
        target_columns = [c.strip() for c in target_columns.split(",") if c.strip()]
    for c, what in [(label_column, "label"), (tags_column, "tags"), (fold_column, "fold"),
                    (split_column, "split"), (group_column, "group")] + [(t, "target") for t in target_columns or []]:
        _column(df, c, what)
    col, kind, rows, keys = _match(df, item_ids, item_paths, key_column)
    ids = [str(i) for i in item_ids]
    matched = rows >= 0
    label_cols = [label_column] if label_column else [tags_column] if tags_column else list(target_columns)
    has_label = matched.copy()
    for r_i, r in enumerate(rows):
        if r >= 0 and any(_is_empty(df[c].iloc[r]) for c in label_cols):
            has_label[r_i] = False
    items_without = [ids[i] for i in np.flatnonzero(~has_label)]
    used_rows = set(rows[matched].tolist())
    labels_without = [keys[r] for r in range(len(df)) if r not in used_rows]
    # manifest order
    order = sorted(np.flatnonzero(has_label), key=lambda i: rows[i])
    take = rows[order]
    out_ids = [ids[i] for i in order]
    dropped = {}
    if label_column:
        task = "classification"
        y = np.array([str(v).strip() for v in df[label_column].iloc[take]], dtype=object)
        names = sorted(set(y.tolist()))
    elif tags_column:
        task = "multilabel"
        lists = [_split_tags(str(v), tag_separator) for v in df[tags_column].iloc[take]]
        names = sorted({t for tags in lists for t in tags})
        pos = {t: j for j, t in enumerate(names)}
        y = np.zeros((len(lists), len(names)), np.int8)
        for i, tags in enumerate(lists):
            for t in tags:
                y[i, pos[t]] = 1
        keep = (y.sum(0) > 0) & (y.sum(0) < len(y))
        if not keep.all():
            dropped["tags"] = (f"{int((~keep).sum())} tag(s) on every or no labelled item cannot be scored: "
                               + ", ".join(n for n, k in zip(names, keep) if not k))
            y = y[:, keep]
            names = [n for n, k in zip(names, keep) if k]
        if not names:
            raise EvaluationError(f"tags column {tags_column!r} has no tag that some items have and others lack")
    else:
        task = "regression"
        y = np.empty((len(take), len(target_columns)), np.float64)
        for j, c in enumerate(target_columns):
            values = df[c].iloc[take].tolist()
            for i, v in enumerate(values):
                try:
                    y[i, j] = float(v)
                except ValueError:
                    raise EvaluationError(f"target column {c!r} is not numeric: {v!r} for item {out_ids[i]!r}") from None
        if not np.isfinite(y).all():
            raise EvaluationError("the target columns hold NaN or infinite values")
        names = list(target_columns)
    folds = split = groups = None
    if fold_column:
        folds = np.array([str(v).strip() for v in df[fold_column].iloc[take]], dtype=object)
        if any(not v for v in folds):
            raise EvaluationError(f"fold column {fold_column!r} is empty for some labelled items")
    if split_column:
        raw = [str(v).strip().lower() for v in df[split_column].iloc[take]]
        bad = sorted({v for v in raw if v not in _SPLIT_TRAIN | _SPLIT_TEST})
        if bad:
            raise EvaluationError(f"split column {split_column!r} holds {bad[0]!r}; expected train (or valid/dev) "
                                  "or test")
        split = np.array([v in _SPLIT_TEST for v in raw])
    if group_column:
        groups = np.array([str(v).strip() for v in df[group_column].iloc[take]], dtype=object)
        if any(not v for v in groups):
            raise EvaluationError(f"group column {group_column!r} is empty for some labelled items")
    return Labels(out_ids, y, task, names, folds, split, groups, items_without, labels_without,
                  f"labels column {col!r} = item {kind}", dropped, source)


# =====================================================================================
# folds
# =====================================================================================
@dataclass
class Splits:
    """Outer folds: ``folds[k] = (train_indices, test_indices)`` and how they were made."""

    folds: list
    description: str
    kind: str                 # stratified | kfold | predefined | split | group
    n_folds: int = 0
    shuffle: bool = False
    seed: int | None = None
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.folds)

    def __iter__(self):
        return iter(self.folds)


def legacy_stratified_folds(y, n_folds: int) -> np.ndarray:
    """Test-fold index per item of scikit-learn ≤ 0.21's unshuffled ``StratifiedKFold``.

    The study ran scikit-learn 0.18/0.19, whose ``StratifiedKFold`` split each
    class on its own with an unshuffled ``KFold`` (the first ``n_c % k`` folds
    of a class one item larger).  scikit-learn ≥ 0.22 allocates differently
    when a class size is not a multiple of ``k``; for class sizes that are
    (GTZAN: 100 per class, 10 folds) both give the same folds.
    """
    y = np.asarray(y)
    test_folds = np.zeros(len(y), dtype=int)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        m = max(len(idx), n_folds)
        sizes = np.full(n_folds, m // n_folds)
        sizes[: m % n_folds] += 1
        start = 0
        for f, size in enumerate(sizes):
            sel = np.arange(start, start + size)
            sel = sel[sel < len(idx)]
            test_folds[idx[sel]] = f
            start += size
    return test_folds


def _check_class_counts(y, n_folds: int, where: str = "") -> None:
    values, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
    small = [(v, c) for v, c in zip(values, counts) if c < n_folds]
    if small:
        listed = ", ".join(f"{str(v)!r} ({c} item{'s' if c != 1 else ''})" for v, c in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        raise EvaluationError(f"class {listed}{more} has fewer items than the {n_folds} folds{where}; use fewer "
                              "folds (--folds), or merge or drop the class")


def _folds_from_test_ids(test_of: np.ndarray) -> list:
    idx = np.arange(len(test_of))
    out = []
    for f in sorted(set(test_of.tolist()), key=lambda v: (not str(v).lstrip("-").isdigit(),
                                                           int(v) if str(v).lstrip("-").isdigit() else 0, str(v))):
        test = idx[test_of == f]
        out.append((idx[test_of != f], test))
    return out


def make_splits(y, task: str = "classification", *, n_folds: int = 10, shuffle: bool = False,
                seed: int | None = 0, folds=None, split=None, groups=None, legacy: bool = False) -> Splits:
    """Outer train/test folds of one task.

    Parameters
    ----------
    y : array
        Labels (``(n,)`` classes for stratification; ignored otherwise).
    task : str
        ``classification`` stratifies; ``regression`` and ``multilabel`` use
        plain (group) k-fold.
    n_folds : int
        k of k-fold (default 10, as in the study).
    shuffle, seed : bool, int
        Shuffle before splitting (the study did not).
    folds : array, optional
        Predefined fold per item: each distinct value is one test fold.
    split : array of bool, optional
        Fixed split: True = test item.  One fold.
    groups : array, optional
        Group per item: group-aware k-fold (``StratifiedGroupKFold`` for
        classification, ``GroupKFold`` otherwise); no group is split across
        train and test.
    legacy : bool
        Unshuffled stratified folds as scikit-learn ≤ 0.21 made them (the
        study's; :func:`legacy_stratified_folds`).

    Raises
    ------
    EvaluationError
        A class with fewer items than folds (naming it), fewer groups than
        folds, an empty side of a split, several protocol columns at once.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    n = len(y)
    chosen = [name for name, v in (("folds", folds), ("split", split), ("groups", groups)) if v is not None]
    if len(chosen) > 1:
        raise EvaluationError(f"give one of a fold column, a split column or a group column, not {' and '.join(chosen)}")
    if split is not None:
        split = np.asarray(split, bool)
        if split.all() or not split.any():
            raise EvaluationError("the split column must mark some labelled items train and some test "
                                  f"(it has {int(split.sum())} test of {n})")
        idx = np.arange(n)
        return Splits([(idx[~split], idx[split])], f"fixed train/test split from a column "
                      f"({int((~split).sum())} train, {int(split.sum())} test)", "split", 1)
    if folds is not None:
        folds = np.asarray(folds).astype(str)
        out = _folds_from_test_ids(folds)
        if len(out) < 2:
            raise EvaluationError("the fold column holds a single fold value; it needs at least two")
        return Splits(out, f"{len(out)} predefined folds from a column", "predefined", len(out))
    if n_folds < 2:
        raise EvaluationError(f"--folds must be at least 2, got {n_folds}")
    if n_folds > n:
        raise EvaluationError(f"{n_folds} folds need at least {n_folds} labelled items; there are {n}")
    how = f"shuffled, seed {seed}" if shuffle else "not shuffled"
    rs = seed if shuffle else None
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        n_groups = len(set(groups.tolist()))
        if n_groups < n_folds:
            raise EvaluationError(f"{n_groups} groups cannot make {n_folds} group-aware folds; use --folds {n_groups} "
                                  "or fewer")
        if task == "classification":
            _check_class_counts(y, n_folds)
            cv = StratifiedGroupKFold(n_folds, shuffle=shuffle, random_state=rs)
            name = "stratified group"
        else:
            try:
                cv = GroupKFold(n_folds, shuffle=shuffle, random_state=rs)
            except TypeError:  # scikit-learn < 1.6
                cv = GroupKFold(n_folds)
            name = "group"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = [(tr, te) for tr, te in cv.split(np.zeros(n), y if task == "classification" else None, groups)]
        return Splits(out, f"{name} {n_folds}-fold ({how}) from a group column ({n_groups} groups)", "group",
                      n_folds, shuffle, seed, groups)
    if task == "classification":
        _check_class_counts(y, n_folds)
        if legacy and not shuffle:
            out = _folds_from_test_ids(legacy_stratified_folds(y, n_folds))
            return Splits(out, f"stratified {n_folds}-fold (not shuffled; scikit-learn ≤ 0.21 allocation, "
                          "as the study ran it)", "stratified", n_folds, False, None)
        cv = StratifiedKFold(n_folds, shuffle=shuffle, random_state=rs)
        return Splits(list(cv.split(np.zeros(n), y)), f"stratified {n_folds}-fold ({how})", "stratified",
                      n_folds, shuffle, seed)
    cv = KFold(n_folds, shuffle=shuffle, random_state=rs)
    return Splits(list(cv.split(np.zeros(n))), f"{n_folds}-fold ({how})", "kfold", n_folds, shuffle, seed)


def _inner_splits(y, task: str, train: np.ndarray, n_inner: int, outer: Splits, classes=None) -> list:
    """Inner folds (indices into the outer training fold) for nested CV."""
    y_tr = y[train]
    groups = outer.groups[train] if outer.groups is not None else None
    if task == "classification":
        values, counts = np.unique(y_tr, return_counts=True)
        if counts.min() < n_inner:
            small = values[counts.argmin()]
            small = str(classes[small]) if classes else str(small)
            raise EvaluationError(f"class {small!r} has {counts.min()} items in an outer training fold, fewer than "
                                  f"the {n_inner} inner folds of nested CV; use fewer inner folds (--inner-folds) "
                                  "or --protocol study")
    if groups is not None and len(set(groups.tolist())) < n_inner:
        raise EvaluationError(f"an outer training fold has fewer than {n_inner} groups for the inner folds; "
                              "use fewer inner folds (--inner-folds)")
    s = make_splits(y_tr, task, n_folds=n_inner, shuffle=outer.shuffle, seed=outer.seed, groups=groups)
    return s.folds


# =====================================================================================
# heads and grids
# =====================================================================================
def svm_grid(scalers: Sequence[bool] = (True, False)) -> list[dict]:
    """The study's grid (SPEC §4), in ``GridSearchCV``'s order.

    {standard scaling on, off} × ({RBF, C ∈ {0.1, 2, 8, 32}, γ ∈ {2⁻³, 2⁻⁵, …,
    2⁻¹³, 1/n_features}} ∪ {linear, C ∈ {0.1, 2, 8, 32}}).  The order is that
    of ``ParameterGrid`` over ``{C, gamma, kernel, scaler}`` (last key
    fastest), so ties are broken as ``GridSearchCV`` breaks them.
    """
    pts = [{"kernel": "rbf", "C": C, "gamma": g, "scaler": bool(s)} for C in STUDY_C for g in STUDY_GAMMAS
           for s in scalers]
    pts += [{"kernel": "linear", "C": C, "scaler": bool(s)} for C in STUDY_C for s in scalers]
    return pts


def linear_grid(task: str, scalers: Sequence[bool] = (True,)) -> list[dict]:
    """Fast heads: logistic regression (C grid) or ridge (alpha grid)."""
    if task == "regression":
        return [{"model": "ridge", "alpha": a, "scaler": bool(s)} for a in RIDGE_ALPHA for s in scalers]
    return [{"model": "logreg", "C": C, "scaler": bool(s)} for C in LINEAR_C for s in scalers]


def _scalers(scaler: str, protocol: str, head: str) -> tuple:
    if scaler == "auto":
        if head == "linear":
            return (True,)
        return (False,) if protocol == "study" else (True, False)
    return {"both": (True, False), "on": (True,), "off": (False,)}[scaler]


def grid_for(head: str, task: str, protocol: str = "nested", scaler: str = "auto") -> list[dict]:
    """The hyper-parameter grid of a head.

    ``scaler``: ``"both"`` (scaling on and off, the grid as SPEC §4 states it),
    ``"on"``, ``"off"``, or ``"auto"``: ``"off"`` for ``protocol="study"`` with
    the SVM head — what the study's code actually ran (its
    ``OptionalStandardScaler`` sets ``with_mean``/``with_std`` in
    ``__init__`` only, and ``GridSearchCV`` switches it on with
    ``set_params``, which does not re-run ``__init__``: it never scaled; see
    ``docs/study_reproduction.md``) — and ``"both"`` otherwise (``"on"`` for
    the linear head).
    """
    if head not in HEADS:
        raise EvaluationError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if scaler not in ("auto", "both", "on", "off"):
        raise EvaluationError(f"scaler must be auto, both, on or off, got {scaler!r}")
    scalers = _scalers(scaler, protocol, head)
    return svm_grid(scalers) if head == "svm" else linear_grid(task, scalers)


def _describe_point(p: dict) -> str:
    if "kernel" in p:
        g = "" if p["kernel"] == "linear" else f", gamma={'1/n_features' if p['gamma'] == 'auto' else _num(p['gamma'])}"
        return f"{p['kernel']} C={_num(p['C'])}{g}, scaler {'on' if p['scaler'] else 'off'}"
    k = "alpha" if "alpha" in p else "C"
    return f"{p['model']} {k}={_num(p[k])}, scaler {'on' if p['scaler'] else 'off'}"


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _make_estimator(task: str, point: dict, n_features: int, max_iter: int = -1):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.svm import SVC, SVR

    if "kernel" in point:
        gamma = 1.0 / n_features if point.get("gamma") == "auto" else point.get("gamma", "scale")
        kw = {"C": point["C"], "kernel": point["kernel"], "max_iter": max_iter}
        if point["kernel"] == "rbf":
            kw["gamma"] = gamma
        return SVR(**kw) if task == "regression" else SVC(**kw)
    if point["model"] == "ridge":
        return Ridge(alpha=point["alpha"])
    return LogisticRegression(C=point["C"], max_iter=2000)


# =====================================================================================
# the core: outputs of every grid point on one fold
# =====================================================================================
def _scaled(X, train, rows, on: bool) -> np.ndarray:
    """X[rows] (float64), standardised with the training rows' statistics when ``on``."""
    if not on:
        return np.asarray(X[rows], dtype=np.float64)
    from sklearn.preprocessing import StandardScaler

    # the very arithmetic of Pipeline(StandardScaler(), SVC()) (float32 stays float32), then float64 as libsvm
    scaler = StandardScaler().fit(X[train])
    return np.asarray(scaler.transform(X[rows]), dtype=np.float64)


def _capped(est, max_iter) -> bool:
    """Did a libsvm fit stop at the iteration cap (not converged)?"""
    n_iter = getattr(est, "n_iter_", None)
    return bool(max_iter and max_iter > 0 and n_iter is not None and np.max(n_iter) >= max_iter)


def _fit(est, X, y, max_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: recorded through _capped
        est.fit(X, y)
    return est, _capped(est, max_iter)


def _fit_predict(task, make, X_tr, y_tr, X_te, max_iter):
    """Fit ``make()`` (an SVC/SVR/linear estimator) → (test outputs, stopped at the cap)."""
    if task == "regression":
        est, cap = _fit(make(), X_tr, y_tr, max_iter)
        return est.predict(X_te), cap
    if task == "classification":
        if len(np.unique(y_tr)) == 1:
            return np.full(X_te.shape[0], y_tr[0]), False
        est, cap = _fit(make(), X_tr, y_tr, max_iter)
        return est.predict(X_te), cap
    out = np.zeros((X_te.shape[0], y_tr.shape[1]))
    any_cap = False
    for j in range(y_tr.shape[1]):  # one-vs-rest: one binary head per tag
        col = y_tr[:, j]
        if col.min() == col.max():
            out[:, j] = 1.0 if col[0] else -1.0
        else:
            est, cap = _fit(make(), X_tr, col, max_iter)
            out[:, j] = est.decision_function(X_te)
            any_cap |= cap
    return out, any_cap


def _fit_predict_kernel(task, K_tr, y_tr, K_te, C, max_iter):
    """SVC/SVR on a precomputed kernel → (predictions or decision scores per tag, capped)."""
    from sklearn.svm import SVC, SVR

    cls = SVR if task == "regression" else SVC
    return _fit_predict(task, lambda: cls(kernel="precomputed", C=C, max_iter=max_iter), K_tr, y_tr, K_te, max_iter)


def _fit_predict_plain(task, point, Z_tr, y_tr, Z_te, max_iter):
    return _fit_predict(task, lambda: _make_estimator(task, point, Z_tr.shape[1], max_iter), Z_tr, y_tr, Z_te,
                        max_iter)


def _seq_dot(A: np.ndarray, B: np.ndarray, block: int = 64) -> np.ndarray:
    """``A @ B.T`` with every dot product summed feature by feature, in order.

    That is how libsvm sums its dot products; BLAS sums in another order, and
    the last-bit differences are enough to send libsvm's SMO solver down
    another path (SVR scores then differ by up to ~1e-3).  With the same
    order the precomputed kernels reproduce the plain estimators' fits.
    """
    out = np.empty((A.shape[0], B.shape[0]))
    BT = np.ascontiguousarray(B.T)
    for s in range(0, A.shape[0], block):
        a = A[s:s + block]
        acc = np.zeros((a.shape[0], B.shape[0]))
        tmp = np.empty_like(acc)
        for k in range(A.shape[1]):
            np.multiply(a[:, k, None], BT[k][None, :], out=tmp)
            acc += tmp
        out[s:s + block] = acc
    return out


def _seq_sqdist(A: np.ndarray, B: np.ndarray, block: int = 64) -> np.ndarray:
    """Squared distances summed feature by feature (libsvm's RBF at prediction time)."""
    out = np.empty((A.shape[0], B.shape[0]))
    BT = np.ascontiguousarray(B.T)
    for s in range(0, A.shape[0], block):
        a = A[s:s + block]
        acc = np.zeros((a.shape[0], B.shape[0]))
        tmp = np.empty_like(acc)
        for k in range(A.shape[1]):
            np.subtract(a[:, k, None], BT[k][None, :], out=tmp)
            tmp *= tmp
            acc += tmp
        out[s:s + block] = acc
    return out


def _fold_outputs(X, y, task: str, train, test, points: list[dict], precompute: bool | str = "auto",
                  max_iter: int = -1) -> tuple[list, list]:
    """Test-fold outputs of every grid point, and whether each stopped at ``max_iter``.

    Classification: predicted class codes; regression: predictions;
    multilabel: ``(n_test, T)`` decision scores.  SVM points use
    precomputed kernels: per scaler setting the fold's Gram matrix G and
    squared distances D are computed once (with libsvm's own arithmetic,
    :func:`_seq_dot`); RBF points use ``exp(-γ D)`` and linear points G.
    """
    train = np.asarray(train)
    test = np.asarray(test)
    outputs: list = [None] * len(points)
    capped: list = [False] * len(points)
    y_tr = y[train]
    n_rows = len(train) + len(test)
    if precompute == "auto":
        precompute = n_rows <= PRECOMPUTE_MAX_ITEMS
    rows = np.concatenate([train, test])
    ntr = len(train)
    d = X.shape[1]
    for on in (True, False):
        idx = [i for i, p in enumerate(points) if p["scaler"] == on]
        if not idx:
            continue
        Z = _scaled(X, train, rows, on)
        svm_idx = [i for i in idx if "kernel" in points[i]]
        plain_idx = [i for i in idx if "kernel" not in points[i]]
        if svm_idx and precompute:
            A, B = Z[:ntr], Z[ntr:]
            G = _seq_dot(A, A)                  # libsvm's dot(x_i, x_j), summed in the same order
            sq = np.diagonal(G).copy()          # libsvm's x_square
            G_te = D_tr = D_te = None
            kernels: dict = {}
            for i in svm_idx:
                p = points[i]
                key = "linear" if p["kernel"] == "linear" else (1.0 / d if p["gamma"] == "auto" else float(p["gamma"]))
                kernels.setdefault(key, []).append(i)
            for key, members in kernels.items():
                if key == "linear":
                    if G_te is None:
                        G_te = _seq_dot(B, A)
                    K_tr, K_te = G, G_te
                else:
                    if D_tr is None:
                        D_tr = sq[:, None] + sq[None, :] - 2.0 * G   # training: x_sq[i] + x_sq[j] - 2 dot
                        D_te = _seq_sqdist(B, A)                     # prediction: sum of squared differences
                    K_tr = np.exp(-key * D_tr)
                    K_te = np.exp(-key * D_te)
                for i in members:
                    outputs[i], capped[i] = _fit_predict_kernel(task, K_tr, y_tr, K_te, points[i]["C"], max_iter)
        else:
            plain_idx = idx
        for i in plain_idx:
            outputs[i], capped[i] = _fit_predict_plain(task, points[i], Z[:ntr], y_tr, Z[ntr:], max_iter)
    return outputs, capped


# =====================================================================================
# metrics
# =====================================================================================
def _metric_values(task: str, y_true, out, only_primary: bool = False) -> dict:
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, r2_score, roc_auc_score

    if task == "classification":
        res = {"accuracy": float(accuracy_score(y_true, out))}
        if not only_primary:
            res["macro_f1"] = float(f1_score(y_true, out, average="macro", zero_division=0))
        return res
    if task == "regression":
        res = {"r2": float(r2_score(y_true, out))}
        if not only_primary:
            res["rmse"] = float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(out)) ** 2)))
        return res
    cols = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    if not cols:
        return {"roc_auc": float("nan")} if only_primary else {"roc_auc": float("nan"), "pr_auc": float("nan")}
    res = {"roc_auc": float(np.mean([roc_auc_score(y_true[:, j], out[:, j]) for j in cols]))}
    if not only_primary:
        res["pr_auc"] = float(np.mean([average_precision_score(y_true[:, j], out[:, j]) for j in cols]))
    return res


def _fast_metric(task: str, metric: str, y_true, out) -> float:
    """accuracy / r2 / rmse in plain NumPy (bootstrap loops); other metrics through scikit-learn."""
    if metric == "accuracy":
        return float(np.mean(np.asarray(y_true) == np.asarray(out)))
    if metric in ("r2", "rmse"):
        y_true = np.asarray(y_true, float)
        res = float(np.sum((y_true - out) ** 2))
        if metric == "rmse":
            return math.sqrt(res / len(y_true))
        tot = float(np.sum((y_true - y_true.mean()) ** 2))
        return 1.0 - res / tot if tot > 0 else float("nan")
    return _metric_values(task, y_true, out)[metric]


def _primary(task: str) -> str:
    return METRICS[task][0]


# =====================================================================================
# results
# =====================================================================================
@dataclass
class Result:
    """Scores of one feature set on one task under one protocol.

    Attributes
    ----------
    feature : str
        Feature label (``"choi2017/12345"``, ``"mfcc"``, …).
    task, protocol, head : str
    target : str
        The regression target / label column evaluated.
    metrics : tuple of str
        Metric names, the first chose the hyper-parameters.
    fold_scores : dict
        metric -> ``(k,)`` per-fold scores of the reported head.
    n_train, n_test : np.ndarray
        Per-fold sizes.
    score : float
        The headline figure: ``study``: the best grid point's mean CV score
        (folds weighted by size, ``iid=True`` as the study's scikit-learn
        did); ``nested``: the mean of the outer-fold scores.
    params : list of dict
        ``study``: one entry, the best grid point; ``nested``: the point the
        inner CV chose in each outer fold.
    grid_scores : list of dict
        ``study``: every grid point's mean CV score (the primary metric).
    ids, fold_of, y_true, y_pred : arrays
        Per-item predictions of the reported head (test items only).
    """

    feature: str
    task: str
    protocol: str
    head: str
    target: str
    metrics: tuple
    fold_scores: dict
    n_train: np.ndarray
    n_test: np.ndarray
    score: float
    params: list
    grid_scores: list
    ids: np.ndarray
    fold_of: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    classes: list = field(default_factory=list)
    splits: str = ""
    seconds: float = 0.0
    n_features: int = 0
    capped: list = field(default_factory=list)
    best_index: int = -1
    best_capped: bool = False

    @property
    def primary(self) -> str:
        return self.metrics[0]

    def summary(self, metric: str | None = None) -> dict:
        """mean, std, 95 % interval and per-fold values of one metric."""
        metric = metric or self.primary
        s = np.asarray(self.fold_scores[metric], float)
        k = len(s)
        mean = float(np.mean(s))
        std = float(np.std(s, ddof=1)) if k > 1 else float("nan")
        if metric == self.primary and self.protocol == "study":
            headline = self.score
        else:
            headline = mean
        lo, hi = _interval(s, self.n_train, self.n_test, self, metric)
        return {"metric": metric, "score": headline, "mean": mean, "std": std, "ci95": [lo, hi], "folds": s.tolist(),
                "n_folds": k}

    def to_dict(self) -> dict:
        return {"feature": self.feature, "target": self.target, "task": self.task, "protocol": self.protocol,
                "protocol_label": PROTOCOL_LABELS[self.protocol], "head": self.head, "splits": self.splits,
                "n_items": int(len(self.ids)), "n_features": self.n_features, "score": self.score,
                "metric": self.primary, "metrics": {m: self.summary(m) for m in self.metrics},
                "n_train": self.n_train.tolist(), "n_test": self.n_test.tolist(),
                "params": [_describe_point(p) for p in self.params], "grid_scores": self.grid_scores,
                "not_converged": self.capped, "seconds": self.seconds}


def _t_quantile(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def _corrected_se(values, n_train, n_test) -> float:
    """Standard error of the mean of k CV values with the Nadeau-Bengio correction.

    CV folds share training data, so their scores are not independent; the
    variance of the mean is ``(1/k + n_test/n_train) σ²`` rather than ``σ²/k``
    (Nadeau & Bengio 2003, "Inference for the generalization error").
    """
    k = len(values)
    ratio = float(np.mean(np.asarray(n_test) / np.asarray(n_train)))
    return math.sqrt((1.0 / k + ratio) * float(np.var(values, ddof=1)))


def _interval(s, n_train, n_test, result: Result | None = None, metric: str | None = None) -> tuple:
    k = len(s)
    if k >= 2:
        se = _corrected_se(s, n_train, n_test)
        h = _t_quantile(k - 1) * se
        m = float(np.mean(s))
        return m - h, m + h
    if result is None:
        return float("nan"), float("nan")
    # one fixed split: bootstrap over the test items
    rng = np.random.default_rng(0)
    n = len(result.y_true)
    vals = []
    for _ in range(1000 if metric in ("accuracy", "r2", "rmse") else 200):
        b = rng.integers(0, n, n)
        v = _fast_metric(result.task, metric, result.y_true[b], result.y_pred[b])
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


# =====================================================================================
# evaluate
# =====================================================================================
def _encode(y, task):
    if task == "classification":
        classes, codes = np.unique(np.asarray(y).astype(str), return_inverse=True)
        return codes, [str(c) for c in classes]
    if task == "regression":
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise EvaluationError("evaluate one regression target at a time (y must be 1-D)")
        return y, []
    y = np.asarray(y)
    if y.ndim != 2:
        raise EvaluationError("multi-label y must be an (n, n_tags) 0/1 matrix")
    return y.astype(np.int8), []


def _split_labels(y, task):
    """What the folds are stratified on: class names (so errors name them); nothing otherwise."""
    return np.asarray(y).astype(str) if task == "classification" else np.zeros(len(y))


def _study_unit(X, y, task, train, test, points, opts):
    return _fold_outputs(X, y, task, train, test, points, opts["precompute"], opts["max_iter"])


def _nested_unit(X, y, task, train, test, points, inner, opts):
    """Inner CV on the outer training fold → chosen point → refit → outer test outputs."""
    Xtr, ytr = X[train], y[train]
    scores = np.zeros((len(points), len(inner)))
    n_capped = np.zeros(len(points), int)
    for f, (itr, ite) in enumerate(inner):
        outs, caps = _fold_outputs(Xtr, ytr, task, itr, ite, points, opts["precompute"], opts["max_iter"])
        n_capped += np.asarray(caps, int)
        for i, o in enumerate(outs):
            scores[i, f] = _metric_values(task, ytr[ite], o, only_primary=True)[_primary(task)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(scores, axis=1)
    best = int(np.nanargmax(means)) if np.isfinite(means).any() else 0
    outs, caps = _fold_outputs(X, y, task, train, test, [points[best]], opts["precompute"], opts["max_iter"])
    if caps[0]:  # the head that is scored must be a converged fit
        outs, caps = _fold_outputs(X, y, task, train, test, [points[best]], opts["precompute"], -1)
    return {"best": best, "means": means.tolist(), "out": outs[0], "capped": caps[0],
            "inner_capped": n_capped.tolist()}


def _units(X, y, task, splits: Splits, points, protocol, inner_folds, opts):
    """The independent work units of one evaluation (one per outer fold)."""
    units = []
    for train, test in splits:
        if protocol == "study":
            units.append((_study_unit, (X, y, task, train, test, points, opts)))
        else:
            inner = _inner_splits(y, task, train, inner_folds, splits, opts.get("classes"))
            units.append((_nested_unit, (X, y, task, train, test, points, inner, opts)))
    return units


def _fold_mean(s, weights=None) -> float:
    """Mean of per-fold scores (weighted by test size when given), over the folds where it is defined."""
    ok = np.isfinite(s)
    if not ok.any():
        return float("nan")
    return float(np.average(s[ok], weights=None if weights is None else np.asarray(weights)[ok]))


def _assemble(feature, target, task, protocol, head, points, splits: Splits, y, classes, ids, unit_results,
              seconds, n_features, iid: bool, max_iter: int) -> Result:
    metrics = METRICS[task]
    prim = metrics[0]
    n_train = np.array([len(tr) for tr, _ in splits])
    n_test = np.array([len(te) for _, te in splits])
    capped_notes = []
    if protocol == "study":
        # unit_results[f] = (outputs of every point on fold f, capped flags)
        k = len(splits)
        scores = np.zeros((len(points), k))
        caps = np.zeros((len(points), k), bool)
        for f, ((_, te), (outs, cp)) in enumerate(zip(splits, unit_results)):
            caps[:, f] = cp
            for i, o in enumerate(outs):
                scores[i, f] = _metric_values(task, y[te], o, only_primary=True)[prim]
        means = np.array([_fold_mean(s, n_test if iid else None) for s in scores])
        if not np.isfinite(means).any():
            raise EvaluationError(f"no fold could be scored ({prim} is undefined on every test fold: for tags, a "
                                  "test fold needs items with and without each tag; try --shuffle)")
        best = int(np.nanargmax(means))
        chosen = [points[best]]
        outs_best = [outs[best] for outs, _ in unit_results]
        score = float(means[best])
        grid_scores = [{"params": _describe_point(p), "score": float(m), "capped_folds": int(c.sum())}
                       for p, m, c in zip(points, means, caps)]
        for p, c in zip(points, caps):
            if c.any():
                capped_notes.append(f"{_describe_point(p)}: stopped at max_iter={max_iter} in {int(c.sum())} of {k} folds"
                                    + (" (THE REPORTED POINT)" if p is chosen[0] else ""))
    else:
        chosen = [u["best"] for u in unit_results]
        chosen = [points[b] for b in chosen]
        outs_best = [u["out"] for u in unit_results]
        grid_scores = []
        score = None
        inner = np.sum([u["inner_capped"] for u in unit_results], axis=0)
        for p, c in zip(points, inner):
            if c:
                capped_notes.append(f"{_describe_point(p)}: stopped at max_iter={max_iter} in {int(c)} inner fits")

    fold_scores = {m: [] for m in metrics}
    test_idx = []
    fold_of = []
    preds = []
    for f, ((_, te), o) in enumerate(zip(splits, outs_best)):
        vals = _metric_values(task, y[te], o)
        for m in metrics:
            fold_scores[m].append(vals[m])
        test_idx.append(te)
        fold_of.append(np.full(len(te), f))
        preds.append(np.asarray(o))
    fold_scores = {m: np.asarray(v, float) for m, v in fold_scores.items()}
    if score is None:
        if not np.isfinite(fold_scores[prim]).any():
            raise EvaluationError(f"no outer fold could be scored ({prim} undefined on every test fold; try --shuffle)")
        score = float(np.nanmean(fold_scores[prim]))
    test_idx = np.concatenate(test_idx)
    y_pred = np.concatenate(preds)
    y_true = y[test_idx]
    if task == "classification":
        y_true = np.asarray(classes, dtype=object)[y_true]
        y_pred = np.asarray(classes, dtype=object)[np.asarray(y_pred, int)]
    res = Result(feature, task, protocol, head, target, metrics, fold_scores, n_train, n_test, score, chosen,
                 grid_scores, np.asarray(ids, dtype=object)[test_idx], np.concatenate(fold_of), y_true, y_pred,
                 classes, splits.description, seconds, n_features, capped_notes)
    if protocol == "study":
        res.best_index = best
        res.best_capped = bool(caps[best].any())
    return res


def _run_units(units, n_jobs: int):
    if n_jobs == 1 or len(units) <= 1:
        return [fn(*args) for fn, args in units]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(_limited)(fn, args) for fn, args in units)


def _limited(fn, args):
    """Run one unit with single-threaded BLAS (the processes are the parallelism)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return fn(*args)
    with threadpool_limits(1):
        return fn(*args)


def _check_xy(X, y, task):
    if task not in TASKS:
        raise EvaluationError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    X = np.asarray(X)
    if X.ndim != 2:
        raise EvaluationError(f"X must be a 2-D (items, features) array, got shape {X.shape}")
    if len(X) != len(y):
        raise EvaluationError(f"X has {len(X)} rows but there are {len(y)} labels")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise EvaluationError(f"X holds NaN or infinite values in {bad} rows")
    return X


def evaluate(X, y, task: str = "classification", protocol: str = "nested", *, splits: Splits | None = None,
             n_folds: int = 10, shuffle: bool = False, seed: int = 0, folds=None, split=None, groups=None,
             head: str = "svm", grid: list[dict] | None = None, scaler: str = "auto", inner_folds: int = 5,
             ids=None, feature: str = "features", target: str = "", n_jobs: int = 1, iid: bool | None = None,
             precompute: bool | str = "auto", max_iter: int = DEFAULT_MAX_ITER) -> Result:
    """Score one feature matrix on one task.

    Parameters
    ----------
    X : array, shape (n, d)
    y : array
        ``(n,)`` class labels (classification) or values (regression), or
        ``(n, T)`` 0/1 tags (multilabel).
    task : str
        ``"classification"``, ``"regression"`` or ``"multilabel"``.
    protocol : str
        ``"nested"`` (default; honest) or ``"study"`` (the published procedure;
        optimistic).  See the module docstring.
    splits : Splits, optional
        Outer folds (:func:`make_splits`); otherwise made from ``n_folds``,
        ``shuffle``, ``seed``, ``folds``, ``split``, ``groups`` (with
        ``protocol="study"``, unshuffled stratified folds use the study's
        scikit-learn allocation, :func:`legacy_stratified_folds`).
    head : str
        ``"svm"`` (the study's grid) or ``"linear"`` (logistic regression /
        ridge).
    grid : list of dict, optional
        Hyper-parameter points; default :func:`grid_for` (head, task,
        protocol, ``scaler``).
    inner_folds : int
        Inner folds of nested CV (same kind as the outer folds: stratified,
        group-aware …).
    ids : array, optional
        Item ids, for the per-item predictions.
    n_jobs : int
        Processes across outer folds.
    iid : bool, optional
        Weight folds by test size in the study score (default: True for
        ``study``, as ``GridSearchCV(iid=True)`` of the study's scikit-learn).

    Returns
    -------
    Result
    """
    return sweep({feature: X}, y, task, protocol, splits=splits, n_folds=n_folds, shuffle=shuffle, seed=seed,
                 folds=folds, split=split, groups=groups, head=head, grid=grid, scaler=scaler,
                 inner_folds=inner_folds, ids=ids, target=target, n_jobs=n_jobs, iid=iid, precompute=precompute,
                 max_iter=max_iter)[0]


def sweep(features: dict, y, task: str = "classification", protocol: str = "nested", *, splits: Splits | None = None,
          n_folds: int = 10, shuffle: bool = False, seed: int = 0, folds=None, split=None, groups=None,
          head: str = "svm", grid: list[dict] | None = None, scaler: str = "auto", inner_folds: int = 5, ids=None,
          target: str = "", n_jobs: int = 1, iid: bool | None = None, precompute: bool | str = "auto",
          max_iter: int = DEFAULT_MAX_ITER, progress=None) -> list[Result]:
    """Evaluate several feature matrices on the same folds, in parallel.

    Parameters
    ----------
    features : dict
        Feature label -> ``(n, d_i)`` array (same items, same order).
    n_jobs : int
        Worker processes; every (feature, outer fold) pair is one work unit,
        the largest first.  Other parameters as :func:`evaluate`.
    progress : callable, optional
        Called with ``(done, total)`` as units finish.

    Returns
    -------
    list of Result, in the order of ``features``.
    """
    if protocol not in PROTOCOLS:
        raise EvaluationError(f"protocol must be nested or study, got {protocol!r}")
    if not features:
        raise EvaluationError("no feature sets to evaluate")
    y_enc, classes = _encode(y, task)
    if splits is None:
        splits = make_splits(_split_labels(y, task), task, n_folds=n_folds, shuffle=shuffle, seed=seed, folds=folds,
                             split=split, groups=groups, legacy=protocol == "study")
    points = grid if grid is not None else grid_for(head, task, protocol, scaler)
    names = list(features)
    mats = {name: _check_xy(features[name], y_enc, task) for name in names}
    ids = np.arange(len(y_enc)).astype(str) if ids is None else np.asarray(ids)
    opts = {"precompute": precompute, "max_iter": int(max_iter), "classes": classes}
    all_units = []
    for name in names:
        for j, unit in enumerate(_units(mats[name], y_enc, task, splits, points, protocol, inner_folds, opts)):
            all_units.append((name, j, unit))
    # largest feature sets first (better packing across processes)
    order = sorted(range(len(all_units)), key=lambda i: -mats[all_units[i][0]].shape[1])
    start = time.perf_counter()
    outputs: dict = {}
    if n_jobs == 1:
        for n_done, i in enumerate(order, 1):
            name, j, (fn, args) = all_units[i]
            outputs[(name, j)] = fn(*args)
            if progress:
                progress(n_done, len(order))
    else:
        from joblib import Parallel, delayed

        try:
            par = Parallel(n_jobs=n_jobs, return_as="generator")
        except TypeError:  # joblib < 1.3: no generator, no progress until the end
            par = Parallel(n_jobs=n_jobs)
        gen = par(delayed(_limited)(all_units[i][2][0], all_units[i][2][1]) for i in order)
        for n_done, (i, out) in enumerate(zip(order, gen), 1):
            name, j, _ = all_units[i]
            outputs[(name, j)] = out
            if progress:
                progress(n_done, len(order))
    seconds = time.perf_counter() - start
    results = []
    for name in names:
        unit_results = [outputs[(name, j)] for j in range(len(splits))]
        rerun = []
        while True:
            r = _assemble(name, target, task, protocol, head, points, splits, y_enc, classes, ids, unit_results,
                          seconds / len(names), mats[name].shape[1], protocol == "study" if iid is None else iid,
                          int(max_iter))
            if protocol != "study" or not r.best_capped or len(rerun) >= len(points):
                break
            # the reported point must be a converged fit: re-run it without the cap, then choose again
            b = r.best_index
            again = _run_units([(_study_unit, (mats[name], y_enc, task, tr, te, [points[b]],
                                               {**opts, "max_iter": -1})) for tr, te in splits], n_jobs)
            for (outs, caps), (new_outs, _) in zip(unit_results, again):
                outs[b] = new_outs[0]
                caps[b] = False
            rerun.append(_describe_point(points[b]))
        r.capped += [f"{p}: the best point stopped at the cap and was re-run to convergence (max_iter=-1)"
                     for p in rerun]
        r.seconds = time.perf_counter() - start if len(names) == 1 else r.seconds
        results.append(r)
    return results


# =====================================================================================
# paired tests
# =====================================================================================
def paired_test(a, b, n_train=None, n_test=None) -> dict:
    """Paired comparison of two feature sets' per-fold scores on the same folds.

    Returns the mean difference ``a - b``, the corrected resampled t-test
    (Nadeau & Bengio 2003: fold scores share training data, so the plain
    paired t-test is too confident; the variance is inflated by
    ``1 + k·n_test/n_train``), its 95 % interval, the plain paired t-test and
    the Wilcoxon signed-rank test p-values, and wins/ties/losses over folds.
    """
    from scipy import stats

    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.shape != b.shape:
        raise EvaluationError("paired scores must come from the same folds")
    d = a - b
    k = len(d)
    out = {"mean_diff": float(d.mean()), "n_folds": k, "wins": int((d > 0).sum()), "ties": int((d == 0).sum()),
           "losses": int((d < 0).sum())}
    if k < 2:
        out.update({"t": float("nan"), "p": float("nan"), "ci95": [float("nan")] * 2, "p_ttest": float("nan"),
                    "p_wilcoxon": float("nan")})
        return out
    n_train = np.full(k, 9.0) if n_train is None else np.asarray(n_train, float)
    n_test = np.ones(k) if n_test is None else np.asarray(n_test, float)
    var = float(np.var(d, ddof=1))
    if var == 0.0:
        p = 1.0 if d.mean() == 0 else 0.0
        t = 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean())
        se = 0.0
    else:
        se = _corrected_se(d, n_train, n_test)
        t = float(d.mean() / se)
        p = float(2 * stats.t.sf(abs(t), k - 1))
    h = _t_quantile(k - 1) * se
    out.update({"t": t, "p": p, "ci95": [float(d.mean() - h), float(d.mean() + h)]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["p_ttest"] = float(stats.ttest_rel(a, b).pvalue) if var > 0 else p
        try:
            out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
        except ValueError:
            out["p_wilcoxon"] = float("nan")
    return out


def _paired_bootstrap(ra: Result, rb: Result, metric: str, n_boot: int = 2000) -> dict:
    """One fixed split: paired bootstrap over the shared test items."""
    ib = {k: i for i, k in enumerate(rb.ids.tolist())}
    common = [i for i, k in enumerate(ra.ids.tolist()) if k in ib]
    jb = [ib[ra.ids[i]] for i in common]
    yt = ra.y_true[common]
    pa, pb = ra.y_pred[common], rb.y_pred[jb]
    diff = _metric_values(ra.task, yt, pa)[metric] - _metric_values(ra.task, yt, pb)[metric]
    rng = np.random.default_rng(0)
    n = len(common)
    ds = []
    for _ in range(n_boot if metric in ("accuracy", "r2", "rmse") else 200):
        s = rng.integers(0, n, n)
        ds.append(_fast_metric(ra.task, metric, yt[s], pa[s]) - _fast_metric(ra.task, metric, yt[s], pb[s]))
    ds = np.asarray(ds)
    ds = ds[np.isfinite(ds)]
    p = float(min(1.0, 2 * min((ds <= 0).mean(), (ds >= 0).mean()))) if len(ds) else float("nan")
    return {"mean_diff": float(diff), "n_folds": 1, "t": float("nan"), "p": p,
            "ci95": [float(np.percentile(ds, 2.5)), float(np.percentile(ds, 97.5))] if len(ds) else [float("nan")] * 2,
            "p_ttest": float("nan"), "p_wilcoxon": float("nan"), "wins": int(diff > 0), "ties": int(diff == 0),
            "losses": int(diff < 0), "method": "paired bootstrap over test items (one split)"}


def compare(results: Sequence[Result], baselines: Iterable[str]) -> list[dict]:
    """Paired tests of every non-baseline result against every baseline (same target, same folds)."""
    baselines = list(baselines)
    out = []
    by_target: dict = {}
    for r in results:
        by_target.setdefault(r.target, {})[r.feature] = r
    for target, group in by_target.items():
        for bname in baselines:
            rb = group.get(bname)
            if rb is None:
                continue
            for name, ra in group.items():
                if name in baselines:
                    continue
                for metric in ra.metrics:
                    if len(ra.n_test) >= 2:
                        t = paired_test(ra.fold_scores[metric], rb.fold_scores[metric], ra.n_train, ra.n_test)
                        t["method"] = "corrected resampled t-test (Nadeau & Bengio) over folds"
                    else:
                        t = _paired_bootstrap(ra, rb, metric)
                    out.append({"target": target, "feature": name, "baseline": bname, "metric": metric, **t})
    return out


# =====================================================================================
# layer subsets
# =====================================================================================
def layer_subsets(spec: str = "all") -> list[str]:
    """``"all"`` → the 31 non-empty subsets of blocks 1-5 (``"12345"``, ``"1234"``, …, ``"5"``);
    otherwise a comma-separated list (``"12345,123,5"``), each normalised to ascending digits."""
    from itertools import combinations

    text = str(spec).strip().lower()
    if text == "all":
        return ["".join(map(str, c)) for k in range(5, 0, -1) for c in combinations(range(1, 6), k)]
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or any(c not in "12345" for c in part) or len(set(part)) != len(part):
            raise EvaluationError(f"layers must be digits 1-5 such as 12345 or 135 (comma-separated), or all; "
                                  f"got {part!r}")
        norm = "".join(sorted(part))
        if norm not in out:
            out.append(norm)
    if not out:
        raise EvaluationError("no layer subset given")
    return out


# =====================================================================================
# reports
# =====================================================================================
def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_table(results: Sequence[Result], tests: Sequence[dict] = (), digits: int = 3) -> str:
    """Markdown table: one row per (target, feature) with every metric's score ± std [95 % CI]."""
    if not results:
        return ""
    metrics = results[0].metrics
    best_test = {}
    for t in tests:
        if t["metric"] == results[0].primary:
            best_test.setdefault((t["target"], t["feature"]), []).append(t)
    multi_target = len({r.target for r in results}) > 1
    head = (["target"] if multi_target else []) + ["features", "d"]
    for m in metrics:
        head += [m, "± std", "95% CI"]
    head += ["vs baseline (Δ, p)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = ([r.target] if multi_target else []) + [r.feature, str(r.n_features)]
        for m in metrics:
            s = r.summary(m)
            row += [_fmt(s["score"], digits), _fmt(s["std"], digits),
                    f"[{_fmt(s['ci95'][0], digits)}, {_fmt(s['ci95'][1], digits)}]"]
        vs = best_test.get((r.target, r.feature), [])
        row.append("; ".join(f"{t['baseline']}: {t['mean_diff']:+.{digits}f}, p {_fmt_p(t['p'])}" for t in vs) or "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "x"


def _plot_confusion(r: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = r.classes
    cm = confusion_matrix(r.y_true.astype(str), r.y_pred.astype(str), labels=labels)
    n = len(labels)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=90 if n > 4 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = cm.max() if cm.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    ax.set_title(f"{r.feature} ({r.protocol}): {r.primary} {r.score:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_layers(results: Sequence[Result], baselines: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(r.target for r in results))
    fig, axes = plt.subplots(len(targets), 1, figsize=(max(6.0, 0.35 * len(results) / len(targets) + 2),
                                                       3.2 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets):
        rs = [r for r in results if r.target == target]
        bars = [r for r in rs if r.feature not in baselines]
        names = [r.feature for r in bars]
        vals = [r.score for r in bars]
        errs = []
        for r in bars:
            lo, hi = r.summary()["ci95"]
            errs.append([max(0.0, r.score - lo) if np.isfinite(lo) else 0.0,
                         max(0.0, hi - r.score) if np.isfinite(hi) else 0.0])
        errs = np.array(errs).T if errs else None
        ax.bar(range(len(bars)), vals, yerr=errs, color="#4878a8", capsize=2)
        for k, r in enumerate(r for r in rs if r.feature in baselines):
            ax.axhline(r.score, color=f"C{k + 1}", linestyle="--", label=f"{r.feature} {r.score:.3f}")
        ax.set_xticks(range(len(bars)), names, rotation=90, fontsize=8)
        metric = rs[0].primary
        ax.set_ylabel(metric)
        lo = min([r.score for r in rs] + [0.0 if metric != "roc_auc" else 0.5])
        ax.set_ylim(max(lo - 0.05, -1.0) if metric == "r2" else max(0.0, min(vals + [1.0]) - 0.15), None)
        ax.set_title(f"{target + ': ' if target else ''}{rs[0].protocol} protocol, {metric} (error bars: 95% CI)",
                     fontsize=10)
        if any(r.feature in baselines for r in rs):
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _json_safe(o):
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, np.ndarray):
        return _json_safe(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_report(out_dir, results: Sequence[Result], tests: Sequence[dict] = (), *, labels: Labels | None = None,
                 baselines: Sequence[str] = (), meta: dict | None = None, plots: bool = True) -> dict:
    """Write the report of an evaluation into ``out_dir``.

    Files: ``report.md`` (tables and notes), ``report.json`` (everything),
    ``summary.csv`` (one row per feature × metric: score, mean, std, 95 % CI),
    ``folds.csv`` (per-fold scores, sizes and chosen hyper-parameters),
    ``tests.csv`` (paired tests against baselines), ``predictions.csv``
    (per-item predictions; for tags, one row per item × tag with the score),
    ``confusion/<feature>.png`` (classification) and ``layers.png`` (when
    several layer subsets were evaluated).

    Returns
    -------
    dict
        name -> path of every file written.
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    meta = dict(meta or {})
    if results:
        r0 = results[0]
        meta.setdefault("protocol", r0.protocol)
        meta.setdefault("protocol_label", PROTOCOL_LABELS[r0.protocol])
        meta.setdefault("head", r0.head)
        meta.setdefault("task", r0.task)
        meta.setdefault("splits", r0.splits)
    import sklearn

    from . import __version__

    meta.setdefault("convfeat_version", __version__)
    meta.setdefault("sklearn_version", sklearn.__version__)
    # summary / folds / tests / predictions
    rows, frows, prow = [], [], []
    for r in results:
        for m in r.metrics:
            s = r.summary(m)
            rows.append({"target": r.target, "feature": r.feature, "protocol": r.protocol, "head": r.head,
                         "metric": m, "score": s["score"], "mean": s["mean"], "std": s["std"],
                         "ci95_low": s["ci95"][0], "ci95_high": s["ci95"][1], "n_folds": s["n_folds"],
                         "n_items": len(r.ids), "n_features": r.n_features})
        for f in range(len(r.n_test)):
            row = {"target": r.target, "feature": r.feature, "fold": f, "n_train": int(r.n_train[f]),
                   "n_test": int(r.n_test[f])}
            row.update({m: float(r.fold_scores[m][f]) for m in r.metrics})
            row["params"] = _describe_point(r.params[f] if r.protocol == "nested" else r.params[0])
            frows.append(row)
        if r.task == "multilabel":
            names = (labels.names if labels is not None else [str(j) for j in range(r.y_true.shape[1])])
            for i in range(len(r.ids)):
                for j, tag in enumerate(names):
                    prow.append({"target": r.target, "feature": r.feature, "id": r.ids[i], "fold": int(r.fold_of[i]),
                                 "tag": tag, "y_true": int(r.y_true[i, j]), "score": float(r.y_pred[i, j])})
        else:
            for i in range(len(r.ids)):
                prow.append({"target": r.target, "feature": r.feature, "id": r.ids[i], "fold": int(r.fold_of[i]),
                             "y_true": r.y_true[i], "y_pred": r.y_pred[i]})
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    files["summary.csv"] = out / "summary.csv"
    pd.DataFrame(frows).to_csv(out / "folds.csv", index=False)
    files["folds.csv"] = out / "folds.csv"
    tcols = ["target", "feature", "baseline", "metric", "mean_diff", "ci95_low", "ci95_high", "t", "p", "p_ttest",
             "p_wilcoxon", "wins", "ties", "losses", "n_folds", "method"]
    trows = [{**{k: t.get(k) for k in tcols if k not in ("ci95_low", "ci95_high")}, "ci95_low": t["ci95"][0],
              "ci95_high": t["ci95"][1]} for t in tests]
    pd.DataFrame(trows, columns=tcols).to_csv(out / "tests.csv", index=False)
    files["tests.csv"] = out / "tests.csv"
    pd.DataFrame(prow).to_csv(out / "predictions.csv", index=False)
    files["predictions.csv"] = out / "predictions.csv"
    # plots
    pngs = []
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plots = False
            meta.setdefault("notes", []).append("figures skipped: matplotlib is not installed "
                                                "(pip install matplotlib)")
    if plots:
        cls = [r for r in results if r.task == "classification"]
        if cls:
            (out / "confusion").mkdir(exist_ok=True)
            for r in cls:
                p = out / "confusion" / f"{(_safe(r.target) + '__') if r.target else ''}{_safe(r.feature)}.png"
                _plot_confusion(r, p)
                files[str(p.relative_to(out))] = p
                pngs.append(p.relative_to(out))
        subsets = [r for r in results if re.search(r"/[1-5]+$", r.feature)]
        if len({r.feature for r in subsets}) >= 2:
            _plot_layers(results, baselines, out / "layers.png")
            files["layers.png"] = out / "layers.png"
    # json
    doc = {"meta": meta, "labels": labels.report() if labels is not None else None,
           "results": [r.to_dict() for r in results], "tests": list(tests)}
    (out / "report.json").write_text(json.dumps(_json_safe(doc), indent=2))
    files["report.json"] = out / "report.json"
    # markdown
    md = [f"# convfeat evaluate: {meta.get('title', 'report')}", ""]
    md.append(f"**Protocol: {meta.get('protocol')}** — {meta.get('protocol_label')}.")
    md.append("")
    for key in ("task", "head", "splits", "grid", "labels_source", "features_files", "inner"):
        if meta.get(key):
            md.append(f"- {key.replace('_', ' ')}: {meta[key]}")
    if labels is not None:
        md.append(f"- labels: {labels.matched_on}; {len(labels)} labelled items")
        for line in labels.summary_lines():
            md.append(f"- **{line}**")
    for line in meta.get("notes", []):
        md.append(f"- {line}")
    md += ["", "## Scores", "",
           "Score = " + ("the best grid point's mean CV score (the study's figure; folds weighted by size)"
                         if meta.get("protocol") == "study" else "mean of the outer-fold scores")
           + "; ± std over folds; 95% CI = corrected resampled t interval over folds (Nadeau & Bengio; "
           "a bootstrap over test items for a single split).", ""]
    md.append(format_table(results, tests))
    if tests:
        md += ["", "## Paired tests against baselines", "",
               "Same folds; Δ = feature − baseline; p of the corrected resampled t-test (plain paired t-test and "
               "Wilcoxon beside it).", "",
               "| target | features | baseline | metric | Δ | 95% CI | p | p (t-test) | p (Wilcoxon) | W/T/L |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for t in tests:
            md.append(f"| {t['target']} | {t['feature']} | {t['baseline']} | {t['metric']} | {t['mean_diff']:+.3f} | "
                      f"[{_fmt(t['ci95'][0])}, {_fmt(t['ci95'][1])}] | {_fmt_p(t['p'])} | {_fmt_p(t['p_ttest'])} | "
                      f"{_fmt_p(t['p_wilcoxon'])} | {t['wins']}/{t['ties']}/{t['losses']} |")
    md += ["", "## Chosen hyper-parameters", ""]
    for r in results:
        if r.protocol == "study":
            md.append(f"- {r.target + ' / ' if r.target else ''}{r.feature}: {_describe_point(r.params[0])}")
        else:
            counts: dict = {}
            for p in r.params:
                counts[_describe_point(p)] = counts.get(_describe_point(p), 0) + 1
            md.append(f"- {r.target + ' / ' if r.target else ''}{r.feature}: "
                      + "; ".join(f"{k} ({v} fold{'s' if v > 1 else ''})" for k, v in counts.items()))
    if plots and ("layers.png" in files or pngs):
        md += ["", "## Figures", ""]
        if "layers.png" in files:
            md.append("![layer subsets](layers.png)")
        for p in pngs:
            md.append(f"- [{p}]({p})")
    md += ["", "Files: summary.csv, folds.csv (per-fold scores), tests.csv, predictions.csv (per item), report.json.",
           f"convfeat {meta['convfeat_version']}, scikit-learn {meta['sklearn_version']}."]
    (out / "report.md").write_text("\n".join(md) + "\n")
    files["report.md"] = out / "report.md"
    return files


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


# =====================================================================================
# feature files -> evaluation (what `convfeat evaluate` runs)
# =====================================================================================
@dataclass
class FeatureSpec:
    """One feature to evaluate: components ``(file, set)`` concatenated, and a layer subset."""

    label: str
    components: list          # [(file path, set name, is_convnet)]
    layers: str | None        # "12345" … for convnet components; None when there is none

    @property
    def baseline_like(self) -> bool:
        return all(s.startswith(("mfcc", "random")) for _, s, _ in self.components)


def _file_sets(files) -> list[tuple[str, str, bool]]:
    """(file, set, is_convnet) of every set of every file, in order."""
    from .readback import info

    out = []
    for f in files:
        d = info(f)
        for name, s in d["sets"].items():
            out.append((str(f), name, any(k in LAYER_DATASETS for k in s["datasets"])))
    return out


LAYER_DATASETS = ("layer1", "layer2", "layer3", "layer4", "layer5")


def _resolve_set(token: str, available: list) -> tuple[str, str, bool]:
    token = token.strip()
    qual = None
    if ":" in token:
        qual, token = token.rsplit(":", 1)
    hits = [a for a in available if a[1] == token and (qual is None or qual in (a[0], Path(a[0]).name, Path(a[0]).stem))]
    if not hits:
        names = sorted({a[1] for a in available})
        raise EvaluationError(f"no feature set {token!r}{' in ' + qual if qual else ''}; available: {', '.join(names)}")
    if len(hits) > 1:
        raise EvaluationError(f"feature set {token!r} is in several files ({', '.join(Path(h[0]).name for h in hits)}); "
                              f"write FILE:{token}, e.g. {Path(hits[0][0]).stem}:{token}")
    return hits[0]


def feature_specs(files, features: str | Sequence[str] | None = None, layers: str = "12345") -> list[FeatureSpec]:
    """The feature sets to evaluate.

    ``features``: comma-separated set names (``"choi2017,random,mfcc"``;
    ``a+b`` concatenates; ``FILE:set`` picks a file when several hold the name;
    ``set/135`` gives a token its own layer subsets instead of ``layers``);
    default every set of every file.  ``layers``: ``"12345"``, a comma list
    (``"12345,123,5"``) or ``"all"`` — all 31 subsets of each convnet set, plus
    ``mfcc`` and ``mfcc+<set>/12345`` when a set named ``mfcc`` is present.
    """
    available = _file_sets(files)
    if not available:
        raise EvaluationError("the feature files hold no feature sets")
    if features is None or features == "" or features == []:
        tokens = [a[1] if sum(b[1] == a[1] for b in available) == 1 else f"{Path(a[0]).stem}:{a[1]}" for a in available]
    elif isinstance(features, str):
        tokens = [t.strip() for t in features.split(",") if t.strip()]
    else:
        tokens = [str(t).strip() for t in features]
    subsets = layer_subsets(layers)
    specs: list[FeatureSpec] = []
    seen = set()

    def add(label, comps, lay):
        if label not in seen:
            seen.add(label)
            specs.append(FeatureSpec(label, comps, lay))

    for tok in tokens:
        own = None
        if "/" in tok and re.fullmatch(r"[0-9]+|all", tok.rsplit("/", 1)[1]):
            tok, own = tok.rsplit("/", 1)  # a token with its own layer subset: "choi2017/135", "mfcc+choi2017/12345"
            own = layer_subsets(own)
        comps = [_resolve_set(t, available) for t in tok.split("+")]
        if any(c[2] for c in comps):
            for sub in own or subsets:
                add(f"{tok}/{sub}", comps, sub)
        else:
            add(tok, comps, None)
    if str(layers).strip().lower() == "all":
        mfcc = [a for a in available if a[1] == "mfcc"]
        if len(mfcc) == 1:
            add("mfcc", mfcc, None)
            for tok in tokens:
                comps = [_resolve_set(t, available) for t in tok.split("+")]
                if len(comps) == 1 and comps[0][2]:
                    add(f"mfcc+{tok}/12345", mfcc + comps, "12345")
    return specs


def _load_spec(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """(ids, X) of a spec: components loaded and joined on item id, in the first one's order."""
    from .readback import load

    ids0 = None
    blocks = []
    for path, name, convnet in spec.components:
        ids, X = load(path, features=name, layers=spec.layers if convnet else "12345")
        blocks.append((ids, X))
        ids0 = ids if ids0 is None else ids0
    if len(blocks) == 1:
        return blocks[0]
    common = set(blocks[0][0].tolist())
    for ids, _ in blocks[1:]:
        common &= set(ids.tolist())
    order = [i for i in blocks[0][0].tolist() if i in common]
    parts = []
    for ids, X in blocks:
        pos = {k: r for r, k in enumerate(ids.tolist())}
        parts.append(X[[pos[i] for i in order]])
    return np.asarray(order, dtype=str), np.concatenate(parts, axis=1)


def _items_table(path) -> "object":
    """The items of a feature file as a DataFrame: id, path and metadata columns (text)."""
    import h5py
    import pandas as pd

    with h5py.File(path, "r") as h:
        data = {"id": h["items/id"].asstr()[()], "path": h["items/path"].asstr()[()]}
        if "meta" in h["items"]:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and name not in data:
                    data[name] = obj.asstr()[()]
            h["items/meta"].visititems(visit)
    return pd.DataFrame({k: list(v) for k, v in data.items()})


def run(files, labels=None, *, label_column=None, target_columns=None, tags_column=None, tag_separator=None,
        key_column=None, fold_column=None, split_column=None, group_column=None, features=None, layers="12345",
        protocol="nested", n_folds=10, shuffle=False, seed=0, head="svm", scaler="auto", inner_folds=5,
        baselines=None, n_jobs=1, max_iter=DEFAULT_MAX_ITER, out_dir=None, plots=True, progress=None,
        title=None) -> dict:
    """Evaluate the feature sets of feature file(s) against a labels manifest.

    Everything :func:`evaluate` / :func:`sweep` take, plus the file-level
    choices (see ``convfeat evaluate --help``).  ``labels=None`` uses the
    metadata columns stored with the items (from the manifest given to
    ``convfeat extract``).

    Returns
    -------
    dict
        ``results`` (list of :class:`Result`), ``tests`` (paired tests),
        ``labels`` (:class:`Labels`), ``specs``, ``splits`` (:class:`Splits`),
        ``notes`` (list of str) and ``files`` (report files, when ``out_dir``).
    """
    files = [str(f) for f in files]
    if not files:
        raise EvaluationError("give at least one feature file")
    for f in files:
        if not Path(f).exists():
            raise EvaluationError(f"no such feature file: {f}")
    specs = feature_specs(files, features, layers)
    loaded = {}
    for spec in specs:
        loaded[spec.label] = _load_spec(spec)
    common = None
    for ids, _ in loaded.values():
        common = set(ids.tolist()) if common is None else common & set(ids.tolist())
    notes = []
    union = set().union(*[set(ids.tolist()) for ids, _ in loaded.values()])
    if len(union) > len(common):
        notes.append(f"{len(union) - len(common)} items lack features in some evaluated set and are not evaluated "
                     f"(e.g. {sorted(union - common)[0]!r})")
    first_ids = loaded[specs[0].label][0].tolist()
    item_ids = [i for i in first_ids if i in common]
    paths_by_id = {}
    tables = [_items_table(f) for f in files]
    for t in tables:
        paths_by_id.update(dict(zip(t["id"], t["path"])))
    item_paths = [paths_by_id.get(i, i) for i in item_ids]
    manifest = labels
    if manifest is None:
        manifest = tables[0]
        source = f"metadata stored in {Path(files[0]).name}"
    else:
        source = str(manifest)
    lab = load_labels(manifest, item_ids, item_paths, label_column=label_column, target_columns=target_columns,
                      tags_column=tags_column, tag_separator=tag_separator, key_column=key_column,
                      fold_column=fold_column, split_column=split_column, group_column=group_column)
    lab.source = source
    if len(lab) < 2:
        raise EvaluationError(f"only {len(lab)} items have both features and labels")
    mats = {}
    for spec in specs:
        ids, X = loaded[spec.label]
        pos = {k: r for r, k in enumerate(ids.tolist())}
        mats[spec.label] = X[[pos[i] for i in lab.ids]]
    task = lab.task
    y_split = lab.y if task == "classification" else np.zeros(len(lab))
    splits = make_splits(y_split, task if task == "classification" else "regression", n_folds=n_folds,
                         shuffle=shuffle, seed=seed, folds=lab.folds, split=lab.split, groups=lab.groups,
                         legacy=protocol == "study")
    if baselines is None:
        base = [s.label for s in specs if s.baseline_like]
    else:
        wanted = [b.strip() for b in (baselines.split(",") if isinstance(baselines, str) else baselines) if b.strip()]
        base = [s.label for s in specs if s.label in wanted or (len(s.components) == 1 and s.components[0][1] in wanted)]
        missing = [w for w in wanted if not any(w == s.label or (len(s.components) == 1 and s.components[0][1] == w)
                                                 for s in specs)]
        if missing:
            raise EvaluationError(f"baseline {missing[0]!r} is not among the evaluated features "
                                  f"({', '.join(s.label for s in specs)})")
    targets = lab.names if task == "regression" else [label_column or tags_column or ""]
    results = []
    for j, target in enumerate(targets):
        y = lab.target(j) if task == "regression" else lab.y
        results += sweep(mats, y, task, protocol, splits=splits, head=head, scaler=scaler, inner_folds=inner_folds,
                         ids=lab.ids, target=target, n_jobs=n_jobs, max_iter=max_iter, progress=progress)
    tests = compare(results, base)
    grid = grid_for(head, task, protocol, scaler)
    meta = {"title": title or ", ".join(Path(f).name for f in files), "features_files": ", ".join(files),
            "labels_source": source, "grid": f"{len(grid)} points ({head} head; scaler "
            f"{'/'.join('on' if s else 'off' for s in dict.fromkeys(p['scaler'] for p in grid))})",
            "inner": f"{inner_folds} inner folds" if protocol == "nested" else "",
            "baselines": base, "notes": notes + [f"{r.target + ' / ' if r.target else ''}{r.feature}: {c}"
                                                 for r in results for c in r.capped]}
    out = {"results": results, "tests": tests, "labels": lab, "specs": specs, "splits": splits, "notes": notes,
           "baselines": base, "meta": meta}
    if out_dir is not None:
        out["files"] = write_report(out_dir, results, tests, labels=lab, baselines=base, meta=meta, plots=plots)
    return out
