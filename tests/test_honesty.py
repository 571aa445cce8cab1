"""Issue 16, evaluation honesty and study reproduction: group-aware inner folds under predefined folds,
like-for-like paired tests, the study's batch mode, MFCC on the clip itself."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from convfeat import evaluation as ev
from convfeat.evaluation import protocol as protocol_module
from convfeat.store.importer import import_embeddings


# -- 1. predefined outer folds + groups: group-aware inner folds ------------------------------------------
def _grouped(n_groups=24, per=5, seed=0):
    """Items in groups (recordings) of ``per`` slices; a group's slices share its class and a group offset."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    y = np.array([f"c{k % 2}" for k in g])
    X = (np.where(y == "c1", 1.0, -1.0)[:, None] * 0.5 + rng.standard_normal((n_groups, 4))[g] * 2
         + 0.1 * rng.standard_normal((len(g), 4))).astype(np.float32)
    fold = np.array([1 + (k // 2) % 3 for k in g])   # 3 predefined folds; a group in one fold
    return X, y, np.array([f"rec{k}" for k in g]), fold


def _crossing(groups, folds):
    return [sorted(set(groups[tr]) & set(groups[te])) for tr, te in folds]


def test_predefined_folds_and_groups_combine_and_inner_folds_keep_groups_apart():
    X, y, groups, fold = _grouped()
    s = ev.make_splits(y, "classification", folds=fold.astype(str), groups=groups)
    assert s.kind == "predefined" and len(s) == 3 and s.groups is not None
    assert s.description == "3 predefined folds from a column; inner folds group-aware (24 groups)"
    codes = np.unique(y, return_inverse=True)[1]
    for train, _ in s:
        inner = ev.inner_splits(codes, "classification", train, 3, s)
        assert len(inner) == 3
        assert _crossing(groups[train], inner) == [[], [], []]
    # without the groups the same inner folds put slices of one recording on both sides (what this fixes)
    plain = ev.make_splits(y, "classification", folds=fold.astype(str))
    train = plain.folds[0][0]
    assert any(_crossing(groups[train], ev.inner_splits(codes, "classification", train, 3, plain)))
    # a fold column and a split column still do not combine
    with pytest.raises(ev.EvaluationError, match="fold column or a split column, not both"):
        ev.make_splits(y, folds=fold.astype(str), split=fold == 1)


def test_outer_fold_that_splits_a_group_is_named():
    X, y, groups, fold = _grouped()
    fold[0] = 3 if fold[0] != 3 else 2     # one slice of rec0 moved to another fold
    s = ev.make_splits(y, folds=fold.astype(str), groups=groups)
    assert s.description.endswith("1 group(s) on both sides of an outer fold (e.g. 'rec0'): those outer scores are "
                                  "not group-aware")


@pytest.fixture(scope="module")
def grouped_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grouped")
    X, y, groups, fold = _grouped()
    ids = [f"item{i:03d}" for i in range(len(y))]
    import_embeddings([_save(tmp / "x.npy", X)], tmp / "f.h5", "emb", ids=ids)
    pd.DataFrame({"id": ids, "label": y, "fold": fold, "group": groups}).to_csv(tmp / "m.csv", index=False)
    return tmp / "f.h5", tmp / "m.csv", groups


def _save(path, X):
    np.save(path, X)
    return path


@pytest.mark.parametrize("give_group_column", [True, False])
def test_nested_run_with_fold_column_never_splits_a_group_inside(grouped_file, monkeypatch, give_group_column):
    """The inner folds nested CV actually uses (the splitter instrumented) keep every group on one side,
    with --group-column given and, by default, with the adapters' `group` column present."""
    path, manifest, _ = grouped_file
    seen = []
    real = protocol_module.inner_splits

    def spy(y, task, train, n_inner, outer, classes=None):
        folds = real(y, task, train, n_inner, outer, classes)
        seen.append((train, folds, outer.groups))
        return folds

    monkeypatch.setattr(protocol_module, "inner_splits", spy)
    res = ev.run([path], manifest, label_column="label", fold_column="fold",
                 group_column="group" if give_group_column else None, inner_folds=3, head="linear")
    assert len(seen) == 3                       # one inner search per outer fold
    for train, folds, groups in seen:
        assert groups is not None
        assert _crossing(groups[train], folds) == [[], [], []]
    notes = [n for n in res["notes"] if "group column 'group' found" in n]
    assert len(notes) == (0 if give_group_column else 1)
    assert "inner folds group-aware (24 groups)" in res["results"][0].splits


# -- 2. like-for-like paired tests ------------------------------------------------------------------------
def test_pairs_are_like_for_like_or_the_baselines_best_said_so():
    scores = {"random/12345": 0.50, "random/5": 0.62, "random/1": 0.40, "mfcc": 0.55}
    pairs = ev.pair_baselines(["choi2017/12345", "choi2017/5", "choi2017/3", "mfcc", "random/5"],
                              ["random/12345", "random/5", "random/1", "mfcc"], scores)
    assert pairs == [("choi2017/12345", "random/12345", "same layers"), ("choi2017/12345", "mfcc", "baseline"),
                     ("choi2017/5", "random/5", "same layers"), ("choi2017/5", "mfcc", "baseline"),
                     ("choi2017/3", "random/5", "baseline's best subset"), ("choi2017/3", "mfcc", "baseline")]


def test_min_wilcoxon_p_matches_scipy_exact():
    from scipy import stats

    for k in (3, 5, 6, 8):
        assert ev.min_wilcoxon_p(k) == pytest.approx(stats.wilcoxon(np.arange(1.0, k + 1)).pvalue)


@pytest.fixture(scope="module")
def swept():
    rng = np.random.default_rng(1)
    y = np.repeat(["a", "b"], 18)
    good = (np.where(y == "a", -3.0, 3.0)[:, None] + rng.standard_normal((36, 3))).astype(np.float32)
    noise = lambda: rng.standard_normal((36, 3)).astype(np.float32)  # noqa: E731
    mats = {"choi2017/12345": good, "choi2017/5": good[:, :2], "random/12345": noise(), "random/5": noise()}
    out = {}
    for k in (3, 6):
        out[k] = ev.sweep(mats, y, "classification", protocol="study", n_folds=k, head="linear", shuffle=True,
                          seed=0)
    return out


@pytest.mark.parametrize("k", [3, 6])
def test_compare_pairs_same_subsets_and_hides_a_wilcoxon_that_cannot_reach_005(swept, k):
    tests = ev.compare(swept[k], ["random/12345", "random/5"])
    acc = [t for t in tests if t["metric"] == "accuracy"]
    assert {(t["feature"], t["baseline"], t["pairing"]) for t in acc} == {
        ("choi2017/12345", "random/12345", "same layers"), ("choi2017/5", "random/5", "same layers")}
    for t in acc:
        n = t["wins"] + t["losses"]
        if 2.0 / 2 ** n > 0.05:
            assert np.isnan(t["p_wilcoxon"])
            assert t["wilcoxon_note"] == (f"Wilcoxon not shown: with {n} non-zero fold differences its smallest "
                                          f"possible p is {2 / 2 ** n:.3g} > 0.05")
        else:
            assert "wilcoxon_note" not in t and t["p_wilcoxon"] == pytest.approx(2.0 / 2 ** n)   # all wins
    if k == 3:
        assert all(np.isnan(t["p_wilcoxon"]) and "0.25 > 0.05" in t["wilcoxon_note"] for t in acc)


def test_report_says_why_a_test_is_not_shown(swept, tmp_path):
    tests = ev.compare(swept[3], ["random/12345", "random/5"])
    ev.write_report(tmp_path, swept[3], tests, baselines=["random/12345", "random/5"], plots=False)
    md = (tmp_path / "report.md").read_text()
    assert "\\* Wilcoxon not shown: with 3 non-zero fold differences its smallest possible p is 0.25 > 0.05." in md
    rows = [line for line in md.splitlines() if line.startswith("|  | choi2017/")]   # the paired-test rows
    assert len(rows) == 4 and all("| –* |" in line for line in rows)
    csv = pd.read_csv(tmp_path / "tests.csv")
    assert set(csv["pairing"]) == {"same layers"}


# -- 3. bn_mode batch as the study ran it ---------------------------------------------------------------
def _clips(root, n=5, seconds=29.0, sr=12000):
    """``n`` different 29-s clips at 12 kHz (float WAV: decoded samples are the written ones)."""
    import soundfile as sf

    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    root.mkdir(parents=True, exist_ok=True)
    clips = {}
    for i in range(n):
        y = (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + (0.05 + 0.1 * i) * rng.standard_normal(len(t)))
        y = y.astype(np.float32)
        sf.write(root / f"clip{i}.wav", y, sr, subtype="FLOAT")
        clips[f"clip{i}.wav"] = y
    return clips


def _features(path, name):
    from convfeat.store.read import load

    ids, X = load(path, features=name)
    return dict(zip(ids.tolist(), X))


@pytest.fixture(scope="module")
def batch_runs(tmp_path_factory):
    from convfeat.extraction import extract, parse_set

    tmp = tmp_path_factory.mktemp("batchmode")
    clips = _clips(tmp / "audio")
    sets = lambda: [parse_set("random:bn_mode=batch"), parse_set("random")]  # noqa: E731
    runs = {}
    for key, kw in {"a": {"batch_size": 2}, "b": {"batch_size": 2}, "s1": {"batch_size": 2, "batch_seed": 1},
                    "default": {}}.items():
        extract([tmp / "audio"], tmp / f"{key}.h5", sets(), workers=0, **kw)
        runs[key] = tmp / f"{key}.h5"
    extract([tmp / "audio"], tmp / "plain.h5", [parse_set("random")], workers=0, batch_size=3)
    runs["plain"] = tmp / "plain.h5"
    return clips, runs


def _config(path, name):
    import json

    import h5py

    with h5py.File(path, "r") as h:
        return json.loads(h[f"features/{name}"].attrs["config"])


def test_batch_mode_defaults_to_the_studys_batches_and_records_them(batch_runs):
    _, runs = batch_runs
    assert _config(runs["default"], "random-batch")["batch"] == {"batch_size": 256, "order": "shuffled", "seed": 0}
    assert _config(runs["s1"], "random-batch")["batch"] == {"batch_size": 2, "order": "shuffled", "seed": 1}
    assert "batch" not in _config(runs["default"], "random")        # batch-invariant sets record none


def test_batch_mode_features_are_the_seeded_batches_of_the_model(batch_runs):
    """Same seed → identical features; the features are the model run on the batches the seed's order makes
    (an independent permutation and forward pass here); another seed gives other batches, other features."""
    import torch

    import convfeat

    clips, runs = batch_runs
    a, b, s1 = (_features(runs[k], "random-batch") for k in ("a", "b", "s1"))
    assert all(np.array_equal(a[i], b[i]) for i in a)
    net = convfeat.load_model("random", bn_mode="batch", seed=0)
    ids = sorted(clips)
    for seed, got in ((0, a), (1, s1)):
        order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        for start in range(0, len(order), 2):
            batch = order[start:start + 2]
            with torch.no_grad():
                out = net(torch.from_numpy(np.stack([clips[i] for i in batch])))
            want = np.concatenate([out[f"layer{k}"].numpy() for k in range(1, 6)], axis=1)
            for row, item in enumerate(batch):
                np.testing.assert_allclose(got[item], want[row], rtol=0, atol=1e-5 * np.abs(want[row]).max())
    assert max(np.abs(a[i] - s1[i]).max() for i in a) > 1e-3
    # the batch-invariant set of the same runs is untouched by the study's batches and order
    plain = _features(runs["plain"], "random")
    for key in ("a", "s1", "default"):
        got = _features(runs[key], "random")
        assert max(np.abs(got[i] - plain[i]).max() for i in plain) < 1e-5


def test_batch_order_options_need_a_batch_mode_set(tmp_path):
    from convfeat.extraction import ExtractError, extract, parse_set

    with pytest.raises(ExtractError, match="only apply to bn_mode batch sets"):
        extract([tmp_path], tmp_path / "x.h5", [parse_set("random")], batch_seed=3)


# -- 6. MFCC on the clip itself ---------------------------------------------------------------------------
def _librosa_mfcc_stats(y, sr=12000):
    """The MFCC baseline written out from librosa's documented calls: 20 MFCCs, deltas of width 9, mean and std."""
    import librosa

    m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    d1, d2 = librosa.feature.delta(m, width=9), librosa.feature.delta(m, width=9, order=2)
    return np.concatenate([f(a, axis=1) for a in (m, d1, d2) for f in (np.mean, np.std)])


def test_mfcc_window_clip_is_the_clips_own_mfcc(tmp_path):
    import soundfile as sf

    from convfeat.extraction import extract, parse_set

    sr = 12000
    t = np.arange(int(3.0 * sr)) / sr
    y = (0.4 * np.sin(2 * np.pi * 440 * t) * np.linspace(0, 1, len(t))).astype(np.float32)  # 3 s, a swell
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "short.wav", y, sr, subtype="FLOAT")
    out = tmp_path / "f.h5"
    extract([tmp_path / "a"], out, [parse_set("mfcc"), parse_set("mfcc:window=clip")], workers=0)
    clip = _features(out, "mfcc-clip")["short.wav"]
    model = _features(out, "mfcc")["short.wav"]
    np.testing.assert_allclose(clip, _librosa_mfcc_stats(y), rtol=1e-4, atol=1e-4)
    # the default set is the MFCC of the clip repeated to fill the 29-s window (the study's)
    tiled = np.tile(y, int(np.ceil(348_000 / len(y))))[:348_000]
    np.testing.assert_allclose(model, _librosa_mfcc_stats(tiled), rtol=1e-4, atol=1e-4)
    assert np.abs(clip - model).max() > 1.0
    assert _config(out, "mfcc-clip")["window"] == "clip" and "window" not in _config(out, "mfcc")


def test_mfcc_window_option_is_checked():
    from convfeat.extraction import ExtractError, parse_set

    assert parse_set("mfcc:window=clip").resolved_name() == "mfcc-clip"
    assert parse_set("mfcc:window=model").resolved_name() == "mfcc"
    with pytest.raises(ExtractError, match="bad mfcc window 'full'"):
        parse_set("mfcc:window=full")
    with pytest.raises(ExtractError, match="bad model option 'window=clip'"):
        parse_set("random:window=clip")


# -- 4. import --study: any task of the study's release ---------------------------------------------------
def test_import_study_takes_a_task_it_has_never_heard_of(tmp_path):
    from typer.testing import CliRunner

    from convfeat.cli import app
    from convfeat.store.read import load

    paper = tmp_path / "paper"
    paper.mkdir()
    rng = np.random.default_rng(3)
    n = 7
    files = [f"urbansound8k/audio/fold{1 + i % 3}/{100 + i}-{i % 2}-0-0.wav" for i in range(n)]
    pd.DataFrame({"id": ["x"] * n, "filepath": files, "label": [i % 2 for i in range(n)]}).to_csv(
        paper / "urbansound8k.csv")
    layers = [rng.standard_normal((n, 32)).astype(np.float32) for _ in range(5)]
    for i, a in enumerate(layers):
        np.save(paper / f"urbansound8k_layer_{i}.npy", a)
    mfcc = rng.standard_normal((n, 120))
    np.save(paper / "urbansound8k_mfcc.npy", mfcc)
    pd.DataFrame({"task": ["urbansound8k"], "score": [0.7]}).to_csv(paper / "results.csv", index=False)
    res = CliRunner().invoke(app, ["import", "--study", str(paper), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "out" / "urbansound8k.h5"
    assert res.output.strip() == f"urbansound8k: {out} (labels {paper / 'urbansound8k.csv'}, column label)"
    ids, X = load(out, features="choi2017", layers="12345")
    order = [files.index(i) for i in ids.tolist()]
    np.testing.assert_array_equal(X, np.concatenate(layers, axis=1)[order])
    ids, M = load(out, features="mfcc")
    np.testing.assert_allclose(M, mfcc[[files.index(i) for i in ids.tolist()]].astype(np.float32))
    # a second import into the same folder changes nothing and loses nothing
    assert CliRunner().invoke(app, ["import", "--study", str(paper), "-o", str(tmp_path / "out")]).exit_code == 0
    np.testing.assert_array_equal(load(out, features="choi2017")[1], X)
    # a task missing one layer file is named
    (paper / "urbansound8k_layer_3.npy").unlink()
    res = CliRunner().invoke(app, ["import", "--study", str(paper), "-o", str(tmp_path / "out2")])
    assert res.exit_code != 0 and "has layer files but not urbansound8k_layer_3.npy" in res.output


def test_study_tasks_names_label_columns_and_kinds(tmp_path):
    from convfeat.store.importer import study_tasks

    for i in range(5):
        np.save(tmp_path / f"mood_layer_{i}.npy", np.zeros((3, 32)))
    pd.DataFrame({"filepath": ["a", "b", "c"], "label_energy": [0.1, 0.5, 0.25], "label_key": [0, 3, 7]}).to_csv(
        tmp_path / "mood.csv")
    assert study_tasks(tmp_path) == {"mood_energy": ("mood", ["label_energy"], "regression"),
                                     "mood_key": ("mood", ["label_key"], "classification")}


def test_batch_plan_defaults_and_checks():
    from convfeat.extraction import ExtractError
    from convfeat.extraction.batching import Batching, plan_batches

    assert plan_batches(False) == Batching(8, "sorted", None)
    assert plan_batches(True) == Batching(256, "shuffled", 0)
    assert plan_batches(True, 16, "sorted", None) == Batching(16, "sorted", None)
    items = [{"id": f"i{k}"} for k in range(6)]
    perm = np.random.default_rng(5).permutation(6)
    assert [it["id"] for it in Batching(4, "shuffled", 5).arrange(items, items)] == [f"i{k}" for k in perm]
    # a resumed run: the items left keep the first run's relative order
    left = [items[k] for k in (0, 2, 3, 5)]
    assert [it["id"] for it in Batching(4, "shuffled", 5).arrange(left, items)] == [f"i{k}" for k in perm
                                                                                  if k in (0, 2, 3, 5)]
    for bad in (0, 2.5, "8"):
        with pytest.raises(ExtractError, match="--batch-size must be a whole number"):
            plan_batches(True, bad)
    with pytest.raises(ExtractError, match="--batch-order must be shuffled or sorted"):
        plan_batches(True, None, "random")
