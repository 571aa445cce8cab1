"""Kernel matrices in libsvm's arithmetic, compiled here: the NumPy loops' values bit for bit, faster.

``pairwise.cpp`` computes, for every pair of rows, ``sum_k a_k*b_k`` (dot) or ``sum_k (a_k-b_k)**2``
(squared distance) with k = 0, 1, …, d-1 in order from 0.0, every product, difference and sum
rounded to float64 and no fused multiply-add (``-ffp-contract=off``) — the arithmetic of
:func:`convfeat.evaluation.kernels._dot_rows` / ``_sqdist_rows``, the reference.  It is vectorised
across output columns only, so each sum keeps its order; ``tests/test_pairwise.py`` compares the
two bit for bit.

Used by :func:`convfeat.evaluation.kernels._pairwise`; when the library is off (``CONVFEAT_FAST=0``)
or cannot be built (no C++ compiler) the functions here return None and the NumPy loops run.
ctypes releases the GIL during the call, so two engine threads compute at once.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from .. import native

__all__ = ["available", "unavailable_reason", "seq_dot", "seq_sqdist"]

_FLAGS = native.EXACT_FLAGS
_ABI = 1


def _source() -> str:
    return native.source("convfeat.evaluation", "pairwise.cpp")


_P, _L, _I = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int
_ARGS = [_P, _L, _P, _L, _L, _P, _L, _I]   # A, n, B, m, d, out, ldo, sym


def _load(path: Path) -> ctypes.CDLL:
    return native.load(path, "convfeat_pairwise_abi", _ABI,
                       {"convfeat_seq_dot": (_ARGS, _I), "convfeat_seq_sqdist": (_ARGS, _I)})


_LIBRARY = native.Library("compiled kernel matrices", "using the NumPy loops (same results, slower)",
                          lambda: native.build(_source(), _FLAGS, "convfeat_pairwise", _ABI, _load)[0])


def _library():
    return _LIBRARY.get()


def available() -> bool:
    """True when the compiled kernel matrices are built and loaded (builds them on first call)."""
    return _library() is not None


def unavailable_reason() -> str | None:
    """Why the compiled kernel matrices are off (None when available or not tried yet)."""
    return _LIBRARY.reason


def _writable_rows(out: np.ndarray) -> int | None:
    """The leading dimension (in float64 elements) when ``out`` can be written by the C++ directly:
    float64, writeable, aligned, each row contiguous; else None."""
    if out.dtype != np.float64 or not out.flags.writeable or not out.flags.aligned or out.ndim != 2:
        return None
    rows, cols = out.strides
    if out.shape[1] > 1 and cols != 8:
        return None
    if out.shape[0] > 1 and (rows < 8 * out.shape[1] or rows % 8):
        return None
    return rows // 8 if out.shape[0] > 1 else max(out.shape[1], 1)


def _run(name: str, A, B, out):
    lib = _library()
    if lib is None:
        return None
    sym = B is None
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = A if sym else np.ascontiguousarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValueError(f"row sets of shapes {A.shape} and {B.shape}: need (n, d) and (m, d)")
    n, m, d = A.shape[0], B.shape[0], A.shape[1]
    if out is None:
        out = np.empty((n, m))
    elif out.shape != (n, m):
        raise ValueError(f"out has shape {out.shape}, the result is {(n, m)}")
    ldo = _writable_rows(out)
    target = out if ldo is not None else np.empty((n, m))
    ldo = ldo if ldo is not None else max(m, 1)
    status = getattr(lib, name)(A.ctypes.data, n, B.ctypes.data, m, d, target.ctypes.data, ldo, int(sym))
    if status < 0:
        raise MemoryError(f"the kernel-matrix code could not allocate its packed copies ({n} x {m}, d = {d})")
    if target is not out:
        out[...] = target
    return out


def seq_dot(A, B=None, out=None) -> np.ndarray | None:
    """``sum_k A[i, k] * B[j, k]`` in order of k (libsvm's dot) → ``(n, m)`` float64, or None when unavailable.

    ``A``: ``(n, d)``, ``B``: ``(m, d)`` feature rows (any float dtype, converted to float64);
    ``B=None``: A with itself, the upper triangle computed and mirrored.  ``out``: an ``(n, m)``
    array to write into (returned); rows that are contiguous float64 are written in place.
    """
    return _run("convfeat_seq_dot", A, B, out)


def seq_sqdist(A, B=None, out=None) -> np.ndarray | None:
    """``sum_k (A[i, k] - B[j, k])**2`` in order of k (libsvm's RBF distance at prediction time) →
    ``(n, m)`` float64, or None when unavailable.  Arguments as :func:`seq_dot`."""
    return _run("convfeat_seq_sqdist", A, B, out)
