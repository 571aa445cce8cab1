"""`convfeat extract`: round trip, determinism, faults, resume, crash safety, locking, window length.

Tests where the study's 29-s window is not the point run the shipped ``convfeat-synth`` model
(whose time pooling takes windows down to ~3.4 s) on 4-s windows (``SHORT``); those that check
29-s behaviour or compare with :func:`convfeat.embed` keep the ``random`` model and 29-s windows.
Tests where decoding in worker processes is not the point decode in the test process
(``workers=0``: no process start-up per run); ``test_same_features_whatever_workers_batch_size_and_order``
checks that worker processes give the same features, test_extract_faults.py their fault handling.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import convfeat
from convfeat import api, audio
from convfeat.cli import app
from convfeat.extraction import ExtractError, Policy, collect_items, extract, parse_set, shard_of
from convfeat.models.mfcc import mfcc_feature
from convfeat.store.file import FeatureFile, StoreError, read_state

from conftest import chirp, clicks, noise, tone

runner = CliRunner()
LAYERS = [f"layer{i}" for i in range(1, 6)]
SHORT_MODEL = "convfeat-synth"          # shipped; pooling 4·4·5·2·1 frames: windows of >= 3.4 s
SHORT = Policy(window_seconds=4.0)      # 48,000 samples


def _write(path: Path, y: np.ndarray, sr: int, fmt: str | None = None, subtype: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, format=fmt, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Tones, noise, chirps, clicks: several lengths, rates, channel counts and formats."""
    root = tmp_path_factory.mktemp("collection")
    _write(root / "tone_8k.wav", tone(440, 2.0, sr=8000), 8000)
    _write(root / "chirp_22k_stereo.flac", np.stack([chirp(100, 5000, 6.0, sr=22050),
                                                    noise(6.0, sr=22050, seed=1)], axis=1), 22050)
    _write(root / "sub" / "noise_44k.ogg", noise(3.0, sr=44100, seed=2), 44100, "OGG", "VORBIS")
    _write(root / "sub" / "clicks_12k.wav", clicks(31.0), 12000)
    _write(root / "sub" / "deep" / "tone_16k_long.wav", tone(220, 35.0, sr=16000) + noise(35.0, sr=16000), 16000)
    _write(root / "tone_48k.aiff", tone(1000, 1.5, sr=48000), 48000, "AIFF", "PCM_16")
    return root


def _features(path, name="random"):
    _, items, sets = read_state(path)
    fs = sets[name]
    return list(items.columns["id"]), {k: fs.datasets[k] for k in fs.datasets}, fs.done, items


def test_round_trip_equals_embed(collection, tmp_path):
    out = tmp_path / "f.h5"
    summary = extract([collection], out, sets=[parse_set("random"), parse_set("mfcc")], workers=0)
    assert summary.failed == [] and summary.processed == 6
    ids, feats, done, items = _features(out)
    assert ids == sorted(ids) and len(ids) == 6 and done.all()
    assert set(items.columns["status"]) == {"ok"}
    _, mf, _, _ = _features(out, "mfcc")
    for i, item_id in enumerate(ids):
        y, sr = audio.load(collection / item_id)
        expected = convfeat.embed(y, sr, model="random")
        got = np.concatenate([feats[k][i] for k in LAYERS])
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=item_id)
        np.testing.assert_allclose(mf["mfcc"][i], mfcc_feature(api.prepare(y, sr)), rtol=1e-4, atol=1e-3)
        assert items.columns["source_sr"][i] == sr
        assert items.columns["duration"][i] == pytest.approx(y.size / sr)
    stereo = ids.index("chirp_22k_stereo.flac")
    assert items.columns["channels"][stereo] == 2 and (items.columns["windows"] == 1).all()


def test_same_features_whatever_workers_batch_size_and_order(collection, tmp_path):
    files = sorted(str(p) for p in collection.rglob("*") if p.is_file())
    a = extract(files, tmp_path / "a.h5", sets=[parse_set(SHORT_MODEL)], policy=SHORT, workers=0, batch_size=1,
                progress=True)
    b = extract(files[::-1], tmp_path / "b.h5", sets=[parse_set(SHORT_MODEL)], policy=SHORT, workers=2,
                batch_size=16)
    assert a.failed == b.failed == []
    ids_a, fa, _, _ = _features(tmp_path / "a.h5", SHORT_MODEL)
    ids_b, fb, _, _ = _features(tmp_path / "b.h5", SHORT_MODEL)
    assert ids_a == ids_b
    for k in LAYERS:
        np.testing.assert_allclose(fa[k], fb[k], atol=1e-5)


