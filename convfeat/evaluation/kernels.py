"""The SVM engine on precomputed kernels: kernel matrices in libsvm's own arithmetic, computed once and
shared across grid points, folds and threads, and the fits of every grid point of a fold on them.

Why the results do not change (every value below is the very float64 the per-fold engine,
:func:`convfeat.evaluation.heads.fold_outputs`, computes, and libsvm gets the same problems):

* **Dot products and squared distances summed feature by feature, in order** — libsvm's
  arithmetic (see :func:`convfeat.evaluation.heads._seq_dot`).  A pair's value depends on the
  two rows only, so the matrix of the whole item set, computed once, holds every fold's values:
  a fold's training Gram matrix is a slice of it, and so is its test × train block.  Only the
  upper triangle is computed (``a*b == b*a`` and ``(a-b)**2 == (b-a)**2`` exactly).  When every
  value is a float32 number (features are stored as float32; the scaler's output is float32), a
  product of two is exact in float64, so BLAS rank-1 updates (``dger``, fused multiply-add or
  not) give the same sums as libsvm's ``sum += x*y``; otherwise the NumPy loop is used.
* **RBF from one distance matrix**: ``exp(-γ·D)`` per γ, with ``D = x²ᵢ + x²ⱼ - 2·dot`` for
  training (libsvm's ``kernel_rbf``) and the summed squared differences for prediction
  (libsvm's ``k_function``); linear points use the Gram matrix.  Computed in place into
  reused buffers (allocating a fresh 100 MB array costs more than the exponential here).
* **Training items grouped by class** (classification): libsvm sorts the classes and keeps
  each class's items in their order, so rows given already grouped (stably) make the same
  one-vs-one problems in the same order — with each problem's kernel entries contiguous in
  memory, which makes the fits faster.
* **Points that are the same problem are fitted once**: ``gamma='auto'`` = 1/n_features equals a
  grid γ for 32-, 128-, 512-… dimensional features; libsvm is deterministic.
* **libsvm's solver, compiled here** (:mod:`.svm_solver`) fits single-label classification: the same
  alphas, rho, iteration counts and predictions as scikit-learn's SVC, in less than half the time.
* **The matrices themselves compiled** (:mod:`.pairwise`): the same sums in the same order, vectorised
  across output columns only — the NumPy loops below are the reference and the fallback.

Sums of blocks are *not* used: the distance of a concatenation equals the sum of its blocks'
distances in exact arithmetic only (``tests/test_evaluation_engine.py`` shows the last-bit
difference), and those last bits change libsvm's path.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import pairwise, svm_solver
from .heads import _fit_predict_kernel, _scaled, fold_outputs, inner_search
from .metrics import metric_values, primary

ROW_BLOCK = 128      # rows per block of the BLAS rank-1 updates (their accumulator stays in cache)
SQ_BLOCK = 64        # rows per block of the NumPy loops
_POOL = threading.local()


# -- buffers ------------------------------------------------------------------------------------
def buffer(name: str, shape: tuple) -> np.ndarray:
    """A C-contiguous float64 array of ``shape``, reused by this thread under ``name`` (contents undefined)."""
    pool = _POOL.__dict__.setdefault("pool", {})
    size = int(np.prod(shape))
    flat = pool.get(name)
    if flat is None or flat.size < size:
        pool[name] = flat = None  # free the old one first
        pool[name] = flat = np.empty(size)
    return flat[:size].reshape(shape)


def release_buffers() -> None:
    """Free this thread's buffers (worker threads free theirs when they end)."""
    _POOL.__dict__.pop("pool", None)


# -- libsvm's arithmetic ---------------------------------------------------------------------------
def products_exact(*arrays) -> bool:
    """Whether every value is a float32 number, so that every product of two is exact in float64."""
    for a in arrays:
        a = np.asarray(a)
        if a.dtype != np.float32 and not np.array_equal(a.astype(np.float32), a):
            return False
    return True


