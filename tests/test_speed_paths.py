"""Issue #11's extraction paths: --workers auto (plan_cores), decoding only the first window,
MP3 input, --precision bf16, and the device path (the one CUDA takes, run here on the CPU)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from convfeat import audio
from convfeat.cli import app
from convfeat.constants import SAMPLE_RATE
from convfeat.errors import InputError
from convfeat.extraction import ExtractError, Policy, extract, parse_set
from convfeat.extraction import cores, decoding, pipeline
from convfeat.extraction.cores import CONVNET_MS, DECODE_MS, MFCC_MS, plan_cores, resolve_device
from convfeat.models import load_model
from convfeat.models.precision import autocast

from conftest import chirp, noise, tone

runner = CliRunner()
LAYERS = [f"layer{i}" for i in range(1, 6)]
SHORT = Policy(window_seconds=4.0)      # convfeat-synth takes windows of >= 3.4 s


def _song(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Stereo float32 ``(samples, 2)``: a chirp, a gated tone and a little noise."""
    t = np.arange(int(round(seconds * sr))) / sr
    rng = np.random.default_rng(seed)
    f0, f1 = rng.uniform(100, 400), rng.uniform(500, 3000)
    y = 0.3 * np.sin(2 * np.pi * (f0 * t + 20 * t ** 2)) + 0.2 * np.sin(2 * np.pi * f1 * t) * (np.sin(4 * np.pi * t) > 0)
    y = y + 0.02 * rng.standard_normal(t.size)
    return np.stack([y, np.roll(y, 100)], axis=1).astype(np.float32)


def _features(path: Path, name: str) -> dict:
    with h5py.File(path, "r") as h:
        ids = [v.decode() for v in h["items/id"][()]]
        X = np.concatenate([h[f"features/{name}/{k}"][()] for k in LAYERS], axis=1)
        return dict(zip(ids, X))


# -- --workers auto ---------------------------------------------------------------------------
@pytest.mark.parametrize("sets", [["choi2017"], ["choi2017", "random"], ["mfcc"], ["choi2017", "mfcc"],
                                  ["random", "random", "random", "mfcc"]])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_plan_keeps_every_stage_at_or_above_the_pipeline_bound(sets, device):
    """For 1..64 cores: neither decoding (workers / d) nor inference (threads / m) alone is slower
    than the pipeline bound P / (d + m), and at most one process more than there are cores runs."""
    convnets = sum(s != "mfcc" for s in sets)
    d = DECODE_MS + (MFCC_MS if "mfcc" in sets else 0.0)
    m = CONVNET_MS * convnets if device == "cpu" else 0.0
    for n in range(1, 65):
        workers, threads = plan_cores(n, device, sets)
        bound = n / (d + m)
        assert 1 <= workers <= n and 1 <= threads <= n
        assert workers + threads <= n + 1
        assert workers / d >= bound * (1 - 1e-12)
        if m:
            assert threads / m >= bound * (1 - 1e-12)
        else:
            assert threads == 1 and workers == n      # nothing to compute in torch on the CPU


def test_plan_on_two_cores_and_its_caps():
    assert plan_cores(2, "cpu", ["choi2017"]) == (2, 1)     # decoding costs twice the fast model
    assert plan_cores(16, "cpu", ["choi2017"]) == (11, 6)
    assert plan_cores(2, torch.device("cuda", 0), ["choi2017"]) == (2, 1)
    assert plan_cores(8, "cpu", ["choi2017"], n_items=3) == (3, 3)
    assert plan_cores(8, "cpu", ["choi2017"], n_items=0)[0] == 1
    assert plan_cores(4, "cpu", [parse_set("random")]) == plan_cores(4, "cpu", ["random"])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="n_cores"):
            plan_cores(bad)


