"""The shared-kernel SVM engine (convfeat.evaluation.kernels) gives the per-fold engine's figures exactly,
and scikit-learn's; successive halving chooses as documented.

Every check compares with a computation made independently here: plain NumPy loops in libsvm's order,
scikit-learn's GridSearchCV on Pipeline(StandardScaler | passthrough, SVC/SVR), or the per-fold engine.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from convfeat import evaluation as ev
from convfeat.evaluation import heads, kernels


# -- data ---------------------------------------------------------------------------------------------
def classes(n_per=(14, 9, 12), d=7, seed=0, sep=1.2):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(n_per), d)) * sep
    X = np.concatenate([c + rng.standard_normal((k, d)) for c, k in zip(centres, n_per)])
    X = X * rng.uniform(0.1, 20, d) + 3                     # scaling matters
    y = np.repeat([f"c{i}" for i in range(len(n_per))], n_per)
    perm = rng.permutation(len(y))                           # classes interleaved, as in real manifests
    return X[perm].astype(np.float32), y[perm]


def targets(n=45, d=4, seed=1):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * np.array([1, 10, 0.1, 3][:d])).astype(np.float32)
    return X, np.tanh(X @ rng.standard_normal(d) / 5 + 0.3 * rng.standard_normal(n))


def libsvm_dot(A, B):
    """sum += a[k]*b[k], k = 0, 1, … — one pair at a time, in float64, as libsvm's Kernel::dot."""
    out = np.empty((len(A), len(B)))
    for i, a in enumerate(np.asarray(A, np.float64)):
        for j, b in enumerate(np.asarray(B, np.float64)):
            s = 0.0
            for x, z in zip(a.tolist(), b.tolist()):
                s += x * z
            out[i, j] = s
    return out


def libsvm_sqdist(A, B):
    """sum += (a[k]-b[k])**2 — libsvm's k_function for RBF (dense)."""
    out = np.empty((len(A), len(B)))
    for i, a in enumerate(np.asarray(A, np.float64)):
        for j, b in enumerate(np.asarray(B, np.float64)):
            s = 0.0
            for x, z in zip(a.tolist(), b.tolist()):
                t = x - z
                s += t * t
            out[i, j] = s
    return out


# -- kernels in libsvm's arithmetic ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_are_libsvm_sums_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    # float32 values: BLAS rank-1 updates (exact products); float64 values: the NumPy loop
    A = (rng.standard_normal((150, 21)) * rng.uniform(0.01, 500, 21)).astype(dtype)
    B = (rng.standard_normal((17, 21)) * 7).astype(dtype)
    assert kernels.products_exact(A, B) == (dtype == np.float32)
    np.testing.assert_array_equal(kernels.seq_gram(A), libsvm_dot(A, A))
    np.testing.assert_array_equal(kernels.seq_dot(B, A), libsvm_dot(B, A))
    np.testing.assert_array_equal(kernels.seq_sqdist(B, A), libsvm_sqdist(B, A))
    np.testing.assert_array_equal(kernels.seq_sqdist_gram(A), libsvm_sqdist(A, A))
    # and the per-fold engine's own helpers
    A64 = A.astype(np.float64)
    np.testing.assert_array_equal(kernels.seq_gram(A), heads._seq_dot(A64, A64))


def test_sum_of_block_distances_is_not_the_distance_of_the_concatenation():
    # why layer subsets do not share distances: the blocks' sums added differ in the last bits
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((60, 32)).astype(np.float32), rng.standard_normal((60, 32)).astype(np.float32)
    whole = kernels.seq_sqdist_gram(np.concatenate([a, b], 1))
    parts = kernels.seq_sqdist_gram(a) + kernels.seq_sqdist_gram(b)
    np.testing.assert_allclose(whole, parts, rtol=1e-13)
    assert (whole != parts).any()


def test_fold_kernels_sliced_from_the_full_set_equal_the_fold_computed_alone():
    X, y = classes()
    codes = np.unique(y, return_inverse=True)[1]
    train, test = np.arange(8, len(y)), np.arange(8)
    order = kernels.training_order(codes, "classification", train)
    assert (np.diff(codes[order]) >= 0).all() and sorted(order) == sorted(train)
    shared = kernels.SharedKernels(X)
    alone = kernels.fold_kernels(X, order, test, train, False, None, True)
    alone = {k: np.array(getattr(alone, k)) for k in ("G", "D", "G_te", "SD_te")}   # (buffers are reused)
    sliced = kernels.fold_kernels(X, order, test, train, False, shared, True)
    for k, v in alone.items():
        np.testing.assert_array_equal(getattr(sliced, k), v)
    Z = X[order].astype(np.float64)
    np.testing.assert_array_equal(alone["G"], libsvm_dot(Z, Z))
    sq = np.diagonal(alone["G"])
    np.testing.assert_array_equal(alone["D"], sq[:, None] + sq[None, :] - 2.0 * alone["G"])
    # exp of a slice = slice of exp: one γ's kernel may be cut from the full set's
    D = shared.get().G.diagonal()[:, None] + shared.G.diagonal()[None, :] - 2.0 * shared.G
    np.testing.assert_array_equal(np.exp(-0.125 * D)[np.ix_(order, order)], np.exp(-0.125 * alone["D"]))


