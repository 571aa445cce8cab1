"""convfeat.sklearn.ConvnetFeatures: the scikit-learn transformer (random-weights model, generated audio)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

import convfeat
from convfeat import api
from convfeat.sklearn import EXPECTED_FAILED_CHECKS, ConvnetFeatures

from conftest import chirp, noise, tone

SR8 = 8000


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """24 one-second clips of two overlapping classes (low tones vs. rising chirps, in noise),
    as waveforms and as WAV files."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("labelled")
    ys, labels, paths = [], [], []
    for i in range(24):
        label = i % 2
        f = rng.uniform(200, 900)
        y = tone(f, 1.0, sr=SR8) if label == 0 else chirp(f, f * rng.uniform(1.2, 3), 1.0, sr=SR8)
        y = y + noise(1.0, sr=SR8, seed=i, amp=rng.uniform(0.05, 0.6))
        path = root / f"clip{i:02d}.wav"
        sf.write(path, y, SR8, subtype="FLOAT")
        ys.append(y)
        labels.append(label)
        paths.append(str(path))
    return ys, np.array(labels), paths


@parametrize_with_checks([ConvnetFeatures(model="random", layers="1", sr=12000)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_transform_of_paths_and_waveforms_equals_embed_batch(labelled):
    ys, _, paths = labelled
    f = ConvnetFeatures(model="random", layers="15").fit(paths)
    X = f.transform(paths)
    ref = convfeat.embed_batch(ys, SR8, model="random", layers="15")
    assert X.shape == (24, 64) and X.dtype == np.float32
    np.testing.assert_allclose(X, ref, atol=1e-6)
    np.testing.assert_allclose(ConvnetFeatures(model="random", layers="15", sr=SR8).fit(ys[:2]).transform(ys), ref,
                               atol=1e-6)
    np.testing.assert_allclose(f.transform([(y, SR8) for y in ys[:3]]), ref[:3], atol=1e-6)
    with pytest.raises(ValueError, match="clip 0 is a waveform: set sr="):
        f.transform(ys[:1])
    with pytest.raises(ValueError, match="clip 1: .*missing.wav"):
        f.transform([paths[0], "missing.wav"])


def test_pipeline_cross_validation_equals_features_first(labelled):
    _, labels, paths = labelled
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    pipe = Pipeline([("f", ConvnetFeatures(model="random", batch_size=5)), ("svm", SVC(C=10))])
    through_pipeline = cross_val_score(pipe, paths, labels, cv=cv)
    X = convfeat.embed_batch([sf.read(p, dtype="float32")[0] for p in paths], SR8, model="random")
    features_first = cross_val_score(SVC(C=10), X, labels, cv=cv)
    np.testing.assert_array_equal(through_pipeline, features_first)
    assert 0.5 < through_pipeline.mean() < 1.0       # the generated task is neither trivial nor hopeless


def test_calibrated_fit_learns_statistics_on_the_training_clips_only(labelled):
    ys, _, _ = labelled
    f = ConvnetFeatures(model="random", bn_mode="calibrated", sr=SR8, calibration_size=6, calibration_seed=0)
    f.fit(ys[:12])
    net = api.calibrated_model([(y, SR8) for y in ys[:12]], model="random", max_clips=6, seed=0)
    for layer, stats in net.bn_statistics().items():
        np.testing.assert_allclose(f.calibration_[layer]["mean"], stats["mean"], rtol=1e-6)
        np.testing.assert_allclose(f.calibration_[layer]["var"], stats["var"], rtol=1e-6)
    np.testing.assert_array_equal(f.calibration_indices_, net.provenance["calibration"]["indices"])
    np.testing.assert_allclose(f.transform(ys[12:]), convfeat.embed_batch(ys[12:], SR8, model=net), atol=1e-6)
    other = clone(f).fit(ys[12:])           # another training set, other statistics, other features
    assert np.abs(other.transform(ys[:3]) - f.transform(ys[:3])).max() > 1e-4


def test_feature_names_pandas_output_clone_params_and_pickle(labelled):
    ys, _, paths = labelled
    f = ConvnetFeatures(model="random", layers="25").fit(paths[:2])
    names = f.get_feature_names_out()
    assert list(names[[0, 31, 32, 63]]) == ["layer2_00", "layer2_31", "layer5_00", "layer5_31"]
    X = f.transform(paths[:3])
    df = clone(f).set_output(transform="pandas").fit(paths[:2]).transform(paths[:3])
    assert list(df.columns) == list(names) and df.shape == (3, 64)
    np.testing.assert_array_equal(df.to_numpy(), X)
    c = clone(f)
    assert c.get_params() == f.get_params() and not hasattr(c, "n_features_out_")
    c.set_params(layers="1", short="pad")
    assert c.fit(paths[:1]).transform(paths[:1]).shape == (1, 32)
    restored = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(restored.transform(paths[:3]), X)


def test_memory_caches_features_across_clones(labelled, tmp_path, monkeypatch):
    _, _, paths = labelled
    f = ConvnetFeatures(model="random", layers="3", memory=str(tmp_path / "cache")).fit(paths)
    first = f.transform(paths[:5])
    calls = []
    real = api.embed_windows
    monkeypatch.setattr(api, "embed_windows", lambda *a, **k: calls.append(1) or real(*a, **k))
    np.testing.assert_array_equal(clone(f).fit(paths).transform(paths[:5]), first)
    assert calls == []                                   # read back, not computed
    clone(f).set_params(layers="4").fit(paths).transform(paths[:5])
    assert calls == [1]                                  # another configuration is computed


def test_bad_parameters_fail_in_fit_with_one_line():
    y = [tone(440, 0.5)]
    for params, match in (({"model": "nope"}, "unknown model 'nope'"), ({"layers": "7"}, "layers must"),
                          ({"long": "all"}, "long must be"), ({"bn_mode": "stored"}, "bn_mode 'stored'"),
                          ({"device": "tpu"}, "device must be")):
        with pytest.raises(ValueError, match=match):
            ConvnetFeatures(sr=12000, **{"model": "random", **params}).fit(y)


def test_choi2017_pipeline_when_the_weights_are_there(labelled, theano_weights):
    ys, _, _ = labelled
    f = ConvnetFeatures(weights=theano_weights, sr=SR8).fit(ys[:2])
    np.testing.assert_allclose(f.transform(ys[:2]), convfeat.embed_batch(ys[:2], SR8, weights=theano_weights),
                               atol=1e-6)