def test_long_mean_averages_windows(tmp_path):
    y = np.concatenate([tone(300, 29.0), noise(29.0, seed=4), tone(900, 10.0)])
    _write(tmp_path / "in" / "long.wav", y, 12000)
    y, _ = audio.load(tmp_path / "in" / "long.wav")  # what the file holds (16-bit)
    extract([tmp_path / "in"], tmp_path / "m.h5", sets=[parse_set("random")],
            policy=Policy(long="mean", hop_seconds=29.0), workers=0)
    _, feats, _, items = _features(tmp_path / "m.h5")
    assert items.columns["windows"][0] == 2  # the 10-s tail is not a full window
    expected = (convfeat.embed(y[:348000], 12000, model="random")
                + convfeat.embed(y[348000:696000], 12000, model="random")) / 2
    np.testing.assert_allclose(np.concatenate([feats[k][0] for k in LAYERS]), expected, atol=1e-5)


def test_faults_are_recorded_and_the_run_continues(tmp_path):
    src = tmp_path / "in"
    _write(src / "good.wav", tone(440, 2.0), 12000)
    _write(src / "silent.wav", np.zeros(12000 * 3, np.float32), 12000)
    _write(src / "empty.wav", np.zeros(0, np.float32), 12000)
    (src / "zero_bytes.flac").write_bytes(b"")
    (src / "garbage.ogg").write_bytes(os.urandom(2000))
    bad = tone(440, 2.0)
    bad[100] = np.nan
    _write(src / "nan.wav", bad, 12000, subtype="FLOAT")
    result = runner.invoke(app, ["extract", str(src), "-o", str(tmp_path / "f.h5"), "-m", "random", "-m", "mfcc",
                                 "--workers", "0"])
    assert result.exit_code == 1
    _, items, sets = read_state(tmp_path / "f.h5")
    status = dict(zip(items.columns["id"], items.columns["status"]))
    reason = dict(zip(items.columns["id"], items.columns["reason"]))
    assert status == {"empty.wav": "failed", "garbage.ogg": "failed", "good.wav": "ok", "nan.wav": "failed",
                      "silent.wav": "ok", "zero_bytes.flac": "failed"}
    assert "empty" in reason["empty.wav"] and "non-finite" in reason["nan.wav"]
    assert "garbage.ogg" in reason["garbage.ogg"]
    for name in ("random", "mfcc"):
        for arr in sets[name].datasets.values():
            assert np.isfinite(arr).all()
    for name in ("empty.wav", "nan.wav", "garbage.ogg", "zero_bytes.flac"):
        assert name in result.output  # the summary names every failure


def test_strict_stops_at_first_failure_keeping_earlier_items(tmp_path):
    src = tmp_path / "in"
    _write(src / "a.wav", tone(440, 1.0), 12000)
    (src / "b.wav").write_bytes(b"not audio")
    _write(src / "c.wav", tone(660, 1.0), 12000)
    summary = extract([src], tmp_path / "f.h5", sets=[parse_set(SHORT_MODEL)], policy=SHORT, strict=True, workers=0,
                      batch_size=1)
    assert [i for i, _ in summary.failed] == ["b.wav"]
    _, items, sets = read_state(tmp_path / "f.h5")
    assert list(items.columns["status"]) == ["ok", "failed", "pending"]
    assert sets[SHORT_MODEL].done.tolist() == [True, False, False]


def test_rerun_skips_finished_and_refuses_other_config(collection, tmp_path):
    out = tmp_path / "f.h5"
    extract([collection], out, sets=[parse_set("random")], workers=0)
    before = _features(out)[1]["layer3"].copy()
    again = extract([collection], out, sets=[parse_set("random")], workers=0)
    assert again.processed == 0 and again.done_before == 6
    np.testing.assert_array_equal(_features(out)[1]["layer3"], before)
    with pytest.raises(StoreError, match="seed"):
        extract([collection], out, sets=[parse_set("random:seed=3,name=random")], workers=0)
    with pytest.raises(StoreError, match="length_policy"):
        extract([collection], out, sets=[parse_set("random")], policy=Policy(short="pad"), workers=0)
    # a new set can be added to the same file; old sets are untouched
    extract([collection], out, sets=[parse_set("random:seed=3")], workers=0)
    _, _, sets = read_state(out)
    assert set(sets) == {"random", "random-s3"} and sets["random-s3"].done.all()


