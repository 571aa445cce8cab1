"""convfeat.embed_frames: frame-level features, their grid and their relation to embed (generated audio)."""
from __future__ import annotations

import numpy as np
import pytest

import convfeat
from convfeat.api import get_model
from convfeat.frames import frame_grid, frames_covered

from conftest import SR, chirp, noise, tone, write_clips

WINDOW = 348_000


@pytest.fixture(scope="module")
def clip60():
    return noise(60.0, seed=3) + chirp(80, 5000, 60.0) + tone(300, 60.0, amp=0.2) * (np.arange(60 * SR) % SR < 3000)


@pytest.mark.parametrize("model", ["random", "convfeat-synth"])
def test_mean_over_covered_frames_equals_embed_for_a_29s_clip(clip60, model):
    y = clip60[:WINDOW]
    t, X = convfeat.embed_frames(y, SR, model=model)
    e = convfeat.embed(y, SR, model=model)
    assert X.shape == (340, 160) and X.dtype == np.float32
    np.testing.assert_allclose(t, (np.arange(340) + 0.5) * 1024 / SR)
    covered = frames_covered(get_model(model))
    assert covered == {"layer1": 340, "layer2": 340, "layer3": 340, "layer4": 320, "layer5": 320}
    for k, (name, n) in enumerate(covered.items()):
        cols = slice(32 * k, 32 * k + 32)
        np.testing.assert_allclose(X[:n, cols].astype(np.float64).mean(0), e[cols], rtol=0,
                                   atol=1e-5 * np.abs(e).max(), err_msg=name)


def test_choi2017_k2_features_before_pooling_on_the_stft_grid(clip60, k2_weights):
    net = get_model("choi2017-k2", weights=k2_weights)
    grid = frame_grid(net)
    assert (grid.hop_samples, grid.repeats) == (256, (1, 4, 16, 80, 320))
    y = clip60[:WINDOW]
    t, X = convfeat.embed_frames(y, SR, model=net)
    e = convfeat.embed(y, SR, model=net)
    assert X.shape == (1360, 160)
    for k, (name, n) in enumerate(frames_covered(net).items()):
        cols = slice(32 * k, 32 * k + 32)
        np.testing.assert_allclose(X[:n, cols].astype(np.float64).mean(0), e[cols], rtol=0,
                                   atol=1e-5 * np.abs(e).max(), err_msg=name)


def test_each_block_is_a_step_function_at_its_resolution(clip60):
    t, X = convfeat.embed_frames(clip60[:WINDOW], SR, model="random", layers="245")
    grid = frame_grid(get_model("random"))
    assert grid.repeats == (1, 4, 20, 80, 320)
    assert grid.resolution_seconds()["layer3"] == pytest.approx(5 * 4 * 4 * 256 / SR)
    l2, l4, l5 = X[:, :32], X[:, 32:64], X[:, 64:]
    assert np.array_equal(l2, np.repeat(l2[::4], 4, axis=0))                     # 85 steps of 4 frames
    assert np.array_equal(l4[:320], np.repeat(l4[:320:80], 80, axis=0))          # 4 steps of 80 frames
    assert (l5 == l5[0]).all() and (l4[320:] == l4[319]).all()                   # held past the last step
    assert np.abs(np.diff(l2[::4], axis=0)).max() > 1e-3                          # and they do change


