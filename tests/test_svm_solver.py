"""The compiled C-SVC solver against scikit-learn's libsvm: every number of the model, bit for bit."""
import types
import warnings

import numpy as np
import pytest
from sklearn.svm import SVC

from convfeat.evaluation import kernels, svm_solver


def needs_solver():
    if not svm_solver.available():
        pytest.skip(f"compiled SVM solver unavailable: {svm_solver.unavailable_reason()}")


def problem(n_per_class, d=12, seed=0, spread=1.0, scales=None, duplicates=0):
    """Features of overlapping classes (grouped by class, ascending labels), float32 as stored."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    centres = rng.standard_normal((len(n_per_class), d)) * spread
    X = centres[y] + rng.standard_normal((len(y), d))
    if scales is not None:                      # badly conditioned, like raw MFCC statistics
        X = X * scales + 3 * scales
    if duplicates:                              # identical items: QD_i + QD_j - 2 Q_ij = 0 (libsvm's TAU)
        X[1:1 + duplicates] = X[0]
    return X.astype(np.float32), y


def linear_and_rbf(X, gamma):
    G = kernels.seq_gram(X)
    sq = np.diagonal(G).copy()
    return G, np.exp(-gamma * (sq[:, None] + sq[None, :] - 2.0 * G))


def libsvm_layout(model, n):
    """Our per-pair coefficients in libsvm's layout: support indices and dual_coef (n_classes-1, n_SV)."""
    start, count = model["start"], model["count"]
    k = len(count)
    nonzero = np.zeros(n, bool)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    for (a, b), c in zip(pairs, model["coef"]):
        nonzero[start[a]:start[a] + count[a]] |= c[:count[a]] != 0
        nonzero[start[b]:start[b] + count[b]] |= c[count[a]:] != 0
    sv = np.flatnonzero(nonzero)
    col = {s: j for j, s in enumerate(sv)}
    dual = np.zeros((k - 1, len(sv)))
    for (a, b), c in zip(pairs, model["coef"]):
        for side, (cls, row, off) in enumerate(((a, b - 1, 0), (b, a, count[a]))):
            for i in range(count[cls]):
                if nonzero[start[cls] + i]:
                    dual[row, col[start[cls] + i]] = c[off + i]
    return sv, dual


