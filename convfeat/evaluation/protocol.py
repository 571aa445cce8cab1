"""The protocols: :func:`evaluate` one feature matrix and :func:`sweep` many on the same folds, under the
study's procedure or nested CV.  SVM grids on precomputed kernels run on the shared-kernel engine
(:mod:`.kernels`: tasks per feature set, outer fold and scaler setting on threads, kernels shared);
other heads, and ``engine="fold"``, run (feature set, outer fold) work units across processes."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .heads import PRECOMPUTE_MAX_ITEMS, describe_point, fold_outputs, grid_for
from .kernels import SharedKernels, nested_unit, run_tasks, study_task
from .kernels import cpu_count as cpu_count  # re-exported: protocol.cpu_count
from .labels import check_target
from .metrics import METRICS, metric_values
from .options import PROTOCOL_LABELS, EvaluationError, Options, check_task
from .splits import Splits, check_training_classes, inner_splits, make_splits
from .stats import interval


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
    grid_fold_scores : np.ndarray
        ``study``: ``(points, folds)`` every grid point's primary-metric score on every fold.
    inner_search : str
        ``nested``: how the inner CV chose (``"halving"`` or ``"full"``).
    inner_scores : list of np.ndarray
        ``nested``: per outer fold, ``(points, inner folds)`` inner scores (NaN: not scored).
    ids, fold_of, y_true, y_pred : arrays
        Per-item predictions of the reported head (test items only);
        ``fold_of`` numbers the outer folds from 1 (fold ``f`` is
        ``splits.folds[f - 1]``), as ``folds.csv``, ``predictions.csv`` and the
        datasets' official folds do.
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
    grid_fold_scores: np.ndarray | None = None
    inner_search: str = ""
    inner_scores: list = field(default_factory=list)

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
        lo, hi = interval(s, self.n_train, self.n_test, self, metric)
        return {"metric": metric, "score": headline, "mean": mean, "std": std, "ci95": [lo, hi], "folds": s.tolist(),
                "n_folds": k}

    @property
    def protocol_label(self) -> str:
        """The protocol in words (nested CV: with the inner search)."""
        label = PROTOCOL_LABELS[self.protocol]
        if self.protocol == "nested" and self.inner_search == "halving":
            label += " (successive halving over the inner folds)"
        return label

    def to_dict(self) -> dict:
        return {"feature": self.feature, "target": self.target, "task": self.task, "protocol": self.protocol,
                "protocol_label": self.protocol_label, "head": self.head, "splits": self.splits,
                "n_items": int(len(self.ids)), "n_features": self.n_features, "score": self.score,
                "metric": self.primary, "metrics": {m: self.summary(m) for m in self.metrics},
                "n_train": self.n_train.tolist(), "n_test": self.n_test.tolist(),
                "params": [describe_point(p) for p in self.params], "grid_scores": self.grid_scores,
                "not_converged": self.capped, "seconds": self.seconds}


@dataclass
class _Job:
    """What every feature set of one sweep shares: encoded labels, folds, grid, options."""

    task: str
    y: np.ndarray           # (n,) class codes / values, or (n, T) 0/1 tags
    classes: list           # class names of the codes (classification)
    ids: np.ndarray
    splits: Splits
    points: list
    opts: Options
    target: str = ""


# -- inputs ---------------------------------------------------------------------------
def _encode(y, task, target: str = ""):
    """(encoded labels, class names) of ``y``, refused when there is nothing to learn (:func:`check_target`)."""
    check_task(task)
    column = target or "y"
    if task == "classification":
        check_target(task, y, column)
        classes, codes = np.unique(np.asarray(y).astype(str), return_inverse=True)
        return codes, [str(c) for c in classes]
    if task == "regression":
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise EvaluationError("evaluate one regression target at a time (y must be 1-D)")
        check_target(task, y, column, [column])
        return y, []
    y = np.asarray(y)
    if y.ndim != 2:
        raise EvaluationError("multi-label y must be an (n, n_tags) 0/1 matrix")
    check_target(task, y, column)
    return y.astype(np.int8), []


def _split_labels(y, task):
    """What the folds are stratified on: class names (so errors name them); nothing otherwise."""
    return np.asarray(y).astype(str) if task == "classification" else np.zeros(len(y))


def _check_xy(X, y, task):
    check_task(task)
    X = np.asarray(X)
    if X.ndim != 2:
        raise EvaluationError(f"X must be a 2-D (items, features) array, got shape {X.shape}")
    if len(X) != len(y):
        raise EvaluationError(f"X has {len(X)} rows but there are {len(y)} labels")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise EvaluationError(f"X holds NaN or infinite values in {bad} rows")
    return X


# -- work units -----------------------------------------------------------------------
def _study_unit(X, y, task, train, test, points, precompute, max_iter):
    """Per-fold engine: every grid point on one outer fold → (outputs, capped flags)."""
    return fold_outputs(X, y, task, train, test, points, precompute, max_iter)


def _units(job: _Job, X) -> list:
    """The independent work units of one feature matrix for the per-fold engine (one per outer fold)."""
    o = job.opts
    units = []
    for train, test in job.splits:
        if o.protocol == "study":
            units.append((_study_unit, (X, job.y, job.task, train, test, job.points, o.precompute, o.max_iter)))
        else:
            inner = inner_splits(job.y, job.task, train, o.inner_folds, job.splits, job.classes)
            units.append((nested_unit, (X, job.y, job.task, train, test, job.points, inner,
                                         ("fold", o.precompute), o.max_iter, o.inner_search)))
    return units


def _shared_engine(job: _Job, n_items: int) -> bool:
    """Whether the shared-kernel engine runs this job: an SVM grid on precomputed kernels."""
    o = job.opts
    if o.engine != "shared" or not all("kernel" in p for p in job.points):
        return False
    return o.precompute is True or (o.precompute == "auto" and n_items <= PRECOMPUTE_MAX_ITEMS)


def _shared_tasks(job: _Job, name: str, X) -> list:
    """The shared engine's tasks of one feature matrix: (key, function, arguments)."""
    o, pts = job.opts, job.points
    off = [i for i, p in enumerate(pts) if not p["scaler"]]
    on = [i for i, p in enumerate(pts) if p["scaler"]]
    shared = SharedKernels(X, len(job.splits), any(pts[i]["kernel"] != "linear" for i in off)) if off else None
    tasks = []
    for f, (train, test) in enumerate(job.splits):
        if o.protocol == "study":
            tasks += [((name, f, "off"), study_task, (X, job.y, job.task, train, test, pts, off, shared, o.max_iter))
                      ] if off else []
            tasks += [((name, f, "on"), study_task, (X, job.y, job.task, train, test, pts, on, None, o.max_iter))
                      ] if on else []
        else:
            inner = inner_splits(job.y, job.task, train, o.inner_folds, job.splits, job.classes)
            tasks.append(((name, f), nested_unit, (X, job.y, job.task, train, test, pts, inner, ("shared", shared),
                                                    o.max_iter, o.inner_search)))
    return tasks


