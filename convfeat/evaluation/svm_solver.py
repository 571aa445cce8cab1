"""libsvm's one-vs-one C-SVC on a precomputed kernel, compiled here, with scikit-learn's results bit for bit.

The study protocol spends its time in libsvm's SMO iterations (unscaled MFCC statistics make
badly conditioned linear problems that run to the 10⁶-iteration cap in many of the 78 pairs of a
13-class fold).  ``svm_solver.cpp`` runs the same algorithm — working-set selection, updates,
shrinking, gradient reconstruction, rho and the one-vs-one vote, every operation in libsvm's
order and precision (float Q entries, no fused multiply-add) — with the kernel rows of a pair in
one table and the per-iteration passes vectorised: same alphas, rho, iteration counts and
predictions as ``sklearn.svm.SVC(kernel="precomputed")`` (tests/test_svm_solver.py compares all
of them on problems that converge, stop at the cap, shrink and unshrink, and have duplicate items),
3.3-5.4 times as fast on one fold's slow fits (``python bench/evaluate.py --solver``).

Used by the shared-kernel engine (:mod:`.kernels`) for single-label classification; regression,
multi-label tasks, one-class folds, kernel values beyond 1e30 (where libsvm's float Q entries could
overflow), row tables too large for memory and machines without a C++ compiler use scikit-learn (a one-time warning says why when
there is no compiler).  ``CONVFEAT_FAST=0`` turns it off as it does the inference kernels.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from .. import native

__all__ = ["available", "unavailable_reason", "svc_fit_predict", "ovo_model", "LIBSVM_TOL"]

LIBSVM_TOL = 1e-3     # scikit-learn's SVC default tol, libsvm's eps (the stopping tolerance)
_FLAGS = native.EXACT_FLAGS
_ABI = 2


def _source() -> str:
    return native.source("convfeat.evaluation", "svm_solver.cpp")


_P, _L, _I, _D = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_double
_SIGNATURES = {"convfeat_svc_ovo": ([_P, _L, _P, _P, _I, _D, _D, _L, _P, _L, _L, _P, _P, _P, _P], _I)}


def _load(path: Path) -> ctypes.CDLL:
    return native.load(path, "convfeat_svm_abi", _ABI, _SIGNATURES)


_LIBRARY = native.Library("compiled SVM solver", "using scikit-learn's libsvm (same results, slower)",
                          lambda: native.build(_source(), _FLAGS, "convfeat_svm", _ABI, _load)[0])
_library = _LIBRARY.get


def available() -> bool:
    """True when the compiled solver is built and loaded (builds it on first call)."""
    return _library() is not None


def unavailable_reason() -> str | None:
    """Why the compiled solver is off (None when it is available or not tried yet)."""
    return _LIBRARY.reason


def _groups(y: np.ndarray):
    """(classes, start, count) when equal labels are contiguous and ascending, else None."""
    classes, first, count = np.unique(y, return_index=True, return_counts=True)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    if len(classes) < 2 or not np.array_equal(first, start):
        return None
    return classes, start.astype(np.int32), count.astype(np.int32)


def _run(K_tr, y_tr, K_te, C: float, max_iter: int, model: bool):
    lib = _library()
    groups = _groups(np.asarray(y_tr))
    if lib is None or groups is None:
        return None
    classes, start, count = groups
    K_tr = np.ascontiguousarray(K_tr, dtype=np.float64)
    K_te = np.ascontiguousarray(K_te, dtype=np.float64)
    n, nc = len(y_tr), len(classes)
    if K_tr.shape != (n, n) or K_te.ndim != 2 or K_te.shape[1] != n:
        raise ValueError(f"kernel shapes {K_tr.shape} / {K_te.shape} do not fit {n} training items")
    n_pairs = nc * (nc - 1) // 2
    pred = np.empty(len(K_te), np.int32)
    n_iter = np.empty(n_pairs, np.int64)
    rho = coef = None
    if model:
        sizes = [int(count[a] + count[b]) for a in range(nc) for b in range(a + 1, nc)]
        rho, coef = np.empty(n_pairs), np.empty(sum(sizes))
    status = lib.convfeat_svc_ovo(K_tr.ctypes.data, n, start.ctypes.data, count.ctypes.data, nc, float(C),
                                  LIBSVM_TOL, int(max_iter), K_te.ctypes.data, n, len(K_te), pred.ctypes.data,
                                  n_iter.ctypes.data, rho.ctypes.data if model else None,
                                  coef.ctypes.data if model else None)
    if status < 0:   # -2: kernel values beyond its range (|K| or C * n > 1e30); -1: its row tables (up to
        return None  # twice the largest pair's l x l floats) could not be allocated: scikit-learn fits it
    out = {"pred": classes[pred], "n_iter": n_iter, "capped": bool(status)}
    if model:
        out.update(rho=rho, coef=np.split(coef, np.cumsum(sizes)[:-1]), classes=classes, start=start, count=count)
    return out


def svc_fit_predict(K_tr, y_tr, K_te, C: float, max_iter: int = -1):
    """Fit a C-SVC on a precomputed kernel and predict → (predicted labels, stopped at ``max_iter``), or
    None when the compiled solver is not available or the labels are not grouped.

    ``K_tr``: ``(n, n)`` training kernel; ``y_tr``: ``(n,)`` labels, equal labels contiguous and in
    ascending order (:func:`convfeat.evaluation.kernels.training_order`), at least two classes;
    ``K_te``: ``(m, n)`` test × training kernel; ``max_iter``: libsvm iterations per pair, -1 for no
    cap.  The same predictions as ``SVC(kernel="precomputed", C=C, max_iter=max_iter)``.
    """
    out = _run(K_tr, y_tr, K_te, C, max_iter, model=False)
    return None if out is None else (out["pred"], out["capped"])


def ovo_model(K_tr, y_tr, C: float, max_iter: int = -1) -> dict | None:
    """The fitted one-vs-one model, for comparison with libsvm's: ``{"rho", "coef" (per pair, alpha·y of
    its items: class a then class b), "n_iter", "classes", "start", "count"}`` (None: unavailable)."""
    return _run(K_tr, y_tr, np.zeros((0, len(y_tr))), C, max_iter, model=True)