def test_cli_workers_auto_is_the_default_and_sets_torch_threads_for_the_run(tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", tone(440, 5.0), SAMPLE_RATE)
    seen = {}
    monkeypatch.setattr(pipeline, "plan_cores", lambda n, device, sets, n_items: seen.update(
        n=n, device=device, n_items=n_items) or (0, 1))        # 0 workers: decode in this process
    real = pipeline.decode_item
    monkeypatch.setattr(decoding, "decode_item", lambda job: seen.update(threads=torch.get_num_threads()) or real(job))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = runner.invoke(app, ["extract", str(tmp_path / "a.wav"), "-o", str(tmp_path / "f.h5"),
                                  "-m", "convfeat-synth", "--quiet"])
        assert res.exit_code == 0, res.output
        assert seen == {"n": cores.available_cores(), "device": torch.device("cpu"), "n_items": 1, "threads": 1}
        assert torch.get_num_threads() == 2                      # restored after the run
    finally:
        torch.set_num_threads(before)
    bad = runner.invoke(app, ["extract", str(tmp_path / "a.wav"), "-o", str(tmp_path / "g.h5"), "--workers", "many"])
    assert bad.exit_code == 2 and "use auto or a whole number" in bad.output
    assert not (tmp_path / "g.h5").exists()


def test_decode_processes_start_before_the_models_load_and_never_outlive_a_failed_run(tmp_path, monkeypatch):
    from convfeat import models

    for i in range(3):
        sf.write(tmp_path / f"a{i}.wav", tone(300 + 100 * i, 5.0), SAMPLE_RATE)
    pools, seen = [], []
    real_start, real_load = pipeline.start_decoders, models.load_model
    monkeypatch.setattr(pipeline, "start_decoders", lambda n: pools.append(real_start(n)) or pools[-1])

    def loading(*args, **kwargs):
        seen.append(sum(p.is_alive() for p in pools[-1]._processes.values()))   # decode processes running
        return real_load(*args, **kwargs)
    monkeypatch.setattr(models, "load_model", loading)
    s = extract([tmp_path], tmp_path / "f.h5", [parse_set("convfeat-synth")], Policy(window_seconds=4.0),
                workers=2)
    assert s.processed == 3 and seen == [2]

    started = []

    def failing(*args, **kwargs):
        started.extend(pools[-1]._processes.values())
        raise ExtractError("no model today")
    monkeypatch.setattr(models, "load_model", failing)
    with pytest.raises(ExtractError, match="no model today"):
        extract([tmp_path], tmp_path / "g.h5", [parse_set("convfeat-synth")], Policy(window_seconds=4.0), workers=2)
    assert len(started) == 2
    deadline = time.monotonic() + 5.0                   # shut down without waiting: gone within moments
    while any(p.is_alive() for p in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pools) == 2 and not any(p.is_alive() for p in started)
    assert not (tmp_path / "g.h5").exists()


def test_the_last_batches_take_every_core_and_the_features_do_not_change(tmp_path, monkeypatch):
    for i in range(10):
        sf.write(tmp_path / f"a{i:02d}.wav", tone(200 + 50 * i, 5.0) + noise(5.0, seed=i, amp=0.05), SAMPLE_RATE)
    threads = []
    real = pipeline._Runner._forward

    def forward(self, model, batch, peaks):
        threads.append(torch.get_num_threads())
        return real(self, model, batch, peaks)
    monkeypatch.setattr(pipeline._Runner, "_forward", forward)
    monkeypatch.setattr(pipeline, "plan_cores", lambda n, device, sets, n_items: (2, 1))
    monkeypatch.setattr(pipeline, "available_cores", lambda: 3)
    short = Policy(window_seconds=4.0)
    extract([tmp_path], tmp_path / "auto.h5", [parse_set("convfeat-synth")], short, batch_size=4, workers="auto")
    assert threads[:2] == [1, 1] and threads[-1] == 3       # 3 batches: the last once every item is decoded
    monkeypatch.setattr(pipeline._Runner, "_forward", real)
    extract([tmp_path], tmp_path / "one.h5", [parse_set("convfeat-synth")], short, batch_size=4, workers=0)
    import convfeat
    (ida, xa), (idb, xb) = (convfeat.load(tmp_path / f, "convfeat-synth") for f in ("auto.h5", "one.h5"))
    assert list(ida) == list(idb) and xa.shape == (10, 160)
    np.testing.assert_allclose(xa, xb, rtol=1e-6, atol=1e-7)


def test_fast_path_features_do_not_depend_on_the_thread_count():
    model = load_model("convfeat-synth")
    x = torch.from_numpy(np.stack([tone(300 + 40 * i, 4.0) + noise(4.0, seed=i, amp=0.1) for i in range(5)]))
    before = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            with torch.no_grad():
                outs.append({k: v.numpy().copy() for k, v in model(x).items() if k.startswith("layer")})
    finally:
        torch.set_num_threads(before)
    for other in outs[1:]:
        for k, v in outs[0].items():
            np.testing.assert_allclose(other[k], v, rtol=1e-6, atol=1e-7, err_msg=k)   # (bitwise here)


# -- device -----------------------------------------------------------------------------------
def test_resolve_device():
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="only cpu and cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device.*use --device cpu"):
            resolve_device("cuda")