def _run_shared(job: _Job, names: list, mats: dict, progress) -> dict:
    """Every task of every feature matrix on ``n_jobs`` threads → ``{(name, fold): unit output}``."""
    tasks = []
    for name in sorted(names, key=lambda n: -mats[n].shape[1]):   # largest first (better packing)
        tasks += _shared_tasks(job, name, mats[name])
    done = run_tasks(tasks, job.opts.n_jobs, progress)
    if job.opts.protocol != "study":
        return done
    merged: dict = {}
    for (name, f, _), (idx, outs, caps) in done.items():
        o, c = merged.setdefault((name, f), ([None] * len(job.points), [False] * len(job.points)))
        for i, out, cap in zip(idx, outs, caps):
            o[i], c[i] = out, cap
    return merged


def _limited(fn, args):
    """Run one unit with single-threaded BLAS (the processes are the parallelism)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return fn(*args)
    with threadpool_limits(1):
        return fn(*args)


def _run_units(units, n_jobs: int):
    if n_jobs == 1 or len(units) <= 1:
        return [fn(*args) for fn, args in units]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(_limited)(fn, args) for fn, args in units)


def _run_all(all_units: list, order: list, n_jobs: int, progress) -> dict:
    """Per-fold engine: run ``all_units[i] = (name, fold, (fn, args))`` in ``order`` on ``n_jobs``
    processes → ``{(name, fold): output}``."""
    if n_jobs == 1:
        return run_tasks([((name, j), fn, args) for name, j, (fn, args) in (all_units[i] for i in order)], 1,
                            progress)
    from joblib import Parallel, delayed

    try:
        par = Parallel(n_jobs=n_jobs, return_as="generator")
    except TypeError:  # joblib < 1.3: no generator, no progress until the end
        par = Parallel(n_jobs=n_jobs)
    gen = par(delayed(_limited)(all_units[i][2][0], all_units[i][2][1]) for i in order)
    outputs: dict = {}
    for n_done, (i, out) in enumerate(zip(order, gen), 1):
        name, j, _ = all_units[i]
        outputs[(name, j)] = out
        if progress:
            progress(n_done, len(order))
    return outputs


# -- from unit outputs to a Result ----------------------------------------------------------
def _fold_mean(s, weights=None) -> float:
    """Mean of per-fold scores (weighted by test size when given), over the folds where it is defined."""
    ok = np.isfinite(s)
    if not ok.any():
        return float("nan")
    return float(np.average(s[ok], weights=None if weights is None else np.asarray(weights)[ok]))


def _study_choice(job: _Job, unit_results, n_test) -> dict:
    """The study protocol: every point's (weighted) mean CV score; the best one is reported."""
    prim = METRICS[job.task][0]
    points, splits, max_iter = job.points, job.splits, job.opts.max_iter
    # unit_results[f] = (outputs of every point on fold f, capped flags)
    k = len(splits)
    scores = np.zeros((len(points), k))
    caps = np.zeros((len(points), k), bool)
    for f, ((_, te), (outs, cp)) in enumerate(zip(splits, unit_results)):
        caps[:, f] = cp
        for i, o in enumerate(outs):
            scores[i, f] = metric_values(job.task, job.y[te], o, only_primary=True)[prim]
    means = np.array([_fold_mean(s, n_test if job.opts.weight_folds else None) for s in scores])
    if not np.isfinite(means).any():
        raise EvaluationError(f"no fold could be scored ({prim} is undefined on every test fold: for tags, a "
                              "test fold needs items with and without each tag; try --shuffle)")
    best = int(np.nanargmax(means))
    chosen = [points[best]]
    notes = []
    for p, c in zip(points, caps):
        if c.any():
            notes.append(f"{describe_point(p)}: stopped at max_iter={max_iter} in {int(c.sum())} of {k} folds"
                         + (" (THE REPORTED POINT)" if p is chosen[0] else ""))
    return {"chosen": chosen, "outs": [outs[best] for outs, _ in unit_results], "score": float(means[best]),
            "grid_scores": [{"params": describe_point(p), "score": float(m), "capped_folds": int(c.sum())}
                            for p, m, c in zip(points, means, caps)],
            "notes": notes, "best": best, "best_capped": bool(caps[best].any()), "scores": scores}