def test_libsvm_gives_the_same_model_on_rows_grouped_by_class():
    from sklearn.svm import SVC

    X, y = classes(seed=4)
    Z = X.astype(np.float64)
    K = np.exp(-0.01 * libsvm_sqdist(Z, Z))
    p = np.argsort(y, kind="stable")
    a = SVC(kernel="precomputed", C=2).fit(K, y)
    b = SVC(kernel="precomputed", C=2).fit(K[np.ix_(p, p)], y[p])
    np.testing.assert_array_equal(a.dual_coef_, b.dual_coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    np.testing.assert_array_equal(a.support_, p[b.support_])
    np.testing.assert_array_equal(a.decision_function(K[:9]), b.decision_function(K[:9][:, p]))


# -- the engine = the per-fold engine = scikit-learn ------------------------------------------------------
@pytest.mark.parametrize("task", ["classification", "regression", "multilabel"])
def test_fold_outputs_equal_the_per_fold_engine(task):
    if task == "regression":
        X, y = targets()
    else:
        X, labels = classes()
        y = np.unique(labels, return_inverse=True)[1]
        if task == "multilabel":
            y = np.stack([y == 0, y != 1, np.arange(len(y)) % 3 == 0], 1).astype(np.int8)
    points = ev.svm_grid((True, False))
    shared = kernels.SharedKernels(X, users=2)
    for train, test in (np.arange(9, len(y)), np.arange(9)), (np.arange(len(y) - 11), np.arange(len(y) - 11, len(y))):
        old = heads.fold_outputs(X, y, task, train, test, points, True, 10_000)
        new = kernels.svm_fold_outputs(X, y, task, train, test, points, shared, 10_000)
        assert old[1] == new[1]
        for a, b in zip(old[0], new[0]):
            np.testing.assert_array_equal(a, b)
        shared.release()
    assert shared.G is None   # freed after its announced users


def _gridsearch(X, y, splits, regression):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR

    grid = [{"clf__C": list(ev.STUDY_C), "clf__kernel": ["rbf"], "clf__gamma": list(ev.STUDY_GAMMAS),
             "scale": [StandardScaler(), "passthrough"]},
            {"clf__C": list(ev.STUDY_C), "clf__kernel": ["linear"], "scale": [StandardScaler(), "passthrough"]}]
    pipe = Pipeline([("scale", StandardScaler()), ("clf", SVR() if regression else SVC())])
    res = GridSearchCV(pipe, grid, cv=splits.folds).fit(X, y).cv_results_
    return np.stack([res[f"split{k}_test_score"] for k in range(len(splits))], 1)


def test_every_fold_score_of_every_grid_point_equals_gridsearchcv_classification():
    X, y = classes(n_per=(15, 12, 13), d=8, seed=2)
    s = ev.make_splits(y, n_folds=4)
    r = ev.evaluate(X, y, "classification", "study", splits=s, scaler="both", engine="shared", n_jobs=2)
    theirs = _gridsearch(X, y, s, False)
    assert r.grid_fold_scores.shape == (64, 4)
    np.testing.assert_array_equal(r.grid_fold_scores, theirs)     # 64 points x 4 folds, exactly
    assert 0.4 < r.score < 1.0


def test_every_fold_score_of_every_grid_point_equals_gridsearchcv_regression():
    X, y = targets(n=50)
    s = ev.make_splits(y, "regression", n_folds=5)
    r = ev.evaluate(X, y, "regression", "study", splits=s, scaler="both", max_iter=-1, engine="shared", n_jobs=2)
    np.testing.assert_allclose(r.grid_fold_scores, _gridsearch(X, y, s, True), rtol=0, atol=1e-12)


def _same(a, b):
    assert a.feature == b.feature and a.score == b.score and a.params == b.params and a.capped == b.capped
    for m in a.metrics:
        np.testing.assert_array_equal(a.fold_scores[m], b.fold_scores[m])
    assert (a.y_pred == b.y_pred).all() and (a.ids == b.ids).all()
    if a.protocol == "study":
        np.testing.assert_array_equal(a.grid_fold_scores, b.grid_fold_scores)
        assert a.grid_scores == b.grid_scores


@pytest.mark.parametrize("protocol, search", [("study", "full"), ("nested", "full"), ("nested", "halving")])
def test_sweeps_of_both_engines_are_identical(protocol, search):
    X, y = classes(n_per=(16, 11, 14), d=6, seed=7)
    rng = np.random.default_rng(0)
    feats = {"a": X, "a32": np.repeat(X, 6, axis=1)[:, :32],   # 32 features: gamma 'auto' = 2^-5, fitted once
             "b": (X[:, :3] + rng.standard_normal((len(y), 3)).astype(np.float32))}
    grid = [p for p in ev.svm_grid((True, False))      # 16 points: both kernels and scalers, 'auto' and its twin
            if p["C"] in (0.1, 32) and p.get("gamma", 0.125) in (0.125, 2.0 ** -5, "auto")]
    kw = dict(n_folds=4, inner_folds=3, grid=grid, inner_search=search, max_iter=20_000)
    old = ev.sweep(feats, y, "classification", protocol, engine="fold", n_jobs=2, **kw)
    new = ev.sweep(feats, y, "classification", protocol, engine="shared", n_jobs=2, **kw)
    one = ev.sweep(feats, y, "classification", protocol, engine="shared", n_jobs=1, **kw)
    for a, b, c in zip(old, new, one):
        _same(a, b)
        _same(a, c)


def test_identical_problems_are_fitted_once(monkeypatch):
    X, labels = classes(d=32)
    y = np.unique(labels, return_inverse=True)[1]
    calls = []
    fit = kernels.fit_predict
    monkeypatch.setattr(kernels, "fit_predict", lambda *a: calls.append(a[4]) or fit(*a))
    points = ev.svm_grid((False,))
    outs, _ = kernels.svm_fold_outputs(X, y, "classification", np.arange(8, len(y)), np.arange(8), points)
    auto = [i for i, p in enumerate(points) if p.get("gamma") == "auto"]
    twin = [i for i, p in enumerate(points) if p.get("gamma") == 2.0 ** -5]
    assert len(calls) == len(points) - len(auto)          # 1/32 = 2^-5: the 'auto' points are not fitted again
    for i, j in zip(auto, twin):
        np.testing.assert_array_equal(outs[i], outs[j])


# -- successive halving ---------------------------------------------------------------------------------
def _replay(scores, search="halving"):
    seen = []

    def score_fold(f, idx):
        seen.append((f, list(idx)))
        return scores[idx, f], [False] * len(idx)

    return heads.inner_search(score_fold, scores.shape[0], scores.shape[1], search), seen


def test_successive_halving_rounds_and_choice():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.4, 0.6, (64, 5))
    scores[37] += 0.2                                  # clearly best: found by both searches
    half, seen = _replay(scores)
    assert [len(idx) for _, idx in seen] == [64, 22, 22, 8, 8] and [f for f, _ in seen] == [0, 1, 2, 3, 4]
    assert half["n_fits"] == 124 and half["best"] == 37
    assert np.isnan(half["scores"]).sum() == 64 * 5 - 124
    # the survivors of a round are the points with the best means so far
    assert set(seen[1][1]) == set(np.argsort(-scores[:, 0], kind="stable")[:22].tolist())
    full, seen = _replay(scores, "full")
    assert full["n_fits"] == 320 and full["best"] == 37 and len(seen) == 5
    assert full["best"] == int(np.argmax(scores.mean(1)))


