"""Uncertainty of cross-validated scores: corrected-t intervals (bootstrap for one split) and paired
tests of a feature set against a baseline on the same folds."""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from .metrics import BOUNDS, fast_metric, metric_values
from .options import EvaluationError

ALPHA = 0.05   # the significance level a paired test must be able to reach to be shown
BEST_PAIRING = "baseline's best subset"   # pairing of a feature with a baseline that lacks its layer subset


def _t_quantile(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def corrected_se(values, n_train, n_test) -> float:
    """Standard error of the mean of k CV values with the Nadeau-Bengio correction.

    CV folds share training data, so their scores are not independent; the
    variance of the mean is ``(1/k + n_test/n_train) σ²`` rather than ``σ²/k``
    (Nadeau & Bengio 2003, "Inference for the generalization error").
    ``values``, ``n_train``, ``n_test``: ``(k,)`` per-fold scores and sizes.
    """
    k = len(values)
    ratio = float(np.mean(np.asarray(n_test) / np.asarray(n_train)))
    return math.sqrt((1.0 / k + ratio) * float(np.var(values, ddof=1)))


def _bounded(lo: float, hi: float, metric: str | None) -> tuple:
    """``(lo, hi)`` clipped to the range of ``metric`` (:data:`~.metrics.BOUNDS`; unknown metric: unchanged)."""
    low, high = BOUNDS.get(metric, (-math.inf, math.inf))
    return float(min(max(lo, low), high)), float(min(max(hi, low), high))


def interval(s, n_train, n_test, result=None, metric: str | None = None) -> tuple:
    """95 % interval ``(low, high)`` of the mean of the per-fold scores ``s`` (``(k,)``).

    k ≥ 2: corrected resampled t interval (Nadeau & Bengio), ``mean ± t·se``;
    one fold: percentile bootstrap over the test items of ``result`` (a
    :class:`Result`; NaNs without it).

    The ends never leave the range of ``metric`` (:data:`~.metrics.BOUNDS`):
    accuracy, macro-F1, ROC-AUC and PR-AUC lie in [0, 1], r² is at most 1 and
    RMSE at least 0.  The t interval is symmetric and can cross a bound when
    the mean is near it (fold accuracies 1, 1, 0.8, 1 give [0.707, 1.193]);
    such an end is clipped to the bound ([0.707, 1.000]): the values beyond it
    are impossible, so the clipped interval holds every possible value the
    symmetric one held — its coverage is unchanged — and the other end is
    left as it is.  (A transformed interval, e.g. on the logit scale, is
    undefined when every fold scores 1; the bootstrap's percentiles are
    inside the range already.)
    """
    k = len(s)
    if k >= 2:
        se = corrected_se(s, n_train, n_test)
        h = _t_quantile(k - 1) * se
        m = float(np.mean(s))
        return _bounded(m - h, m + h, metric)
    if result is None:
        return float("nan"), float("nan")
    # one fixed split: bootstrap over the test items
    rng = np.random.default_rng(0)
    n = len(result.y_true)
    vals = []
    for _ in range(1000 if metric in ("accuracy", "r2", "rmse") else 200):
        b = rng.integers(0, n, n)
        v = fast_metric(result.task, metric, result.y_true[b], result.y_pred[b])
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    return _bounded(float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)), metric)


def _degenerate(d: np.ndarray) -> tuple:
    """(t, p, se) of a paired difference with zero variance."""
    p = 1.0 if d.mean() == 0 else 0.0
    t = 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean())
    return t, p, 0.0