def _nested_choice(job: _Job, unit_results) -> dict:
    """Nested CV: the point each outer fold's inner CV chose, and its outer test outputs."""
    chosen = [job.points[u["best"]] for u in unit_results]
    inner = np.sum([u["inner_capped"] for u in unit_results], axis=0)
    notes = [f"{describe_point(p)}: stopped at max_iter={job.opts.max_iter} in {int(c)} inner fits"
             for p, c in zip(job.points, inner) if c]
    return {"chosen": chosen, "outs": [u["out"] for u in unit_results], "score": None, "grid_scores": [],
            "notes": notes, "scores": [u["scores"] for u in unit_results]}


def _per_item(job: _Job, outs_best) -> tuple:
    """(metric -> ``(k,)`` fold scores, test row index per prediction, fold per prediction, y_true, y_pred)."""
    metrics = METRICS[job.task]
    fold_scores = {m: [] for m in metrics}
    test_idx, fold_of, preds = [], [], []
    for f, ((_, te), o) in enumerate(zip(job.splits, outs_best)):
        vals = metric_values(job.task, job.y[te], o)
        for m in metrics:
            fold_scores[m].append(vals[m])
        test_idx.append(te)
        fold_of.append(np.full(len(te), f + 1))   # folds are numbered from 1, as in folds.csv and manifests
        preds.append(np.asarray(o))
    fold_scores = {m: np.asarray(v, float) for m, v in fold_scores.items()}
    test_idx = np.concatenate(test_idx)
    y_pred = np.concatenate(preds)
    y_true = job.y[test_idx]
    if job.task == "classification":
        y_true = np.asarray(job.classes, dtype=object)[y_true]
        y_pred = np.asarray(job.classes, dtype=object)[np.asarray(y_pred, int)]
    return fold_scores, test_idx, np.concatenate(fold_of), y_true, y_pred


