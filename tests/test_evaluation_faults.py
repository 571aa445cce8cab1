"""Faults of convfeat.evaluation that once gave a figure instead of a refusal, or a misleading one.

Each test asserts the exact outcome: the exception and its message, or the CLI's exit code 2 and
its one line.  Labels with nothing to learn (one class, a constant target, constant tags), training
folds with a single class, repeated keys in a labels file, folds numbered from 1 everywhere, and
95 % intervals inside the metric's range.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from convfeat import evaluation as ev
from convfeat.cli import app
from convfeat.errors import ConvfeatError
from convfeat.evaluation.stats import interval
from convfeat.store.importer import import_embeddings

N = 24
IDS = [f"clip{i:02d}.wav" for i in range(N)]
ONE_CLASS = ("label column 'label' has 1 class: 'rock' (24 items); classification needs at least two classes: "
             "check --label-column (and the manifest), or add items of another class")


def _blobs(n_per=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((2, 6)) * 8
    X = np.concatenate([c + rng.standard_normal((n_per, 6)) for c in centers]).astype(np.float32)
    return X, np.repeat(["a", "b"], n_per)


@pytest.fixture()
def feats(tmp_path):
    """A feature file of 24 items (two separable classes in the features) and a manifest to edit."""
    X, y = _blobs()
    np.save(tmp_path / "x.npy", X)
    manifest = pd.DataFrame({"id": IDS, "label": y, "fold": [str(i % 3 + 1) for i in range(N)],
                             "score": np.linspace(0, 1, N), "tags": ["rock;pop"] * N})
    manifest.to_csv(tmp_path / "m.csv", index=False)
    h5 = tmp_path / "f.h5"
    import_embeddings([tmp_path / "x.npy"], h5, "emb", ids=tmp_path / "m.csv", id_column="id")
    return h5, manifest, tmp_path


def _cli_error(h5, manifest: pd.DataFrame, tmp_path, *args) -> str:
    """Run `convfeat evaluate` on ``manifest``: assert exit 2 and one line; return the message."""
    path = tmp_path / "labels.csv"
    manifest.to_csv(path, index=False)
    res = CliRunner().invoke(app, ["evaluate", str(h5), "-l", str(path), "-j", "1", *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0][len("error: "):]


# -- 1. nothing to learn ----------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["study", "nested"])
@pytest.mark.parametrize("head", ["svm", "linear"])
def test_single_class_is_refused_not_scored_perfect(feats, protocol, head):
    h5, manifest, tmp = feats
    one = manifest.assign(label="rock")
    msg = _cli_error(h5, one, tmp, "--label-column", "label", "--folds", "3", "--inner-folds", "2",
                     "--protocol", protocol, "--head", head)
    assert msg == ONE_CLASS
    X, _ = _blobs()
    with pytest.raises(ev.EvaluationError) as exc:
        ev.evaluate(X, np.array(["rock"] * N), "classification", protocol, n_folds=3, inner_folds=2, head=head,
                    target="label")
    assert str(exc.value) == ONE_CLASS
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, ConvfeatError)


def test_single_class_after_leaving_out_unlabelled_and_unmatched_rows(feats):
    h5, manifest, tmp = feats
    m = manifest.assign(label="rock")
    m.loc[3, "label"] = ""   # an item without a label
    m = pd.concat([m, pd.DataFrame({"id": ["gone1.wav", "gone2.wav"], "label": ["jazz", "jazz"]})])
    msg = _cli_error(h5, m, tmp, "--label-column", "label", "--folds", "3")
    assert msg == ("label column 'label' has 1 class: 'rock' (23 items); left out: 1 item(s) without a label, "
                   "2 labels row(s) that match no item (class 'jazz'); classification needs at least two classes: "
                   "check --label-column (and the manifest), or add items of another class")
    with pytest.raises(ev.EvaluationError) as exc:
        ev.load_labels(m, IDS, label_column="label")
    assert str(exc.value) == msg


def test_no_labelled_item_is_refused(feats):
    _, manifest, _ = feats
    with pytest.raises(ev.EvaluationError) as exc:
        ev.load_labels(manifest.assign(label=""), IDS, label_column="label")
    assert str(exc.value) == ("no item has a label in column 'label'; left out: 24 item(s) without a label; "
                              "check the column and the key column (--key-column)")


def test_constant_regression_target_is_refused(feats):
    h5, manifest, tmp = feats
    msg = _cli_error(h5, manifest.assign(score="0.5"), tmp, "--target-columns", "score", "--folds", "3")
    assert msg == ("target column 'score' has no variance: all 24 items are 0.5; r² is undefined for a constant "
                   "target: check --target-columns (and the manifest)")
    # one constant target among several refuses the run, naming that column
    with pytest.raises(ev.EvaluationError, match=r"^target column 'flat' has no variance: all 24 items are 2;"):
        ev.load_labels(manifest.assign(flat="2"), IDS, target_columns="score,flat")
    with pytest.raises(ev.EvaluationError) as exc:
        ev.evaluate(np.zeros((N, 3)) + np.arange(N)[:, None], np.full(N, 7.0), "regression", n_folds=3)
    assert str(exc.value) == ("target column 'y' has no variance: all 24 items are 7; r² is undefined for a constant "
                              "target: check --target-columns (and the manifest)")


def test_tags_all_constant_are_refused(feats):
    h5, manifest, tmp = feats
    msg = _cli_error(h5, manifest, tmp, "--tags-column", "tags", "--folds", "3")
    assert msg == ("tags column 'tags' has no tag that some items have and others lack: 'pop' on all of the 24 "
                   "items, 'rock' on all of the 24 items; multi-label evaluation needs such a tag: check "
                   "--tags-column and --tag-separator (and the manifest)")
    with pytest.raises(ev.EvaluationError) as exc:
        ev.evaluate(np.random.default_rng(0).standard_normal((N, 3)), np.ones((N, 2), int), "multilabel", "study",
                    n_folds=3)
    assert str(exc.value) == ("tags column 'y' has no tag that some items have and others lack: 'tag 0' on all of "
                              "the 24 items, 'tag 1' on all of the 24 items; multi-label evaluation needs such a "
                              "tag: check --tags-column and --tag-separator (and the manifest)")
    # some constant tags are still dropped and noted, as before
    lab = ev.load_labels(manifest.assign(tags=["rock;pop"] * 12 + ["rock"] * 12), IDS, tags_column="tags")
    assert lab.names == ["pop"] and "rock" in lab.dropped["tags"]


# -- 1b. training folds with a single class ------------------------------------------------
def test_fold_whose_training_side_has_one_class_is_refused(feats):
    h5, manifest, tmp = feats
    m = manifest.assign(fold=np.where(manifest["label"] == "a", "1", "2"))   # each fold holds one class
    msg = _cli_error(h5, m, tmp, "--label-column", "label", "--fold-column", "fold", "--protocol", "study")
    assert msg == ("the training side of fold 1 of 2 (2 predefined folds from a column) holds a single class, 'b' "
                   "(12 items): a classifier cannot be trained on one class (the other class(es), 'a', are all on "
                   "its test side); make folds whose training sides hold at least two classes (another fold, split "
                   "or group column, or stratified k-fold with --folds)")
    split = np.where(manifest["label"] == "a", "test", "train")
    msg = _cli_error(h5, manifest.assign(split=split), tmp, "--label-column", "label", "--split-column", "split",
                     "--head", "linear")
    assert msg.startswith("the training side of the split (fixed train/test split from a column (12 train, 12 test)) "
                          "holds a single class, 'b' (12 items)")


def test_group_folds_with_a_single_class_training_side_are_refused():
    X, y = _blobs()
    groups = np.array(["ga"] * 12 + [f"g{i}" for i in range(12)])   # class a is one group
    with pytest.raises(ev.EvaluationError, match=r"^the training side of fold \d of 3 \(stratified group 3-fold .*"
                                                 r"holds a single class, 'b' \(\d+ items\)"):
        ev.evaluate(X, y, "classification", "study", n_folds=3, groups=groups, head="linear")
    # nested CV: an outer training fold with both classes whose group-aware inner folds leave one
    groups = np.array(["ga"] * 6 + ["gb"] * 6 + [f"g{i}" for i in range(12)])   # class a: two groups
    with pytest.raises(ev.EvaluationError) as exc:
        ev.evaluate(X, y, "classification", "nested", n_folds=2, inner_folds=2, groups=groups, head="linear")
    assert str(exc.value) == ("an inner training fold of nested CV holds a single class, 'b' (3 items): the other "
                              "classes are all on its test side; use fewer inner folds (--inner-folds) or "
                              "--protocol study")


# -- 2. repeated keys -----------------------------------------------------------------------
def test_duplicate_ids_are_named(feats):
    h5, manifest, tmp = feats
    dup = pd.concat([manifest, manifest.iloc[[0, 5, 5]]])
    expected = ("key column 'id' of the labels has duplicate values: 'clip00.wav' (2 rows), 'clip05.wav' (3 rows) "
                "(2 repeated item key(s)); each item needs exactly one labels row: remove the repeated rows, or give "
                "a column with one value per item as --key-column")
    assert _cli_error(h5, dup, tmp, "--label-column", "label", "--folds", "3") == expected
    for key_column in (None, "id"):
        with pytest.raises(ev.EvaluationError) as exc:
            ev.load_labels(dup, IDS, label_column="label", key_column=key_column)
        assert str(exc.value) == expected
    # more than three repeated keys: the first three are named
    with pytest.raises(ev.EvaluationError, match=r"'clip02.wav' \(2 rows\), … \(5 repeated item key\(s\)\)"):
        ev.load_labels(pd.concat([manifest, manifest.iloc[:5]]), IDS, label_column="label")
    # a repeating column that matches no item is still passed over (the study's genre column 'id')
    study = pd.DataFrame({"id": ["rock", "rock", "jazz"], "path": ["a", "b", "c"], "label": ["r", "r", "j"]})
    assert ev.load_labels(study, ["a", "b", "c"], ["a", "b", "c"], label_column="label").matched_on == \
        "labels column 'path' = item id"


# -- 3. folds numbered from 1 ------------------------------------------------------------------
def test_folds_are_numbered_from_one_everywhere(feats):
    h5, manifest, tmp = feats
    out = tmp / "report"
    res = CliRunner().invoke(app, ["evaluate", str(h5), "-l", str(tmp / "m.csv"), "--label-column", "label",
                                   "--fold-column", "fold", "--protocol", "study", "--head", "linear", "-j", "1",
                                   "--no-plots", "-o", str(out)])
    assert res.exit_code == 0, res.output
    preds = pd.read_csv(out / "predictions.csv", dtype={"fold": str})
    folds = pd.read_csv(out / "folds.csv")
    assert sorted(set(preds["fold"])) == ["1", "2", "3"] and folds["fold"].tolist() == [1, 2, 3]
    # the number of each prediction is the manifest's fold value of its item
    assert (preds.set_index("id")["fold"] == manifest.set_index("id").loc[preds["id"], "fold"]).all()
    r = ev.evaluate(*_blobs(), "classification", "study", n_folds=4, head="linear")
    assert sorted(set(r.fold_of.tolist())) == [1, 2, 3, 4]
    te = r.fold_of == 2   # fold 2 is splits.folds[1]
    assert sorted(r.ids[te].astype(int)) == sorted(ev.make_splits(_blobs()[1], n_folds=4, legacy=True).folds[1][1])


def test_predefined_fold_values_other_than_one_to_k_are_mapped_in_the_description():
    _, y = _blobs(n_per=6)
    s = ev.make_splits(y, folds=np.array(["0", "1", "2"] * 4))
    assert s.description == "3 predefined folds from a column (numbered 1 = '0', 2 = '1', 3 = '2')"
    assert ev.make_splits(y, folds=np.array(["3", "1", "2"] * 4)).description == "3 predefined folds from a column"


# -- 4. intervals inside the metric's range ------------------------------------------------------
def test_intervals_stay_inside_the_metric_range():
    s = np.array([1.0, 1.0, 0.8, 1.0])
    n_train, n_test = np.full(4, 15), np.full(4, 5)
    h = 3.182446305284263 * math.sqrt((1 / 4 + 5 / 15) * np.var(s, ddof=1))   # t(0.975, 3) · corrected se
    assert s.mean() + h > 1.19   # the t interval would reach [0.707, 1.193]
    for metric in ("accuracy", "macro_f1", "roc_auc", "pr_auc"):
        lo, hi = interval(s, n_train, n_test, metric=metric)
        assert hi == 1.0 and lo == pytest.approx(s.mean() - h, abs=1e-12)
    # an interval inside the range is left as it was
    assert interval(s - 0.2, n_train, n_test, metric="accuracy") == pytest.approx((s.mean() - 0.2 - h,
                                                                                  s.mean() - 0.2 + h))
    lo, hi = interval(s, n_train, n_test, metric="r2")          # r² ≤ 1, no lower bound
    assert hi == 1.0
    lo, hi = interval(s - 1.5, n_train, n_test, metric="r2")
    assert lo == pytest.approx(s.mean() - 1.5 - h) and hi == pytest.approx(s.mean() - 1.5 + h)
    lo, hi = interval(np.array([0.0, 0.0, 0.2, 0.0]), n_train, n_test, metric="rmse")   # rmse ≥ 0
    assert lo == 0.0 and hi == pytest.approx(0.05 + h)
    assert interval(s, n_train, n_test) == pytest.approx((s.mean() - h, s.mean() + h))   # no metric: no bounds


def test_reported_accuracy_interval_does_not_exceed_one(tmp_path):
    X, y = _blobs(n_per=10)
    y[0] = "b"   # one item the features cannot explain: its fold scores below 1, the other three 1.0
    r = ev.evaluate(X, y, "classification", "study", n_folds=4, head="linear")
    acc = r.fold_scores["accuracy"]
    assert sorted(acc.tolist())[1:] == [1.0, 1.0, 1.0] and acc.min() < 1.0
    se = math.sqrt((1 / 4 + np.mean(r.n_test / r.n_train)) * np.var(acc, ddof=1))
    h = 3.182446305284263 * se
    assert acc.mean() + h > 1.0            # the unclipped t interval exceeds 1
    s = r.summary("accuracy")
    assert s["ci95"] == [pytest.approx(acc.mean() - h, abs=1e-12), 1.0]
    ev.write_report(tmp_path, [r], plots=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert (summary["ci95_high"] <= 1.0).all() and (summary["ci95_low"] >= 0.0).all()
    assert f"[{acc.mean() - h:.3f}, 1.000]" in (tmp_path / "report.md").read_text()
