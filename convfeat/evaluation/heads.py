"""Hyper-parameter grids and heads, the per-fold engine that fits every grid point on one fold
(SVC/SVR on precomputed kernels summed in libsvm's order, or the plain estimators), and the inner
search of nested CV (every point on every inner fold, or successive halving over the inner folds).
The engine that shares kernels across folds is :mod:`.kernels`."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .options import check_head, check_scaler

STUDY_C = (0.1, 2.0, 8.0, 32.0)
STUDY_GAMMAS = tuple(0.5 ** i for i in (3, 5, 7, 9, 11, 13)) + ("auto",)
LINEAR_C = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)         # logistic regression
RIDGE_ALPHA = (1e-2, 0.1, 1.0, 10.0, 100.0, 1e3)        # ridge
PRECOMPUTE_MAX_ITEMS = 5000   # above this the SVM head uses the plain estimators (memory)
HALVING_FACTOR = 3            # successive halving: a third of the points go on to three times the folds


# -- grids ------------------------------------------------------------------------------
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
    check_head(head)
    check_scaler(scaler)
    scalers = _scalers(scaler, protocol, head)
    return svm_grid(scalers) if head == "svm" else linear_grid(task, scalers)


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def describe_point(p: dict) -> str:
    """One grid point in words: ``"rbf C=2, gamma=0.03125, scaler off"``."""
    if "kernel" in p:
        g = "" if p["kernel"] == "linear" else f", gamma={'1/n_features' if p['gamma'] == 'auto' else _num(p['gamma'])}"
        return f"{p['kernel']} C={_num(p['C'])}{g}, scaler {'on' if p['scaler'] else 'off'}"
    k = "alpha" if "alpha" in p else "C"
    return f"{p['model']} {k}={_num(p[k])}, scaler {'on' if p['scaler'] else 'off'}"


# -- fitting ----------------------------------------------------------------------------
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


# -- kernels in libsvm's arithmetic ----------------------------------------------------------
def _seq_dot(A: np.ndarray, B: np.ndarray, block: int = 64) -> np.ndarray:
    """``A @ B.T`` with every dot product summed feature by feature, in order.

    That is how libsvm sums its dot products; BLAS sums in another order, and
    the last-bit differences are enough to send libsvm's SMO solver down
    another path (SVR scores then differ by up to ~1e-3).  With the same
    order the precomputed kernels reproduce the plain estimators' fits.
    ``A``: ``(n, d)``, ``B``: ``(m, d)`` float64 → ``(n, m)``.
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
    """Squared distances summed feature by feature (libsvm's RBF at prediction time); ``(n, d), (m, d) → (n, m)``."""
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


def _kernel_outputs(task, Z, ntr, y_tr, points, svm_idx, outputs, capped, max_iter) -> None:
    """Fill ``outputs``/``capped`` of the SVM points ``svm_idx`` from precomputed kernels of ``Z`` (train rows first).

    The fold's Gram matrix G and squared distances D are computed once (with
    libsvm's own arithmetic, :func:`_seq_dot`); RBF points use ``exp(-γ D)``
    and linear points G.
    """
    d = Z.shape[1]
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


def fold_outputs(X, y, task: str, train, test, points: list[dict], precompute: bool | str = "auto",
                 max_iter: int = -1) -> tuple[list, list]:
    """Test-fold outputs of every grid point, and whether each stopped at ``max_iter``.

    ``X``: ``(n, d)`` features; ``y``: encoded labels of all ``n`` items;
    ``train``/``test``: row indices.  Outputs per point — classification:
    ``(n_test,)`` predicted class codes; regression: ``(n_test,)``
    predictions; multilabel: ``(n_test, T)`` decision scores.  SVM points use
    precomputed kernels (:func:`_kernel_outputs`) when ``precompute`` (``"auto"``:
    at most :data:`PRECOMPUTE_MAX_ITEMS` rows), the plain estimators otherwise.
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
    for on in (True, False):
        idx = [i for i, p in enumerate(points) if p["scaler"] == on]
        if not idx:
            continue
        Z = _scaled(X, train, rows, on)
        svm_idx = [i for i in idx if "kernel" in points[i]]
        plain_idx = [i for i in idx if "kernel" not in points[i]]
        if svm_idx and precompute:
            _kernel_outputs(task, Z, ntr, y_tr, points, svm_idx, outputs, capped, max_iter)
        else:
            plain_idx = idx
        for i in plain_idx:
            outputs[i], capped[i] = _fit_predict_plain(task, points[i], Z[:ntr], y_tr, Z[ntr:], max_iter)
    return outputs, capped


# -- the inner search of nested CV -------------------------------------------------------------
def _row_means(scores: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # rows without a defined score: NaN
        return np.nanmean(scores, axis=1)


def inner_search(score_fold, n_points: int, n_folds: int, search: str = "full",
                 factor: int = HALVING_FACTOR) -> dict:
    """Choose a grid point by inner cross-validation.

    ``score_fold(f, idx)`` scores the points ``idx`` (a list) on inner fold ``f`` → (scores, capped
    flags).  ``"full"``: every point on every fold; the first point with the best mean wins.
    ``"halving"`` (successive halving, with the folds as the resource): every point on fold 1,
    then the best ``1/factor`` of them by mean score so far (ties: grid order) on folds 2-3, the
    best ``1/factor`` of those on folds 4-9 …, until all folds are used (or one point is left); the
    survivor with the best mean wins.  With 64 points and 5 folds that is 64 + 22·2 + 8·2 = 124 fits instead of 320.

    Returns ``{"best", "means" (over the folds each point was scored on), "scores" ((points, folds),
    NaN where not scored), "n_capped" (per point), "n_fits"}``.
    """
    scores = np.full((n_points, n_folds), np.nan)
    n_capped = np.zeros(n_points, int)
    alive = np.arange(n_points)
    done, budget, n_fits = 0, (n_folds if search == "full" else 1), 0
    while True:
        for f in range(done, min(n_folds, budget)):
            s, caps = score_fold(f, alive.tolist())
            scores[alive, f] = s
            n_capped[alive] += np.asarray(caps, int)
            n_fits += len(alive)
        done = min(n_folds, budget)
        means = _row_means(scores[:, :done])
        if done == n_folds:
            break
        ranked = alive[np.argsort(-np.where(np.isfinite(means[alive]), means[alive], -np.inf), kind="stable")]
        alive = np.sort(ranked[:-(-len(alive) // factor)])
        if len(alive) == 1:   # the choice is made
            break
        budget *= factor
    final = np.full(n_points, np.nan)
    final[alive] = means[alive]
    best = int(np.nanargmax(final)) if np.isfinite(final).any() else int(alive[0])
    return {"best": best, "means": means, "scores": scores, "n_capped": n_capped, "n_fits": n_fits}