def _assemble(job: _Job, feature: str, unit_results, seconds: float, n_features: int) -> Result:
    metrics = METRICS[job.task]
    prim = metrics[0]
    n_train = np.array([len(tr) for tr, _ in job.splits])
    n_test = np.array([len(te) for _, te in job.splits])
    study = job.opts.protocol == "study"
    c = _study_choice(job, unit_results, n_test) if study else _nested_choice(job, unit_results)
    fold_scores, test_idx, fold_of, y_true, y_pred = _per_item(job, c["outs"])
    score = c["score"]
    if score is None:
        if not np.isfinite(fold_scores[prim]).any():
            raise EvaluationError(f"no outer fold could be scored ({prim} undefined on every test fold; try --shuffle)")
        score = float(np.nanmean(fold_scores[prim]))
    res = Result(feature, job.task, job.opts.protocol, job.opts.head, job.target, metrics, fold_scores, n_train,
                 n_test, score, c["chosen"], c["grid_scores"], np.asarray(job.ids, dtype=object)[test_idx], fold_of,
                 y_true, y_pred, job.classes, job.splits.description, seconds, n_features, c["notes"])
    if study:
        res.best_index = c["best"]
        res.best_capped = c["best_capped"]
        res.grid_fold_scores = c["scores"]
    else:
        res.inner_search = job.opts.inner_search
        res.inner_scores = c["scores"]
    return res


def _converged_result(job: _Job, name: str, X, unit_results, seconds: float) -> Result:
    """The Result of one feature set; under the study protocol a best point that stopped at the iteration
    cap is re-run without it (in every fold) and the choice made again, until the best point converged."""
    rerun = []
    while True:
        r = _assemble(job, name, unit_results, seconds, X.shape[1])
        if job.opts.protocol != "study" or not r.best_capped or len(rerun) >= len(job.points):
            break
        # the reported point must be a converged fit: re-run it without the cap, then choose again
        b = r.best_index
        again = _run_units([(_study_unit, (X, job.y, job.task, tr, te, [job.points[b]], job.opts.precompute, -1))
                            for tr, te in job.splits], job.opts.n_jobs)
        for (outs, caps), (new_outs, _) in zip(unit_results, again):
            outs[b] = new_outs[0]
            caps[b] = False
        rerun.append(describe_point(job.points[b]))
    r.capped += [f"{p}: the best point stopped at the cap and was re-run to convergence (max_iter=-1)"
                 for p in rerun]
    return r


