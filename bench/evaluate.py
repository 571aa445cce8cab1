"""Benchmark and study reproduction for `convfeat evaluate`.

    python bench/evaluate.py --generated               # study protocol, generated 4,000-item set: old engine vs new
    python bench/evaluate.py --generated --json gen.json --old-folds 2
    python bench/evaluate.py                           # the 31-subset sweep on gtzan_genre (+ mfcc, mfcc+12345):
                                                       # old engine vs new, the same figures asserted
    python bench/evaluate.py --halving --json halving.json   # nested CV: successive halving vs the full inner search
    python bench/evaluate.py --solver                  # libsvm (scikit-learn) vs the compiled solver, one fold's fits
    git show 33248c7:convfeat/evaluation/svm_solver.cpp > /tmp/prev.cpp
    python bench/evaluate.py --solver --against /tmp/prev.cpp   # ... and another version of the solver's source
    python bench/evaluate.py --kernels                 # kernel matrices: the NumPy loops vs the compiled ones
    python bench/evaluate.py --reproduce docs/study_reproduction.json   # every study figure, study + nested

Engines (``Options.engine``): ``fold`` is the previous implementation (kernels computed again in every
fold and for every work unit, joblib processes, scikit-learn's libsvm), ``shared`` the new one
(:mod:`convfeat.evaluation.kernels`: kernels computed once per feature set or fold and shared, threads, the
compiled solver :mod:`convfeat.evaluation.svm_solver` for classification).  Every comparison asserts identical
figures: every fold score of every grid point, the reported score, the per-fold scores and predictions.

The GTZAN runs need the study's features in ../shared/paper (set CONVFEAT_SHARED); they skip with the
reason otherwise.  The features are imported into convfeat files first (convfeat.store.importer.import_study).
Other processes share this machine's cores: compare the ratios of one run, not times across runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("CONVFEAT_SHARED", ROOT.parent / "shared")).expanduser()
KEY_ROWS = "12345,1,2,3,4,5"   # + mfcc and mfcc+12345 (added below)
# Extended Ballroom's 13 classes (Marchand & Peeters 2016), item counts; the generated set keeps the proportions
BALLROOM_SIZES = (455, 507, 350, 53, 497, 470, 47, 468, 65, 464, 252, 529, 23)
# MFCC block: 6 groups of 20 (means and spreads of MFCCs and deltas); std and mean profiles of the study's
# gtzan_genre_mfcc.npy (first and last coefficient of each group), so scales span 100 to 0.01 as there
MFCC_STD = ((98, 4), (22, 2), (0.15, 0.02), (12, 1), (0.07, 0.01), (15, 1.2))
MFCC_MEAN = ((-106, -6), (55, 8.5), (0.0, 0.0), (30, 4.7), (0.0, 0.0), (34, 5.8))


def _paper() -> Path | None:
    p = SHARED / "paper"
    if not (p / "results.csv").exists():
        print(f"skipped: needs {p} (set CONVFEAT_SHARED to the shared/ folder)")
        return None
    return p


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def _cpu_times() -> dict:
    """CPU seconds (user + system) of this process (all its threads) and of each process below it."""
    try:
        import psutil
    except ImportError:  # CPU times not available: wall times only
        return {}
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


@contextlib.contextmanager
def stopwatch():
    """Wall seconds and CPU seconds (this process and its worker processes — joblib's persist between
    runs, so their CPU time is counted as a difference) of the block: yields a dict filled in at the end.
    Other processes share this machine's two cores: CPU seconds measure the work, wall seconds include
    the waiting."""
    out = {}
    before, t0 = _cpu_times(), time.perf_counter()
    try:
        yield out
    finally:
        after = _cpu_times()
        out["wall"] = time.perf_counter() - t0
        out["cpu"] = sum(v - before.get(pid, 0.0) for pid, v in after.items()) if after else float("nan")


# -- data -----------------------------------------------------------------------------------------
def generated_set(n: int = 4000, seed: int = 0, latent: int = 16, mfcc_signal: float = 0.3):
    """A study-like set: 13 classes in Extended Ballroom's proportions (at least 20 items each), five 32-d blocks of
    convnet-like features (ELU, mostly positive, std 0.1-0.6, class information fading from
    block 1 to 5), and a 120-d MFCC block with the study's MFCC scales.  → (blocks (n, 160)
    float32, mfcc (n, 120) float32, labels (n,) str)."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum(np.round(np.array(BALLROOM_SIZES) * n / sum(BALLROOM_SIZES)).astype(int), 20)
    sizes[np.argmax(sizes)] += n - sizes.sum()   # at least 20 per class: 10 outer x 5 inner folds
    y = np.repeat(np.arange(len(sizes)), sizes)
    lat = rng.standard_normal((len(sizes), latent))[y] + 1.3 * rng.standard_normal((n, latent))
    blocks = []
    for strength in (1.0, 0.85, 0.7, 0.5, 0.4):
        h = strength * (lat @ rng.standard_normal((latent, 32))) / np.sqrt(latent) + rng.standard_normal((n, 32))
        h = np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
        blocks.append(h * rng.uniform(0.1, 0.6, 32) + rng.uniform(-0.1, 1.5, 32))
    std = np.concatenate([np.geomspace(a, b, 20) for a, b in MFCC_STD])
    mean = np.concatenate([np.linspace(a, b, 20) for a, b in MFCC_MEAN])
    mfcc = (mfcc_signal * (lat @ rng.standard_normal((latent, 120))) / np.sqrt(latent)
            + rng.standard_normal((n, 120))) * std + mean
    perm = rng.permutation(n)
    labels = np.array([f"style{k:02d}" for k in y])
    return np.concatenate(blocks, 1).astype(np.float32)[perm], mfcc.astype(np.float32)[perm], labels[perm]