def test_device_path_is_the_one_a_gpu_takes(tmp_path, monkeypatch):
    """The extraction with a ``torch.device`` runs the code CUDA runs (model ``.to(device)``, batches
    ``.to(device, non_blocking=True)``, results ``.float().cpu()``): the model and every batch are on
    that device, and the features equal those of ``device="cpu"``."""
    for i in range(3):
        sf.write(tmp_path / f"s{i}.wav", tone(200 + 100 * i, 5.0) + noise(5.0, seed=i), SAMPLE_RATE)
    from convfeat import models

    seen = []
    real_load = models.load_model

    def spying_load(*args, **kwargs):
        model = real_load(*args, **kwargs)
        forward = model.forward
        model.forward = lambda y, *a, **k: seen.append((y.device, next(model.parameters()).device)) or forward(y, *a, **k)
        return model

    monkeypatch.setattr(models, "load_model", spying_load)
    dev = torch.device("cpu")
    extract([tmp_path], tmp_path / "dev.h5", [parse_set("convfeat-synth")], SHORT, batch_size=2, workers=0, device=dev)
    assert seen and all(batch == dev and params == dev for batch, params in seen)
    monkeypatch.setattr(models, "load_model", real_load)
    extract([tmp_path], tmp_path / "str.h5", [parse_set("convfeat-synth")], SHORT, batch_size=2, workers=0,
            device="cpu")
    a, b = _features(tmp_path / "dev.h5", "convfeat-synth"), _features(tmp_path / "str.h5", "convfeat-synth")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            extract([tmp_path], tmp_path / "cuda.h5", [parse_set("convfeat-synth")], SHORT, workers=0, device="cuda")
        assert not (tmp_path / "cuda.h5").exists()


# -- decoding only what long="first" needs -------------------------------------------------------
@pytest.mark.parametrize("sr,channels,seconds", [(44100, 2, 29.3), (SAMPLE_RATE, 1, 29.01), (22050, 1, 95.0)])
def test_first_window_reads_only_the_window_and_equals_the_whole_file(tmp_path, monkeypatch, sr, channels, seconds):
    """long="first" decodes the window plus one second of resampler context, and gives bit for
    bit the window of the whole file decoded and resampled (soxr's output for a sample depends
    only on input within its filter length, far less than the second of context)."""
    y = _song(seconds, sr, seed=3)[:, :channels]
    path = tmp_path / "a.flac"
    sf.write(path, y, sr)
    read = []
    real = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, frames=-1, *a, **k: read.append(frames) or
                        real(self, frames, *a, **k))
    signal, info = audio.read_signal(path, Policy())
    assert sum(read) <= math.ceil(29.0 * sr) + sr < y.shape[0] + sr
    assert info == {"duration": y.shape[0] / sr, "source_sr": sr, "channels": channels}   # of the whole file
    monkeypatch.setattr(sf.SoundFile, "read", real)
    first = audio.to_windows(signal, SAMPLE_RATE, Policy())
    whole = audio.to_windows(sf.read(path, dtype="float32", always_2d=True)[0], sr, Policy(long="mean"))[:1]
    decoded = sf.read(path, dtype="float64", always_2d=True)[0]         # 16-bit FLAC: not y itself
    independent = audio.resample(decoded.mean(axis=1).astype(np.float32), sr, SAMPLE_RATE)[:348000]
    assert np.array_equal(first, whole)
    np.testing.assert_allclose(first[0], independent, atol=1e-6)   # float32 vs float64 mix-down


def test_extract_first_window_features_equal_the_whole_file_features(tmp_path):
    """End to end: extract's features (long first, reading ~30 s) equal the model on the first
    window of the whole file decoded: same windows, same model, same batch of one → identical."""
    sf.write(tmp_path / "long.flac", _song(29.3, 44100, seed=4), 44100)
    sf.write(tmp_path / "long12k.wav", _song(31.0, SAMPLE_RATE, seed=5)[:, 0], SAMPLE_RATE)
    extract([tmp_path], tmp_path / "f.h5", [parse_set("random")], Policy(), batch_size=1, workers=0)
    got = _features(tmp_path / "f.h5", "random")
    model = load_model("random")
    for name in ("long.flac", "long12k.wav"):
        y, sr = sf.read(tmp_path / name, dtype="float32")
        window = audio.to_windows(y, sr, Policy(long="mean"))[:1]       # every window of the whole file
        with torch.no_grad():
            out = model(torch.from_numpy(np.array(window)))
        np.testing.assert_array_equal(got[name], np.concatenate([out[k][0].numpy() for k in LAYERS]))


def test_resampler_quality_is_validated_and_hq_is_the_default():
    y = chirp(100, 5000, 1.0, sr=44100)
    assert np.array_equal(audio.resample(y, 44100, SAMPLE_RATE), audio.resample(y, 44100, SAMPLE_RATE, "HQ"))
    assert not np.array_equal(audio.resample(y, 44100, SAMPLE_RATE, "VHQ"), audio.resample(y, 44100, SAMPLE_RATE))
    with pytest.raises(InputError, match="resampler quality"):
        audio.resample(y, 44100, SAMPLE_RATE, "best")


