"""convfeat pretrain: learning, resuming, the trained model as a first-class model."""
import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from convfeat.cli import app
from convfeat.models.input import InputConfig
from convfeat.training.pretrain import PretrainError, pretrain, read_tag_manifest

SR = 12000
# The corpus, its decoded cache and the shared 2-epoch model are module fixtures: under xdist
# (`make test`) the whole module runs in one process (--dist loadgroup), so they are made once.
pytestmark = pytest.mark.xdist_group("pretrain")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """36 six-second clips: a low or a high tone, with or without noise."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    t = np.arange(6 * SR) / SR
    rows = []
    for i in range(36):
        high = i % 2 == 1
        noisy = (i // 2) % 2 == 1
        y = 0.3 * np.sin(2 * np.pi * (1500.0 if high else 200.0) * t)
        if noisy:
            y = y + 0.1 * rng.standard_normal(t.size)
        sf.write(root / f"{i:02d}.wav", y.astype(np.float32), SR)
        tags = ["high" if high else "low"] + (["noisy"] if noisy else [])
        rows.append({"path": f"{i:02d}.wav", "tags": ";".join(tags),
                     "split": "valid" if i >= 28 else "train"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "tags", "split"])
        w.writeheader()
        w.writerows(rows)
    return root


def _run(corpus, out, **kw):
    args = dict(epochs=3, batch_size=8, clip_seconds=6.0, seed=1, cache_dir=corpus / "cache")
    args.update(kw)
    return pretrain(corpus / "manifest.csv", out, InputConfig("log", "per-frequency"), **args)


@pytest.fixture(scope="module")
def two_epochs(corpus, tmp_path_factory):
    """One uninterrupted 2-epoch run (the same settings each test below would train with), shared:
    the reference of the resume test, the model used as a model, the one whose weights are tampered
    (in a copy)."""
    out = tmp_path_factory.mktemp("two_epochs") / "m"   # a model is named after its folder: "m"
    _run(corpus, out, epochs=2)
    return out


def test_manifest_reading(corpus):
    data = read_tag_manifest(corpus / "manifest.csv")
    assert set(data.tags) == {"low", "high", "noisy"}
    assert data.labels.shape == (36, 3)
    assert data.labels[:, data.tags.index("high")].sum() == 18
    assert len(data.index("valid")) == 8 and len(data.index("train")) == 28


def test_pretraining_lowers_loss_and_learns(corpus, tmp_path):
    rec = _run(corpus, tmp_path / "run")
    hist = rec["training"]["history"]
    assert len(hist) == 3
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"]
    assert rec["training"]["valid_auc"] > 0.9          # separable tones: near-perfect tagging
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["config"]["input"] == InputConfig("log", "per-frequency").to_dict()
    assert meta["tags"] == list(read_tag_manifest(corpus / "manifest.csv").tags)


def test_resume_gives_the_same_model_as_an_uninterrupted_run(corpus, two_epochs, tmp_path):
    def stop_in_epoch_2(phase, done, total):
        if phase.startswith("epoch 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(corpus, tmp_path / "b", epochs=2, progress=stop_in_epoch_2)
    assert not (tmp_path / "b" / "model.json").exists()
    rec = _run(corpus, tmp_path / "b", epochs=2)                  # resumes after epoch 1
    assert [h["epoch"] for h in rec["training"]["history"]] == [1, 2]
    with np.load(two_epochs / "weights.npz") as a, np.load(tmp_path / "b" / "weights.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with pytest.raises(PretrainError, match="other settings"):
        _run(corpus, tmp_path / "b", epochs=2, lr=0.01)


def test_trained_model_is_a_first_class_model(corpus, two_epochs, tmp_path):
    from convfeat import embed, load_model, tag

    model = str(two_epochs)
    net = load_model(model)
    assert net.bn_mode == "stored" and net.provenance["weights_sha256"]
    t = np.arange(3 * SR) / SR
    clips = [0.3 * np.sin(2 * np.pi * f * t) for f in (200.0, 1500.0, 700.0)]
    # batch-invariant: stored statistics; a clip's feature does not depend on its batch-mates
    from convfeat.api import _forward, prepare
    windows = np.stack([prepare(c, SR) for c in clips])
    together = _forward(net, windows)
    for k in range(3):
        alone = _forward(net, windows[k:k + 1])
        for key in ("layer1", "layer5", "tags"):
            np.testing.assert_allclose(alone[key][0], together[key][k], rtol=1e-5, atol=1e-6)
    f = embed(clips[0], SR, model=model)
    assert f.shape == (160,) and np.isfinite(f).all()
    assert set(tag(clips[1], SR, model=net)) == {"low", "high", "noisy"}

    # and through the extract CLI, recorded by checksum
    h5 = tmp_path / "f.h5"
    res = CliRunner().invoke(app, ["extract", str(corpus / "00.wav"), str(corpus / "01.wav"),
                                   "-o", str(h5), "-m", model, "--workers", "0"])
    assert res.exit_code == 0, res.output
    from convfeat import load
    ids, X = load(h5, "m")
    assert X.shape == (2, 160)
    # the file's features are the API's features of the same window
    np.testing.assert_allclose(X[0], embed(sf.read(corpus / "00.wav")[0], SR, model=net), rtol=1e-4, atol=1e-6)


def test_tampered_weights_refused(two_epochs, tmp_path):
    from convfeat import load_model

    shutil.copytree(two_epochs, tmp_path / "t")   # a trained model (a copy: the shared one stays intact)
    w = tmp_path / "t" / "weights.npz"
    data = bytearray(w.read_bytes())
    data[-100] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_model(str(tmp_path / "t"))


def test_cli_pretrain_bad_manifest(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("file,label\na.wav,x\n")
    res = CliRunner().invoke(app, ["pretrain", str(bad), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "needs a 'path' column" in res.output


def test_published_model_config_unchanged_by_trained_model_support():
    # files written before trained models existed record this exact key set; a new key
    # would make `convfeat extract` refuse to append to them ("made with another configuration")
    from convfeat.models import random_model

    assert set(random_model().config.to_dict()) == {
        "n_mels", "channels", "pools", "n_tags", "bn_eps", "feature_point", "input_standardize",
        "allowed_bn_modes", "extra"}