def generated_features(layers: str, n: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """The feature sets ``layers`` (e.g. "12345,1234,123,12,1") + mfcc + mfcc+12345 of :func:`generated_set`."""
    X, M, y = generated_set(n, seed)
    feats = {}
    for sub in layers.split(","):
        feats[sub] = np.concatenate([X[:, 32 * (int(b) - 1):32 * int(b)] for b in sub], 1)
    feats["mfcc"] = M
    feats["mfcc+12345"] = np.concatenate([M, X], 1)
    return feats, y


# -- libsvm time ----------------------------------------------------------------------------------
@contextlib.contextmanager
def fit_clock():
    """Sum the CPU seconds spent in libsvm fits + predictions (both engines), from every thread of this process.

    Yields a dict whose ``"seconds"`` is filled in (the per-fold engine's worker processes are not seen)."""
    from convfeat.evaluation import heads, kernels

    total = {"seconds": 0.0, "fits": 0}
    lock = threading.Lock()
    originals = {heads: heads._fit_predict_kernel, kernels: kernels.fit_predict}   # per-fold engine, shared engine

    def timer(original):
        def timed(*args):
            t0 = time.thread_time()
            out = original(*args)
            with lock:
                total["seconds"] += time.thread_time() - t0
                total["fits"] += 1
            return out
        return timed

    heads._fit_predict_kernel, kernels.fit_predict = timer(originals[heads]), timer(originals[kernels])
    try:
        yield total
    finally:
        heads._fit_predict_kernel, kernels.fit_predict = originals[heads], originals[kernels]


# -- comparisons ----------------------------------------------------------------------------------
def same_figures(old: list, new: list, folds: list | None = None) -> None:
    """Assert identical figures: every grid point's score on every fold (``folds``: the columns of the
    new results that the old ones hold), and with all folds the reported score, per-fold scores,
    chosen points, predictions and iteration-cap notes."""
    assert [r.feature for r in old] == [r.feature for r in new]
    for a, b in zip(old, new):
        if a.protocol == "study":
            cols = b.grid_fold_scores if folds is None else b.grid_fold_scores[:, folds]
            assert np.array_equal(a.grid_fold_scores, cols, equal_nan=True), f"{a.feature}: grid fold scores differ"
        if folds is None:
            assert a.score == b.score, (a.feature, a.score, b.score)
            assert all(np.array_equal(a.fold_scores[m], b.fold_scores[m], equal_nan=True) for m in a.metrics)
            assert a.params == b.params and a.capped == b.capped and (a.y_pred == b.y_pred).all(), a.feature


def figures(results: list) -> dict:
    return {r.feature: {"score": r.score, "params": [str(p) for p in r.params],
                        "fold_scores": {m: np.asarray(v).tolist() for m, v in r.fold_scores.items()},
                        "grid_fold_scores": None if r.grid_fold_scores is None else r.grid_fold_scores.tolist(),
                        "not_converged": r.capped} for r in results}


def _subset(splits, idx: list):
    from convfeat.evaluation import Splits

    return Splits([splits.folds[i] for i in idx], f"folds {', '.join(str(i + 1) for i in idx)} of "
                  f"{splits.description}", splits.kind, splits.n_folds)


def _timed_sweep(feats, y, splits, engine: str, jobs: int, scaler: str = "both", **kw):
    """(results, {"wall", "cpu"} seconds, libsvm clock) of the study protocol on ``engine``."""
    from convfeat import evaluation as ev

    with fit_clock() as clock, stopwatch() as sw:
        res = ev.sweep(feats, y, "classification", "study", splits=splits, scaler=scaler, n_jobs=jobs,
                       engine=engine, **kw)
    return res, sw, clock


def _ratio(old: dict, new: dict, scale: float = 1.0) -> str:
    return (f"wall {old['wall'] * scale:.0f} s vs {new['wall']:.0f} s = {old['wall'] * scale / new['wall']:.2f}x, "
            f"CPU {old['cpu'] * scale:.0f} s vs {new['cpu']:.0f} s = {old['cpu'] * scale / new['cpu']:.2f}x")


def time_generated(items: int, layers: str, old_folds: int, jobs: int, json_path: Path | None) -> dict:
    """The study protocol on the generated set: the old engine on ``old_folds`` folds, the new one on the
    same folds and on all 10; identical figures asserted; ratios printed."""
    from convfeat import evaluation as ev

    feats, y = generated_features(layers, items)
    splits = ev.make_splits(y, n_folds=10, legacy=True)
    n_points = len(ev.grid_for("svm", "classification", "study", "both"))
    print(f"generated set: {items} items, 13 classes, {len(feats)} feature sets ({', '.join(feats)}), "
          f"{n_points}-point grid, 10 folds, protocol study, {jobs} workers, {ev.cpu_count()} cores", flush=True)
    idx = list(range(old_folds))
    sub = _subset(splits, idx)
    old, t_old, _ = _timed_sweep(feats, y, sub, "fold", jobs)
    print(f"old engine (per fold, processes), folds {idx[0] + 1}-{idx[-1] + 1} of 10: wall {t_old['wall']:.0f} s, "
          f"CPU {t_old['cpu']:.0f} s ({_load()})", flush=True)
    new_sub, t_sub, _ = _timed_sweep(feats, y, sub, "shared", jobs)
    same_figures(old, new_sub)
    print(f"new engine (shared kernels, threads), the same folds: {_ratio(t_old, t_sub)}; identical figures "
          f"({_load()})", flush=True)
    new, t_new, clock = _timed_sweep(feats, y, splits, "shared", jobs)
    same_figures(old, new, idx)
    k = len(splits) / old_folds
    print(f"new engine, all 10 folds: wall {t_new['wall']:.0f} s ({t_new['wall'] / 60:.1f} min), CPU "
          f"{t_new['cpu']:.0f} s; old engine extrapolated from {old_folds} folds (x{k:g}): {_ratio(t_old, t_new, k)}; "
          f"figures identical on the folds both ran ({_load()})")
    print(f"  libsvm fits + predictions inside the new engine: {clock['seconds']:.0f} of its {t_new['cpu']:.0f} CPU "
          f"seconds ({clock['fits']} fits) — what identical figures cannot avoid")
    out = {"items": items, "layers": layers, "jobs": jobs, "old_folds": [i + 1 for i in idx],
           "old_subset": t_old, "new_subset": t_sub, "new_all": t_new, "new_all_libsvm_seconds": clock["seconds"],
           "old_all_extrapolated": {"wall": t_old["wall"] * k, "cpu": t_old["cpu"] * k},
           "identical": True, "figures": figures(new)}
    if json_path:
        json_path.write_text(json.dumps(ev.json_safe(out), indent=1))
    return out


def time_sweep(jobs: int, scaler: str, json_path: Path | None = None) -> dict | None:
    """The 31-subset sweep on the study's gtzan_genre features (+ mfcc, mfcc+12345): old engine vs new."""
    from convfeat import evaluation as ev
    from convfeat.evaluation.run import _run_files
    from convfeat.store.importer import import_study

    paper = _paper()
    if paper is None:
        return None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        info = import_study(paper, tmp, ["gtzan_genre"])["gtzan_genre"]
        for engine in ("fold", "shared"):
            opts = ev.Options(protocol="study", scaler=scaler, n_jobs=jobs, engine=engine)
            with stopwatch() as out[engine + "_s"]:
                out[engine] = _run_files([info["features"]], info["labels"], opts, {"label_column": "label"},
                                         layers="all")["results"]
            print(f"gtzan_genre, {engine} engine: wall {out[engine + '_s']['wall']:.1f} s, CPU "
                  f"{out[engine + '_s']['cpu']:.1f} s ({_load()})", flush=True)
    same_figures(out["fold"], out["shared"])
    res = out["shared"]
    grid = ev.grid_for("svm", "classification", "study", scaler)
    best = max(res, key=lambda r: r.score)
    print(f"gtzan_genre (1000 items x up to 280 features): {len(res)} feature sets x {len(grid)} grid points x 10 "
          f"folds, protocol study, scaler {scaler}, {jobs} workers: {_ratio(out['fold_s'], out['shared_s'])}; "
          "identical figures")
    print(f"12345: {next(r.score for r in res if r.feature.endswith('/12345') and '+' not in r.feature):.4f}; "
          f"best: {best.feature} {best.score:.4f}")
    doc = {"old": out["fold_s"], "new": out["shared_s"], "identical": True, "figures": figures(res)}
    if json_path:
        json_path.write_text(json.dumps(ev.json_safe(doc), indent=1))
    return doc


# -- the solver alone ------------------------------------------------------------------------------
def _other_solver(source: Path):
    """Another version of svm_solver.cpp (same C entry point), built and loaded for comparison."""
    import re

    from convfeat import native
    from convfeat.evaluation import svm_solver

    text = source.read_text()
    abi = int(re.search(r"convfeat_svm_abi\(\)\s*\{\s*return\s+(\d+)", text).group(1))

    def loader(path):
        return native.load(path, "convfeat_svm_abi", abi, svm_solver._SIGNATURES)

    return native.build(text, svm_solver._FLAGS, "convfeat_svm_against", abi, loader)[0]


def time_solver(items: int, json_path: Path | None, against: Path | None = None) -> dict:
    """One fold of the generated set, the study grid's slow and typical fits: scikit-learn's SVC (libsvm) and the
    compiled solver on the same precomputed kernels, one thread each; the fitted models asserted identical.
    ``against``: another version of the solver's source, timed on the same fits right after ours."""
    import warnings

    from sklearn.svm import SVC

    from convfeat import evaluation as ev
    from convfeat.evaluation import kernels, svm_solver

    if not svm_solver.available():
        print(f"skipped: compiled solver unavailable ({svm_solver.unavailable_reason()})")
        return {}
    feats, y = generated_features("12345", items)
    codes = np.unique(y, return_inverse=True)[1]
    train, test = map(np.asarray, ev.make_splits(y, n_folds=10, legacy=True).folds[0])
    order = kernels.training_order(codes, "classification", train)
    # (feature set, scaler, kernel, C): the MFCC linear points are most of the study protocol's time
    fits = [("mfcc", False, "linear", 0.1), ("mfcc", True, "linear", 8.0),
            ("mfcc+12345", False, "linear", 2.0), ("12345", False, "linear", 32.0), ("12345", True, 0.125, 2.0),
            ("12345", False, 2.0 ** -7, 8.0)]
    rows, total = [], {"sklearn": 0.0, "ours": 0.0, "against": 0.0}
    other = _other_solver(against) if against else None
    with kernels.one_blas_thread():
        for name, scale, kern, C in fits:
            fk = kernels.fold_kernels(feats[name], order, test, train, scale, None, kern != "linear")
            K_tr, K_te = (fk.G, fk.G_te) if kern == "linear" else (np.exp(-kern * fk.D), np.exp(-kern * fk.SD_te))
            t0 = time.thread_time()
            ref = SVC(kernel="precomputed", C=C, max_iter=ev.DEFAULT_MAX_ITER)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref.fit(K_tr, codes[order])
            pred_ref = ref.predict(K_te)
            t1 = time.thread_time()
            pred, capped = svm_solver.svc_fit_predict(K_tr, codes[order], K_te, C, ev.DEFAULT_MAX_ITER)
            t2 = time.thread_time()
            assert np.array_equal(pred, pred_ref), name
            model = svm_solver.ovo_model(K_tr, codes[order], C, ev.DEFAULT_MAX_ITER)
            assert np.array_equal(model["n_iter"], ref.n_iter_) and np.array_equal(-model["rho"], ref._intercept_)
            t_other = None
            if other is not None:
                ours_lib = svm_solver._library
                svm_solver._library = lambda: other
                try:
                    t3 = time.thread_time()
                    pred_other, _ = svm_solver.svc_fit_predict(K_tr, codes[order], K_te, C, ev.DEFAULT_MAX_ITER)
                    t_other = time.thread_time() - t3
                finally:
                    svm_solver._library = ours_lib
                assert np.array_equal(pred_other, pred_ref), name
                total["against"] += t_other
            what = f"{name}, {'linear' if kern == 'linear' else f'rbf gamma={kern:g}'}, C={C:g}, scaler {'on' if scale else 'off'}"
            at_cap = int((ref.n_iter_ >= ev.DEFAULT_MAX_ITER).sum())
            rows.append({"fit": what, "sklearn_s": t1 - t0, "ours_s": t2 - t1, "against_s": t_other,
                         "iterations": int(ref.n_iter_.sum()), "capped": bool(capped), "pairs": len(ref.n_iter_),
                         "pairs_at_cap": at_cap})
            total["sklearn"] += t1 - t0
            total["ours"] += t2 - t1
            cap_note = f", {at_cap} of {len(ref.n_iter_)} pairs at the cap" if capped else ""
            vs = "" if t_other is None else f"; --against {t_other:6.2f} s (ours {t_other / (t2 - t1):4.2f}x as fast)"
            print(f"{what:45s} libsvm {t1 - t0:6.2f} s, compiled {t2 - t1:6.2f} s = {(t1 - t0) / (t2 - t1):4.2f}x "
                  f"({int(ref.n_iter_.sum()):,} iterations{cap_note}){vs}; identical", flush=True)
    print(f"all {len(fits)} fits: libsvm {total['sklearn']:.1f} s, compiled {total['ours']:.1f} s = "
          f"{total['sklearn'] / total['ours']:.2f}x, identical predictions, rho and iteration counts ({_load()})")
    if other is not None:
        print(f"  --against {against}: {total['against']:.1f} s; ours {total['against'] / total['ours']:.2f}x as fast, "
              "the same predictions")
    doc = {"items": items, "fits": rows, "total": total}
    if json_path:
        json_path.write_text(json.dumps(doc, indent=1))
    return doc


# -- kernel matrices ---------------------------------------------------------------------------------
def time_kernels(items: int, json_path: Path | None) -> dict:
    """The four kernel-matrix functions on the generated mfcc+12345 features (float32, 280-d; a tenth of the
    items against the rest for the test blocks): NumPy loops vs the compiled code, one thread, identical values."""
    from convfeat.evaluation import kernels, pairwise

    if not pairwise.available():
        print(f"skipped: compiled kernel matrices unavailable ({pairwise.unavailable_reason()})")
        return {}
    feats, _ = generated_features("12345", items)
    X = np.asarray(feats["mfcc+12345"], dtype=np.float64)
    T = X[: items // 10]
    cases = [("seq_gram", kernels.seq_gram, (X,)), ("seq_sqdist_gram", kernels.seq_sqdist_gram, (X,)),
             ("seq_dot", kernels.seq_dot, (T, X)), ("seq_sqdist", kernels.seq_sqdist, (T, X))]
    real, rows = pairwise._library, []
    try:
        for name, fn, args in cases:
            pairwise._library = lambda: None            # the NumPy loops (as with CONVFEAT_FAST=0)
            t0 = time.thread_time()
            ref = fn(*args)
            t1 = time.thread_time()
            pairwise._library = real
            got = fn(*args)
            t2 = time.thread_time()
            assert np.array_equal(ref, got), name
            rows.append({"function": name, "shape": list(ref.shape), "numpy_s": t1 - t0, "compiled_s": t2 - t1})
            print(f"{name:16s} {str(ref.shape):14s} NumPy {t1 - t0:6.3f} s, compiled {t2 - t1:6.3f} s = "
                  f"{(t1 - t0) / (t2 - t1):5.1f}x; identical", flush=True)
    finally:
        pairwise._library = real
    if json_path:
        json_path.write_text(json.dumps({"items": items, "d": X.shape[1], "rows": rows}, indent=1))
    return {"rows": rows}


# -- nested CV: successive halving vs the full inner search ----------------------------------------
def _gtzan_key_rows() -> tuple[dict, np.ndarray] | None:
    """The study's gtzan_genre features (12345, single blocks, mfcc, mfcc+12345), as the importer stores them."""
    import pandas as pd

    paper = _paper()
    if paper is None:
        return None
    blocks = [np.load(paper / f"gtzan_genre_layer_{i}.npy").astype(np.float32) for i in range(5)]
    mfcc = np.load(paper / "gtzan_genre_mfcc.npy").astype(np.float32)
    feats = {"12345": np.concatenate(blocks, 1), **{str(i + 1): b for i, b in enumerate(blocks)}, "mfcc": mfcc,
             "mfcc+12345": np.concatenate([mfcc, *blocks], 1)}
    return feats, pd.read_csv(paper / "gtzan_genre.csv")["label"].astype(str).to_numpy()


def _halving_rows(res, feats, y, splits, jobs) -> list:
    """Per (feature set, outer fold): the point the full search chose and the one successive halving
    chooses from the same inner scores, and their outer-fold scores (the halving choice refitted when
    it differs)."""
    from convfeat import evaluation as ev
    from convfeat.evaluation.heads import inner_search
    from convfeat.evaluation.kernels import svm_fold_outputs
    from convfeat.evaluation.metrics import metric_values

    points = ev.grid_for("svm", "classification", "nested")
    codes = np.unique(y, return_inverse=True)[1]
    rows = []
    for r in res:
        for f, ((train, test), scores) in enumerate(zip(splits, r.inner_scores)):
            sim = inner_search(lambda k, idx, s=scores: (s[idx, k], [False] * len(idx)), len(points),
                               scores.shape[1], "halving")
            full = points.index(r.params[f])
            half_score = r.fold_scores["accuracy"][f]
            if sim["best"] != full:
                outs, caps = svm_fold_outputs(feats[r.feature], codes, "classification", train, test,
                                              [points[sim["best"]]], None, ev.DEFAULT_MAX_ITER)
                if caps[0]:
                    outs, _ = svm_fold_outputs(feats[r.feature], codes, "classification", train, test,
                                               [points[sim["best"]]], None, -1)
                half_score = metric_values("classification", codes[test], outs[0])["accuracy"]
            rows.append({"feature": r.feature, "fold": f + 1, "full": ev.describe_point(points[full]),
                         "halving": ev.describe_point(points[sim["best"]]), "same": sim["best"] == full,
                         "outer_full": float(r.fold_scores["accuracy"][f]), "outer_halving": float(half_score),
                         "inner_full": float(np.nanmean(scores[full])),
                         "inner_halving": float(np.nanmean(scores[sim["best"]])),
                         "fits_full": int(np.isfinite(scores).sum()), "fits_halving": sim["n_fits"]})
    return rows


def _halving_summary(name: str, rows: list) -> dict:
    diff = np.array([r["outer_halving"] - r["outer_full"] for r in rows])
    n_diff = sum(not r["same"] for r in rows)
    full = np.mean([r["outer_full"] for r in rows])
    half = np.mean([r["outer_halving"] for r in rows])
    fits = sum(r["fits_full"] for r in rows) / sum(r["fits_halving"] for r in rows)
    print(f"{name}: halving chose another point in {n_diff} of {len(rows)} (feature set, outer fold) pairs; "
          f"mean outer accuracy {full:.4f} (full) vs {half:.4f} (halving), difference {half - full:+.4f}; "
          f"per pair: mean |diff| {np.abs(diff).mean():.4f}, worst {diff.min():+.4f}, best {diff.max():+.4f}; "
          f"{fits:.2f}x fewer inner fits", flush=True)
    per_set = {}
    for r in rows:
        d = per_set.setdefault(r["feature"], {"full": [], "halving": [], "different": 0})
        d["full"].append(r["outer_full"])
        d["halving"].append(r["outer_halving"])
        d["different"] += not r["same"]
    for feat, d in per_set.items():
        print(f"  {feat:12s} nested score {np.mean(d['full']):.4f} (full) {np.mean(d['halving']):.4f} (halving), "
              f"{d['different']} of {len(d['full'])} folds chose another point")
    return {"pairs": len(rows), "different": n_diff, "mean_outer_full": full, "mean_outer_halving": half,
            "mean_abs_diff": float(np.abs(diff).mean()), "worst": float(diff.min()), "best": float(diff.max()),
            "fits_ratio": fits, "per_set": {k: {"full": float(np.mean(v["full"])), "halving":
                                                float(np.mean(v["halving"])), "different": v["different"]}
                                            for k, v in per_set.items()}}


def halving(items: int, layers: str, seeds: list, jobs: int, json_path: Path | None, gtzan: bool = True) -> dict:
    """Nested CV (10 outer, 5 inner folds, the 64-point grid) with the full inner search on generated sets
    (and the study's gtzan_genre features); successive halving replayed on the same inner scores; on the
    first set the halving search is also run for real (same choices asserted, time ratio)."""
    from convfeat import evaluation as ev

    data = [(f"generated {items} items, seed {s}", *generated_features(layers, items, s)) for s in seeds]
    real = _gtzan_key_rows() if gtzan else None
    if real is not None:
        data.append(("gtzan_genre (the study's features)", *real))
    doc: dict = {"inner_folds": 5, "grid_points": len(ev.grid_for("svm", "classification", "nested"))}
    for k, (name, feats, y) in enumerate(data):
        splits = ev.make_splits(y, n_folds=10)
        with stopwatch() as t_full:
            res = ev.sweep(feats, y, "classification", "nested", splits=splits, n_jobs=jobs, inner_search="full")
        rows = _halving_rows(res, feats, y, splits, jobs)
        entry = {"full": t_full, "rows": rows}
        if k == 0:
            with stopwatch() as t_half:
                half = ev.sweep(feats, y, "classification", "nested", splits=splits, n_jobs=jobs,
                                inner_search="halving")
            entry["halving"] = t_half
            replay = {(r["feature"], r["fold"]): r["halving"] for r in rows}
            assert all(replay[(r.feature, f + 1)] == ev.describe_point(p)
                       for r in half for f, p in enumerate(r.params)), "replayed halving != real halving"
            print(f"{name}: nested CV, full inner search vs successive halving: {_ratio(t_full, t_half)}; the "
                  f"replayed choices are the real ones ({_load()})", flush=True)
        entry["summary"] = _halving_summary(name, rows)
        doc[name] = entry
        if json_path:
            json_path.write_text(json.dumps(ev.json_safe(doc), indent=1))
    return doc


def reproduce(out_json: Path, jobs: int, parts: list[str], emo_rows: str = KEY_ROWS) -> None:
    """Every figure of the four tasks: study protocol (as run, and the grid as described) and nested CV."""
    from convfeat import evaluation as ev
    from convfeat.store.importer import STUDY_TASKS, import_study

    paper = _paper()
    if paper is None:
        return
    doc = json.loads(out_json.read_text()) if out_json.exists() else {}
    emo = ["emoMusic_a", "emoMusic_v"]
    gtzan = ["gtzan_genre", "gtzan_speechmusic"]
    runs = {
        # name: (tasks, protocol, scaler, layers).  "auto" = the grid the study's code ran (scaler never on);
        # the nested runs use that same grid, so study vs nested isolates the selection bias.
        "study": (list(STUDY_TASKS), "study", "auto", "all"),
        "nested": (gtzan, "nested", "off", "all"),
        "nested_emo": (emo, "nested", "off", emo_rows),
        "study_both": (gtzan, "study", "both", KEY_ROWS),
        "study_both_emo": (emo, "study", "both", emo_rows),
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = import_study(paper, tmp)
        for part in parts:
            tasks, protocol, scaler, layers = runs[part]
            for task in tasks:
                key = f"{part}:{task}"
                if key in doc:
                    continue
                info = files[task]
                t0 = time.perf_counter()
                kw = {"label_column": info["columns"][0]} if info["task"] == "classification" else \
                    {"target_columns": info["columns"]}
                features = ("choi2017,mfcc" + (",mfcc+choi2017/12345" if "12345" in layers.split(",") and
                                               layers == KEY_ROWS else "")) if layers != "all" else None
                out = ev.run([info["features"]], info["labels"], features=features, layers=layers, protocol=protocol,
                             scaler=scaler, n_jobs=jobs, plots=False, **kw)
                rows = {}
                for r in out["results"]:
                    name = r.feature.replace("choi2017/", "")
                    if name.startswith("mfcc+") and name != "mfcc+12345":
                        continue  # mfcc+<subset> other than the study's mfcc+12345
                    rows[name] = {"score": r.score, "mean": float(r.fold_scores[r.primary].mean()),
                                  "std": r.summary()["std"], "ci95": r.summary()["ci95"],
                                  "params": [ev._describe_point(p) for p in r.params],
                                  "not_converged": r.capped,
                                  "second_metric": {m: r.summary(m)["score"] for m in r.metrics[1:]}}
                doc[key] = {"task": task, "protocol": protocol, "scaler": scaler, "splits": out["splits"].description,
                            "seconds": time.perf_counter() - t0, "rows": rows}
                out_json.write_text(json.dumps(ev._json_safe(doc), indent=1))
                print(f"{key}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s", flush=True)


def table(in_json: Path) -> str:
    """Markdown: published vs reproduced (study protocol), the grid as described, and nested CV."""
    import pandas as pd

    paper = _paper()
    doc = json.loads(in_json.read_text())
    pub = pd.read_csv(paper / "results.csv")
    lines = ["| task | features | published | study protocol (as run) | Δ | study protocol, scaler really on/off "
             "| nested CV (same grid as the study), mean ± std |", "|---|---|---|---|---|---|---|"]
    for task in ("gtzan_genre", "gtzan_speechmusic", "emoMusic_a", "emoMusic_v"):
        rows = pub[pub.task == task]
        for _, row in rows.iterrows():
            feat = row.features
            get = lambda part: doc.get(f"{part}:{task}", {}).get("rows", {}).get(feat)  # noqa: E731
            st = get("study")
            both = get("study_both") or get("study_both_emo")
            nest = get("nested") or get("nested_emo")
            d = st["score"] - row.score if st else None
            lines.append(f"| {task} | {feat} | {row.score:.4f} | {st['score']:.4f} | {d:+.4f} | "
                         if st else f"| {task} | {feat} | {row.score:.4f} | – | – | ")
            lines[-1] += (f"{both['score']:.4f} | " if both else "– | ")
            lines[-1] += (f"{nest['score']:.4f} ± {nest['std']:.4f} |" if nest else "– |")
    return "\n".join(lines)


def main() -> None:
    from convfeat.evaluation import cpu_count

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=cpu_count())
    ap.add_argument("--scaler", default="both", choices=["auto", "both", "on", "off"],
                    help="both = the grid as SPEC §4 states it (64 points, default); auto = as the study's code ran")
    ap.add_argument("--generated", action="store_true", help="time the study protocol on the generated set")
    ap.add_argument("--items", type=int, default=4000, help="items of the generated set (--generated)")
    ap.add_argument("--layers", default="12345,1234,123,12,1",
                    help="layer subsets of the generated set (+ mfcc and mfcc+12345)")
    ap.add_argument("--old-folds", type=int, default=2, help="folds the old engine runs (its time is extrapolated "
                    "to 10; the new engine runs them and all 10)")
    ap.add_argument("--halving", action="store_true", help="measure successive halving against the full inner "
                    "search of nested CV")
    ap.add_argument("--solver", action="store_true", help="time scikit-learn's libsvm against the compiled solver "
                    "on one fold's fits of the generated set (identical models asserted)")
    ap.add_argument("--against", type=Path, help="with --solver: another version of svm_solver.cpp (e.g. from git "
                    "show REV:convfeat/evaluation/svm_solver.cpp), timed on the same fits")
    ap.add_argument("--kernels", action="store_true", help="time the kernel-matrix functions: NumPy loops vs the "
                    "compiled code (identical values asserted)")
    ap.add_argument("--halving-items", type=int, default=1000)
    ap.add_argument("--seeds", default="0,1", help="generated sets of --halving")
    ap.add_argument("--json", type=Path, help="write the figures and timings to this JSON file")
    ap.add_argument("--reproduce", type=Path, help="write every reproduced figure to this JSON file (resumable)")
    ap.add_argument("--emo-rows", default=KEY_ROWS, help="layer subsets of the emoMusic runs with the grid as "
                    "described and nested CV (their linear SVR points are slow); mfcc is always included")
    ap.add_argument("--table", type=Path, help="print the Markdown table of a --reproduce JSON file")
    ap.add_argument("--parts", default="study,nested,study_both_emo,study_both,nested_emo")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
    elif args.reproduce:
        reproduce(args.reproduce, args.jobs, [p for p in args.parts.split(",") if p], args.emo_rows)
    elif args.kernels:
        time_kernels(args.items, args.json)
    elif args.solver:
        time_solver(args.items, args.json, args.against)
    elif args.generated:
        time_generated(args.items, args.layers, args.old_folds, args.jobs, args.json)
    elif args.halving:
        halving(args.halving_items, args.layers, [int(s) for s in args.seeds.split(",")], args.jobs, args.json)
    else:
        time_sweep(args.jobs, args.scaler, args.json)


if __name__ == "__main__":
    main()