def _dot_rows(A, BT, s, e, c0, exact) -> np.ndarray:
    """``sum_k A[s:e, k] * B[c0:, k]`` in order of k → ``(e-s, m-c0)``; ``BT`` = B.T (contiguous)."""
    if exact:
        from scipy.linalg.blas import dger

        AT = A.T
        acc = np.zeros((BT.shape[1] - c0, e - s), order="F")   # (columns, rows): rows stay contiguous
        for k in range(A.shape[1]):
            dger(1.0, BT[k, c0:], np.ascontiguousarray(AT[k, s:e]), a=acc, overwrite_a=1)
        return acc.T
    acc = np.zeros((e - s, BT.shape[1] - c0))
    tmp = np.empty_like(acc)
    for k in range(A.shape[1]):
        np.multiply(A[s:e, k, None], BT[k, None, c0:], out=tmp)
        acc += tmp
    return acc


def _sqdist_rows(A, BT, s, e, c0) -> np.ndarray:
    """``sum_k (A[s:e, k] - B[c0:, k])**2`` in order of k (libsvm's RBF at prediction time)."""
    acc = np.zeros((e - s, BT.shape[1] - c0))
    tmp = np.empty_like(acc)
    for k in range(A.shape[1]):
        np.subtract(A[s:e, k, None], BT[k, None, c0:], out=tmp)
        np.multiply(tmp, tmp, out=tmp)
        acc += tmp
    return acc


def one_blas_thread():
    """Single-threaded BLAS (its threads cost more than they give on these small rank-1 updates)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _pairwise(kind: str, A, B=None, out=None) -> np.ndarray:
    """``kind`` ("dot" or "sqdist") of every row of ``A`` with every row of ``B`` (``None``: A itself,
    the upper triangle computed and mirrored) → ``(n, m)``, into ``out`` when given.

    The compiled loops (:mod:`.pairwise`, the same values bit for bit) when available, else the
    NumPy reference (:func:`_pairwise_loop`)."""
    fast = pairwise.seq_dot if kind == "dot" else pairwise.seq_sqdist
    res = fast(A, B, out)
    if res is not None:
        return res
    with one_blas_thread():
        return _pairwise_loop(kind, A, B, out)


def _pairwise_loop(kind: str, A, B, out) -> np.ndarray:
    sym = B is None
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = A if sym else np.ascontiguousarray(B, dtype=np.float64)
    n, m = A.shape[0], B.shape[0]
    out = np.empty((n, m)) if out is None else out
    BT = np.ascontiguousarray(B.T)
    exact = kind == "dot" and products_exact(A, B)
    if kind == "dot" and exact:
        A = np.asfortranarray(A)    # its columns contiguous for the rank-1 updates
    block = ROW_BLOCK if exact else SQ_BLOCK
    for s in range(0, n, block):
        e = min(n, s + block)
        c0 = s if sym else 0
        rows = _dot_rows(A, BT, s, e, c0, exact) if kind == "dot" else _sqdist_rows(A, BT, s, e, c0)
        out[s:e, c0:] = rows
        if sym:
            out[s:e, :s] = out[:s, s:e].T
    return out


def seq_dot(A, B, out=None) -> np.ndarray:
    """``A @ B.T`` with libsvm's summation order (``sum += x[k]*y[k]``, k = 0, 1, …)."""
    return _pairwise("dot", A, B, out)


def seq_gram(A, out=None) -> np.ndarray:
    """``seq_dot(A, A)``, computing the upper triangle only."""
    return _pairwise("dot", A, None, out)


def seq_sqdist(A, B, out=None) -> np.ndarray:
    """Squared distances summed feature by feature, ``(n, d), (m, d) → (n, m)``."""
    return _pairwise("sqdist", A, B, out)


def seq_sqdist_gram(A, out=None) -> np.ndarray:
    """``seq_sqdist(A, A)``, computing the upper triangle only."""
    return _pairwise("sqdist", A, None, out)


def _distances(G, sq, out) -> np.ndarray:
    """libsvm's training-time RBF distance ``(x²ᵢ + x²ⱼ) - 2·dotᵢⱼ``, block by block into ``out``."""
    for s in range(0, G.shape[0], 256):
        e = min(G.shape[0], s + 256)
        np.add(sq[s:e, None], sq[None, :], out=out[s:e])
        out[s:e] -= 2.0 * G[s:e]
    return out


def _gather(M, rows, cols, out) -> np.ndarray:
    """``M[np.ix_(rows, cols)]`` into ``out``, block by block."""
    for s in range(0, len(rows), 256):
        np.take(M[rows[s:s + 256]], cols, axis=1, out=out[s:s + 256])
    return out


