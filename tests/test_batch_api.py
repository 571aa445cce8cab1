"""convfeat.embed_batch and the length policy of embed (generated audio, the random-weights model)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import convfeat
from convfeat import audio
from convfeat.api import get_model
from convfeat.cli import app

from conftest import SR, chirp, clicks, noise, tone, write_clips

MODEL = "random"


@pytest.fixture(scope="module")
def signals():
    """Different lengths, rates and channel layouts: (y, sr) pairs."""
    return [(tone(440, 3.0), SR),
            (np.stack([chirp(100, 4000, 5.0, sr=22050), noise(5.0, sr=22050, seed=1)]), 22050),   # (channels, n)
            (noise(40.0, sr=16000, seed=2) + tone(220, 40.0, sr=16000), 16000),                  # > one window
            (clicks(2.0, every=0.3)[:, None] * np.ones((1, 3), np.float32), SR)]                   # (n, channels)


def _reference(y, sr, policy, layers="12345"):
    """Independent: the model's reference forward on each window, averaged in NumPy."""
    windows = audio.to_windows(y, sr, policy)
    with torch.no_grad():
        out = get_model(MODEL)(torch.from_numpy(np.array(windows)), reference=True)
    rows = np.concatenate([out[k].numpy() for k in convfeat.layers.parse_layers(layers)], axis=1)
    return rows.astype(np.float64).mean(axis=0)


@pytest.mark.parametrize("long,hop", [("first", 29.0), ("mean", 4.0)])
def test_embed_batch_equals_embed_per_signal_and_the_reference(signals, long, hop):
    ys, srs = [y for y, _ in signals], [s for _, s in signals]
    X = convfeat.embed_batch(ys, srs, model=MODEL, long=long, hop=hop, batch_size=3)
    assert X.shape == (4, 160) and X.dtype == np.float32
    for row, (y, sr) in zip(X, signals):
        np.testing.assert_allclose(row, convfeat.embed(y, sr, model=MODEL, long=long, hop=hop), rtol=0, atol=1e-5)
        policy = audio.Policy(long=long, hop_seconds=hop)
        np.testing.assert_allclose(row, _reference(y, sr, policy), rtol=0, atol=1e-4 * np.abs(row).max())
    # a long signal's windows differ, so "mean" is not "first" there; it is for the short ones
    first = convfeat.embed_batch(ys, srs, model=MODEL)
    assert (np.abs(X[2] - first[2]).max() > 1e-3) == (long == "mean")
    np.testing.assert_allclose(X[[0, 1, 3]], first[[0, 1, 3]], atol=1e-6)


def test_embed_batch_batch_size_and_order_do_not_change_features(signals):
    ys, srs = [y for y, _ in signals], [s for _, s in signals]
    a = convfeat.embed_batch(ys, srs, model=MODEL, layers="25", long="mean", hop=5.0, batch_size=1)
    b = convfeat.embed_batch(ys[::-1], srs[::-1], model=MODEL, layers="25", long="mean", hop=5.0, batch_size=8)
    assert a.shape == (4, 64)
    np.testing.assert_allclose(a, b[::-1], atol=1e-5)
    full = convfeat.embed_batch(ys, srs, model=MODEL)
    np.testing.assert_allclose(convfeat.embed_batch(ys, srs, model=MODEL, layers="5"), full[:, 128:], atol=1e-6)


def test_a_2d_array_is_mono_rows_at_one_rate():
    rows = np.stack([tone(300, 2.0, sr=8000), noise(2.0, sr=8000, seed=4)])
    X = convfeat.embed_batch(rows, 8000, model=MODEL, layers="1")
    np.testing.assert_allclose(X[1], convfeat.embed(rows[1], 8000, model=MODEL, layers="1"), atol=1e-6)
    with pytest.raises(ValueError, match="2 signals but 3 sample rates"):
        convfeat.embed_batch(rows, [8000] * 3, model=MODEL)
    with pytest.raises(ValueError, match="must be 2-D"):
        convfeat.embed_batch(rows[0], 8000, model=MODEL)
    with pytest.raises(ValueError, match="long must be one of"):
        convfeat.embed_batch(rows, 8000, model=MODEL, long="all")
    with pytest.raises(ValueError, match="signal 1: .*not finite"):
        convfeat.embed_batch([rows[0], rows[1] * 1e30], 8000, model=MODEL)


@pytest.mark.parametrize("long", ["first", "mean"])
def test_api_gives_the_features_of_convfeat_extract_for_the_same_policy(tmp_path, long):
    clips = {"a.wav": (noise(33.0, sr=22050, seed=5) + chirp(200, 3000, 33.0, sr=22050), 22050),
             "b.wav": (tone(660, 4.0, sr=16000), 16000)}
    src = write_clips(tmp_path / "audio", clips)
    out = tmp_path / "f.h5"
    args = ["extract", str(src), "-o", str(out), "-m", MODEL, "--long", long, "--hop", "2.5", "--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ids, stored = convfeat.load(out, MODEL)
    X = convfeat.embed_batch([sf.read(src / i, dtype="float32")[0] for i in ids], [clips[i][1] for i in ids],
                             model=MODEL, long=long, hop=2.5)
    np.testing.assert_allclose(X, stored, rtol=0, atol=1e-4 * np.abs(stored).max())