def test_long_signal_frames_are_the_windows_tiled_every_27_3_s(clip60):
    t, X = convfeat.embed_frames(clip60, SR, model="random")
    assert X.shape == (-(-60 * SR // 1024), 160)
    np.testing.assert_allclose(np.diff(t), 1024 / SR)
    assert 0 < t[-1] - 60.0 <= 512 / SR                     # the last frame covers the end
    start = 320 * 1024                                # the second window starts 27.31 s in
    _, second = convfeat.embed_frames(clip60[start:start + WINDOW], SR, model="random")
    np.testing.assert_allclose(X[320:640], second[:320], atol=1e-5 * np.abs(second).max())
    e = convfeat.embed(clip60[start:], SR, model="random", layers="5")
    np.testing.assert_allclose(X[320:640, 128:].mean(0), e, atol=1e-5 * np.abs(e).max())


def test_short_clip_has_the_frames_of_its_repeated_window():
    y = chirp(300, 3000, 0.5, sr=22050) + noise(0.5, sr=22050, seed=9)
    t, X = convfeat.embed_frames(y, 22050, model="random", layers="13")
    assert X.shape == (-(-6000 // 1024), 64) and t[-1] - 0.5 <= 512 / SR
    y12 = convfeat.audio.resample(y, 22050, SR)
    _, full = convfeat.embed_frames(np.tile(y12, 60)[:WINDOW], SR, model="random", layers="13")
    np.testing.assert_allclose(X, full[:len(X)], atol=1e-5 * np.abs(full).max())
    _, padded = convfeat.embed_frames(y, 22050, model="random", layers="13", short="pad")
    assert np.abs(padded - X).max() > 1e-3
    with pytest.raises(ValueError, match="NaN"):
        convfeat.embed_frames(np.full(100, np.nan, np.float32), SR, model="random")


# -- convfeat extract --frames: the ragged per-item array in the feature file ------------------
@pytest.fixture(scope="module")
def frames_file(tmp_path_factory):
    from typer.testing import CliRunner

    from convfeat.cli import app

    root = tmp_path_factory.mktemp("frames")
    clips = {"long.wav": (noise(40.0, sr=16000, seed=4) + chirp(100, 3000, 40.0, sr=16000), 16000),
             "short.wav": (tone(500, 2.0, sr=22050), 22050)}
    src = write_clips(root / "audio", clips)
    (src / "broken.wav").write_bytes(b"not audio")
    out = root / "f.h5"
    result = CliRunner().invoke(app, ["extract", str(src), "-o", str(out), "-m", "random", "-m", "mfcc",
                                      "--long", "mean", "--frames", "--workers", "0", "-q"])
    assert result.exit_code == 1, result.output          # the broken file fails, the others are stored
    return out, src, clips


def test_extract_frames_round_trips(frames_file):
    import h5py
    import soundfile as sf

    out, src, clips = frames_file
    ids, times, frames = convfeat.load_frames(out, "random")
    assert ids == ["long.wav", "short.wav"]
    for i, t, X in zip(ids, times, frames):
        y, sr = sf.read(src / i, dtype="float32")
        t_ref, X_ref = convfeat.embed_frames(y, sr, model="random")
        assert X.shape == X_ref.shape and X.dtype == np.float32
        np.testing.assert_allclose(t, t_ref)
        np.testing.assert_allclose(X, X_ref, atol=1e-4 * np.abs(X_ref).max())
    with h5py.File(out, "r") as h:                       # plain h5py: offsets into one data array
        g = h["features/random/frames"]
        o, rows = g["offsets"][()], [x.decode() for x in h["items/id"][()]]
        r = rows.index("short.wav")
        np.testing.assert_array_equal(g["data"][o[r]:o[r + 1]], frames[1])
        assert o[rows.index("broken.wav") + 1] == o[rows.index("broken.wav")]
        assert g.attrs["hop_seconds"] == pytest.approx(1024 / SR) and "frames" not in h["features/mfcc"]
    ids, _, only = convfeat.load_frames(out, "random", ids=["short.wav"])
    np.testing.assert_array_equal(only[0], frames[1])
    with pytest.raises(ValueError, match="no frames"):
        convfeat.load_frames(out, "random", ids=["broken.wav"])
    with pytest.raises(ValueError, match="no frames; extract it with --frames"):
        convfeat.load_frames(out, "mfcc")
    # convfeat info says what is stored
    from convfeat.store import format_info, info

    d = info(out)
    n_frames = sum(len(x) for x in frames)
    assert d["sets"]["random"]["frames"] == {"hop_seconds": pytest.approx(1024 / SR), "total_frames": n_frames,
                                             "n_items": 2, "width": 160}
    assert d["sets"]["mfcc"]["frames"] is None
    assert f"frames: {n_frames} x 160 for 2 items, one every 85.3 ms" in format_info(d)


def test_frames_survive_the_journal_and_merge(frames_file, tmp_path):
    from typer.testing import CliRunner

    from convfeat.cli import app
    from convfeat.store.file import FeatureFile

    out, _, _ = frames_file
    _, _, frames = convfeat.load_frames(out, "random")
    shard = tmp_path / "shard.h5"
    with FeatureFile(out) as src_ff:
        config, prov = src_ff.sets["random"].config, src_ff.sets["random"].provenance
        feats = {k: v[1] for k, v in src_ff.sets["random"].datasets.items()}
    with FeatureFile(shard) as ff:                       # recorded, journaled, never checkpointed
        ff.add_items([{"id": "x", "path": "x.wav", "meta": {}}])
        ff.ensure_set("random", {k: 32 for k in feats}, config, prov)
        ff.record([{"id": "x", "status": "ok", "reason": "", "duration": 2.0, "source_sr": 22050, "channels": 1,
                    "windows": 1, "features": {"random": feats}, "frames": {"random": frames[1]}}])
    with FeatureFile(shard) as ff:                       # the next run (same items and set) folds it in
        ff.add_items([{"id": "x", "path": "x.wav", "meta": {}}])
        ff.ensure_set("random", {k: 32 for k in feats}, config, prov)
        ff.checkpoint()
    np.testing.assert_array_equal(convfeat.load_frames(shard, "random")[2][0], frames[1])
    import soundfile as sf

    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "x.wav", chirp(900, 200, 3.0), SR, subtype="FLOAT")
    shard2, merged = tmp_path / "shard2.h5", tmp_path / "merged.h5"
    args = ["-m", "random", "-m", "mfcc", "--long", "mean", "--frames", "--workers", "0", "-q"]
    assert CliRunner().invoke(app, ["extract", str(other), "-o", str(shard2)] + args).exit_code == 0
    result = CliRunner().invoke(app, ["merge", str(merged), str(shard2), str(out)])
    assert result.exit_code == 0, result.output
    ids, _, got = convfeat.load_frames(merged, "random")
    assert ids == ["long.wav", "short.wav", "x.wav"]
    for a, b in zip(got, frames + convfeat.load_frames(shard2, "random")[2]):
        np.testing.assert_array_equal(a, b)