def assert_same_as_libsvm(K_tr, y, K_te, C, max_iter):
    ref = SVC(kernel="precomputed", C=C, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # ConvergenceWarning at the cap
        ref.fit(K_tr, y)
    model = svm_solver.ovo_model(K_tr, y, C, max_iter)
    sv, dual = libsvm_layout(model, len(y))
    assert np.array_equal(model["n_iter"], ref.n_iter_)
    assert np.array_equal(sv, ref.support_)
    assert np.array_equal(-model["rho"], ref._intercept_)
    assert np.array_equal(dual, ref._dual_coef_)
    pred, capped = svm_solver.svc_fit_predict(K_tr, y, K_te, C, max_iter)
    assert np.array_equal(pred, ref.predict(K_te))
    assert capped == (max_iter > 0 and ref.n_iter_.max() >= max_iter)
    return model


CASES = {
    "2 classes": dict(n_per_class=[40, 33]),
    "3 unbalanced classes": dict(n_per_class=[50, 9, 31], seed=1),
    "5 classes, close": dict(n_per_class=[30, 25, 20, 35, 12], seed=2, spread=0.4),
    "duplicate items": dict(n_per_class=[30, 30, 30], seed=3, duplicates=6),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("C", [0.1, 8.0])
def test_model_and_predictions_equal_libsvm(case, kernel, C):
    needs_solver()
    X, y = problem(**CASES[case])
    rng = np.random.default_rng(9)
    X_te = (X[rng.choice(len(X), 25)] + rng.standard_normal((25, X.shape[1]))).astype(np.float32)
    G, R = linear_and_rbf(X, 1.0 / X.shape[1])
    if kernel == "linear":
        K_tr, K_te = G, kernels.seq_dot(X_te, X)
    else:
        K_tr, K_te = R, np.exp(-kernels.seq_sqdist(X_te, X) / X.shape[1])
    model = assert_same_as_libsvm(K_tr, y, K_te, C, -1)
    assert model["n_iter"].min() > 0


@pytest.mark.parametrize("max_iter", [7, 150, 1000, 1_000_000])
def test_badly_conditioned_problems_and_the_iteration_cap(max_iter):
    """Raw-MFCC-like scales (100 .. 0.01): long runs that shrink, unshrink and stop at the cap."""
    needs_solver()
    X, y = problem([45, 40, 30], d=10, seed=4, scales=np.geomspace(100, 0.01, 10))
    X_te, _ = problem([10, 10, 10], d=10, seed=5, scales=np.geomspace(100, 0.01, 10))
    model = assert_same_as_libsvm(kernels.seq_gram(X), y, kernels.seq_dot(X_te, X), 32.0, max_iter)
    if max_iter <= 1000:
        assert model["n_iter"].max() == max_iter      # the cap was reached (and honoured exactly)


def test_many_iterations_equal_libsvm():
    """A problem that runs ~10^5 iterations per pair: any one-bit difference would have diverged."""
    needs_solver()
    X, y = problem([120, 110], d=8, seed=6, spread=0.3, scales=np.geomspace(30, 0.1, 8))
    model = assert_same_as_libsvm(kernels.seq_gram(X), y, kernels.seq_gram(X)[:20], 8.0, 200_000)
    assert model["n_iter"].max() > 20_000


def test_unusable_input_falls_back():
    """Ungrouped labels or a single class: None (the engine then uses scikit-learn)."""
    needs_solver()
    X, y = problem([10, 10])
    G = kernels.seq_gram(X)
    assert svm_solver.svc_fit_predict(G, y[::-1].copy(), G, 1.0) is None
    assert svm_solver.svc_fit_predict(G[:10, :10], y[:10], G[:3, :10], 1.0) is None


def test_engine_uses_the_solver_and_falls_back_with_the_same_predictions(monkeypatch):
    needs_solver()
    X, y = problem([30, 20, 25], seed=7)
    G = kernels.seq_gram(X)
    calls = []
    real = svm_solver.svc_fit_predict
    monkeypatch.setattr(svm_solver, "svc_fit_predict", lambda *a: calls.append(1) or real(*a))
    fast, _ = kernels.fit_predict("classification", G, y, G[:15], 2.0, -1)
    assert calls == [1]
    monkeypatch.setattr(svm_solver, "svc_fit_predict", lambda *a: None)   # as without a compiler
    slow, _ = kernels.fit_predict("classification", G, y, G[:15], 2.0, -1)
    assert np.array_equal(fast, slow)


def test_kernels_of_any_scale_equal_libsvm():
    """Tiny kernels (q_it below 1e-37: the float reciprocals of the filtered selection would leave the
    normal range, so the reference selection runs) and large ones (1e20): the same models as libsvm."""
    needs_solver()
    X, y = problem([25, 20, 15], d=6, seed=8, spread=0.5)
    G = kernels.seq_gram(X)
    for scale in (1e-40, 1e20):   # badly scaled problems can run long: capped
        assert_same_as_libsvm(G * scale, y, G[:10] * scale, 2.0, 20_000)


def test_out_of_range_kernels_go_to_scikit_learn():
    """Values beyond 1e30 (or not finite) could overflow libsvm's float Q: the solver declines (None)
    and the engine's fit_predict gives scikit-learn's predictions."""
    needs_solver()
    X, y = problem([12, 10])
    G = kernels.seq_gram(X)
    for bad in (np.inf, np.nan, 1e31):
        K = G.copy()
        K[3, 5] = K[5, 3] = bad
        assert svm_solver.svc_fit_predict(K, y, G[:4], 1.0) is None
    assert svm_solver.svc_fit_predict(G, y, G[:4], 1e29, 1000) is None          # C * n beyond 1e30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SVC(kernel="precomputed", C=1e29, max_iter=1000).fit(G, y).predict(G[:4])
    assert np.array_equal(kernels.fit_predict("classification", G, y, G[:4], 1e29, 1000)[0], ref)


def test_portable_build_gives_the_same_models(monkeypatch):
    """Built for the baseline x86-64 / any CPU (no AVX-512: 8-lane vectors lowered to narrower ones,
    the portable mask-to-bits loop): the same models as the native build."""
    needs_solver()
    from convfeat import native

    flags = [f for f in svm_solver._FLAGS if not f.startswith("-march")]
    portable, _ = native.build(svm_solver._source(), flags, "convfeat_svm_portable", svm_solver._ABI,
                               svm_solver._load)
    X, y = problem([45, 40, 30], d=10, seed=4, scales=np.geomspace(100, 0.01, 10))
    G = kernels.seq_gram(X)
    native_model = svm_solver.ovo_model(G, y, 32.0, 20_000)
    monkeypatch.setattr(svm_solver, "_library", lambda: portable)
    portable_model = svm_solver.ovo_model(G, y, 32.0, 20_000)
    assert np.array_equal(native_model["n_iter"], portable_model["n_iter"])
    assert np.array_equal(native_model["rho"], portable_model["rho"])
    assert all(np.array_equal(a, b) for a, b in zip(native_model["coef"], portable_model["coef"]))
    assert native_model["n_iter"].max() == 20_000


def test_a_failed_allocation_goes_to_scikit_learn(monkeypatch):
    """The solver reports -1 when its row tables cannot be allocated: None, and the engine's fit_predict
    gives scikit-learn's predictions instead of failing the run."""
    needs_solver()

    X, y = problem([12, 10, 9], seed=12)
    G = kernels.seq_gram(X)
    ref = SVC(kernel="precomputed", C=2.0).fit(G, y).predict(G[:6])
    no_memory = types.SimpleNamespace(convfeat_svc_ovo=lambda *args: -1)   # what the C++ returns then
    monkeypatch.setattr(svm_solver, "_library", lambda: no_memory)
    assert svm_solver.svc_fit_predict(G, y, G[:6], 2.0) is None
    assert np.array_equal(kernels.fit_predict("classification", G, y, G[:6], 2.0, -1)[0], ref)
