"""The PyTorch port is exact: checked against an independent NumPy forward pass.

The reference below is written from scratch in float64 NumPy.  It reads the RAW
datasets of the published HDF5 files with h5py (it does not use
``convfeat.models.keras_import`` nor ``convfeat.models.frontend``) and follows the
published graph literally: framing with TensorFlow 'same' padding, a matrix
product with the stored windowed-DFT kernels, the stored mel matrix, decibels,
then five 3x3 convolution / batch-norm / ELU / max-pool blocks and the dense
sigmoid head.  Every model output that the port produces (160-d feature, 50 tag
probabilities, calibrated statistics) is compared with it.

Tests that need the weight files or the example clip skip (through
``conftest.shared_path``) when ``$CONVFEAT_SHARED`` is absent; the random-model
tests at the end need nothing from it.
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from convfeat.models import frontend
from convfeat.models import load_model

from conftest import chirp, clicks, noise, tone

# The module fixtures below (NumPy reference forwards, loaded models) are computed once per test
# process: under xdist (`make test`) the whole module runs in one process (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("port")

SR = 12000
N = 348_000              # 29 s at 12 kHz
N_FFT, HOP = 512, 256
POOLS = ((2, 4), (3, 4), (2, 5), (2, 4), (4, 4))
LAYERS = ("layer1", "layer2", "layer3", "layer4", "layer5")
TOL = 1e-4               # max abs difference, port (float32) vs reference (float64)


# =============================================================================
# Independent NumPy reference (float64), from the raw HDF5 arrays only
# =============================================================================
def raw_keras1(path) -> dict:
    """Raw parameters of a Keras-1 file, converted to (3, 3, C_in, C_out) cross-correlation kernels."""
    with h5py.File(path, "r") as h:
        mg, body = h["melgram"], h["ConvBNEluDr"]
        theano = "param_0" in mg
        sfx = "" if theano else ":0"
        names = ("param_0", "param_1", "param_2") if theano else ("Variable:0", "Variable_1:0", "Variable_2:0")
        p = {"real": mg[names[0]][()][:, 0, 0, :].astype(np.float64),
             "imag": mg[names[1]][()][:, 0, 0, :].astype(np.float64),
             "mel": mg[names[2]][()].astype(np.float64),
             "K": [], "b": [], "gamma": [], "beta": []}
        for i in range(1, 6):
            w = body[f"convolution2d_{i}_W{sfx}"][()].astype(np.float64)  # (out, in, rows, cols)
            if theano:
                # Theano's conv2d is a true convolution: out[h, w] = sum x[h+a-1, w+b-1] * W[2-a, 2-b].
                w = w[:, :, ::-1, ::-1]
            p["K"].append(np.ascontiguousarray(w.transpose(2, 3, 1, 0)))  # (a, b, in, out)
            p["b"].append(body[f"convolution2d_{i}_b{sfx}"][()].astype(np.float64))
            p["gamma"].append(body[f"batchnormalization_{i}_gamma{sfx}"][()].astype(np.float64))
            p["beta"].append(body[f"batchnormalization_{i}_beta{sfx}"][()].astype(np.float64))
        if "dense_1" in h and len(h["dense_1"]):
            p["W"] = h["dense_1"][f"dense_1_W{sfx}"][()].astype(np.float64)  # (32, 50)
            p["Wb"] = h["dense_1"][f"dense_1_b{sfx}"][()].astype(np.float64)
    return p


def raw_keras2(path) -> dict:
    """Raw parameters of the Keras-2 retrain (channels-last kernels are already (a, b, in, out))."""
    with h5py.File(path, "r") as h:
        cfg = json.loads(h.attrs["model_config"])
        layers = cfg["config"] if isinstance(cfg["config"], list) else cfg["config"]["layers"]
        eps = [l["config"]["epsilon"] for l in layers if l["class_name"] == "BatchNormalization"]
        mw = h["model_weights"]
        mg = mw["melgram/melgram"]
        p = {"real": mg["real_kernels:0"][()][:, 0, 0, :].astype(np.float64),
             "imag": mg["imag_kernels:0"][()][:, 0, 0, :].astype(np.float64),
             "mel": mg["Variable:0"][()].astype(np.float64),
             "K": [], "b": [], "gamma": [], "beta": [], "mean": [], "var": [], "eps": eps}
        for i in range(1, 6):
            conv = mw[f"conv2d_{i}/conv2d_{i}"]
            bn = mw[f"batch_normalization_{i}/batch_normalization_{i}"]
            p["K"].append(conv["kernel:0"][()].astype(np.float64))
            p["b"].append(conv["bias:0"][()].astype(np.float64))
            for key, name in (("gamma", "gamma:0"), ("beta", "beta:0"),
                              ("mean", "moving_mean:0"), ("var", "moving_variance:0")):
                p[key].append(bn[name][()].astype(np.float64))
        p["W"] = mw["dense_1/dense_1/kernel:0"][()].astype(np.float64)
        p["Wb"] = mw["dense_1/dense_1/bias:0"][()].astype(np.float64)
    return p


def np_frames(y: np.ndarray) -> np.ndarray:
    """(B, n) -> (B, frames, 512): TF 'same' padding of a stride-256 window-512 framing."""
    n = y.shape[-1]
    n_frames = -(-n // HOP)
    pad = max((n_frames - 1) * HOP + N_FFT - n, 0)
    yp = np.pad(np.asarray(y, np.float64), ((0, 0), (pad // 2, pad - pad // 2)))
    idx = np.arange(n_frames)[:, None] * HOP + np.arange(N_FFT)[None, :]
    return yp[:, idx]


def np_mel_power(y, p) -> np.ndarray:
    """(B, n) -> mel power (B, 96, frames) with the stored kernels."""
    fr = np_frames(y)
    power = (fr @ p["real"]) ** 2 + (fr @ p["imag"]) ** 2      # (B, T, 257)
    return np.einsum("btf,fm->bmt", power, p["mel"])


def np_db(mel, per_clip: bool) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    ref = db.max(axis=(1, 2), keepdims=True) if per_clip else db.max()
    return np.maximum(db - ref, -80.0)


def np_conv(x, K, b) -> np.ndarray:
    """'same' 3x3 cross-correlation, x (B, H, W, C) channels-last, K (3, 3, C, O).

    out[h, w] = sum over a, c, i of xp[h + a, w + c, i] * K[a, c, i] + b: the 3x3 neighbourhood
    of every position as one row of 9·C values (im2col), times K as a (9·C, O) matrix."""
    B, H, W, C = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.empty((B, H, W, 3, 3, C))
    for a in range(3):
        for c in range(3):
            cols[:, :, :, a, c, :] = xp[:, a:a + H, c:c + W, :]
    out = cols.reshape(B * H * W, 9 * C) @ K.reshape(9 * C, K.shape[3])
    return out.reshape(B, H, W, K.shape[3]) + b


def np_elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def np_pool(x, ph, pw):
    B, H, W, C = x.shape
    h, w = H // ph, W // pw
    return x[:, :h * ph, :w * pw].reshape(B, h, ph, w, pw, C).max(axis=(2, 4))


def np_forward(y, p, bn: str, *, per_clip_db=None, standardize=False, pre_pool=False,
               global_max=False, stats=None, eps=1e-3) -> dict:
    """Reference forward.  bn: 'batch' | 'instance' | 'stored' | 'frozen' (stats given).

    Returns features (layer1..5, (B, 32)), 'tags' if the file has a head, and
    'stats' (per layer the (mean, var) actually used)."""
    if per_clip_db is None:
        per_clip_db = bn != "batch"
    x = np_db(np_mel_power(y, p), per_clip_db)                # (B, 96, T)
    if standardize:
        m = x.mean(axis=(1, 2), keepdims=True)
        s = x.std(axis=(1, 2), keepdims=True)
        x = (x - m) / (s + 1e-10)
    x = x[..., None]                                          # (B, 96, T, 1) channels-last
    out, used = {}, []
    for k in range(5):
        z = np_conv(x, p["K"][k], p["b"][k])
        if bn == "batch":
            mean, var = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
        elif bn == "instance":
            mean, var = z.mean(axis=(1, 2), keepdims=True), z.var(axis=(1, 2), keepdims=True)
        elif bn == "stored":
            mean, var = p["mean"][k], p["var"][k]
        else:
            mean, var = stats[k]
        used.append((mean, var))
        x = np_elu((z - mean) / np.sqrt(var + eps) * p["gamma"][k] + p["beta"][k])
        if pre_pool:
            out[LAYERS[k]] = x.mean(axis=(1, 2))
        x = np_pool(x, *POOLS[k])
        if not pre_pool:
            out[LAYERS[k]] = x.mean(axis=(1, 2))
    if "W" in p:
        v = x.max(axis=(1, 2)) if global_max else x.reshape(x.shape[0], -1)
        out["tags"] = 1.0 / (1.0 + np.exp(-(v @ p["W"] + p["Wb"])))
    out["stats"] = used
    return out


# =============================================================================
# Helpers
# =============================================================================
@torch.no_grad()
def run(model, clips) -> dict:
    out = model(torch.from_numpy(np.ascontiguousarray(np.stack(clips), dtype=np.float32)))
    return {k: v.double().numpy() for k, v in out.items()}


def feat(out) -> np.ndarray:
    return np.concatenate([out[k] for k in LAYERS], axis=1)


def maxdiff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def window(y: np.ndarray) -> np.ndarray:
    """Exactly N samples (tile short signals, cut long ones)."""
    y = np.asarray(y, np.float32)
    return np.tile(y, -(-N // len(y)))[:N]


def generated_clips() -> list:
    """Nine different 29-s signals; index 0 is the 'probe' clip."""
    return [window(chirp(200, 4000, 29)),
            window(tone(440, 29)),
            window(tone(1000, 29, amp=0.2) + tone(2500, 29, amp=0.1)),
            window(chirp(3000, 100, 29, amp=0.8)),
            window(noise(29, seed=0)),
            window(noise(29, seed=1, amp=0.05)),
            window(clicks(29, every=0.5)),
            window(clicks(29, every=0.23) * 0.3 + noise(29, seed=2, amp=0.01)),
            window(tone(150, 29, amp=0.7) + chirp(500, 5500, 29, amp=0.1))]


# =============================================================================
# Module-scoped fixtures (the reference is computed once)
# =============================================================================
@pytest.fixture(scope="module")
def p_theano(theano_weights):
    return raw_keras1(theano_weights)


@pytest.fixture(scope="module")
def p_tf(tf_weights):
    return raw_keras1(tf_weights)


@pytest.fixture(scope="module")
def p_k2(k2_weights):
    return raw_keras2(k2_weights)


@pytest.fixture(scope="module")
def batch_clips(example_clip):
    """Four different clips: music, a chirp, noise, the music reversed and quieter."""
    ex = np.asarray(example_clip, np.float32)
    return [ex, window(chirp(100, 5000, 29)), window(noise(29, seed=7, amp=0.1)),
            np.ascontiguousarray(ex[::-1] * 0.25)]


@pytest.fixture(scope="module")
def ref_batch(p_theano, batch_clips):
    return np_forward(np.stack(batch_clips), p_theano, "batch")


@pytest.fixture(scope="module")
def ref_instance(p_theano, batch_clips):
    return np_forward(np.stack(batch_clips), p_theano, "instance")


@pytest.fixture(scope="module")
def theano_models(theano_weights):
    return {mode: load_model("choi2017", weights=theano_weights, bn_mode=mode)
            for mode in ("instance", "batch")}


@pytest.fixture(scope="module")
def tf_models(tf_weights):
    return {mode: load_model("choi2017", weights=tf_weights, bn_mode=mode)
            for mode in ("instance", "batch")}


# =============================================================================
# 1. Front end
# =============================================================================
def test_frame_count_and_padding():
    assert frontend.same_padding(N) == (1360, 208, 208)
    fr = np_frames(np.arange(N, dtype=np.float64)[None])
    assert fr.shape == (1, 1360, 512)
    # first frame: 208 zeros then samples 0..303; last frame: samples 347696..347999 then 208 zeros
    np.testing.assert_array_equal(fr[0, 0, :208], 0)
    np.testing.assert_array_equal(fr[0, 0, 208:], np.arange(304))
    np.testing.assert_array_equal(fr[0, -1, :304], np.arange(N - 304, N))
    np.testing.assert_array_equal(fr[0, -1, 304:], 0)


@pytest.mark.parametrize("which", ["theano", "tf", "k2"])
def test_computed_kernels_match_stored(which, request):
    p = request.getfixturevalue({"theano": "p_theano", "tf": "p_tf", "k2": "p_k2"}[which])
    real, imag = frontend.dft_kernels()
    assert real.shape == imag.shape == p["real"].shape == (512, 257)
    # Stored imaginary kernels are +w[n] sin(2 pi k n / N) (sign included), stored in float32.
    assert maxdiff(real, p["real"]) < 1e-7
    assert maxdiff(imag, p["imag"]) < 1e-7
    assert maxdiff(-imag, p["imag"]) > 1.9           # the sign really is +sin
    # the window inside the kernels is the periodic Hann window (column k=0 = window)
    n = np.arange(512)
    np.testing.assert_allclose(p["real"][:, 0], 0.5 - 0.5 * np.cos(2 * np.pi * n / 512), atol=1e-7)
    # the defaults of the port's STFT front end: its window and its computed filterbank
    fe = frontend.MelFrontend()
    np.testing.assert_allclose(fe.window.numpy(), p["real"][:, 0], atol=1e-7)
    mel = frontend.mel_filterbank()
    assert mel.shape == p["mel"].shape == (257, 96)
    assert maxdiff(mel, p["mel"]) / np.abs(p["mel"]).max() < 2e-6
    np.testing.assert_array_equal(fe.mel_basis.numpy(), mel)


def test_theano_and_tf_files_hold_the_same_parameters(p_theano, p_tf):
    for key in ("real", "imag", "mel"):
        np.testing.assert_array_equal(p_theano[key], p_tf[key])
    for key in ("K", "b", "gamma", "beta"):
        for a, b in zip(p_theano[key], p_tf[key]):
            np.testing.assert_array_equal(a, b)      # Theano kernels flipped == TF kernels, exactly
    assert "W" in p_theano and "W" not in p_tf


@pytest.mark.parametrize("which", ["theano", "k2"])
def test_mel_frontend_equals_framing_matmul(which, request):
    p = request.getfixturevalue({"theano": "p_theano", "k2": "p_k2"}[which])
    y = np.stack([window(chirp(60, 5900, 29)), window(noise(29, seed=3, amp=0.2))])
    ref = np_mel_power(y, p)                                        # (2, 96, 1360)
    fe = frontend.MelFrontend(mel_basis=p["mel"].astype(np.float32))
    with torch.no_grad():
        got = fe(torch.from_numpy(y)).double().numpy()
    assert got.shape == (2, 1, 96, 1360)
    got = got[:, 0]
    rel = np.abs(got - ref).max(axis=(1, 2)) / ref.max(axis=(1, 2))
    assert rel.max() < 1e-5, rel
    # and in decibels relative to each clip's maximum, where the network sees it
    db_ref = np_db(ref, per_clip=True)
    db_got = frontend.power_to_db(torch.from_numpy(got[:, None]), "clip").numpy()[:, 0]
    assert maxdiff(db_got, db_ref) < 2e-3
    db_batch = frontend.power_to_db(torch.from_numpy(got[:, None]), "batch").numpy()[:, 0]
    assert maxdiff(db_batch, np_db(ref, per_clip=False)) < 2e-3


# =============================================================================
# 2. Instance mode vs the NumPy reference (Theano file, example clip)
# =============================================================================
def test_instance_mode_example_clip(theano_models, ref_instance, batch_clips):
    out = run(theano_models["instance"], batch_clips[:1])
    assert set(out) == set(LAYERS) | {"tags"}
    assert feat(out).shape == (1, 160) and out["tags"].shape == (1, 50)
    assert maxdiff(feat(out), feat(ref_instance)[:1]) <= TOL
    assert maxdiff(out["tags"], ref_instance["tags"][:1]) <= TOL
    # a batch of one in 'batch' mode is the same computation
    out_b = run(theano_models["batch"], batch_clips[:1])
    assert maxdiff(feat(out_b), feat(out)) <= 1e-5
    assert maxdiff(out_b["tags"], out["tags"]) <= 1e-5


def test_instance_mode_is_per_clip_in_a_batch(theano_models, ref_instance, batch_clips):
    out = run(theano_models["instance"], batch_clips)
    assert maxdiff(feat(out), feat(ref_instance)) <= TOL
    assert maxdiff(out["tags"], ref_instance["tags"]) <= TOL


# =============================================================================
# 3. Batch mode (the original behaviour) vs the reference on the same batch
# =============================================================================
def test_batch_mode_matches_reference(theano_models, ref_batch, batch_clips):
    out = run(theano_models["batch"], batch_clips)
    assert feat(out).shape == (4, 160)
    assert maxdiff(feat(out), feat(ref_batch)) <= TOL
    assert maxdiff(out["tags"], ref_batch["tags"]) <= TOL


def test_batch_mode_depends_on_the_batch(theano_models, ref_batch, ref_instance, batch_clips):
    alone = feat(run(theano_models["batch"], batch_clips[:1]))[0]
    in_batch = feat(run(theano_models["batch"], batch_clips))[0]
    assert np.abs(alone - in_batch).max() > 1e-2
    # and the reference says the same: batch-of-4 statistics differ from the clip's own
    assert np.abs(feat(ref_batch)[0] - feat(ref_instance)[0]).max() > 1e-2


# =============================================================================
# 4. TF-layout file = Theano-layout file
# =============================================================================
@pytest.mark.parametrize("mode", ["instance", "batch"])
def test_tf_file_equals_theano_file(mode, tf_models, theano_models, batch_clips, ref_batch,
                                    ref_instance):
    out_tf = run(tf_models[mode], batch_clips)
    out_th = run(theano_models[mode], batch_clips)
    assert "tags" not in out_tf and not tf_models[mode].has_tags
    assert maxdiff(feat(out_tf), feat(out_th)) <= 1e-5
    ref = ref_batch if mode == "batch" else ref_instance
    assert maxdiff(feat(out_tf), feat(ref)) <= TOL


# =============================================================================
# 5. Batch invariance: instance and calibrated modes
# =============================================================================
@pytest.fixture(scope="module")
def gen_clips():
    return generated_clips()


def test_instance_mode_batch_invariant(theano_models, gen_clips):
    m = theano_models["instance"]
    alone = run(m, gen_clips[:1])
    together = run(m, gen_clips)
    assert maxdiff(feat(alone)[0], feat(together)[0]) <= 1e-5
    assert maxdiff(alone["tags"][0], together["tags"][0]) <= 1e-5
    # while batch mode is not invariant on the same clips
    b_alone = feat(run(theano_models["batch"], gen_clips[:1]))[0]
    b_together = feat(run(theano_models["batch"], gen_clips))[0]
    assert np.abs(b_alone - b_together).max() > 1e-2


@pytest.fixture(scope="module")
def calibrated(theano_weights, gen_clips):
    m = load_model("choi2017", weights=theano_weights, bn_mode="instance")
    calib = [gen_clips[4], gen_clips[3], gen_clips[7]]
    stats = m.calibrate(np.stack(calib), batch_size=2)   # two batches: accumulation is exercised
    return m, calib, stats


def test_calibrate_switches_mode_and_returns_statistics(calibrated):
    m, _, stats = calibrated
    assert m.bn_mode == "calibrated" and m.calibrated
    assert set(stats) == set(LAYERS)
    for k in LAYERS:
        assert stats[k]["mean"].shape == stats[k]["var"].shape == (32,)
        assert np.all(stats[k]["var"] > 0)
        np.testing.assert_array_equal(stats[k]["mean"], m.bn_statistics()[k]["mean"])


def test_calibrated_statistics_match_numpy(calibrated, p_theano):
    m, calib, stats = calibrated
    # Layer 1 from first principles: conv output of the per-clip dB spectrogram,
    # mean and population variance over every clip, mel bin and frame.
    x = np.stack([np_db(np_mel_power(c[None], p_theano), per_clip=True)[0] for c in calib])
    z = np_conv(x[..., None], p_theano["K"][0], p_theano["b"][0])
    mean1, var1 = z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))
    np.testing.assert_allclose(stats["layer1"]["mean"], mean1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats["layer1"]["var"], var1, rtol=1e-4, atol=1e-4)
    # All layers: the calibrated statistics are the statistics of the whole calibration set
    # seen as one batch (with per-clip dB reference), each layer using the frozen earlier ones.
    ref = np_forward(np.stack(calib), p_theano, "batch", per_clip_db=True)
    for k, name in enumerate(LAYERS):
        mean, var = ref["stats"][k]
        np.testing.assert_allclose(stats[name]["mean"], mean, rtol=1e-4, atol=1e-4 * np.abs(mean).max())
        np.testing.assert_allclose(stats[name]["var"], var, rtol=1e-4)


def test_calibrated_forward_matches_reference(calibrated, p_theano, gen_clips):
    m, _, stats = calibrated
    frozen = [(stats[k]["mean"].astype(np.float64), stats[k]["var"].astype(np.float64)) for k in LAYERS]
    ref = np_forward(np.stack(gen_clips[:1]), p_theano, "frozen", stats=frozen)
    out = run(m, gen_clips[:1])
    assert maxdiff(feat(out), feat(ref)) <= TOL
    assert maxdiff(out["tags"], ref["tags"]) <= TOL


def test_calibrated_batch_invariant_and_restorable(calibrated, theano_weights, gen_clips):
    m, _, stats = calibrated
    alone = run(m, gen_clips[:1])
    together = run(m, gen_clips)
    assert maxdiff(feat(alone)[0], feat(together)[0]) <= 1e-5
    assert maxdiff(alone["tags"][0], together["tags"][0]) <= 1e-5

    fresh = load_model("choi2017", weights=theano_weights, bn_mode="calibrated")
    with pytest.raises(RuntimeError):
        run(fresh, gen_clips[:1])                            # no statistics yet
    fresh.set_bn_statistics(m.bn_statistics())
    restored = run(fresh, gen_clips)
    assert maxdiff(feat(restored), feat(together)) <= 1e-6
    assert maxdiff(restored["tags"], together["tags"]) <= 1e-6
    # calibrated features are a different policy from instance normalisation
    inst = feat(run(load_model("choi2017", weights=theano_weights, bn_mode="instance"), gen_clips[:1]))
    assert np.abs(inst[0] - feat(alone)[0]).max() > 1e-2


# =============================================================================
# 6. Keras-2 retrain
# =============================================================================
@pytest.fixture(scope="module")
def k2_model(k2_weights):
    return load_model("choi2017-k2", weights=k2_weights)


@pytest.fixture(scope="module")
def ref_k2(p_k2, example_clip):
    assert p_k2["eps"] == [1e-3] * 5
    return np_forward(np.asarray(example_clip)[None], p_k2, "stored", standardize=True,
                      pre_pool=True, global_max=True, eps=1e-3)


def test_k2_matches_reference(k2_model, ref_k2, example_clip):
    assert k2_model.bn_mode == "stored"
    out = run(k2_model, [example_clip])
    assert set(out) == set(LAYERS) | {"tags"}
    f = feat(out)
    assert f.shape == (1, 160) and np.all(np.isfinite(f))
    assert maxdiff(f, feat(ref_k2)) <= TOL
    assert maxdiff(out["tags"], ref_k2["tags"]) <= TOL


def test_k2_longer_input_global_max_pool(k2_model, p_k2, example_clip):
    """61 s of input: the last block's map is 1x2, so global max pooling is really exercised."""
    y = np.concatenate([np.asarray(example_clip, np.float32), chirp(80, 5000, 32)])
    assert y.shape == (732_000,)
    ref = np_forward(y[None], p_k2, "stored", standardize=True, pre_pool=True, global_max=True)
    out = run(k2_model, [y])
    assert maxdiff(feat(out), feat(ref)) <= TOL
    assert maxdiff(out["tags"], ref["tags"]) <= TOL