def test_second_writer_is_refused(collection, tmp_path):
    out = tmp_path / "f.h5"
    with FeatureFile(out):
        with pytest.raises(StoreError, match="another convfeat run"):
            extract([collection], out, sets=[parse_set("random")])
        result = runner.invoke(app, ["extract", str(collection), "-o", str(out), "-m", "random"])
        assert result.exit_code == 2 and "another convfeat run" in result.output
    assert not out.exists()


def test_sigkill_mid_run_leaves_valid_file_and_rerun_completes(tmp_path):
    src = tmp_path / "in"
    for i in range(24):
        _write(src / f"clip{i:02d}.wav", chirp(100 + 20 * i, 3000, 1.0 + (i % 3)), 12000)
    out = tmp_path / "f.h5"
    # The killed run: `extract` on 4-s windows, each batch of one held back 0.2 s before it is
    # recorded (as slow inference would), so that the kill lands mid-run.
    code = ("import time\n"
            "from convfeat.store.file import FeatureFile\n"
            "record = FeatureFile.record\n"
            "def slow_record(self, updates):\n"
            "    time.sleep(0.2)\n"
            "    record(self, updates)\n"
            "FeatureFile.record = slow_record\n"
            "from convfeat.extraction import Policy, extract, parse_set\n"
            f"extract([{str(src)!r}], {str(out)!r}, sets=[parse_set({SHORT_MODEL!r})], "
            f"policy=Policy(window_seconds={SHORT.window_seconds!r}), batch_size=1, workers=0)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = Path(str(out) + ".journal")
    deadline = time.time() + 120
    while time.time() < deadline and not (journal.is_dir() and len(list(journal.glob("*.npz"))) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # whatever was on disk is a valid file (or not written yet) plus whole journal entries
    if out.exists():
        with h5py.File(out, "r") as h:
            assert h["items/id"].shape[0] == 24
    n_journaled = len(list(journal.glob("*.npz")))
    assert n_journaled >= 1
    resumed = extract([src], out, sets=[parse_set(SHORT_MODEL)], policy=SHORT, batch_size=4, workers=0)
    assert resumed.done_before >= 2 and resumed.processed == 24 - resumed.done_before
    assert not journal.exists()
    fresh = extract([src], tmp_path / "fresh.h5", sets=[parse_set(SHORT_MODEL)], policy=SHORT, batch_size=4,
                    workers=0)
    assert fresh.processed == 24
    ids_a, fa, done_a, _ = _features(out, SHORT_MODEL)
    ids_b, fb, _, _ = _features(tmp_path / "fresh.h5", SHORT_MODEL)
    assert ids_a == ids_b and done_a.all()
    for k in LAYERS:
        np.testing.assert_allclose(fa[k], fb[k], atol=1e-5)


def test_calibrated_set_records_statistics_and_reuses_them(collection, tmp_path):
    out = tmp_path / "f.h5"
    extract([collection], out, sets=[parse_set("random:bn_mode=calibrated")], calibration_size=4, workers=0)
    _, items, sets = read_state(out)
    fs = sets["random-calibrated"]
    assert fs.config["calibration"]["n_clips"] == 4 and fs.config["bn_mode"] == "calibrated"
    assert fs.calibration["layer1_mean"].shape == (32,) and len(fs.calibration["ids"]) == 4
    # features equal a model restored from the stored statistics, clip by clip
    net = convfeat.load_model("random")
    net.set_bn_statistics({n: {"mean": fs.calibration[f"{n}_mean"], "var": fs.calibration[f"{n}_var"]}
                           for n in LAYERS})
    net.bn_mode = "calibrated"
    for i, item_id in enumerate(items.columns["id"]):
        y, sr = audio.load(collection / item_id)
        expected = convfeat.embed(y, sr, model=net)
        np.testing.assert_allclose(np.concatenate([fs.datasets[k][i] for k in LAYERS]), expected, atol=1e-5)
    again = extract([collection], out, sets=[parse_set("random:bn_mode=calibrated")], calibration_size=4, workers=0)
    assert again.processed == 0


def test_manifest_and_list_inputs_keep_metadata(tmp_path):
    src = tmp_path / "data"
    _write(src / "x.wav", tone(440, 1.0), 12000)
    _write(src / "y.wav", tone(880, 1.0), 12000)
    (tmp_path / "m.csv").write_text("path,label,artist\ndata/x.wav,A,alice\ndata/y.wav,B,bob\n")
    extract([tmp_path / "m.csv"], tmp_path / "f.h5", sets=[parse_set(SHORT_MODEL)], policy=SHORT, workers=0)
    _, items, _ = read_state(tmp_path / "f.h5")
    assert list(items.columns["id"]) == ["data/x.wav", "data/y.wav"]
    assert list(items.meta["label"]) == ["A", "B"] and list(items.meta["artist"]) == ["alice", "bob"]
    (tmp_path / "list.txt").write_text("data/y.wav\n# a comment\n\ndata/x.wav\n")
    assert [it["id"] for it in collect_items([tmp_path / "list.txt"])] == ["data/x.wav", "data/y.wav"]
    (tmp_path / "bad.csv").write_text("file,label\nx.wav,A\n")
    with pytest.raises(ExtractError, match="'path' column"):
        collect_items([tmp_path / "bad.csv"])
    with pytest.raises(ExtractError, match="not found"):
        collect_items([tmp_path / "missing_dir"])


def test_shards_partition_the_collection(collection, tmp_path):
    ids = [it["id"] for it in collect_items([collection])]
    parts = []
    for i in (1, 2, 3):
        s = extract([collection], tmp_path / f"s{i}.h5", sets=[parse_set(SHORT_MODEL)], policy=SHORT, shard=f"{i}/3",
                    workers=0)
        parts.append(sorted(read_state(tmp_path / f"s{i}.h5")[1].columns["id"]))
        assert s.total == len(parts[-1])
        assert all(shard_of(x, 3) == i for x in parts[-1])
    assert sorted(sum(parts, [])) == sorted(ids)
    with pytest.raises(ExtractError, match="I/N"):
        extract([collection], tmp_path / "bad.h5", shard="4/3")


def test_batches_never_exceed_batch_size(tmp_path, monkeypatch):
    """A long file's windows are spread over batches of at most --batch-size."""
    n = SHORT.window_samples
    y = np.concatenate([tone(200 + 50 * k, SHORT.window_seconds) for k in range(7)])
    _write(tmp_path / "in" / "long.wav", y, 12000, subtype="FLOAT")
    _write(tmp_path / "in" / "short.wav", tone(440, 3.0), 12000)
    sizes = []
    net = convfeat.load_model(SHORT_MODEL)
    model_cls = net.__class__
    original = model_cls.forward

    def spy(self, batch):
        sizes.append(batch.shape[0])
        return original(self, batch)

    monkeypatch.setattr(model_cls, "forward", spy)
    extract([tmp_path / "in"], tmp_path / "f.h5", sets=[parse_set(SHORT_MODEL)], batch_size=3, workers=0,
            policy=Policy(long="mean", hop_seconds=SHORT.window_seconds, window_seconds=SHORT.window_seconds))
    assert sum(sizes) == 8 and max(sizes) == 3
    _, feats, _, items = _features(tmp_path / "f.h5", SHORT_MODEL)
    assert list(items.columns["windows"]) == [7, 1]
    monkeypatch.undo()
    out = api._forward(net, np.stack([y[k * n:(k + 1) * n] for k in range(7)]))
    expected = np.concatenate([out[k] for k in LAYERS], axis=1).mean(axis=0)
    np.testing.assert_allclose(np.concatenate([feats[k][0] for k in LAYERS]), expected, atol=1e-5)


def test_manifest_segments_are_embedded_alone(tmp_path):
    """segment_start / segment_end (e.g. Jamendo annotations) select part of a file."""
    song = np.concatenate([tone(300, 4.0), noise(6.0, seed=9), chirp(200, 2000, 5.0)])
    _write(tmp_path / "song.wav", song, 12000, subtype="FLOAT")
    (tmp_path / "m.csv").write_text("id,path,segment_start,segment_end,label\n"
                                    "s#0,song.wav,0,4,a\ns#1,song.wav,4,10,b\ns#2,song.wav,10,,c\n"
                                    "s#3,song.wav,9,9,d\n")
    summary = extract([tmp_path / "m.csv"], tmp_path / "f.h5", sets=[parse_set("random")], workers=0)
    assert [i for i, _ in summary.failed] == ["s#3"]
    ids, feats, done, items = _features(tmp_path / "f.h5")
    assert items.columns["duration"][:3].tolist() == [4.0, 6.0, 5.0]
    for i, (a, b) in enumerate([(0, 4), (4, 10), (10, 15)]):
        expected = convfeat.embed(song[a * 12000:b * 12000], 12000, model="random")
        np.testing.assert_allclose(np.concatenate([feats[k][i] for k in LAYERS]), expected, atol=1e-5)


# -- window length -------------------------------------------------------------------
def test_short_windows_are_refused_where_the_pooling_cannot_take_them(tmp_path):
    """The published pooling needs 1280 spectrogram frames (~27.3 s); convfeat-synth's
    160 (~3.4 s); the MFCC baseline one 2048-sample frame.  Nothing is written."""
    src = tmp_path / "in"
    _write(src / "a.wav", tone(440, 1.0), 12000)
    out = tmp_path / "f.h5"
    for model, seconds, need in (("random", 27.2, "27.29 s"), ("random:bn_mode=calibrated", 10.0, "27.29 s"),
                                 (SHORT_MODEL, 3.3, "3.39 s"), ("mfcc", 0.1, "0.17 s")):
        with pytest.raises(ExtractError, match=f"cannot take {seconds:g}-s windows.*{need}") as err:
            extract([src], out, sets=[parse_set(model)], policy=Policy(window_seconds=seconds))
        assert isinstance(err.value, ValueError)  # an InputError
    assert not out.exists()
    with pytest.raises(ExtractError, match="window"):
        extract([src], out, sets=[parse_set("mfcc")], policy=Policy(window_seconds=0.0))
    # the shortest windows each model takes
    for model, seconds in (("random", 27.3), (SHORT_MODEL, 3.4), ("mfcc", 0.2)):
        s = extract([src], tmp_path / f"{model}.h5", sets=[parse_set(model)], policy=Policy(window_seconds=seconds),
                    workers=0)
        assert s.failed == [] and s.processed == 1


def test_short_window_features_follow_the_decode_path(collection, tmp_path):
    """Features of 4-s windows equal the model (and MFCC) of :func:`audio.to_windows`'s
    windows of each decoded file, and the set records its window length."""
    out = tmp_path / "f.h5"
    policy = Policy(long="mean", hop_seconds=9.0, window_seconds=4.0)
    summary = extract([collection], out, sets=[parse_set(SHORT_MODEL), parse_set("mfcc")], policy=policy,
                      workers=0)
    assert summary.failed == []
    ids, feats, done, items = _features(out, SHORT_MODEL)
    _, mf, _, _ = _features(out, "mfcc")
    _, _, sets = read_state(out)
    assert sets[SHORT_MODEL].config["length_policy"]["window_samples"] == 48000
    assert sets["mfcc"].config["length_policy"] == policy.to_dict()
    net = convfeat.load_model(SHORT_MODEL)
    for i, item_id in enumerate(ids):
        y, sr = audio.load(collection / item_id)
        windows = audio.to_windows(y, sr, policy)
        assert items.columns["windows"][i] == len(windows)
        out_ = api._forward(net, np.array(windows))
        expected = np.concatenate([out_[k] for k in LAYERS], axis=1).mean(axis=0)
        np.testing.assert_allclose(np.concatenate([feats[k][i] for k in LAYERS]), expected, atol=1e-5,
                                   err_msg=item_id)
        np.testing.assert_allclose(mf["mfcc"][i], np.mean([mfcc_feature(w) for w in windows], axis=0),
                                   rtol=1e-4, atol=1e-3)
    assert set(items.columns["windows"].tolist()) > {1}  # the 31-s and 35-s files give several windows