def test_successive_halving_can_drop_the_full_searchs_choice():
    # the cost of the cheaper search: a point poor on the first inner fold but best on average
    scores = np.full((9, 5), 0.5)
    scores[0] = [0.3, 0.9, 0.9, 0.9, 0.9]
    scores[1, 0] = 0.6
    assert _replay(scores, "full")[0]["best"] == 0
    half = _replay(scores)[0]      # fold 1 keeps points 1, 2, 3; folds 2-3 keep point 1, the last survivor
    assert half["best"] == 1 and half["n_fits"] == 9 + 3 * 2


def test_successive_halving_ignores_undefined_scores_and_stops_with_one_point():
    scores = np.array([[np.nan, 0.5, 0.5], [0.4, 0.9, 0.9], [np.nan, np.nan, np.nan]])
    half = _replay(scores)[0]
    assert half["best"] == 1 and half["n_fits"] == 3       # one survivor after fold 1: chosen, no more fits
    assert _replay(scores, "full")[0]["best"] == 1
    assert _replay(np.full((4, 3), np.nan), "full")[0]["best"] == 0


def test_nested_halving_scores_a_third_of_the_inner_fits():
    X, y = classes(n_per=(16, 11, 14), d=6, seed=7)
    kw = dict(n_folds=3, inner_folds=5, scaler="both", max_iter=20_000, n_jobs=2)
    full = ev.evaluate(X, y, "classification", "nested", inner_search="full", **kw)
    half = ev.evaluate(X, y, "classification", "nested", inner_search="halving", **kw)
    assert all(np.isfinite(s).sum() == 64 * 5 for s in full.inner_scores)
    assert all(np.isfinite(s).sum() <= 124 for s in half.inner_scores)
    assert "successive halving" in half.to_dict()["protocol_label"]
    assert "successive halving" not in full.to_dict()["protocol_label"]
    # halving replayed on the full search's inner scores makes the real halving run's choices
    points = ev.grid_for("svm", "classification", "nested")
    for s, p in zip(full.inner_scores, half.params):
        assert points[_replay(s)[0]["best"]] == p


# -- options and imports --------------------------------------------------------------------------------
def test_engine_and_inner_search_options_are_checked():
    assert ev.Options().engine == "shared"
    with pytest.raises(ev.EvaluationError, match="engine must be shared or fold"):
        ev.Options(engine="fast")
    with pytest.raises(ev.EvaluationError, match="inner_search must be halving or full"):
        ev.Options(inner_search="grid")


def test_the_engine_does_not_import_torch():
    code = "import convfeat.evaluation.kernels, sys; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