def test_k2_differs_from_keras1_and_is_batch_invariant(k2_model, theano_models, example_clip,
                                                       gen_clips):
    ex = np.asarray(example_clip, np.float32)
    alone = run(k2_model, [ex])
    together = run(k2_model, [gen_clips[0], ex, gen_clips[4]])
    assert np.all(np.isfinite(feat(together)))
    assert maxdiff(feat(alone)[0], feat(together)[1]) <= 1e-5
    assert maxdiff(alone["tags"][0], together["tags"][1]) <= 1e-5
    k1 = run(theano_models["instance"], [ex])
    assert np.abs(alone["tags"] - k1["tags"]).max() > 1e-2


# =============================================================================
# 7. Random-weights model (no shared material needed)
# =============================================================================
def _conv_weights(m):
    return [b.conv.weight.detach().numpy().copy() for b in m.blocks]


def test_random_model_seeded():
    a, b, c = (load_model("random", seed=s) for s in (0, 0, 1))
    for wa, wb, wc in zip(_conv_weights(a), _conv_weights(b), _conv_weights(c)):
        np.testing.assert_array_equal(wa, wb)
        assert np.abs(wa - wc).max() > 0.1
    np.testing.assert_array_equal(a.head.weight.detach().numpy(), b.head.weight.detach().numpy())
    y = np.stack([window(chirp(100, 3000, 29)), window(noise(29, seed=5))])
    fa, fb, fc = (run(m, list(y)) for m in (a, b, c))
    assert np.all(np.isfinite(feat(fa))) and feat(fa).shape == (2, 160)
    np.testing.assert_array_equal(feat(fa), feat(fb))
    np.testing.assert_array_equal(fa["tags"], fb["tags"])
    assert np.abs(feat(fa) - feat(fc)).max() > 1e-2
    # instance mode of the random model is batch-invariant too
    alone = feat(run(a, list(y[:1])))
    assert maxdiff(alone[0], feat(fa)[0]) <= 1e-5