# -- kernels shared across folds ----------------------------------------------------------------
class SharedKernels:
    """The Gram and squared-distance matrices of one unscaled feature matrix over all its items.

    Computed on first use (by whichever thread needs them first, the others wait) and freed when
    the ``users`` that were announced have each called :meth:`release`.  Every fold slices them.
    """

    def __init__(self, X, users: int = 1, sqdist: bool = True):
        self.X = X
        self.users = users
        self.sqdist = sqdist
        self.G = self.SD = None
        self._lock = threading.Lock()

    def get(self) -> SharedKernels:
        with self._lock:
            if self.G is None:
                Z = np.asarray(self.X, dtype=np.float64)
                self.G = seq_gram(Z)
                self.SD = seq_sqdist_gram(Z) if self.sqdist else None
        return self

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            if self.users <= 0:
                self.G = self.SD = None


@dataclass
class FoldKernels:
    """One fold's kernel bases: training Gram ``G`` and RBF distances ``D``, and their test × train blocks."""

    G: np.ndarray
    D: np.ndarray | None
    G_te: np.ndarray
    SD_te: np.ndarray | None


def fold_kernels(X, train, test, fit_rows, scale: bool, shared: SharedKernels | None, rbf: bool) -> FoldKernels:
    """The kernel bases of a fold whose training rows are ``train`` (in the order libsvm gets them).

    ``fit_rows``: the training rows in their original order (the scaler is fitted on them, as the
    per-fold engine does); ``shared``: full-set matrices of the unscaled features, sliced when given.
    """
    ntr = len(train)
    G = buffer("G", (ntr, ntr))
    if shared is not None and not scale:
        full = shared.get()
        _gather(full.G, train, train, G)
        sq = np.diagonal(full.G)[train]
        G_te = full.G[np.ix_(test, train)]
        SD_te = full.SD[np.ix_(test, train)] if rbf else None
    else:
        Z = _scaled(X, fit_rows, np.concatenate([train, test]), scale)
        A, B = Z[:ntr], Z[ntr:]
        seq_gram(A, out=G)
        sq = np.diagonal(G).copy()
        G_te = seq_dot(B, A)
        SD_te = seq_sqdist(B, A) if rbf else None
    D = _distances(G, sq, buffer("D", (ntr, ntr))) if rbf else None
    return FoldKernels(G, D, G_te, SD_te)


# -- fits --------------------------------------------------------------------------------------------
def fit_predict(task, K_tr, y_tr, K_te, C, max_iter):
    """libsvm on a precomputed kernel → (test outputs, stopped at the cap): the compiled solver
    (:mod:`.svm_solver`, the same results, faster) for single-label classification, scikit-learn otherwise."""
    if task == "classification":
        out = svm_solver.svc_fit_predict(K_tr, y_tr, K_te, C, max_iter)
        if out is not None:
            return out
    return _fit_predict_kernel(task, K_tr, y_tr, K_te, C, max_iter)


def _kernel_key(point: dict, n_features: int):
    if point["kernel"] == "linear":
        return "linear"
    return 1.0 / n_features if point["gamma"] == "auto" else float(point["gamma"])


def _fits(task, fk: FoldKernels, y_tr, points, idx, n_features, max_iter) -> dict:
    """Fit the points ``idx`` (one scaler setting) on a fold's kernels → ``{i: (outputs, capped)}``."""
    problems: dict = {}
    for i in idx:
        key = _kernel_key(points[i], n_features)
        problems.setdefault(key, {}).setdefault(float(points[i]["C"]), []).append(i)
    out: dict = {}
    for key, by_c in problems.items():
        if key == "linear":
            K_tr, K_te = fk.G, fk.G_te
        else:
            K_tr = buffer("K", fk.D.shape)
            np.multiply(fk.D, -key, out=K_tr)      # = -γ·D, as libsvm and the per-fold engine compute it
            np.exp(K_tr, out=K_tr)
            K_te = np.exp(-key * fk.SD_te)
        for C, members in by_c.items():
            o, cap = fit_predict(task, K_tr, y_tr, K_te, C, max_iter)
            for i in members:  # the same libsvm problem: fitted once
                out[i] = (np.array(o, copy=True), cap)
    return out


def training_order(y, task: str, train) -> np.ndarray:
    """The training rows as libsvm will group them: stably by class for classification, as given otherwise."""
    train = np.asarray(train)
    if task != "classification":
        return train
    return train[np.argsort(y[train], kind="stable")]


