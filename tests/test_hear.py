"""convfeat.hear: a conformance test written from the HEAR 2021 common API's published rules.

Rules checked: load_model(model_file_path="") returns a torch.nn.Module with an int
sample_rate among HEAR's rates, int scene_embedding_size and timestamp_embedding_size;
get_scene_embeddings(audio (n_sounds, samples), model) -> float32 (n_sounds, scene size);
get_timestamp_embeddings -> (float32 (n_sounds, T, timestamp size), timestamps in ms
(n_sounds, T)), regularly spaced, the last within two hops of the end; a batch of different
sounds; 1-s and 60-s audio (and shorter than 1 s).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import convfeat
from convfeat import hear
from convfeat.models.trained import SHIPPED_DIR

from conftest import chirp, noise, tone

HEAR_RATES = (16000, 22050, 32000, 44100, 48000)


@pytest.fixture(scope="module")
def model():
    return hear.load_model("", model="convfeat-synth")


def _batch(seconds: float, sr: int) -> torch.Tensor:
    """Four different sounds: noise, a tone, a chirp, silence."""
    sounds = [noise(seconds, sr=sr, seed=1), tone(440, seconds, sr=sr), chirp(100, 4000, seconds, sr=sr),
              np.zeros(int(round(seconds * sr)), np.float32)]
    return torch.from_numpy(np.stack(sounds))


def test_load_model_attributes(model):
    assert isinstance(model, torch.nn.Module)
    assert isinstance(model.sample_rate, int) and model.sample_rate in HEAR_RATES
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    assert model.scene_embedding_size == model.timestamp_embedding_size == 160
    assert hear.load_model(model="random", layers="35").scene_embedding_size == 64


def test_scene_embeddings_are_embed_at_the_declared_rate(model):
    audio = _batch(1.0, model.sample_rate)
    X = hear.get_scene_embeddings(audio, model)
    assert X.dtype == torch.float32 and X.shape == (4, model.scene_embedding_size)
    assert torch.isfinite(X).all()
    assert min(torch.dist(X[i], X[j]) for i in range(4) for j in range(i)) > 1e-3    # different sounds differ
    for i in (0, 2):
        np.testing.assert_allclose(X[i].numpy(), convfeat.embed(audio[i].numpy(), model.sample_rate, model=model.net,
                                                                long="mean", hop=14.5), atol=1e-5)


@pytest.mark.parametrize("seconds", [0.3, 1.0, 60.0])
def test_timestamp_embeddings_follow_the_rules(model, seconds):
    n = 2 if seconds == 60.0 else 4
    audio = _batch(seconds, model.sample_rate)[:n]
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    T = emb.shape[1]
    assert emb.dtype == torch.float32 and ts.dtype == torch.float32
    assert emb.shape == (n, T, model.timestamp_embedding_size) and ts.shape == (n, T) and T >= 1
    assert torch.isfinite(emb).all()
    duration_ms = 1000.0 * audio.shape[1] / model.sample_rate
    hop = 1024 / 12.0                                             # ms
    if T > 1:
        diffs = torch.diff(ts.double(), dim=1)
        assert torch.allclose(diffs, torch.full_like(diffs, hop), atol=1e-2)   # regular (float32 ms)
    assert (ts[:, 0] >= 0).all() and (ts[:, 0] <= hop).all()
    assert (ts[:, -1] - duration_ms).abs().max() <= 2 * hop         # the last within two hops of the end
    assert (ts[:, -1] - duration_ms).max() <= hop / 2 + 1e-2        # at most half a frame past it
    assert (ts == ts[0]).all()
    if n > 1:
        assert torch.dist(emb[0], emb[1]) > 1e-3
    # a sound's embeddings do not depend on its batch-mates
    alone, _ = hear.get_timestamp_embeddings(audio[1:2], model)
    np.testing.assert_allclose(alone[0].numpy(), emb[1].numpy(), atol=1e-5 * float(emb.abs().max()))


def test_timestamp_embeddings_are_embed_frames_at_12k(model):
    audio = _batch(2.0, model.sample_rate)[2:3]
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    t, X = convfeat.embed_frames(audio[0].numpy(), model.sample_rate, model=model.net)
    np.testing.assert_allclose(emb[0].numpy(), X, atol=1e-5 * np.abs(X).max())
    np.testing.assert_allclose(ts[0].numpy(), 1000 * t, rtol=1e-6)


def test_a_pretrain_output_loads_from_model_file_path(model):
    by_path = hear.load_model(str(SHIPPED_DIR / "convfeat-synth"))
    audio = _batch(1.0, by_path.sample_rate)[:2]
    np.testing.assert_array_equal(hear.get_scene_embeddings(audio, by_path).numpy(),
                                  hear.get_scene_embeddings(audio, model).numpy())
    with pytest.raises(ValueError, match="does not exist"):
        hear.load_model("no/such/file.hdf5")
    with pytest.raises(ValueError, match=r"\(n_sounds, samples\)"):
        hear.get_scene_embeddings(audio[0], model)


def test_choi2017_from_its_weight_file(theano_weights):
    m = hear.load_model(str(theano_weights))
    audio = _batch(1.0, m.sample_rate)[:2]
    X = hear.get_scene_embeddings(audio, m)
    np.testing.assert_allclose(X.numpy(), convfeat.embed_batch(list(audio.numpy()), m.sample_rate, weights=theano_weights,
                                                               long="mean", hop=14.5), atol=1e-5)
    emb, ts = hear.get_timestamp_embeddings(audio, m)
    assert emb.shape == (2, -(-12000 // 1024), 160)


def test_choi2017_k2_from_its_weight_file(k2_weights):
    m = hear.load_model(str(k2_weights), model="choi2017-k2")
    assert hear.load_model(str(k2_weights)).net.config.feature_point == "pre_pool"   # found from the file alone
    audio = _batch(1.0, m.sample_rate)[:2]
    emb, ts = hear.get_timestamp_embeddings(audio, m)
    assert emb.shape == (2, -(-12000 // 256), 160) and emb.dtype == torch.float32
    np.testing.assert_allclose(torch.diff(ts[0]).numpy(), 256 / 12.0, rtol=1e-5)     # its 21.3-ms grid
    X = hear.get_scene_embeddings(audio, m)
    np.testing.assert_allclose(X.numpy(), convfeat.embed_batch(list(audio.numpy()), m.sample_rate, model=m.net,
                                                               long="mean", hop=14.5), atol=1e-5)