# -- the protocols ----------------------------------------------------------------------------
def evaluate(X, y, task: str = "classification", protocol: str | None = None, *, options: Options | None = None,
             splits: Splits | None = None, folds=None, split=None, groups=None, ids=None, feature: str = "features",
             target: str = "", **settings) -> Result:
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
        optimistic).  See :mod:`convfeat.evaluation`.
    options : Options, optional
        How to evaluate (protocol, head, grid, scaler, folds, inner folds,
        processes, iteration cap); ``protocol`` and keyword ``settings`` (any
        :class:`Options` field: ``n_folds=4``, ``head="linear"``, ``scaler``,
        ``inner_folds``, ``shuffle``, ``seed``, ``n_jobs``, ``iid``,
        ``precompute``, ``max_iter``, ``grid``) override its fields.
    splits : Splits, optional
        Outer folds (:func:`make_splits`); otherwise made from the options'
        ``n_folds``, ``shuffle``, ``seed`` and ``folds``, ``split``, ``groups``
        (per-item arrays; with ``protocol="study"``, unshuffled stratified
        folds use the study's scikit-learn allocation,
        :func:`legacy_stratified_folds`).
    ids : array, optional
        Item ids, for the per-item predictions.

    Returns
    -------
    Result
    """
    opts = Options.resolve(options, protocol, settings, "evaluate")
    return sweep({feature: X}, y, task, options=opts, splits=splits, folds=folds, split=split, groups=groups,
                 ids=ids, target=target)[0]


def sweep(features: dict, y, task: str = "classification", protocol: str | None = None, *,
          options: Options | None = None, splits: Splits | None = None, folds=None, split=None, groups=None,
          ids=None, target: str = "", progress=None, **settings) -> list[Result]:
    """Evaluate several feature matrices on the same folds, in parallel.

    Parameters
    ----------
    features : dict
        Feature label -> ``(n, d_i)`` array (same items, same order).
    options, settings
        As :func:`evaluate`; ``n_jobs`` worker processes: every (feature,
        outer fold) pair is one work unit, the largest first.
    progress : callable, optional
        Called with ``(done, total)`` as units finish.

    Returns
    -------
    list of Result, in the order of ``features``.
    """
    opts = Options.resolve(options, protocol, settings, "sweep")
    if not features:
        raise EvaluationError("no feature sets to evaluate")
    y_enc, classes = _encode(y, task, target)
    if splits is None:
        splits = make_splits(_split_labels(y, task), task, n_folds=opts.n_folds, shuffle=opts.shuffle,
                             seed=opts.seed, folds=folds, split=split, groups=groups, legacy=opts.protocol == "study")
    if task == "classification":
        check_training_classes(y_enc, splits, classes)
    points = opts.grid if opts.grid is not None else grid_for(opts.head, task, opts.protocol, opts.scaler)
    names = list(features)
    mats = {name: _check_xy(features[name], y_enc, task) for name in names}
    ids = np.arange(len(y_enc)).astype(str) if ids is None else np.asarray(ids)
    job = _Job(task, y_enc, classes, ids, splits, points, opts, target)
    start = time.perf_counter()
    if _shared_engine(job, len(y_enc)):
        outputs = _run_shared(job, names, mats, progress)
    else:
        all_units = [(name, j, unit) for name in names for j, unit in enumerate(_units(job, mats[name]))]
        # largest feature sets first (better packing across processes)
        order = sorted(range(len(all_units)), key=lambda i: -mats[all_units[i][0]].shape[1])
        outputs = _run_all(all_units, order, opts.n_jobs, progress)
    seconds = time.perf_counter() - start
    results = []
    for name in names:
        unit_results = [outputs[(name, j)] for j in range(len(splits))]
        r = _converged_result(job, name, mats[name], unit_results, seconds / len(names))
        r.seconds = time.perf_counter() - start if len(names) == 1 else r.seconds
        results.append(r)
    return results