# -- MP3 ----------------------------------------------------------------------------------------
@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile cannot write MP3 (needs 1.1+)")
def test_mp3_is_listed_decoded_and_close_to_the_lossless_original(tmp_path):
    """An MP3 written by libsndfile (320 kb/s CBR) is found in a folder, listed with the
    original's duration, rate and channels, and its features are within 3 % (relative L2 over
    the 160 values) of the WAV original's, and 10x closer to them than another clip's.  Not
    equal: MP3 is lossy (it drops masked and quiet spectral detail, which the dB front end
    sees down to -80 dB); measured 0.9 % for this clip with convfeat-synth."""
    song, other = _song(6.0, 44100, seed=1), _song(6.0, 44100, seed=2)
    sf.write(tmp_path / "song.wav", song, 44100)
    sf.write(tmp_path / "song.mp3", song, 44100, format="MP3", compression_level=0.0, bitrate_mode="CONSTANT")
    sf.write(tmp_path / "other.wav", other, 44100)
    res = runner.invoke(app, ["extract", str(tmp_path), "-o", str(tmp_path / "f.h5"), "-m", "convfeat-synth",
                              "--workers", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "f.h5", "r") as h:
        items = {k: h[f"items/{k}"][()] for k in ("id", "status", "duration", "source_sr", "channels")}
    row = [v.decode() for v in items["id"]].index("song.mp3")
    assert items["status"][row].decode() == "ok"
    assert (items["duration"][row], items["source_sr"][row], items["channels"][row]) == (6.0, 44100, 2)
    # the features of the default 29-s window (6 s repeated); convfeat-synth takes it
    f = _features(tmp_path / "f.h5", "convfeat-synth")
    lossy = np.linalg.norm(f["song.mp3"] - f["song.wav"]) / np.linalg.norm(f["song.wav"])
    apart = np.linalg.norm(f["other.wav"] - f["song.wav"]) / np.linalg.norm(f["song.wav"])
    assert 0 < lossy < 0.03 and lossy < apart / 10


# -- --precision bf16 ------------------------------------------------------------------------------
def test_bf16_differs_from_fp32_by_bfloat16_rounding_only():
    """Random weights, 3 clips: bf16 autocast changes every layer (non-zero: bf16 really ran) by
    less than 10 % of the layer's scale (bfloat16 keeps 8 mantissa bits, ~0.4 % per rounding;
    the deepest layers accumulate five blocks of it: measured up to 3.7 % on layer 5)."""
    model = load_model("random")
    t = np.arange(348000) / SAMPLE_RATE
    y = torch.from_numpy(np.stack([0.3 * np.sin(2 * np.pi * f * t) + noise(29.0, seed=i) * 0.5
                                   for i, f in enumerate((220, 700, 1900))]).astype(np.float32))
    with torch.no_grad():
        ref = model(y)
        with autocast("cpu", "bf16"):
            low = model(y)
    for k in LAYERS:
        rel = float((low[k].float() - ref[k]).abs().max() / ref[k].abs().max())
        assert 1e-4 < rel < 0.1, (k, rel)
    with pytest.raises(InputError, match="precision must be one of fp32, bf16"):
        autocast("cpu", "fp16")


def test_precision_is_recorded_and_sets_of_other_precisions_are_refused(tmp_path):
    sf.write(tmp_path / "a.wav", tone(440, 5.0), SAMPLE_RATE)
    out = tmp_path / "f.h5"
    res = runner.invoke(app, ["extract", str(tmp_path / "a.wav"), "-o", str(out), "-m", "convfeat-synth",
                              "--precision", "bf16", "--workers", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as h:
        config = json.loads(h["features/convfeat-synth"].attrs["config"])
        provenance = json.loads(h["features/convfeat-synth"].attrs["provenance"])
    assert config["precision"] == "bf16" and provenance["precision"] == "bf16"
    sf.write(tmp_path / "b.wav", tone(660, 5.0), SAMPLE_RATE)
    res = runner.invoke(app, ["extract", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "-o", str(out),
                              "-m", "convfeat-synth", "--workers", "0", "--quiet"])   # fp32 into the bf16 set
    assert res.exit_code == 2 and "differs in: precision" in res.output
    with pytest.raises(ExtractError, match="precision must be one of"):
        extract([tmp_path / "a.wav"], tmp_path / "g.h5", [parse_set("convfeat-synth")], workers=0, precision="int8")
