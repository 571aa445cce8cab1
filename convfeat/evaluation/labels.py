"""Labels manifests: read a CSV/DataFrame, match its rows to feature-file items, read the labels
(classes, numeric targets or tags) and the protocol columns, reporting whatever does not match."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .options import EvaluationError


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


# -- reading and matching -------------------------------------------------------------
def _norm_path(value: str) -> str:
    text = str(value).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _is_empty(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _read_manifest(manifest):
    """(DataFrame of text cells, source name) of a manifest path or DataFrame."""
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


def _key_candidates(df, key_column: str | None) -> list:
    if key_column is not None:
        _column(df, key_column, "key")
        return [key_column]
    candidates = [c for c in df.columns if str(c).lower() in _KEY_COLUMNS]
    if not candidates:
        raise EvaluationError("cannot tell which labels column names the items: give --key-column "
                              f"(columns: {', '.join(map(str, df.columns))})")
    return candidates


def _duplicates_message(col: str, counts: dict, dup: list) -> str:
    """The message about a key column that repeats item keys (``dup``, sorted; ``counts``: rows per value)."""
    shown = ", ".join(f"{k!r} ({counts[k]} rows)" for k in dup[:3]) + (", …" if len(dup) > 3 else "")
    return (f"key column {col!r} of the labels has duplicate values: {shown} ({len(dup)} repeated item key(s)); "
            "each item needs exactly one labels row: remove the repeated rows, or give a column with one value per "
            "item as --key-column")


def _match(df, item_ids: Sequence[str], item_paths: Sequence[str] | None, key_column: str | None):
    """(manifest column, item key kind, row index per item or -1, the column's normalised values).

    A column that repeats item keys is no key: named with ``key_column`` it is refused; found on its own
    it is passed over (the study's manifests have a genre column called ``id``), unless no other column
    matches as many items — then it is refused too, naming the repeated values.
    """
    ids = [str(i) for i in item_ids]
    keys = {"id": ids}
    if item_paths is not None:
        keys["path"] = [_norm_path(p) for p in item_paths]
    candidates = _key_candidates(df, key_column)
    best = None
    repeated = None   # the best-matching column passed over for repeated keys: (n, col, counts, dup)
    for col in candidates:
        values = [_norm_path(v) for v in df[col].astype(str)]
        counts: dict = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        for kind, item_keys in keys.items():
            n = sum(1 for k in item_keys if k in counts)
            dup = sorted({k for k in item_keys if counts.get(k, 0) > 1})
            if key_column is None and dup:
                if repeated is None or n > repeated[0]:
                    repeated = (n, col, counts, dup)
                continue  # a column that repeats values is not a key (e.g. the study's genre 'id')
            score = (n, kind == "id", -candidates.index(col))
            if best is None or score > best[0]:
                best = (score, col, kind, values, counts, dup)
    n_best = 0 if best is None else best[0][0]
    if best is not None and best[5]:   # the named key column repeats item keys
        raise EvaluationError(_duplicates_message(best[1], best[4], best[5]))
    if repeated is not None and repeated[0] > n_best:   # the column passed over matches more items
        raise EvaluationError(_duplicates_message(repeated[1], repeated[2], repeated[3]))
    if n_best == 0:
        tried = ", ".join(f"{c!r}" for c in candidates)
        example = ids[0] if ids else "(no items)"
        raise EvaluationError(f"no labels row matches any item: tried column(s) {tried} against item ids and paths "
                              f"(e.g. item id {example!r})")
    _, col, kind, values, counts, dup = best
    row_of = {v: r for r, v in enumerate(values)}
    rows = np.array([row_of.get(k, -1) for k in keys[kind]], dtype=int)
    return col, kind, rows, values


# -- the label kinds ------------------------------------------------------------------
def _split_tags(text: str, sep: str | None) -> list[str]:
    if sep is None:
        sep = next((s for s in (";", "|", ",") if s in text), None)
    parts = text.split(sep) if sep else text.split()
    return [p.strip() for p in parts if p.strip()]


def _classes(df, column: str, take) -> tuple:
    """(``(n,)`` object array of class names, sorted class names)."""
    y = np.array([str(v).strip() for v in df[column].iloc[take]], dtype=object)
    return y, sorted(set(y.tolist()))


def _tags(df, column: str, take, separator: str | None, dropped: dict) -> tuple:
    """(``(n, T)`` int8 0/1 matrix, tag names); tags on every or no item are dropped (noted in ``dropped``)."""
    lists = [_split_tags(str(v), separator) for v in df[column].iloc[take]]
    names = sorted({t for tags in lists for t in tags})
    pos = {t: j for j, t in enumerate(names)}
    y = np.zeros((len(lists), len(names)), np.int8)
    for i, tags in enumerate(lists):
        for t in tags:
            y[i, pos[t]] = 1
    keep = (y.sum(0) > 0) & (y.sum(0) < len(y))
    y_all, all_names = y, names
    if not keep.all() and keep.any():
        dropped["tags"] = (f"{int((~keep).sum())} tag(s) on every or no labelled item cannot be scored: "
                           + ", ".join(n for n, k in zip(names, keep) if not k))
        y = y[:, keep]
        names = [n for n, k in zip(names, keep) if k]
    if not names:   # every tag on every or on no item: refused with the counts by check_target
        return y_all, all_names
    return y, names


def _targets(df, columns: list, take, out_ids: list) -> tuple:
    """(``(n, t)`` float64 targets, target column names)."""
    y = np.empty((len(take), len(columns)), np.float64)
    for j, c in enumerate(columns):
        values = df[c].iloc[take].tolist()
        for i, v in enumerate(values):
            try:
                y[i, j] = float(v)
            except ValueError:
                raise EvaluationError(f"target column {c!r} is not numeric: {v!r} for item {out_ids[i]!r}") from None
    if not np.isfinite(y).all():
        raise EvaluationError("the target columns hold NaN or infinite values")
    return y, list(columns)


# -- can the labels be learned at all? ------------------------------------------------
def _counted(pairs, limit: int = 5) -> str:
    """``'rock' (40 items), 'jazz' (2 items)`` of (value, count) pairs, the first ``limit`` of them."""
    pairs = list(pairs)
    shown = ", ".join(f"{str(v)!r} ({c} item{'s' if c != 1 else ''})" for v, c in pairs[:limit])
    return shown + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")


def check_target(task: str, y, column: str, names: Sequence[str] | None = None, left_out: str = "") -> None:
    """Refuse labels that leave nothing to learn (the scores would be perfect or undefined, not informative).

    ``classification``: fewer than two classes; ``regression``: a target
    column with no variance; ``multilabel``: every tag on every item or on
    none.  ``y`` as in :attr:`Labels.y` (``(n,)`` classes, ``(n,)`` or ``(n, t)``
    values, ``(n, T)`` 0/1 tags); ``column`` names the label column (the
    message's subject), ``names`` the target columns or tags, ``left_out`` says
    which items were left out before (appended to the message).

    Raises
    ------
    EvaluationError
        Naming the column, what it holds and what to do.
    """
    y = np.asarray(y)
    if len(y) == 0:
        raise EvaluationError(f"no item has a label in column {column!r}{left_out}; check the column and the key "
                              "column (--key-column)")
    if task == "classification":
        values, counts = np.unique(y.astype(str), return_counts=True)
        if len(values) < 2:
            raise EvaluationError(f"label column {column!r} has 1 class: {_counted(zip(values, counts))}{left_out}; "
                                  "classification needs at least two classes: check --label-column (and the "
                                  "manifest), or add items of another class")
    elif task == "regression":
        cols = y.reshape(len(y), -1)
        for j in range(cols.shape[1]):
            if np.all(cols[:, j] == cols[0, j]):
                name = names[j] if names else column
                raise EvaluationError(f"target column {name!r} has no variance: all {len(y)} items are "
                                      f"{cols[0, j]:g}{left_out}; r² is undefined for a constant target: check "
                                      "--target-columns (and the manifest)")
    else:
        if y.ndim != 2 or y.shape[1] == 0:
            raise EvaluationError(f"tags column {column!r} holds no tag{left_out}")
        pos = y.sum(axis=0)
        if not ((pos > 0) & (pos < len(y))).any():
            tags = names if names else [f"tag {j}" for j in range(y.shape[1])]
            found = ", ".join(f"{t!r} on {'all' if c else 'none'} of the {len(y)} items"
                              for t, c in list(zip(tags, pos))[:5]) + (" …" if len(tags) > 5 else "")
            raise EvaluationError(f"tags column {column!r} has no tag that some items have and others lack: "
                                  f"{found}{left_out}; multi-label evaluation needs such a tag: check "
                                  "--tags-column and --tag-separator (and the manifest)")


def _left_out(df, label_cols: list, items_without: list, labels_without: list, rows: np.ndarray, classes: bool) -> str:
    """``"; left out: …"``: the items without a label and the labels rows that match no item (with their classes)."""
    parts = []
    if items_without:
        parts.append(f"{len(items_without)} item(s) without a label")
    if labels_without:
        unused = sorted(set(range(len(df))) - set(rows[rows >= 0].tolist()))
        text = f"{len(labels_without)} labels row(s) that match no item"
        if classes:
            found = sorted({str(df[label_cols[0]].iloc[r]).strip() for r in unused} - {""})
            if found:
                text += f" (class {', '.join(map(repr, found[:5]))}{' …' if len(found) > 5 else ''})"
        parts.append(text)
    return f"; left out: {', '.join(parts)}" if parts else ""


def _protocol_columns(df, take, fold_column, split_column, group_column) -> tuple:
    """(folds, split, groups) of the labelled rows ``take``: text, bool (True = test), text; None when not given."""
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
    return folds, split, groups


def _label_kind(df, label_column, target_columns, tags_column, fold_column, split_column, group_column) -> list:
    """Check the column choice; return the target column list (``[]`` unless regression)."""
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
    return list(target_columns or [])


def _labelled_rows(df, rows: np.ndarray, ids: list, keys: list, label_cols: list) -> tuple:
    """(manifest rows of the labelled items in manifest order, their ids, items without labels, labels without items)."""
    matched = rows >= 0
    has_label = matched.copy()
    for r_i, r in enumerate(rows):
        if r >= 0 and any(_is_empty(df[c].iloc[r]) for c in label_cols):
            has_label[r_i] = False
    items_without = [ids[i] for i in np.flatnonzero(~has_label)]
    used_rows = set(rows[matched].tolist())
    labels_without = [keys[r] for r in range(len(df)) if r not in used_rows]
    order = sorted(np.flatnonzero(has_label), key=lambda i: rows[i])  # manifest order
    return rows[order], [ids[i] for i in order], items_without, labels_without


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
        repeated keys, non-numeric targets, unknown split values, labels
        with nothing to learn (:func:`check_target`: one class, a constant
        target, no tag that some items have and others lack).
    """
    df, source = _read_manifest(manifest)
    targets = _label_kind(df, label_column, target_columns, tags_column, fold_column, split_column, group_column)
    col, kind, rows, keys = _match(df, item_ids, item_paths, key_column)
    label_cols = [label_column] if label_column else [tags_column] if tags_column else targets
    take, out_ids, items_without, labels_without = _labelled_rows(df, rows, [str(i) for i in item_ids], keys,
                                                                  label_cols)
    dropped: dict = {}
    if label_column:
        task = "classification"
        y, names = _classes(df, label_column, take)
    elif tags_column:
        task = "multilabel"
        y, names = _tags(df, tags_column, take, tag_separator, dropped)
    else:
        task = "regression"
        y, names = _targets(df, targets, take, out_ids)
    left_out = _left_out(df, label_cols, items_without, labels_without, rows, task == "classification")
    check_target(task, y, label_column or tags_column or ", ".join(targets), names, left_out)
    folds, split, groups = _protocol_columns(df, take, fold_column, split_column, group_column)
    return Labels(out_ids, y, task, names, folds, split, groups, items_without, labels_without,
                  f"labels column {col!r} = item {kind}", dropped, source)