def paired_test(a, b, n_train=None, n_test=None) -> dict:
    """Paired comparison of two feature sets' per-fold scores on the same folds.

    Returns the mean difference ``a - b``, the corrected resampled t-test
    (Nadeau & Bengio 2003: fold scores share training data, so the plain
    paired t-test is too confident; the variance is inflated by
    ``1 + k·n_test/n_train``), its 95 % interval, the plain paired t-test and
    the Wilcoxon signed-rank test p-values, and wins/ties/losses over folds.
    ``a``, ``b``, ``n_train``, ``n_test``: ``(k,)``; default sizes: 9:1.
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
        t, p, se = _degenerate(d)
    else:
        se = corrected_se(d, n_train, n_test)
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


def _paired_bootstrap(ra, rb, metric: str, n_boot: int = 2000) -> dict:
    """One fixed split: paired bootstrap over the shared test items of two results."""
    ib = {k: i for i, k in enumerate(rb.ids.tolist())}
    common = [i for i, k in enumerate(ra.ids.tolist()) if k in ib]
    jb = [ib[ra.ids[i]] for i in common]
    yt = ra.y_true[common]
    pa, pb = ra.y_pred[common], rb.y_pred[jb]
    diff = metric_values(ra.task, yt, pa)[metric] - metric_values(ra.task, yt, pb)[metric]
    rng = np.random.default_rng(0)
    n = len(common)
    ds = []
    for _ in range(n_boot if metric in ("accuracy", "r2", "rmse") else 200):
        s = rng.integers(0, n, n)
        ds.append(fast_metric(ra.task, metric, yt[s], pa[s]) - fast_metric(ra.task, metric, yt[s], pb[s]))
    ds = np.asarray(ds)
    ds = ds[np.isfinite(ds)]
    p = float(min(1.0, 2 * min((ds <= 0).mean(), (ds >= 0).mean()))) if len(ds) else float("nan")
    return {"mean_diff": float(diff), "n_folds": 1, "t": float("nan"), "p": p,
            "ci95": [float(np.percentile(ds, 2.5)), float(np.percentile(ds, 97.5))] if len(ds) else [float("nan")] * 2,
            "p_ttest": float("nan"), "p_wilcoxon": float("nan"), "wins": int(diff > 0), "ties": int(diff == 0),
            "losses": int(diff < 0), "method": "paired bootstrap over test items (one split)"}


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can give with ``n`` non-zero differences:
    every difference of one sign, ``2 / 2**n`` (3 folds: 0.25; 5: 0.0625; 6: 0.03125)."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def _drop_unreachable(t: dict, alpha: float = ALPHA) -> dict:
    """``t`` without the Wilcoxon p when that test cannot reach ``alpha`` with the folds at hand, and why."""
    n = t.get("wins", 0) + t.get("losses", 0)
    if t.get("n_folds", 0) >= 2 and min_wilcoxon_p(n) > alpha:
        t["p_wilcoxon"] = float("nan")
        t["wilcoxon_note"] = (f"Wilcoxon not shown: with {n} non-zero fold difference{'s' if n != 1 else ''} its "
                              f"smallest possible p is {min_wilcoxon_p(n):.3g} > {alpha}")
    return t


def _split_label(label: str) -> tuple[str, str | None]:
    """``"random/12345"`` → ``("random", "12345")``; a label without a layer subset → ``(label, None)``."""
    stem, _, sub = label.rpartition("/")
    return (stem, sub) if stem and sub.isdigit() else (label, None)


def pair_baselines(features: Sequence[str], baselines: Iterable[str], scores: dict) -> list[tuple]:
    """Like-for-like pairs ``(feature, baseline, pairing)`` for the paired tests.

    A baseline set evaluated on several layer subsets (``random/12345``, ``random/5``, …) is paired with a
    feature on the same subset (``choi2017/5`` with ``random/5``: ``pairing = "same layers"``); when it lacks
    that subset, with its best subset by ``scores`` (label → headline score, higher is better) and
    ``pairing = "baseline's best subset"``.  A baseline without subsets (``mfcc``) pairs with every feature
    (``pairing = "baseline"``).  Baselines are not paired with each other.
    """
    baselines = list(baselines)
    by_stem: dict = {}
    for b in baselines:
        stem, sub = _split_label(b)
        by_stem.setdefault(stem, {})[sub] = b
    out = []
    for name in features:
        if name in baselines:
            continue
        sub = _split_label(name)[1]
        for stem, subs in by_stem.items():
            if None in subs and len(subs) == 1:
                out.append((name, subs[None], "baseline"))
            elif sub in subs:
                out.append((name, subs[sub], "same layers"))
            else:
                best = max(subs.values(), key=lambda b: (np.nan_to_num(scores.get(b, -np.inf), nan=-np.inf), b))
                out.append((name, best, BEST_PAIRING))
    return out


def compare(results: Sequence, baselines: Iterable[str]) -> list[dict]:
    """Paired tests of every non-baseline result against the baselines, like for like (same target, same folds).

    ``results``: :class:`Result` objects; ``baselines``: their feature labels.  Each feature is paired with
    each baseline set once (:func:`pair_baselines`: the same layer subset, else the baseline's best subset;
    ``pairing`` says which).  A test that cannot reach p < 0.05 with the folds at hand is left out (``NaN``)
    with the reason in ``wilcoxon_note``.  One dict per (target, feature, baseline, metric).
    """
    baselines = list(baselines)
    out = []
    by_target: dict = {}
    for r in results:
        by_target.setdefault(r.target, {})[r.feature] = r
    for target, group in by_target.items():
        present = [b for b in baselines if b in group]
        scores = {b: group[b].score for b in present}   # primary metrics are higher-is-better (metrics.METRICS)
        for name, bname, pairing in pair_baselines(list(group), present, scores):
            ra, rb = group[name], group[bname]
            for metric in ra.metrics:
                if len(ra.n_test) >= 2:
                    t = paired_test(ra.fold_scores[metric], rb.fold_scores[metric], ra.n_train, ra.n_test)
                    t["method"] = "corrected resampled t-test (Nadeau & Bengio) over folds"
                    _drop_unreachable(t)
                else:
                    t = _paired_bootstrap(ra, rb, metric)
                out.append({"target": target, "feature": name, "baseline": bname, "pairing": pairing,
                            "metric": metric, **t})
    return out
