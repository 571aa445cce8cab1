"""The fast inference path (convfeat/models/fast.py) equals the reference forward pass.

Both are computed here, in this run: ``model(y)`` (the fast path, under ``torch.no_grad()``)
against ``model(y, reference=True)`` (the straightforward computation that
``tests/test_port.py`` checks against an independent NumPy forward).  Agreement is measured
per output as ``max |fast - ref| / (max |ref| + 1e-6)`` and must be at most 1e-5 for
every BN mode, batch sizes 1 / 3 / 16, several clip lengths, layer subsets, BN scales of
both signs, random and published weights, the shipped model and the pre-pool feature.

When the kernels cannot be compiled on this machine the model falls back to the reference
(tested below by simulating it); the exactness tests then skip with the reason.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from convfeat.constants import BN_MODES, LAYER_NAMES
from convfeat.models import fast, load_model
from convfeat.models.compact import CompactConfig, CompactConvnet
from convfeat.models.tags import MSD_TAGS

from conftest import chirp, clicks, noise, tone

TOL = 1e-5
N29 = 348_000                      # the 29-s window at 12 kHz (1360 frames)


def needs_kernels():
    if not fast.available():
        pytest.skip(f"fast kernels unavailable here: {fast.unavailable_reason()}")


def rel_errors(a: dict, b: dict) -> dict:
    """Per output: max |a - b| / (max |b| + 1e-6) over the batch."""
    assert set(a) == set(b), (set(a), set(b))
    out = {}
    for k in b:
        x, r = a[k].double(), b[k].double()
        assert x.shape == r.shape, (k, x.shape, r.shape)
        assert torch.isfinite(x).all(), k
        out[k] = float((x - r).abs().max() / (r.abs().max() + 1e-6))
    return out


def fast_and_reference(model, y, **kw):
    y = torch.as_tensor(np.ascontiguousarray(y, dtype=np.float32))
    with torch.no_grad():
        return model(y, **kw), model(y, reference=True, **kw)


def assert_close(model, y, tol=TOL, **kw):
    got, ref = fast_and_reference(model, y, **kw)
    err = rel_errors(got, ref)
    assert max(err.values()) <= tol, err
    return got, ref


def clip(kind: int, n: int, seed: int = 0) -> np.ndarray:
    """A varied test signal of n samples (12 kHz)."""
    s = n / 12000 + 1
    make = [lambda: chirp(100 + 50 * seed, 5000, s),
            lambda: tone(440 * (1 + seed % 3), s) + noise(s, seed=seed, amp=0.01),
            lambda: noise(s, seed=seed + 10, amp=0.2),
            lambda: clicks(s, every=0.23 + 0.01 * seed) * 0.3 + noise(s, seed=seed + 20, amp=0.01),
            lambda: tone(150, s, amp=0.7) + chirp(500, 5500, s, amp=0.1)]
    return make[kind % len(make)]()[:n]


def batch(n_clips: int, n: int = N29, seed: int = 0) -> np.ndarray:
    return np.stack([clip(i, n, seed + i) for i in range(n_clips)])


def signed_model(seed: int = 0, config: CompactConfig | None = None, bn_mode: str = "instance",
                 n_samples: int = N29) -> CompactConvnet:
    """Random weights with BN gammas of both signs (a third of the channels negative in every
    block), random betas and conv biases; its frozen statistics (``calibrated`` and
    ``stored``) are estimated on three clips of ``n_samples`` then perturbed, so that every
    BN mode runs with activations of a realistic scale."""
    cfg = config or CompactConfig(allowed_bn_modes=BN_MODES)
    m = CompactConvnet(cfg, bn_mode="calibrated" if "calibrated" in cfg.allowed_bn_modes else bn_mode,
                       tag_names=MSD_TAGS if cfg.n_tags == len(MSD_TAGS) else None)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for blk in m.blocks:
            w = blk.conv.weight
            w.copy_(torch.randn(w.shape, generator=g) * np.sqrt(2.0 / (w.shape[1] * 9)))
            blk.conv.bias.copy_(torch.randn(blk.conv.bias.shape, generator=g) * 0.5)
            c = blk.bn.gamma.numel()
            gamma = torch.rand(c, generator=g) * 1.5 + 0.2
            gamma[torch.randperm(c, generator=g)[: c // 3]] *= -1          # a third negative
            blk.bn.gamma.copy_(gamma)
            blk.bn.beta.copy_(torch.randn(c, generator=g) * 0.3)
        if m.head is not None:
            m.head.weight.copy_(torch.randn(m.head.weight.shape, generator=g) * 0.3)
            m.head.bias.copy_(torch.randn(m.head.bias.shape, generator=g) * 0.1)
    m.eval()
    if "calibrated" in cfg.allowed_bn_modes:
        m.calibrate(batch(3, n_samples, seed=100 + seed), batch_size=3)
    with torch.no_grad():
        for blk in m.blocks:
            c = blk.bn.mean.numel()
            std = blk.bn.var.sqrt()
            blk.bn.mean.add_(0.2 * std * torch.randn(c, generator=g))
            blk.bn.var.mul_(torch.rand(c, generator=g) * 0.6 + 0.7)
    m.calibrated = True
    m.bn_mode = bn_mode
    return m


@pytest.fixture(scope="module")
def model():
    needs_kernels()
    m = signed_model(0)
    for blk in m.blocks:
        gamma = blk.bn.gamma.detach()
        assert (gamma < 0).any() and (gamma > 0).any()
    return m


# =============================================================================
# Exactness: every BN mode, batch sizes, lengths, layer subsets
# =============================================================================
@pytest.mark.parametrize("mode", BN_MODES)
@pytest.mark.parametrize("n_clips", [1, 3, 16])
def test_fast_equals_reference_every_mode_and_batch_size(model, mode, n_clips):
    model.bn_mode = mode
    got, ref = assert_close(model, batch(n_clips, seed=n_clips))
    assert set(got) == set(LAYER_NAMES) | {"tags"}
    assert got["layer1"].shape == (n_clips, 32) and got["tags"].shape == (n_clips, 50)


@pytest.mark.parametrize("mode", ["instance", "batch", "stored"])
@pytest.mark.parametrize("n_samples", [400_000, 732_000, 349_999])
def test_longer_and_odd_length_clips(model, mode, n_samples):
    # 400,000 samples: 1563 frames (time remainders at every pooling); 732,000: 61 s,
    # last map 1x2; 349,999: 1368 frames.
    model.bn_mode = mode
    assert_close(model, batch(2, n_samples, seed=5))


@pytest.mark.parametrize("layers", ["1", "2", "13", "5", "layer3", ["layer2", "layer4"], [1, 2, 3, 4, 5]])
def test_layer_subsets(model, layers):
    model.bn_mode = "instance"
    got, ref = assert_close(model, batch(3, seed=1), layers=layers)
    expected = {"1": ["layer1"], "2": ["layer2"], "13": ["layer1", "layer3"], "5": ["layer5"], "layer3": ["layer3"]}
    names = expected.get(layers) if isinstance(layers, str) else (
        [f"layer{k}" if isinstance(k, int) else k for k in layers])
    assert list(got) == names
    # a subset is the same numbers as the full forward pass
    with torch.no_grad():
        full = model(torch.from_numpy(batch(3, seed=1)))
    for k in names:
        torch.testing.assert_close(got[k], full[k], rtol=0, atol=0)


def test_layer_subset_errors(model):
    with pytest.raises(ValueError):
        model(torch.zeros(1, N29), layers="6")
    with pytest.raises(ValueError):
        model(torch.zeros(1, N29), layers="")


def test_api_embed_and_tag_with_layer_subsets(model):
    from convfeat import api

    model.bn_mode = "instance"
    y = clip(0, 20 * 12000)                      # 20 s: repeated to the 29-s window by the API
    for layers in ("12345", "5", "135"):
        a = api.embed(y, 12000, model=model, layers=layers)
        model.fast_inference = False
        try:
            r = api.embed(y, 12000, model=model, layers=layers)
            tr = api.tag(y, 12000, model=model)
        finally:
            model.fast_inference = True
        assert a.shape == r.shape == (32 * len(layers),)
        assert np.abs(a - r).max() / (np.abs(r).max() + 1e-6) <= TOL
    ta = api.tag(y, 12000, model=model)
    assert list(ta) == list(tr)
    assert max(abs(ta[k] - tr[k]) for k in ta) <= TOL


def test_batch_mode_depends_on_the_batch_like_the_reference(model):
    model.bn_mode = "batch"
    y = batch(3, seed=9)
    with torch.no_grad():
        alone = model(torch.from_numpy(y[:1]))
        together = model(torch.from_numpy(y))
    assert (alone["layer3"][0] - together["layer3"][0]).abs().max() > 1e-3


def test_silent_and_constant_clips(model):
    y = np.zeros((3, N29), np.float32)
    y[1] = 0.5                                   # constant (DC)
    y[2, ::1000] = 1.0                           # sparse clicks
    for mode in BN_MODES:
        model.bn_mode = mode
        assert_close(model, y)


def test_spectrogram_input_forward_input(model):
    """``forward_input`` on a spectrogram, time-major (as the front end makes it) or contiguous."""
    model.bn_mode = "instance"
    with torch.no_grad():
        x = model.spectrogram(torch.from_numpy(batch(3, seed=4)))
        for xx in (x, x.contiguous()):
            got, ref = model.forward_input(xx), model.forward_input(xx, reference=True)
            assert max(rel_errors(got, ref).values()) <= TOL


def test_thread_counts_agree(model):
    model.bn_mode = "instance"
    y = torch.from_numpy(batch(3, seed=2))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            one = model(y)
        torch.set_num_threads(2)
        with torch.no_grad():
            two = model(y)
    finally:
        torch.set_num_threads(before)
    assert max(rel_errors(one, two).values()) <= 1e-6


# =============================================================================
# Other architectures: generic pooling kernel, channel counts, pre-pool features
# =============================================================================
def test_other_pools_and_channels():
    """Block-1 pools other than (2, 4) use the generic kernel; 48 channels; three blocks."""
    needs_kernels()
    cfg = CompactConfig(channels=48, pools=((3, 5), (2, 3), (2, 2)), n_tags=7, allowed_bn_modes=BN_MODES)
    m = signed_model(3, cfg, n_samples=200_000)
    for mode in BN_MODES:
        m.bn_mode = mode
        got, _ = assert_close(m, batch(3, 200_000, seed=3))
        assert set(got) == {"layer1", "layer2", "layer3", "tags"} and got["layer1"].shape == (3, 48)


def test_dense_mel_basis():
    """A filterbank without band structure takes the dense mel product."""
    needs_kernels()
    rng = np.random.default_rng(0)
    basis = (rng.random((257, 96)) * 1e-3).astype(np.float32)
    assert fast._banded(torch.from_numpy(basis)) is None
    m = signed_model(4)
    m.frontend.mel_basis.copy_(torch.from_numpy(basis))
    m.bn_mode = "instance"
    assert_close(m, batch(2, seed=6))


def test_pre_pool_feature_stored_statistics():
    """The Keras-2 policy (standardised input, features = mean of the ELU before pooling,
    stored statistics) runs on the fast path, including a 61-s input (global max pool head)."""
    needs_kernels()
    cfg = CompactConfig(feature_point="pre_pool", input_standardize=True, allowed_bn_modes=("calibrated", "stored"))
    m = signed_model(5, cfg, bn_mode="stored")
    assert fast.supports(m, (1, 1, 96, 1360)) is None
    assert_close(m, batch(3, seed=7))
    assert_close(m, batch(2, 732_000, seed=8))


def test_pre_pool_with_batch_statistics_falls_back_to_reference():
    """Pre-pool features with instance/batch BN would need the statistics before the ELU:
    that combination (no shipped model has it) runs the reference."""
    needs_kernels()
    cfg = CompactConfig(feature_point="pre_pool", allowed_bn_modes=BN_MODES)
    m = signed_model(6, cfg, bn_mode="instance")
    assert fast.supports(m, (1, 1, 96, 1360)) is not None
    got, ref = fast_and_reference(m, batch(2, seed=1))
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_calibrated_after_calibrate():
    needs_kernels()
    m = load_model("random", seed=1)
    m.calibrate(batch(3, seed=11), batch_size=2)
    assert m.bn_mode == "calibrated"
    assert_close(m, batch(3, seed=12))


# =============================================================================
# Published and shipped weights
# =============================================================================
@pytest.mark.parametrize("mode", ["instance", "batch", "calibrated"])
def test_published_choi2017(theano_weights, example_clip, mode):
    needs_kernels()
    m = load_model("choi2017", weights=theano_weights, bn_mode="instance")
    if mode == "calibrated":
        m.calibrate(batch(4, seed=13), batch_size=2)
    m.bn_mode = mode
    y = np.concatenate([np.asarray(example_clip, np.float32)[None], batch(2, seed=14)])
    assert_close(m, y)
    assert_close(m, y[:1])


def test_published_choi2017_tf_file_without_head(tf_weights, example_clip):
    needs_kernels()
    m = load_model("choi2017", weights=tf_weights)
    got, _ = assert_close(m, np.asarray(example_clip, np.float32)[None])
    assert "tags" not in got


def test_published_k2_pre_pool(k2_weights, example_clip):
    needs_kernels()
    m = load_model("choi2017-k2", weights=k2_weights)
    assert m.config.feature_point == "pre_pool" and m.bn_mode == "stored"
    ex = np.asarray(example_clip, np.float32)
    assert_close(m, np.stack([ex, clip(2, N29, 3), clip(4, N29, 4)]))
    long = np.concatenate([ex, chirp(80, 5000, 32)])       # 61 s: the last map is 1x2
    assert_close(m, long[None])


@pytest.mark.parametrize("seconds", [10, 29, 6])
def test_shipped_model_short_and_full_windows(seconds):
    """convfeat-synth: stored statistics, its own input transform, shorter pools."""
    needs_kernels()
    from convfeat.models import shipped_models

    if "convfeat-synth" not in shipped_models():
        pytest.skip("convfeat-synth is not in this checkout")
    m = load_model("convfeat-synth")
    assert_close(m, batch(3, int(seconds * 12000), seed=seconds))


# =============================================================================
# When the fast path does not apply
# =============================================================================
def test_reference_runs_when_gradients_may_be_needed(model):
    model.bn_mode = "instance"
    y = torch.from_numpy(batch(1, seed=3))
    out = model(y)                                        # grad mode on, parameters require grad
    assert out["layer1"].grad_fn is not None              # the reference (autograd graph kept)
    with torch.no_grad():
        assert model(y)["layer1"].grad_fn is None


def test_training_mode_uses_reference():
    needs_kernels()
    m = signed_model(7, CompactConfig(allowed_bn_modes=("calibrated", "stored")), bn_mode="stored").train()
    out = m(torch.from_numpy(batch(2, seed=1)))
    assert "logits" in out and out["logits"].grad_fn is not None


def test_input_too_short_behaves_like_the_reference(model):
    model.bn_mode = "instance"
    y = torch.from_numpy(batch(1, 100_000))           # 391 frames: block 5 would have no column
    assert fast.supports(model, (1, 1, 96, 391)) is not None
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(y, reference=True)
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(y)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_left_to_the_reference(model, bad):
    model.bn_mode = "stored"
    y = batch(2, seed=4)
    y[1, 1000:1010] = bad
    got, ref = fast_and_reference(model, y)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, equal_nan=True)
    # a spectrogram with one NaN bin, straight into forward_input
    with torch.no_grad():
        x = model.spectrogram(torch.from_numpy(batch(2, seed=5))).contiguous()
        x[0, 0, 10, 100] = bad
        got, ref = model.forward_input(x), model.forward_input(x, reference=True)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, equal_nan=True)


def test_compile_failure_falls_back_with_one_warning(monkeypatch):
    """A machine without a working compiler: one warning, then the exact reference path."""
    for name, value in (("lib", None), ("reason", None), ("warned", False)):
        monkeypatch.setattr(fast._LIBRARY, name, value)

    def broken():
        raise RuntimeError("no C++ compiler found (simulated)")

    monkeypatch.setattr(fast, "_build", broken)
    m = load_model("random", seed=2)
    y = torch.from_numpy(batch(2, seed=2))
    with pytest.warns(RuntimeWarning, match="fast inference kernels unavailable"):
        with torch.no_grad():
            got = m(y)
    assert not fast.available() and "simulated" in fast.unavailable_reason()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # no second warning
        with torch.no_grad():
            again = m(y)
            ref = m(y, reference=True)
    for k in ref:
        assert torch.equal(got[k], ref[k]) and torch.equal(again[k], ref[k])


def test_kernels_compile_once_and_are_cached(tmp_path, monkeypatch):
    """A fresh cache directory: the kernels compile (seconds), then load from the cache."""
    needs_kernels()
    monkeypatch.setenv("CONVFEAT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fast, "_compile_seconds", 0.0)
    lib = fast._build()
    assert lib is not None and fast.compile_seconds() > 0
    assert len(list((tmp_path / "kernels").glob("*.so"))) == 1
    spent = fast.compile_seconds()
    assert fast._build() is not None and fast.compile_seconds() == spent      # cache hit
