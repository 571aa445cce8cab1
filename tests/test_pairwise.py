"""The compiled kernel matrices (convfeat/evaluation/pairwise.cpp) against the NumPy reference loops: bit for bit.

Every comparison is ``np.array_equal``: libsvm's path depends on the last bits of the kernel.
Two tests show that the data can tell the arithmetic apart (a summation order other than
k = 0, 1, …, or a fused multiply-add, gives different values on it), so equality is evidence.
"""
import os
import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest

from convfeat.evaluation import kernels, pairwise

KINDS = ("dot", "sqdist")
SIZES = (1, 3, 17, 130)      # rows: not multiples of the 4-row, 16/32-column tiles (and some below them)
DIMS = (1, 5, 33)


def needs_compiled():
    if not pairwise.available():
        pytest.skip(f"compiled kernel matrices unavailable: {pairwise.unavailable_reason()}")


def data(rows, d, kind, seed):
    """Feature rows: float32 numbers as stored ("float32"), or general float64 with magnitudes
    from 1e-3 to 1e3 mixed in each row, both signs ("mixed")."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, d))
    if kind == "float32":
        return X.astype(np.float32).astype(np.float64)
    return X * rng.choice([1e3, 1.0, 1e-3], size=(rows, d))


def reference(kind, A, B=None):
    """The NumPy loops of kernels.py, whole matrix in one block (k in order from 0.0)."""
    B = A if B is None else B
    BT = np.ascontiguousarray(B.T)
    if kind == "dot":
        return kernels._dot_rows(A, BT, 0, len(A), 0, exact=False)
    return kernels._sqdist_rows(A, BT, 0, len(A), 0)


def compiled(kind, A, B=None, out=None):
    return (pairwise.seq_dot if kind == "dot" else pairwise.seq_sqdist)(A, B, out)


@pytest.mark.parametrize("values", ["float32", "mixed"])
@pytest.mark.parametrize("kind", KINDS)
def test_equals_the_numpy_loops_bit_for_bit(kind, values):
    needs_compiled()
    for d in DIMS:
        for n in SIZES:
            A = data(n, d, values, seed=n * 100 + d)
            sym = compiled(kind, A)
            assert np.array_equal(sym, reference(kind, A)), (n, d, "symmetric")
            assert np.array_equal(sym, kernels._pairwise_loop(kind, A, None, None)), (n, d)   # blocks, dger
            assert np.array_equal(sym, sym.T)
            for m in SIZES:
                B = data(m, d, values, seed=n * 100 + d + 7 * m + 1)
                got = compiled(kind, A, B)
                assert got.shape == (n, m)
                assert np.array_equal(got, reference(kind, A, B)), (n, m, d)
                assert np.array_equal(got, kernels._pairwise_loop(kind, A, B, None)), (n, m, d)


@pytest.mark.parametrize("kind", KINDS)
def test_public_functions_use_it_and_keep_their_values(kind, monkeypatch):
    needs_compiled()
    calls = []
    loop = kernels._pairwise_loop
    monkeypatch.setattr(kernels, "_pairwise_loop", lambda *a: calls.append(a) or loop(*a))
    A, B = data(130, 33, "mixed", 1), data(17, 33, "mixed", 2)
    pair, gram = (kernels.seq_dot, kernels.seq_gram) if kind == "dot" else (kernels.seq_sqdist, kernels.seq_sqdist_gram)
    assert np.array_equal(pair(B, A), reference(kind, B, A))
    assert np.array_equal(gram(A), reference(kind, A))
    assert np.array_equal(gram(A.astype(np.float32)), reference(kind, A.astype(np.float32).astype(np.float64)))
    assert calls == []                  # the compiled path answered, not the NumPy loop


def test_summation_order_is_k_ascending():
    """Rows where the order of k changes the sum: in order, reversed and compiled side by side."""
    needs_compiled()
    A, B = data(17, 33, "mixed", 3), data(13, 33, "mixed", 4)
    # constructed rows: dot 1 + 1e16 - 1e16 = 0 in order, 1 reversed; squares 1+1+1+1+2^54 = 2^54+4
    # in order, 2^54 reversed (each 1 is below half an ulp of 2^54)
    A[0, :3], B[0, :3] = [1.0, 1e16, -1e16], [1.0, 1.0, 1.0]
    A[1, :5], B[1, :5] = [1.5, 1.5, 1.5, 1.5, 2.0 ** 27 + 0.5], [0.5, 0.5, 0.5, 0.5, 0.5]
    A[0, 3:] = B[0, 3:] = A[1, 5:] = B[1, 5:] = 0.0
    for kind in KINDS:
        forward = reference(kind, A, B)
        backward = reference(kind, A[:, ::-1].copy(), B[:, ::-1].copy())
        assert np.count_nonzero(forward != backward) > 0          # the data can tell the order apart
        got = compiled(kind, A, B)
        assert np.array_equal(got, forward)
        assert not np.array_equal(got, backward)
    assert reference("dot", A, B)[0, 0] == 0.0 and reference("dot", A[:, ::-1].copy(), B[:, ::-1].copy())[0, 0] == 1.0
    assert reference("sqdist", A, B)[1, 1] == 2.0 ** 54 + 4
    assert compiled("sqdist", A, B)[1, 1] == 2.0 ** 54 + 4


def fused(kind, A, B):
    """The in-order sums with a fused multiply-add (s = round(s + a*b) in one rounding), exactly."""
    out = np.empty((len(A), len(B)))
    for i, a in enumerate(A):
        for j, b in enumerate(B):
            s = 0.0
            for x, y in zip(a.tolist(), b.tolist()):
                t = Fraction(x) * Fraction(y) if kind == "dot" else Fraction(x - y) ** 2
                s = float(Fraction(s) + t)          # int / int: correctly rounded
            out[i, j] = s
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_no_fused_multiply_add(kind):
    needs_compiled()
    A, B = data(9, 33, "mixed", 11), data(7, 33, "mixed", 12)
    ref = reference(kind, A, B)
    assert not np.array_equal(fused(kind, A, B), ref)   # an FMA build would differ on this data
    assert np.array_equal(compiled(kind, A, B), ref)
    assert np.array_equal(compiled(kind, A), reference(kind, A))


@pytest.mark.parametrize("kind", KINDS)
def test_writes_into_the_given_out(kind):
    needs_compiled()
    A, B = data(17, 5, "mixed", 21), data(130, 5, "mixed", 22)
    ref = reference(kind, A, B)
    big = np.full((20, 140), -7.0)
    view = big[1:18, 3:133]                                   # rows contiguous, leading dimension 140
    assert compiled(kind, A, B, out=view) is view
    assert np.array_equal(view, ref)
    assert np.all(big[0] == -7.0) and np.all(big[:, :3] == -7.0) and np.all(big[:, 133:] == -7.0)
    for out in (np.empty((17, 130), order="F"), np.empty((17, 130), np.float32), np.empty((130, 17)).T):
        assert kernels._pairwise(kind, A, B, out) is out
        assert np.array_equal(out, ref.astype(out.dtype))
    buf = kernels.buffer("test_pairwise", (17, 17))           # the engine's reused buffer
    buf[...] = np.nan
    kernels._pairwise(kind, A, None, buf)
    assert np.array_equal(buf, reference(kind, A))
    with pytest.raises(ValueError):
        compiled(kind, A, B, out=np.empty((17, 129)))
    kernels.release_buffers()


def test_two_threads_at_once():
    """The engine computes from two threads: each gets its own matrix, unchanged."""
    needs_compiled()
    A, B = data(130, 33, "mixed", 31), data(130, 33, "float32", 32)
    want = {0: reference("dot", A), 1: reference("sqdist", B)}
    got = {}

    def work(t):
        got[t] = [kernels.seq_gram(A) if t == 0 else kernels.seq_sqdist_gram(B) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(t,)) for t in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(np.array_equal(g, want[t]) for t in (0, 1) for g in got[t])


@pytest.mark.parametrize("kind", KINDS)
def test_fallback_when_unavailable(kind, monkeypatch):
    """No compiled library: the wrappers say so (None) and kernels.py runs the NumPy loop, same values."""
    calls = []
    loop = kernels._pairwise_loop
    monkeypatch.setattr(pairwise, "_library", lambda: None)
    monkeypatch.setattr(kernels, "_pairwise_loop", lambda *a: calls.append(a[0]) or loop(*a))
    A, B = data(17, 33, "mixed", 41), data(3, 33, "float32", 42)
    assert compiled(kind, A) is None and compiled(kind, A, B) is None
    gram = kernels.seq_gram if kind == "dot" else kernels.seq_sqdist_gram
    pair = kernels.seq_dot if kind == "dot" else kernels.seq_sqdist
    assert np.array_equal(gram(A), reference(kind, A))
    assert np.array_equal(pair(A, B), reference(kind, A, B))
    assert calls == [kind, kind]


def test_convfeat_fast_0_runs_the_numpy_loops(tmp_path):
    A = data(17, 33, "mixed", 51)
    np.save(tmp_path / "A.npy", A)
    script = (
        "import sys, numpy as np\n"
        "from convfeat.evaluation import kernels, pairwise\n"
        "A = np.load(sys.argv[1])\n"
        "np.save(sys.argv[2], kernels.seq_gram(A)); np.save(sys.argv[3], kernels.seq_sqdist_gram(A))\n"
        "print(pairwise.available(), pairwise.unavailable_reason())\n"
    )
    env = {**os.environ, "CONVFEAT_FAST": "0"}
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "A.npy"), str(tmp_path / "G.npy"),
                          str(tmp_path / "D.npy")], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False disabled by CONVFEAT_FAST=0"
    assert np.array_equal(np.load(tmp_path / "G.npy"), reference("dot", A))
    assert np.array_equal(np.load(tmp_path / "D.npy"), reference("sqdist", A))
