"""Audio handling, layer selection and the embed/tag API (generated audio only,
except where a test asks for ../shared)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import convfeat
from convfeat import audio, api
from convfeat.layers import concat_layers, parse_layers
from convfeat.constants import WINDOW_SAMPLES
from convfeat.models import load_model

from conftest import SR, chirp, clicks, noise, tone


# -- audio ----------------------------------------------------------------------
def test_to_mono_averages_channels_on_either_axis():
    left, right = tone(440, 0.1), noise(0.1)
    expected = (left + right) / 2
    np.testing.assert_allclose(audio.to_mono(np.stack([left, right])), expected, atol=1e-7)
    np.testing.assert_allclose(audio.to_mono(np.stack([left, right], axis=1)), expected, atol=1e-7)


def test_fit_window_repeat_pad_and_cut():
    y = np.arange(1, 4, dtype=np.float32)
    assert audio.fit_window(y, 7, "repeat").tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert audio.fit_window(y, 5, "pad").tolist() == [1, 2, 3, 0, 0]
    assert audio.fit_window(np.arange(10, dtype=np.float32), 4).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="empty"):
        audio.fit_window(np.zeros(0, np.float32), 4)
    with pytest.raises(ValueError, match="short must be"):
        audio.fit_window(y, 4, "loop")


def test_resample_preserves_a_tone_frequency():
    y = tone(1000.0, 1.0, sr=44100)
    out = audio.resample(y, 44100, SR)
    assert out.shape == (SR,)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    assert np.argmax(spectrum) * SR / out.size == pytest.approx(1000.0, abs=2.0)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_load_decodes_and_mixes_down(tmp_path, fmt, subtype):
    y = np.stack([tone(440, 0.5, sr=22050), tone(440, 0.5, sr=22050)], axis=1)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, y, 22050, format=fmt, subtype=subtype)
    got, sr = audio.load(path)
    assert sr == 22050 and got.ndim == 1 and abs(got.size - 11025) < 2048
    # the stereo channels are identical, so the mix equals either channel
    assert np.corrcoef(got[:10000], y[:10000, 0])[0, 1] > 0.99


def test_load_names_the_file_it_cannot_decode(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("hello")
    with pytest.raises(audio.AudioDecodeError, match="not_audio.wav"):
        audio.load(bad)
    with pytest.raises(audio.AudioDecodeError, match="no such file"):
        audio.load(tmp_path / "missing.flac")


def test_policy_records_its_window_and_checks_itself():
    assert audio.Policy().to_dict() == {"short": "repeat", "long": "first", "hop_seconds": 29.0,
                                        "window_samples": WINDOW_SAMPLES, "sample_rate": SR}
    p = audio.Policy(long="mean", hop_seconds=1.5, window_seconds=4.0)
    assert (p.window_samples, p.hop_samples, p.read_seconds) == (48000, 18000, None)
    assert audio.Policy(window_seconds=4.0).read_seconds == 4.0
    for bad, match in ((audio.Policy(short="loop"), "short must be"), (audio.Policy(long="all"), "long must be"),
                       (audio.Policy(window_seconds=0.0), "window"), (audio.Policy(hop_seconds=0.0), "hop")):
        with pytest.raises(ValueError, match=match):
            bad.check()


def test_to_windows_mixes_resamples_and_cuts_by_policy():
    y = np.stack([chirp(200, 2000, 10.0, sr=22050), noise(10.0, sr=22050, seed=7)])  # (channels, samples)
    mono12 = audio.resample(audio.to_mono(y), 22050, SR)
    first = audio.to_windows(y, 22050, audio.Policy(window_seconds=4.0))
    assert first.shape == (1, 48000) and first.dtype == np.float32
    np.testing.assert_array_equal(first[0], mono12[:48000])  # only 4 s + 1 s were resampled: same bits
    mean = audio.to_windows(y, 22050, audio.Policy(long="mean", hop_seconds=3.0, window_seconds=4.0))
    np.testing.assert_array_equal(mean, np.stack([mono12[k:k + 48000] for k in (0, 36000, 72000)]))
    np.testing.assert_array_equal(audio.to_windows(y, 22050)[0], api.prepare(y, 22050))
    with pytest.raises(ValueError, match="NaN"):
        audio.to_windows(np.array([0.0, np.inf]), SR)


def test_read_windows_equals_to_windows_of_the_loaded_file(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, np.stack([chirp(100, 3000, 12.0, sr=44100), tone(440, 12.0, sr=44100)], axis=1), 44100)
    y, sr = audio.load(path)
    for policy in (audio.Policy(), audio.Policy(window_seconds=4.0),
                   audio.Policy(long="mean", hop_seconds=2.5, window_seconds=4.0)):
        got, info = audio.read_windows(path, policy)
        np.testing.assert_array_equal(got, audio.to_windows(y, sr, policy))
        assert info["source_sr"] == 44100 and info["channels"] == 2 and info["duration"] == pytest.approx(12.0)
    segment, info = audio.read_signal(path, audio.Policy(window_seconds=4.0), offset=2.0, duration=3.0)
    assert info["duration"] == pytest.approx(3.0) and segment.size == 36000


# -- layer selection ------------------------------------------------------------
def test_parse_layers():
    assert parse_layers("12345") == [f"layer{i}" for i in range(1, 6)]
    assert parse_layers("51") == ["layer1", "layer5"]
    assert parse_layers([3]) == ["layer3"]
    assert parse_layers("all") == parse_layers("12345")
    for bad in ("", "6", "112", "1a", [0]):
        with pytest.raises(ValueError):
            parse_layers(bad)


def test_concat_layers_orders_blocks():
    outputs = {f"layer{i}": np.full((2, 32), i, np.float32) for i in range(1, 6)}
    x = concat_layers(outputs, "31")
    assert x.shape == (2, 64) and (x[:, :32] == 1).all() and (x[:, 32:] == 3).all()


# -- API (random model: no weights needed) --------------------------------------
def test_prepare_resamples_repeats_and_cuts():
    y = chirp(200, 2000, 3.0, sr=22050)
    w = api.prepare(y, 22050)
    assert w.shape == (WINDOW_SAMPLES,) and w.dtype == np.float32
    period = int(round(3.0 * SR))  # 3 s resampled to 12 kHz, then repeated
    np.testing.assert_allclose(w[period:2 * period], w[:period], atol=1e-6)
    long = noise(40.0, sr=SR)
    np.testing.assert_array_equal(api.prepare(long, SR), long[:WINDOW_SAMPLES])
    with pytest.raises(ValueError, match="NaN"):
        api.prepare(np.array([0.0, np.nan, 1.0]), SR)
    with pytest.raises(ValueError, match="empty"):
        api.prepare(np.zeros(0), SR)


def test_prepare_of_prefix_equals_full_resampling():
    # Only the first 29 s (plus a margin) is resampled: the result must equal
    # resampling the whole signal and then cutting.
    y = noise(35.0, sr=44100, seed=3)
    full = audio.resample(y, 44100, SR)[:WINDOW_SAMPLES]
    np.testing.assert_array_equal(api.prepare(y, 44100), full)


def test_embed_matches_model_forward_and_layer_subsets():
    y = clicks(5.0, sr=16000) + chirp(100, 4000, 5.0, sr=16000)
    full = convfeat.embed(y, 16000, model="random")
    assert full.shape == (160,) and np.isfinite(full).all()
    net = load_model("random", seed=0)
    with torch.no_grad():
        out = net(torch.from_numpy(api.prepare(y, 16000)[None]))
    ref = np.concatenate([out[f"layer{i}"][0].numpy() for i in range(1, 6)])
    np.testing.assert_allclose(full, ref, atol=1e-6)
    np.testing.assert_allclose(convfeat.embed(y, 16000, model="random", layers="25"),
                               np.concatenate([ref[32:64], ref[128:160]]), atol=1e-6)


def test_embed_random_seed_changes_feature():
    y = tone(330, 4.0)
    a = convfeat.embed(y, SR, model="random", seed=0)
    b = convfeat.embed(y, SR, model="random", seed=1)
    assert np.abs(a - b).max() > 1e-2
    np.testing.assert_array_equal(a, convfeat.embed(y, SR, model="random", seed=0))


def test_silence_gives_finite_features():
    x = convfeat.embed(np.zeros(SR * 3, np.float32), SR, model="random")
    assert np.isfinite(x).all()


def test_tag_returns_sorted_probabilities_for_every_tag():
    tags = convfeat.tag(noise(3.0), SR, model="random")
    assert list(tags) and set(tags) == set(convfeat.MSD_TAGS)
    values = list(tags.values())
    assert values == sorted(values, reverse=True) and all(0 < v < 1 for v in values)
    assert len(convfeat.tag(noise(3.0), SR, model="random", top_k=3)) == 3


def test_bn_mode_validation_messages():
    with pytest.raises(ValueError, match="bn_mode"):
        load_model("random", bn_mode="group")
    with pytest.raises(ValueError, match="unknown model"):
        load_model("vgg")


def test_calibration_indices_are_seeded_and_bounded():
    a = api.calibration_indices(1000, 256, seed=0)
    assert len(a) == 256 and len(set(a.tolist())) == 256 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, api.calibration_indices(1000, 256, seed=0))
    assert not np.array_equal(a, api.calibration_indices(1000, 256, seed=1))
    assert api.calibration_indices(5, 256).tolist() == [0, 1, 2, 3, 4]


def test_calibrated_model_is_batch_invariant_and_recorded():
    signals = [(tone(f, 2.0), SR) for f in (220, 440, 880)] + [(noise(2.0, seed=s), SR) for s in (1, 2)]
    net = api.calibrated_model(signals, model="random", max_clips=4, seed=0)
    assert net.bn_mode == "calibrated"
    cal = net.provenance["calibration"]
    assert cal["n_clips"] == 4 and cal["indices"] == api.calibration_indices(5, 4, 0).tolist()
    windows = np.stack([api.prepare(y, sr) for y, sr in signals])
    alone = api._forward(net, windows[:1])["layer5"][0]
    batched = api._forward(net, windows)["layer5"][0]
    np.testing.assert_allclose(alone, batched, atol=1e-5)


def test_calibration_round_trips_through_stored_arrays():
    from convfeat.models.calibration import Calibration

    windows = np.stack([api.prepare(tone(f, 2.0), SR) for f in (220, 440, 880)])
    net = load_model("random", bn_mode="calibrated")
    cal = Calibration.estimate(net, windows, ["a.wav", "b.wav", "c.wav"], max_clips=4, seed=0)
    assert net.bn_mode == "calibrated" and cal.n_clips == 3
    assert cal.record == {"max_clips": 4, "seed": 0, "n_clips": 3,
                          "stats_sha256": Calibration.digest(net.bn_statistics())}
    arrays = cal.to_arrays()
    assert arrays["ids"].tolist() == [b"a.wav", b"b.wav", b"c.wav"] and arrays["layer3_var"].shape == (32,)
    back = Calibration.from_arrays({**arrays, "indices": np.array([0, 2])}, cal.record)
    assert back.ids == cal.ids and back.record == cal.record and set(back.to_arrays()) == set(arrays) | {"indices"}
    fresh = load_model("random", bn_mode="calibrated")
    back.apply(fresh)
    np.testing.assert_array_equal(api._forward(fresh, windows[:1])["layer5"], api._forward(net, windows[:1])["layer5"])
    with pytest.raises(ValueError, match="layer1_mean"):
        Calibration.from_arrays({"ids": arrays["ids"]}, cal.record)


# -- with the published weights ---------------------------------------------------
def test_tag_batch_equals_model_batch_forward(theano_weights, example_clip):
    net = load_model("choi2017", weights=theano_weights, bn_mode="batch")
    ys = [example_clip, chirp(100, 3000, 29.0), noise(29.0, seed=5)]
    got = api.tag_batch(ys, [SR] * 3, net)
    with torch.no_grad():
        probs = net(torch.from_numpy(np.stack(ys)))["tags"].numpy()
    for tags, p in zip(got, probs):
        assert tags == pytest.approx({convfeat.MSD_TAGS[i]: float(p[i]) for i in range(50)}, abs=1e-6)


def test_tf_weights_have_no_tag_head(tf_weights):
    with pytest.raises(ValueError, match="no tag head"):
        convfeat.tag(noise(2.0), SR, weights=tf_weights)


def test_ffmpeg_fallback_decodes_other_formats(tmp_path):
    """Formats libsndfile cannot read go through ffmpeg when it is installed."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (the fallback decoder is optional)")
    wav = tmp_path / "x.wav"
    sf.write(wav, tone(440, 2.0, sr=22050), 22050)
    m4a = tmp_path / "x.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), str(m4a)], check=True)
    y, sr = audio.load(m4a)
    assert sr == 22050 and abs(y.size - 44100) < 4096
    spectrum = np.abs(np.fft.rfft(y[:32768]))
    assert np.argmax(spectrum) * sr / 32768 == pytest.approx(440, abs=3)