def svm_fold_outputs(X, y, task: str, train, test, points: list, shared: SharedKernels | None = None,
                     max_iter: int = -1) -> tuple[list, list]:
    """Test-fold outputs of every SVM grid point and whether each stopped at ``max_iter``.

    The same values as :func:`convfeat.evaluation.heads.fold_outputs` with precomputed kernels:
    same arguments and outputs; ``shared`` (the full-set matrices of ``X``, unscaled) is sliced
    instead of computing the unscaled kernels of the fold again.
    """
    train = np.asarray(train)
    test = np.asarray(test)
    order = training_order(y, task, train)
    y_tr = y[order]
    outputs: list = [None] * len(points)
    capped: list = [False] * len(points)
    for on in (True, False):
        idx = [i for i, p in enumerate(points) if p["scaler"] == on]
        if not idx:
            continue
        rbf = any(points[i]["kernel"] != "linear" for i in idx)
        fk = fold_kernels(X, order, test, train, on, shared, rbf)
        for i, (o, cap) in _fits(task, fk, y_tr, points, idx, X.shape[1], max_iter).items():
            outputs[i], capped[i] = o, cap
    return outputs, capped


# -- tasks -------------------------------------------------------------------------------------------
def study_task(X, y, task, train, test, points, idx, shared, max_iter):
    """Shared engine: the points ``idx`` (one scaler setting) on one outer fold → (idx, outputs, capped)."""
    try:
        outs, caps = svm_fold_outputs(X, y, task, train, test, [points[i] for i in idx], shared, max_iter)
    finally:
        if shared is not None:
            shared.release()
    return idx, outs, caps


def engine_outputs(eng: tuple, X, y, task, train, test, points, max_iter):
    """Every point's test outputs on one fold: ``eng`` = ("shared", SharedKernels or None) for the
    shared-kernel engine (:mod:`.kernels`), ("fold", precompute) for the per-fold one."""
    kind, arg = eng
    if kind == "shared":
        return svm_fold_outputs(X, y, task, train, test, points, arg, max_iter)
    return fold_outputs(X, y, task, train, test, points, arg, max_iter)


def nested_unit(X, y, task, train, test, points, inner, eng, max_iter, search="full"):
    """Inner search on the outer training fold → chosen point → refit → outer test outputs."""
    prim = primary(task)

    def score_fold(f, idx):
        itr, ite = train[inner[f][0]], train[inner[f][1]]
        outs, caps = engine_outputs(eng, X, y, task, itr, ite, [points[i] for i in idx], max_iter)
        return [metric_values(task, y[ite], o, only_primary=True)[prim] for o in outs], caps

    try:
        s = inner_search(score_fold, len(points), len(inner), search)
        best = s["best"]
        outs, caps = engine_outputs(eng, X, y, task, train, test, [points[best]], max_iter)
        if caps[0]:  # the head that is scored must be a converged fit
            outs, caps = engine_outputs(eng, X, y, task, train, test, [points[best]], -1)
    finally:
        if eng[0] == "shared" and eng[1] is not None:
            eng[1].release()
    return {"best": best, "means": s["means"].tolist(), "out": outs[0], "capped": caps[0],
            "inner_capped": s["n_capped"].tolist(), "scores": s["scores"], "n_fits": s["n_fits"]}


def cpu_count() -> int:
    """Cores this process may use."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def run_tasks(tasks: list, n_jobs: int, progress) -> dict:
    """Run ``(key, fn, args)`` tasks in order on ``n_jobs`` threads (libsvm and NumPy release the GIL)."""
    n_jobs = max(1, cpu_count() + 1 + n_jobs) if n_jobs < 0 else n_jobs
    out: dict = {}

    def finished(key, value):
        out[key] = value
        if progress:
            progress(len(out), len(tasks))

    if n_jobs == 1 or len(tasks) <= 1:
        try:
            for key, fn, args in tasks:
                finished(key, fn(*args))
        finally:
            release_buffers()
        return out
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with one_blas_thread(), ThreadPoolExecutor(min(n_jobs, len(tasks))) as pool:
        futures = {pool.submit(fn, *args): key for key, fn, args in tasks}
        try:
            for fut in as_completed(futures):
                finished(futures[fut], fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return out
