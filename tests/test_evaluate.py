"""convfeat.evaluation / importer / `convfeat evaluate` + `convfeat import` on small generated data."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from convfeat import evaluation as ev
from convfeat.cli.evaluate import register
from convfeat.store.importer import ImportError_, import_embeddings
from convfeat.store.read import load


# -- generated data -------------------------------------------------------------------
def blobs(n_per=12, n_classes=3, d=6, sep=8.0, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, d)) * sep
    X = np.concatenate([c + noise * rng.standard_normal((n_per, d)) for c in centers]).astype(np.float32)
    y = np.repeat([f"c{k}" for k in range(n_classes)], n_per)
    return X, y


def regression_data(n=60, d=5, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d)
    return X, X @ w + noise * rng.standard_normal(n)


# -- protocols: known answers ---------------------------------------------------------
@pytest.mark.parametrize("protocol", ["study", "nested"])
@pytest.mark.parametrize("head", ["svm", "linear"])
def test_separable_classes_score_one(protocol, head):
    X, y = blobs()
    r = ev.evaluate(X, y, "classification", protocol, n_folds=4, inner_folds=3, head=head)
    assert r.score == 1.0
    assert r.summary("macro_f1")["mean"] == 1.0
    assert len(r.fold_scores["accuracy"]) == 4
    assert sorted(r.ids.tolist()) == sorted(map(str, range(len(y))))  # every item predicted once
    assert (r.y_pred == r.y_true).all()
    assert r.protocol == protocol and "nested" in ev.PROTOCOL_LABELS["nested"]


def test_random_labels_score_near_chance_in_nested_cv():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((80, 8)).astype(np.float32)
    y = np.repeat(["a", "b"], 40)
    r = ev.evaluate(X, y, "classification", "nested", n_folds=4, inner_folds=3, head="linear")
    assert 0.2 < r.score < 0.8


def test_regression_linear_target():
    X, y = regression_data()
    r = ev.evaluate(X, y, "regression", "nested", n_folds=5, inner_folds=3, head="linear")
    assert r.score > 0.99 and r.metrics == ("r2", "rmse")
    assert r.summary("rmse")["mean"] < 0.2


def test_multilabel_one_vs_rest_separable_tags():
    X, labels = blobs(n_per=10, n_classes=4, d=5)
    cls = {"c0": [1, 0, 0], "c1": [0, 1, 0], "c2": [1, 1, 0], "c3": [0, 0, 1]}
    Y = np.array([cls[c] for c in labels])
    for head in ("linear", "svm"):
        r = ev.evaluate(X, Y, "multilabel", "study", n_folds=4, shuffle=True, seed=1, head=head)
        assert r.metrics == ("roc_auc", "pr_auc")
        assert r.score == pytest.approx(1.0)
        assert r.y_pred.shape == (40, 3)


def test_group_column_keeps_groups_out_of_their_test_fold():
    X, y = blobs(n_per=20, n_classes=2)
    groups = np.array([f"g{i // 4}" for i in range(len(y))])  # 10 groups of 4 items
    s = ev.make_splits(y, "classification", n_folds=5, groups=groups)
    assert s.kind == "group" and len(s) == 5
    seen = []
    for train, test in s:
        assert not set(groups[train]) & set(groups[test])
        seen += test.tolist()
    assert sorted(seen) == list(range(len(y)))
    # nested: inner folds are group-aware inside the outer training fold too
    for train, _ in s:
        for itr, ite in ev._inner_splits(np.unique(y, return_inverse=True)[1], "classification", train, 2, s):
            assert not set(groups[train][itr]) & set(groups[train][ite])
    r = ev.evaluate(X, y, "classification", "nested", splits=s, inner_folds=2, head="linear")
    assert r.score == 1.0
    with pytest.raises(ev.EvaluationError, match="3 groups"):
        ev.make_splits(y, "classification", n_folds=5, groups=np.array(["a", "b", "c"] * 13 + ["a"]))


def test_class_with_fewer_items_than_folds_is_named():
    y = np.array(["rock"] * 12 + ["jazz"] * 12 + ["polka"] * 3)
    with pytest.raises(ev.EvaluationError, match=r"'polka' \(3 items\).*10 folds"):
        ev.make_splits(y, "classification", n_folds=10)
    X = np.random.default_rng(0).standard_normal((len(y), 3))
    with pytest.raises(ev.EvaluationError, match="polka"):
        ev.evaluate(X, y, "classification", "study", n_folds=10)


def test_predefined_folds_and_fixed_split():
    X, y = blobs(n_per=6, n_classes=2)
    folds = np.array(["3", "1", "2"] * 4)
    s = ev.make_splits(y, folds=folds)
    assert s.kind == "predefined" and len(s) == 3
    for (train, test), f in zip(s, ["1", "2", "3"]):
        assert (folds[test] == f).all() and (folds[train] != f).all()
    split = np.zeros(12, bool)
    split[[0, 5, 6, 11]] = True
    s = ev.make_splits(y, split=split)
    assert len(s) == 1 and s.folds[0][1].tolist() == [0, 5, 6, 11]
    r = ev.evaluate(X, y, "classification", "study", splits=s, head="linear")
    assert r.score == 1.0 and np.isfinite(r.summary()["ci95"]).all()  # bootstrap interval for one split
    with pytest.raises(ev.EvaluationError, match="train"):
        ev.make_splits(y, split=np.ones(12, bool))


def test_shuffle_with_seed():
    y = np.repeat(["a", "b"], 20)
    a = ev.make_splits(y, n_folds=4, shuffle=True, seed=3)
    b = ev.make_splits(y, n_folds=4, shuffle=True, seed=3)
    c = ev.make_splits(y, n_folds=4)
    assert all((p[1] == q[1]).all() for p, q in zip(a, b))
    assert any(not np.array_equal(p[1], q[1]) for p, q in zip(a, c))
    assert "seed 3" in a.description and "not shuffled" in c.description


def test_legacy_stratified_folds_are_the_old_scikit_learn_ones():
    # scikit-learn <= 0.21: each class split with an unshuffled KFold of its own
    y = np.array([0] * 7 + [1] * 5)
    assert ev.legacy_stratified_folds(y, 3).tolist() == [0, 0, 0, 1, 1, 2, 2] + [0, 0, 1, 1, 2]
    # equal to today's StratifiedKFold when class sizes are multiples of k (GTZAN: 100 per class)
    y = np.repeat(np.arange(4), 10)
    new = ev.make_splits(y, n_folds=5)
    old = ev.make_splits(y, n_folds=5, legacy=True)
    assert all((p[1] == q[1]).all() for p, q in zip(new, old))


# -- precomputed kernels == the plain estimators in GridSearchCV ----------------------------
def _gridsearch_means(X, y, splits, regression):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR

    grid = [{"clf__C": list(ev.STUDY_C), "clf__kernel": ["rbf"], "clf__gamma": list(ev.STUDY_GAMMAS),
             "scale": [StandardScaler(), "passthrough"]},
            {"clf__C": list(ev.STUDY_C), "clf__kernel": ["linear"], "scale": [StandardScaler(), "passthrough"]}]
    pipe = Pipeline([("scale", StandardScaler()), ("clf", SVR() if regression else SVC())])
    gs = GridSearchCV(pipe, grid, cv=splits.folds).fit(X, y)
    return gs.cv_results_["mean_test_score"], gs.best_score_


def test_precomputed_kernels_match_gridsearchcv_classification():
    rng = np.random.default_rng(5)
    X, y = blobs(n_per=15, n_classes=3, d=7, sep=1.5, seed=2)
    X = X * rng.uniform(0.1, 20, X.shape[1]).astype(np.float32) + 3  # scaling matters
    s = ev.make_splits(y, n_folds=5)
    r = ev.evaluate(X, y, "classification", "study", splits=s, scaler="both", iid=False)
    mine = np.array([g["score"] for g in r.grid_scores])
    theirs, best = _gridsearch_means(X, y, s, False)
    assert len(mine) == 64
    np.testing.assert_array_equal(mine, theirs)          # every grid point, exactly
    assert r.score == best and 0.4 < best < 1.0
    plain = ev.evaluate(X, y, "classification", "study", splits=s, scaler="both", iid=False, precompute=False)
    np.testing.assert_array_equal(mine, [g["score"] for g in plain.grid_scores])


def test_precomputed_kernels_match_gridsearchcv_regression():
    X, y = regression_data(n=50, d=4, noise=0.5)
    X = X * np.array([1, 10, 0.1, 3], np.float32)
    y = np.tanh(y)
    s = ev.make_splits(y, "regression", n_folds=5)
    r = ev.evaluate(X, y, "regression", "study", splits=s, scaler="both", iid=False, max_iter=-1)
    theirs, best = _gridsearch_means(X, y, s, True)
    np.testing.assert_allclose([g["score"] for g in r.grid_scores], theirs, rtol=0, atol=1e-12)
    assert r.score == pytest.approx(best, abs=1e-12)


def test_study_score_weights_folds_by_size_and_nested_scores_outer_folds():
    X, y = blobs(n_per=11, n_classes=2, sep=0.6, seed=4)  # 22 items, 4 folds of 6/6/5/5
    s = ev.make_splits(y, n_folds=4)
    r = ev.evaluate(X, y, "classification", "study", splits=s)
    acc = r.fold_scores["accuracy"]
    assert r.score == pytest.approx(np.average(acc, weights=r.n_test))   # GridSearchCV(iid=True), as in 2017
    # the study's figure is the max over the grid of those means
    assert r.score == pytest.approx(max(g["score"] for g in r.grid_scores))
    n = ev.evaluate(X, y, "classification", "nested", splits=s, inner_folds=2)
    assert n.score == pytest.approx(np.mean(n.fold_scores["accuracy"]))
    assert len(n.params) == 4  # one choice per outer fold


def test_scaler_auto_is_off_for_the_study_and_both_for_nested():
    assert {p["scaler"] for p in ev.grid_for("svm", "classification", "study")} == {False}
    assert {p["scaler"] for p in ev.grid_for("svm", "classification", "nested")} == {True, False}
    assert len(ev.grid_for("svm", "regression", "study", "both")) == 64
    assert len(ev.layer_subsets("all")) == 31 and ev.layer_subsets("51,123") == ["15", "123"]
    with pytest.raises(ev.EvaluationError):
        ev.layer_subsets("126")


def test_iteration_cap_is_recorded_and_the_reported_point_converges():
    X, y = regression_data(n=40, d=4)
    X = X * 50
    grid = [{"kernel": "rbf", "C": 2.0, "gamma": "auto", "scaler": False}, {"kernel": "linear", "C": 0.1, "scaler": False}]
    r = ev.evaluate(X, y, "regression", "study", n_folds=4, grid=grid, max_iter=5)
    assert r.capped and "max_iter=5" in r.capped[0]
    assert "re-run to convergence" in r.capped[-1] and not r.best_capped
    full = ev.evaluate(X, y, "regression", "study", n_folds=4, grid=grid, max_iter=-1)
    assert r.score == full.score and r.params == full.params and not full.capped


def test_paired_test_corrected_t():
    a = np.array([0.80, 0.82, 0.85, 0.79, 0.81])
    b = a - np.array([0.05, 0.02, 0.04, 0.03, 0.06])
    t = ev.paired_test(a, b, n_train=np.full(5, 80), n_test=np.full(5, 20))
    d = a - b
    se = np.sqrt((1 / 5 + 20 / 80) * d.var(ddof=1))
    assert t["mean_diff"] == pytest.approx(0.04) and t["t"] == pytest.approx(d.mean() / se)
    assert t["p"] > t["p_ttest"]  # the corrected test is the more careful one
    assert t["wins"] == 5 and t["ci95"][0] < 0.04 < t["ci95"][1]
    assert ev.paired_test(a, a)["p"] == 1.0


def test_options_are_checked_once_with_messages_that_say_what_to_do():
    X, y = blobs(n_per=8, n_classes=2)
    opts = ev.Options(protocol="study", n_folds=4, head="linear")
    a = ev.evaluate(X, y, options=opts)
    b = ev.evaluate(X, y, "classification", "study", n_folds=4, head="linear")
    assert a.score == b.score and a.params == b.params and a.protocol == "study"
    assert ev.evaluate(X, y, "classification", "nested", options=opts, inner_folds=2).protocol == "nested"
    with pytest.raises(ev.EvaluationError, match="head must be one of svm, linear, got 'tree'"):
        ev.Options(head="tree")
    with pytest.raises(ev.EvaluationError, match="inner_folds must be at least 2"):
        ev.evaluate(X, y, inner_folds=1)
    with pytest.raises(ev.EvaluationError, match="n_folds must be a whole number"):
        ev.Options(n_folds="4")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'n_fold'.*n_folds"):
        ev.evaluate(X, y, n_fold=4)


def test_evaluation_imports_neither_torch_nor_h5py():
    # one fresh interpreter, both checks in order: evaluation alone, then with the store
    code = ("import convfeat.evaluation, sys; assert 'torch' not in sys.modules and 'h5py' not in sys.modules\n"
            "import convfeat.store; assert 'torch' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr


# -- labels ---------------------------------------------------------------------------
def test_load_labels_reports_unmatched_both_ways(tmp_path):
    man = tmp_path / "labels.csv"
    pd.DataFrame({"genre_id": ["rock", "rock", "jazz", "jazz"],  # not unique: not a key
                  "path": ["./a.wav", "b.wav", "c.wav", "zz.wav"], "label": ["r", "", "j", "j"]}) \
        .rename(columns={"genre_id": "id"}).to_csv(man, index=False)
    ids = ["c.wav", "a.wav", "b.wav", "d.wav"]
    lab = ev.load_labels(man, ids, ids, label_column="label")
    assert lab.ids == ["a.wav", "c.wav"]                       # manifest order
    assert sorted(lab.items_without_labels) == ["b.wav", "d.wav"]  # empty label, not in manifest
    assert lab.labels_without_items == ["zz.wav"]
    assert "'path'" in lab.matched_on
    assert any("2 items without labels" in s for s in lab.summary_lines())


def test_load_labels_errors_and_kinds(tmp_path):
    df = pd.DataFrame({"id": ["a", "b", "c"], "v": ["0.5", "x", "1"], "tags": ["rock;pop", "pop", "jazz"],
                       "split": ["train", "dev", "test"], "fold": ["1", "2", "1"]})
    with pytest.raises(ev.EvaluationError, match="not numeric"):
        ev.load_labels(df, ["a", "b", "c"], target_columns="v")
    with pytest.raises(ev.EvaluationError, match="exactly one"):
        ev.load_labels(df, ["a"], label_column="v", tags_column="tags")
    with pytest.raises(ev.EvaluationError, match="no labels row matches"):
        ev.load_labels(df, ["q", "r"], label_column="v")
    with pytest.raises(ev.EvaluationError, match="no label column 'genre'"):
        ev.load_labels(df, ["a"], label_column="genre")
    lab = ev.load_labels(df, ["a", "b", "c"], tags_column="tags", split_column="split", fold_column="fold")
    assert lab.task == "multilabel" and lab.names == ["jazz", "pop", "rock"]
    assert lab.y.tolist() == [[0, 1, 1], [0, 1, 0], [1, 0, 0]]
    assert lab.split.tolist() == [False, False, True] and lab.folds.tolist() == ["1", "2", "1"]


# -- import + CLI end to end ----------------------------------------------------------
@pytest.fixture()
def study_like(tmp_path):
    """A study-like dataset: per-layer .npy files, an MFCC .npy, a labels CSV keyed by filepath."""
    rng = np.random.default_rng(0)
    n_per, classes = 8, ["blues", "jazz", "metal"]
    y = np.repeat(np.arange(3), n_per)
    centers = rng.standard_normal((3, 32)) * 3
    for i in range(5):
        sep = 0.2 + i * 0.5   # deeper layers separate the classes better
        np.save(tmp_path / f"t_layer_{i}.npy", (centers[y] * sep + rng.standard_normal((len(y), 32))).astype(np.float32))
    np.save(tmp_path / "t_mfcc.npy", rng.standard_normal((len(y), 120)) * 50 + centers[y][:, :1] * 10)
    paths = [f"genres/{classes[c]}/{classes[c]}.{k:05d}.au" for c in range(3) for k in range(n_per)]
    pd.DataFrame({"id": [classes[c] for c in y], "filepath": paths, "label": y, "artist": [f"a{k % 8}" for k in range(24)],
                  "score": y * 0.5 + rng.standard_normal(len(y)) * 0.1}).to_csv(tmp_path / "t.csv")
    return tmp_path


def _app():
    app = typer.Typer()
    register(app)
    return app


def test_import_per_layer_arrays_and_readback(study_like):
    h5 = study_like / "f.h5"
    layers = [study_like / f"t_layer_{i}.npy" for i in range(5)]
    info = import_embeddings(layers, h5, "study", ids=study_like / "t.csv", id_column="filepath")
    assert info["datasets"] == {f"layer{i}": 32 for i in range(1, 6)} and info["n_items"] == 24
    import_embeddings([study_like / "t_mfcc.npy"], h5, "mfcc", ids=study_like / "t.csv", id_column="filepath")
    ids, X = load(h5, "study", "135")
    assert X.shape == (24, 96) and ids[0] == "genres/blues/blues.00000.au"
    np.testing.assert_array_equal(X[:, 32:64], np.load(layers[2]))
    _, M = load(h5, "mfcc")
    np.testing.assert_allclose(M, np.load(study_like / "t_mfcc.npy").astype(np.float32))
    with h5py.File(h5, "r") as h:
        cfg = json.loads(h["features/study"].attrs["config"])
    assert cfg["imported"] and len(cfg["sha256"]["t_layer_0.npy"]) == 64
    # the same set from other data is refused
    np.save(study_like / "other.npy", np.zeros((24, 32), np.float32))
    with pytest.raises(Exception, match="another configuration"):
        import_embeddings([study_like / "other.npy"], h5, "study", ids=study_like / "t.csv", id_column="filepath")


def test_import_npz_and_csv_and_errors(tmp_path):
    np.savez(tmp_path / "e.npz", ids=np.array(["x", "y", "z"]), layer1=np.ones((3, 4)), layer2=np.zeros((3, 2)))
    info = import_embeddings(tmp_path / "e.npz", tmp_path / "a.h5", "emb")
    assert info["datasets"] == {"layer1": 4, "layer2": 2}
    assert load(tmp_path / "a.h5", "emb", "12")[1].shape == (3, 6)
    pd.DataFrame({"id": ["x", "y"], "f0": [1.0, 2.0], "f1": [3.0, 4.0]}).to_csv(tmp_path / "e.csv", index=False)
    import_embeddings(tmp_path / "e.csv", tmp_path / "b.h5", "openl3")
    ids, X = load(tmp_path / "b.h5", "openl3")
    assert ids.tolist() == ["x", "y"] and X.tolist() == [[1, 3], [2, 4]]
    np.save(tmp_path / "n.npy", np.ones((3, 2)))
    with pytest.raises(ImportError_, match="no ids"):
        import_embeddings(tmp_path / "n.npy", tmp_path / "c.h5", "n")
    (tmp_path / "ids.txt").write_text("a\nb\n")
    with pytest.raises(ImportError_, match="2 ids for 3 rows"):
        import_embeddings(tmp_path / "n.npy", tmp_path / "c.h5", "n", ids=tmp_path / "ids.txt")


def test_cli_import_and_evaluate_end_to_end(study_like, tmp_path):
    runner = CliRunner()
    app = _app()
    h5 = tmp_path / "f.h5"
    layers = [str(study_like / f"t_layer_{i}.npy") for i in range(5)]
    res = runner.invoke(app, ["import", *layers, "--ids", str(study_like / "t.csv"), "--id-column", "filepath",
                              "-n", "choi2017", "-o", str(h5)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["import", str(study_like / "t_mfcc.npy"), "--ids", str(study_like / "t.csv"),
                              "--id-column", "filepath", "-n", "mfcc", "-o", str(h5)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "report"
    res = runner.invoke(app, ["evaluate", str(h5), "-l", str(study_like / "t.csv"), "--label-column", "label",
                              "--layers", "12345,1,5", "--folds", "4", "--protocol", "study", "-j", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "study protocol" in res.output and "choi2017/12345" in res.output and "mfcc" in res.output
    for name in ("report.md", "report.json", "summary.csv", "folds.csv", "tests.csv", "predictions.csv"):
        assert (out / name).exists(), name
    if importlib.util.find_spec("matplotlib"):
        assert (out / "layers.png").stat().st_size > 1000
        assert len(list((out / "confusion").glob("*.png"))) == 4
    doc = json.loads((out / "report.json").read_text())
    assert doc["meta"]["protocol"] == "study" and doc["labels"]["matched_on"] == "labels column 'filepath' = item id"
    assert {t["baseline"] for t in doc["tests"]} == {"mfcc"}
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 4 * 24 and set(preds["fold"]) == {1, 2, 3, 4}  # folds numbered from 1
    summary = pd.read_csv(out / "summary.csv")
    assert summary.query("feature == 'choi2017/12345' and metric == 'accuracy'")["score"].iloc[0] == 1.0
    # regression target + group column, nested, linear head
    res = runner.invoke(app, ["evaluate", str(h5), "-l", str(study_like / "t.csv"), "--target-columns", "score",
                              "-f", "choi2017", "--group-column", "artist", "--folds", "4", "--inner-folds", "3",
                              "--head", "linear", "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "nested CV" in res.output and "group 4-fold" in res.output and "r2" in res.output


def test_cli_bad_input_is_one_line(study_like, tmp_path):
    runner = CliRunner()
    app = _app()
    h5 = tmp_path / "f.h5"
    import_embeddings([study_like / "t_layer_0.npy"], h5, "x", ids=study_like / "t.csv", id_column="filepath")
    cases = [
        (["evaluate", str(h5), "-l", str(study_like / "t.csv"), "--label-column", "nope"], "no label column 'nope'"),
        (["evaluate", str(h5), "-l", str(study_like / "t.csv"), "--label-column", "label", "--folds", "9"],
         "fewer items than the 9 folds"),
        (["evaluate", str(h5), "-l", str(study_like / "t.csv"), "--label-column", "label", "-f", "zzz"],
         "no feature set 'zzz'"),
        (["evaluate", str(tmp_path / "missing.h5"), "--label-column", "label"], "no such feature file"),
        (["import", str(study_like / "t_mfcc.npy"), "-o", str(tmp_path / "g.h5"), "-n", "m"], "no ids"),
    ]
    for args, message in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output


def test_labels_without_items_are_reported_by_the_cli(study_like, tmp_path):
    h5 = tmp_path / "f.h5"
    import_embeddings([study_like / "t_layer_4.npy"], h5, "x", ids=study_like / "t.csv", id_column="filepath")
    man = pd.read_csv(study_like / "t.csv", index_col=0)
    extra = man.iloc[:1].assign(filepath="not/extracted.au")
    pd.concat([man.iloc[1:], extra]).to_csv(tmp_path / "m.csv", index=False)
    res = CliRunner().invoke(_app(), ["evaluate", str(h5), "-l", str(tmp_path / "m.csv"), "--label-column", "label",
                                      "--folds", "3", "--protocol", "study", "--head", "linear", "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "1 items without labels" in res.output and "genres/blues/blues.00000.au" in res.output
    assert "1 labels without items" in res.output and "not/extracted.au" in res.output


def test_cli_inner_search_reaches_the_protocol(study_like, tmp_path):
    """--inner-search full / halving give the library's figures for that search (and the report says which)."""
    h5 = tmp_path / "f.h5"
    import_embeddings([study_like / f"t_layer_{i}.npy" for i in range(5)], h5, "choi2017",
                      ids=study_like / "t.csv", id_column="filepath")
    runner, app = CliRunner(), _app()
    for search in ("full", "halving"):
        out = tmp_path / search
        res = runner.invoke(app, ["evaluate", str(h5), "-l", str(study_like / "t.csv"), "--label-column", "label",
                                  "--layers", "1", "--folds", "3", "--inner-folds", "3", "--inner-search", search,
                                  "--scaler", "off", "-j", "1", "-o", str(out), "--no-plots"])
        assert res.exit_code == 0, res.output
        doc = json.loads((out / "report.json").read_text())
        r = doc["results"][0]
        assert ("successive halving" in r["protocol_label"]) == (search == "halving")
        ids, X = load(h5, "choi2017", "1")
        y = pd.read_csv(study_like / "t.csv").set_index("filepath").loc[ids, "label"].to_numpy()
        lib = ev.sweep({"choi2017/1": X}, y, "classification", "nested", n_folds=3, inner_folds=3,
                       grid=ev.svm_grid((False,)), inner_search=search, n_jobs=1)[0]
        assert r["metrics"]["accuracy"]["folds"] == pytest.approx(lib.fold_scores["accuracy"].tolist())
