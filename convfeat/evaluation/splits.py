"""Outer and inner folds: stratified / plain / group-aware k-fold, predefined folds, a fixed
train/test split, and the study's (scikit-learn ≤ 0.21) unshuffled stratified allocation."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .options import EvaluationError, check_n_folds


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


def _single_class_side(y, folds) -> tuple | None:
    """(fold number from 1, its one class code, items) of the first fold whose training side holds one class."""
    for f, (train, _) in enumerate(folds, 1):
        present = np.unique(np.asarray(y)[train])
        if len(present) == 1:
            return f, present[0], len(train)
    return None


def check_training_classes(y, splits: Splits, classes=None) -> None:
    """Refuse outer folds whose training side holds a single class.

    A classifier cannot be trained on one class: it would predict that
    class for every test item, and the fold's score would measure the folds,
    not the features.  Stratified k-fold never makes such a fold (every class
    has at least k items, :func:`_check_class_counts`); predefined folds, a
    fixed split or group-aware folds can.  ``y``: class codes (or names) of
    every item; ``classes``: the names of the codes, for the message.
    """
    found = _single_class_side(y, splits.folds)
    if found is None:
        return
    f, code, n = found
    name = str(classes[code]) if classes else str(code)
    others = [str(classes[c]) if classes else str(c) for c in np.unique(y) if c != code]
    where = "the training side of the split" if splits.kind == "split" else \
        f"the training side of fold {f} of {len(splits)}"
    listed = ", ".join(map(repr, others[:5])) + (" …" if len(others) > 5 else "")
    raise EvaluationError(f"{where} ({splits.description}) holds a single class, {name!r} ({n} items): a classifier "
                          f"cannot be trained on one class (the other class(es), {listed}, are all on its test "
                          "side); make folds whose training sides hold at least two classes (another fold, split or "
                          "group column, or stratified k-fold with --folds)")


def _folds_from_test_ids(test_of: np.ndarray) -> list:
    """One fold per distinct value of ``test_of`` (numeric values in numeric order first)."""
    idx = np.arange(len(test_of))
    out = []
    for f in sorted(set(test_of.tolist()), key=lambda v: (not str(v).lstrip("-").isdigit(),
                                                           int(v) if str(v).lstrip("-").isdigit() else 0, str(v))):
        test = idx[test_of == f]
        out.append((idx[test_of != f], test))
    return out


def _fixed_split(split, n: int) -> Splits:
    split = np.asarray(split, bool)
    if split.all() or not split.any():
        raise EvaluationError("the split column must mark some labelled items train and some test "
                              f"(it has {int(split.sum())} test of {n})")
    idx = np.arange(n)
    return Splits([(idx[~split], idx[split])], f"fixed train/test split from a column "
                  f"({int((~split).sum())} train, {int(split.sum())} test)", "split", 1)


def _predefined(folds) -> Splits:
    """One fold per value of the fold column, numbered from 1 in value order (numeric values numerically);
    when the values are not 1, 2, …, k the description says which value each number stands for."""
    folds = np.asarray(folds).astype(str)
    out = _folds_from_test_ids(folds)
    if len(out) < 2:
        raise EvaluationError("the fold column holds a single fold value; it needs at least two")
    values = [str(folds[te[0]]) for _, te in out]
    how = f"{len(out)} predefined folds from a column"
    if values != [str(f) for f in range(1, len(out) + 1)]:
        shown = ", ".join(f"{f} = {v!r}" for f, v in enumerate(values[:10], 1)) + (", …" if len(values) > 10 else "")
        how += f" (numbered {shown})"
    return Splits(out, how, "predefined", len(out))


def _with_groups(s: Splits, groups) -> Splits:
    """Predefined folds or a fixed split that also carry groups, so that the inner folds of nested CV are
    group-aware (:func:`inner_splits`).  A group on both sides of an outer fold is named in the description."""
    groups = np.asarray(groups).astype(str)
    n = len(s.folds[0][0]) + len(s.folds[0][1])
    if len(groups) != n:
        raise EvaluationError(f"the group column has {len(groups)} values for {n} items")
    crossing = sorted(set(groups[s.folds[0][0]].tolist()) & set(groups[s.folds[0][1]].tolist())) if s.kind == "split" \
        else sorted({g for tr, te in s.folds for g in set(groups[te].tolist()) & set(groups[tr].tolist())})
    n_groups = len(set(groups.tolist()))
    how = f"{s.description}; inner folds group-aware ({n_groups} groups)"
    if crossing:
        how += (f"; {len(crossing)} group(s) on both sides of an outer {'split' if s.kind == 'split' else 'fold'} "
                f"(e.g. {crossing[0]!r}): those outer scores are not group-aware")
    return Splits(s.folds, how, s.kind, s.n_folds, s.shuffle, s.seed, groups)


def _group_kfold(y, task: str, n_folds: int, shuffle: bool, seed, groups) -> Splits:
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n = len(y)
    how = f"shuffled, seed {seed}" if shuffle else "not shuffled"
    rs = seed if shuffle else None
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


def _kfold(y, task: str, n_folds: int, shuffle: bool, seed, legacy: bool) -> Splits:
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(y)
    how = f"shuffled, seed {seed}" if shuffle else "not shuffled"
    rs = seed if shuffle else None
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
        train and test.  With ``folds`` or ``split`` the outer folds are those
        given and the groups make the inner folds of nested CV group-aware
        (:func:`inner_splits`); a group that the given folds put on both
        sides of an outer fold is named in the description.
    legacy : bool
        Unshuffled stratified folds as scikit-learn ≤ 0.21 made them (the
        study's; :func:`legacy_stratified_folds`).

    Raises
    ------
    EvaluationError
        A class with fewer items than folds (naming it), fewer groups than
        folds, an empty side of a split, both a fold and a split column.
    """
    y = np.asarray(y)
    n = len(y)
    if folds is not None and split is not None:
        raise EvaluationError("give a fold column or a split column, not both (a group column combines with either)")
    if split is not None or folds is not None:
        s = _fixed_split(split, n) if split is not None else _predefined(folds)
        return _with_groups(s, groups) if groups is not None else s
    check_n_folds(n_folds)
    if n_folds > n:
        raise EvaluationError(f"{n_folds} folds need at least {n_folds} labelled items; there are {n}")
    if groups is not None:
        return _group_kfold(y, task, n_folds, shuffle, seed, groups)
    return _kfold(y, task, n_folds, shuffle, seed, legacy)


def inner_splits(y, task: str, train: np.ndarray, n_inner: int, outer: Splits, classes=None) -> list:
    """Inner folds (indices into the outer training fold ``train``) for nested CV.

    ``y`` holds the encoded labels of all items (class codes for classification,
    ``classes`` their names for the messages); the inner folds are of the outer
    folds' kind (group-aware when the outer ones are) and shuffled like them.
    """
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
    found = _single_class_side(y_tr, s.folds) if task == "classification" else None
    if found is not None:   # group-aware inner folds can leave one class (stratified ones cannot)
        name = str(classes[found[1]]) if classes else str(found[1])
        raise EvaluationError(f"an inner training fold of nested CV holds a single class, {name!r} "
                              f"({found[2]} items): the other classes are all on its test side; use fewer inner "
                              "folds (--inner-folds) or --protocol study")
    return s.folds