def test_random_model_he_normal():
    m = load_model("random", seed=3)
    w = _conv_weights(m)
    assert w[0].shape == (32, 1, 3, 3) and w[1].shape == (32, 32, 3, 3)
    std = float(w[1].std())
    assert abs(std / np.sqrt(2.0 / (32 * 9)) - 1) < 0.05
    assert abs(float(w[1].mean())) < 0.1 * std
    assert abs(float(w[0].std()) / np.sqrt(2.0 / 9) - 1) < 0.25         # only 288 weights
    for b in m.blocks:
        np.testing.assert_array_equal(b.conv.bias.detach().numpy(), 0)
        np.testing.assert_array_equal(b.bn.gamma.detach().numpy(), 1)
        np.testing.assert_array_equal(b.bn.beta.detach().numpy(), 0)
    limit = np.sqrt(6.0 / (32 + 50))
    hw = m.head.weight.detach().numpy()
    assert hw.shape == (50, 32) and np.abs(hw).max() <= limit and np.abs(hw).max() > 0.9 * limit


def test_random_model_numpy_reference():
    """The random model's forward equals the NumPy reference built from its own weights."""
    m = load_model("random", seed=0)
    real, imag = frontend.dft_kernels()   # reference front end from formulas (not the port's FFT)
    n = np.arange(512)[:, None] * np.arange(257)[None, :]
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512))[:, None]
    np.testing.assert_allclose(real, win * np.cos(2 * np.pi * n / 512), atol=1e-12)
    p = {"real": win * np.cos(2 * np.pi * n / 512), "imag": win * np.sin(2 * np.pi * n / 512),
         "mel": m.frontend.mel_basis.detach().double().numpy(),
         "K": [w.astype(np.float64).transpose(2, 3, 1, 0) for w in _conv_weights(m)],
         "b": [np.zeros(32)] * 5, "gamma": [np.ones(32)] * 5, "beta": [np.zeros(32)] * 5,
         "W": m.head.weight.detach().double().numpy().T,
         "Wb": m.head.bias.detach().double().numpy()}
    y = window(chirp(300, 2000, 29))[None]
    ref = np_forward(y, p, "instance")
    out = run(m, list(y))
    assert maxdiff(feat(out), feat(ref)) <= TOL
    assert maxdiff(out["tags"], ref["tags"]) <= TOL
