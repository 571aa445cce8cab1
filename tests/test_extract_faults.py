"""`convfeat extract` under hostile input: bounded memory, lying headers, garbage samples,
decoder noise, long files, worker crashes, and a seeded property test over random files.

Everything runs on small files generated here (no weights, no network); where the 29-s
window is not the point, the shipped ``convfeat-synth`` runs on 4-s windows or the MFCC
baseline is used.
"""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import convfeat
from convfeat import api, audio
from convfeat.cli import app
from convfeat.errors import InputError
from convfeat.extraction import Policy, extract, parse_set
from convfeat.extraction import decoding, pipeline
from convfeat.extraction.worker import decode_item
from convfeat.store.file import read_state

from conftest import chirp, noise, tone

runner = CliRunner()
LAYERS = [f"layer{i}" for i in range(1, 6)]
SYNTH = "convfeat-synth"              # shipped model; takes 4-s windows
SHORT = Policy(window_seconds=4.0)
LOG_ENV = "CONVFEAT_TEST_DECODE_LOG"


# -- helpers -------------------------------------------------------------------------------
def _write(path: Path, y: np.ndarray, sr: int, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, **kw)
    return path


def _wav_bytes(y: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _lying_wav(path: Path, sample_rate: int, seconds: float = 2.0) -> Path:
    """A valid 16-bit WAV whose fmt chunk then claims ``sample_rate`` (4 bytes, unsigned)."""
    data = bytearray(_wav_bytes(tone(440, seconds), 12000))
    struct.pack_into("<I", data, data.find(b"fmt ") + 12, sample_rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def _state(out: Path):
    _, items, sets = read_state(out)
    ids = list(items.columns["id"])
    status = dict(zip(ids, items.columns["status"]))
    reason = dict(zip(ids, items.columns["reason"]))
    return ids, status, reason, items, sets


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`convfeat ARGS` in a fresh process (its real stderr and exit code)."""
    code = "import sys\nfrom convfeat.cli import main\nsys.argv = ['convfeat'] + sys.argv[1:]\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


# Decode functions for the spawned worker processes: patched into the pipeline, which hands
# them to the workers by name, so they live in a small module of their own that imports only
# the torch-free worker (a worker importing this test module would import torch).
SPIES = f"""
import os
from convfeat.extraction.worker import decode_item


def logging_decode(job):
    out = decode_item(job)
    with open(os.environ[{LOG_ENV!r}], "a") as f:
        f.write(f"decoded {{job[0]['id']}}\\n")
    return out


def crashing_decode(job):
    if job[0]["id"].startswith("crash"):
        os._exit(3)             # as a decoder crashing in C would: no exception, no result
    return decode_item(job)
"""


@pytest.fixture
def spies(tmp_path_factory, monkeypatch):
    import importlib

    folder = tmp_path_factory.mktemp("spies")
    (folder / "convfeat_fault_spies.py").write_text(SPIES)
    monkeypatch.syspath_prepend(str(folder))
    return importlib.import_module("convfeat_fault_spies")


# -- 0. memory does not grow with the collection ------------------------------------------------
def test_decoding_runs_only_a_bounded_number_of_items_ahead(tmp_path, monkeypatch, spies):
    """Workers decode at most ``decode_ahead(workers)`` items that inference has not taken yet,
    however slow inference is and however many items there are."""
    src = tmp_path / "in"
    for i in range(16):
        _write(src / f"c{i:02d}.wav", tone(200 + 10 * i, 0.5), 12000)
    log = tmp_path / "log.txt"
    monkeypatch.setenv(LOG_ENV, str(log))
    monkeypatch.setattr(decoding, "decode_item", spies.logging_decode)
    real_add = pipeline._Runner.add

    def slow_add(self, decoded):            # inference much slower than decoding
        with open(log, "a") as f:
            f.write(f"consumed {decoded['id']}\n")
        time.sleep(0.06)
        return real_add(self, decoded)

    monkeypatch.setattr(pipeline._Runner, "add", slow_add)
    summary = extract([src], tmp_path / "f.h5", sets=[parse_set(SYNTH)], policy=SHORT, workers=2, batch_size=4)
    assert summary.failed == [] and summary.processed == 16
    ahead, most, decoded, consumed = decoding.decode_ahead(2), 0, 0, 0
    for line in log.read_text().splitlines():
        decoded += line.startswith("decoded")
        consumed += line.startswith("consumed")
        most = max(most, decoded - consumed)
    assert decoded == consumed == 16
    assert 2 <= most <= ahead, (most, ahead)   # the workers did run ahead, but only that far


def test_a_worker_that_dies_fails_its_item_and_the_run_goes_on(tmp_path, monkeypatch, spies):
    src = tmp_path / "in"
    for name in ("a.wav", "b.wav", "crash.wav", "d.wav", "e.wav"):
        _write(src / name, tone(330, 0.5), 12000)
    monkeypatch.setattr(decoding, "decode_item", spies.crashing_decode)
    summary = extract([src], tmp_path / "f.h5", sets=[parse_set(SYNTH)], policy=SHORT, workers=2)
    assert [i for i, _ in summary.failed] == ["crash.wav"]
    assert summary.failed[0][1].startswith("crash.wav: the decoding process died on it, twice (a crash inside")
    _, status, _, _, sets = _state(tmp_path / "f.h5")
    assert status == {"a.wav": "ok", "b.wav": "ok", "crash.wav": "failed", "d.wav": "ok", "e.wav": "ok"}
    assert sets[SYNTH].done.tolist() == [True, True, False, True, True]


def test_decode_workers_exit_when_their_run_is_killed():
    """A run killed with SIGKILL cannot stop its decode workers; they notice and exit."""
    code = ("import concurrent.futures as cf, multiprocessing as mp, os, time\n"
            "from convfeat.extraction.worker import watch_parent\n"
            "pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'), initializer=watch_parent,\n"
            "                              initargs=(os.getpid(), 0.1))\n"
            "print(pool.submit(os.getpid).result(), flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.kill()
    proc.wait()

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 10
    while alive(worker) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(worker)


# -- 1. what a decoder reports is checked; the store's refusals count -----------------------------
@pytest.mark.parametrize("rate", [0xFFFFFFFF, 0x80000000, 20_000_000, 0])
def test_an_implausible_sample_rate_fails_naming_the_value(tmp_path, rate):
    path = _lying_wav(tmp_path / "liar.wav", rate)
    with pytest.raises(audio.AudioDecodeError, match=f"liar.wav: implausible header: sample rate {rate} Hz"):
        audio.read_signal(path)
    with pytest.raises(audio.AudioDecodeError, match=f"sample rate {rate} Hz"):
        audio.load(path)


def test_check_header_bounds():
    audio.check_header("x.wav", 1, 1, 0)
    audio.check_header("x.wav", 10_000_000, audio.MAX_CHANNELS, 10 ** 12)
    for args, words in (((0,), "sample rate 0 Hz"), ((2 ** 31,), "sample rate 2147483648 Hz"),
                        ((44100.5,), "sample rate 44100.5"), ((44100, 0), "0 channels"),
                        ((44100, 65535), "65535 channels"), ((44100, 2, -1), "length -1 frames")):
        with pytest.raises(audio.AudioDecodeError, match=words):
            audio.check_header("x.wav", *args)
    with pytest.raises(InputError, match="sample rate 0"):
        audio.to_windows(np.ones(100, np.float32), 0)


def test_a_lying_header_in_the_middle_fails_alone_and_a_rerun_survives_it(tmp_path):
    """The reported fault, end to end in a real process: a WAV claiming 0xFFFFFFFF Hz among
    good files.  Exit code 1, the others ok, the liar failed with the value; a re-run too."""
    src = tmp_path / "in"
    _write(src / "a.wav", tone(440, 1.0), 12000)
    _write(src / "b.flac", chirp(100, 3000, 1.5, sr=22050), 22050)
    _lying_wav(src / "m_liar.wav", 0xFFFFFFFF)
    _write(src / "z.wav", noise(1.0, sr=16000), 16000)
    out = tmp_path / "f.h5"
    res = _cli("extract", str(src), "-o", str(out), "-m", SYNTH)          # default workers
    assert res.returncode == 1, res.stderr[-3000:]
    assert "4 processed, 1 failed, 0 already done" in res.stderr
    assert "failed: m_liar.wav: implausible header: sample rate 4294967295 Hz" in res.stderr
    again = runner.invoke(app, ["extract", str(src), "-o", str(out), "-m", SYNTH, "--workers", "0"])
    assert again.exit_code == 1 and "1 processed, 1 failed, 3 already done" in again.output, again.output
    _, status, reason, items, sets = _state(out)
    assert status == {"a.wav": "ok", "b.flac": "ok", "m_liar.wav": "failed", "z.wav": "ok"}
    assert reason["m_liar.wav"] == "m_liar.wav: implausible header: sample rate 4294967295 Hz (expected 1 Hz to 10 MHz)"
    assert items.columns["source_sr"].tolist() == [12000, 22050, 0, 16000]
    assert sets[SYNTH].done.tolist() == [True, True, False, True]
    assert all(np.isfinite(v).all() for v in sets[SYNTH].datasets.values())


def test_rows_the_store_refuses_are_failures_of_the_run(tmp_path, monkeypatch):
    """A value only the file's columns reject (here a sample rate past int32 reported by a
    patched decoder) is in the run's failures and its exit code."""
    src = tmp_path / "in"
    _write(src / "a.wav", tone(440, 1.0), 12000)
    _write(src / "b.wav", tone(660, 1.0), 12000)
    real = pipeline.decode_item

    def decode(job):
        out = real(job)
        if out["id"] == "b.wav":
            out["source_sr"] = 2 ** 32
        return out

    monkeypatch.setattr(decoding, "decode_item", decode)
    summary = extract([src], tmp_path / "f.h5", sets=[parse_set("mfcc")], workers=0)
    assert [i for i, _ in summary.failed] == ["b.wav"] and "source_sr 4294967296" in summary.failed[0][1]
    res = runner.invoke(app, ["extract", str(src), "-o", str(tmp_path / "g.h5"), "-m", "mfcc", "--workers", "0"])
    assert res.exit_code == 1 and "failed: b.wav" in res.output and "source_sr 4294967296" in res.output
    _, status, reason, _, _ = _state(tmp_path / "g.h5")
    assert status == {"a.wav": "ok", "b.wav": "failed"} and "int32" in reason["b.wav"]
    strict = extract([src], tmp_path / "s.h5", sets=[parse_set("mfcc")], workers=0, strict=True)
    assert [i for i, _ in strict.failed] == ["b.wav"]


# -- 2. non-finite features are never stored as good -----------------------------------------------
def _extreme_collection(src: Path) -> Path:
    rng = np.random.default_rng(0)
    _write(src / "good.wav", chirp(200, 3000, 3.0), 12000, subtype="FLOAT")
    _write(src / "huge_noise.wav", (rng.standard_normal(36000) * 1e20).astype(np.float32), 12000, subtype="FLOAT")
    spikes = tone(440, 3.0)
    spikes[::1000] = 1e30
    _write(src / "spikes.wav", spikes, 12000, subtype="FLOAT")
    _write(src / "loud_but_fine.wav", tone(440, 3.0) * 1e6, 12000, subtype="FLOAT")
    return src


def test_extreme_samples_fail_with_the_reason_instead_of_nan_features(tmp_path):
    src = _extreme_collection(tmp_path / "in")
    for sets in ([parse_set(SYNTH)], [parse_set("mfcc")], [parse_set(SYNTH), parse_set("mfcc")]):
        out = tmp_path / f"f{len(sets)}{sets[0].model}.h5"
        summary = extract([src], out, sets=sets, policy=SHORT, workers=0)
        assert sorted(i for i, _ in summary.failed) == ["huge_noise.wav", "spikes.wav"]
        _, status, reason, _, stored = _state(out)
        assert status["good.wav"] == status["loud_but_fine.wav"] == "ok"
        assert reason["spikes.wav"].startswith("spikes.wav: features not finite: ")
        assert "input peak 1e30" in reason["spikes.wav"]
        assert "input peak 4.4" in reason["huge_noise.wav"]
        name = sets[0].resolved_name()
        expected = "mfcc" if name == "mfcc" or len(sets) == 2 else f"{SYNTH}: its spectrogram overflows float32"
        assert reason["spikes.wav"].startswith(f"spikes.wav: features not finite: {expected} (input peak 1e30")
        for fs in stored.values():
            assert fs.done.tolist() == [True, False, True, False]      # good, huge, loud, spikes
            for arr in fs.datasets.values():
                assert np.isfinite(arr).all()


def test_cli_exit_code_for_extreme_samples(tmp_path):
    src = _extreme_collection(tmp_path / "in")
    res = runner.invoke(app, ["extract", str(src), "-o", str(tmp_path / "f.h5"), "-m", "mfcc", "--workers", "0"])
    assert res.exit_code == 1
    assert "failed: spikes.wav: features not finite: mfcc (input peak 1e30" in res.output


def test_embed_and_tag_raise_instead_of_returning_nan():
    y = tone(440, 3.0)
    y[::1000] = 1e30
    overflow = r"not finite: the model's spectrogram overflows float32.* \(input peak 1e30"
    with pytest.raises(InputError, match="features " + overflow):
        convfeat.embed(y, 12000, model="random")
    with pytest.raises(InputError, match="features " + overflow):    # NaN, or a finite constant: no feature
        convfeat.embed(y, 12000, model=SYNTH, layers="5")
    with pytest.raises(InputError, match="tag probabilities " + overflow):
        convfeat.tag(y, 12000, model="random")
    net = convfeat.load_model("random")
    with pytest.raises(InputError, match="signal 1: tag probabilities " + overflow):
        api.tag_batch([tone(440, 3.0), y], [12000, 12000], net)
    out = {k: np.full((1, 32), np.nan, np.float32) for k in LAYERS}      # NaN from any other cause
    with pytest.raises(InputError, match=r"features not finite: layer1…layer5 \(input peak 0.5\)"):
        api._finite_or_raise(out, LAYERS, tone(440, 1.0)[None])
    assert np.isfinite(convfeat.embed(y / 1e30, 12000, model="random")).all()


def test_bad_clips_do_not_spoil_batch_statistics_or_calibration(tmp_path):
    """In bn_mode batch a clip whose spectrogram overflows is left out of its batch, and a
    calibration sample leaves it out, so the other clips' features stay finite and ok."""
    src = tmp_path / "in"
    _write(src / "a.wav", tone(440, 2.0), 12000)
    spikes = tone(330, 2.0)
    spikes[::500] = 1e30
    _write(src / "b.wav", spikes, 12000, subtype="FLOAT")
    _write(src / "c.wav", chirp(100, 4000, 2.0), 12000)
    for spec in ("random:bn_mode=batch", "random:bn_mode=calibrated"):
        out = tmp_path / f"{spec.split('=')[1]}.h5"
        summary = extract([src], out, sets=[parse_set(spec)], batch_size=3, workers=0, calibration_size=3)
        assert [i for i, _ in summary.failed] == ["b.wav"], spec
        _, status, _, _, sets = _state(out)
        assert status == {"a.wav": "ok", "b.wav": "failed", "c.wav": "ok"}
        fs = next(iter(sets.values()))
        assert all(np.isfinite(fs.datasets[k][[0, 2]]).all() for k in LAYERS)
        if fs.calibration:
            assert sorted(fs.calibration["ids"].astype(str).tolist()) == ["a.wav", "c.wav"]


# -- 3. decoder messages say what happened ----------------------------------------------------------
def test_decoder_messages_name_the_file_and_what_happened(tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(7)
    (src / "random.mp3").write_bytes(rng.bytes(5000))
    (src / "zero.wav").write_bytes(b"")
    _write(src / "one_sample.wav", np.zeros(1, np.float32), 44100)
    _write(src / "no_samples.wav", np.zeros(0, np.float32), 44100)
    capfd.readouterr()
    summary = extract([src], tmp_path / "f.h5", sets=[parse_set("mfcc")], workers=0)
    reasons = dict(summary.failed)
    assert reasons["random.mp3"].startswith("random.mp3: not an audio file librosa/soundfile can decode (5000 bytes")
    assert "possibly a pipe" not in reasons["random.mp3"]
    assert reasons["zero.wav"] == "zero.wav: empty file (0 bytes)"
    assert reasons["one_sample.wav"] == "one_sample.wav: too short: 1 sample at 44100 Hz gives no sample at 12 kHz"
    assert reasons["no_samples.wav"] == "no_samples.wav: empty audio (0 samples)"
    err = capfd.readouterr().err
    assert "Note:" not in err and "MPEG" not in err, err          # no third-party decoder noise
    with pytest.raises(audio.AudioDecodeError, match="empty file"):
        audio.load(src / "zero.wav")
    with pytest.raises(InputError, match="too short: 1 sample at 44100 Hz"):
        api.prepare(np.zeros(1, np.float32), 44100)


def test_stderr_is_restored_after_a_quiet_decode(capfd):
    with audio.quiet_stderr():
        os.write(2, b"hidden\n")
    os.write(2, b"shown\n")
    err = capfd.readouterr().err
    assert "hidden" not in err and "shown" in err


# -- 4. long files: windows stream through the model ------------------------------------------------
def test_workers_send_the_signal_not_the_overlapping_windows(tmp_path):
    path = _write(tmp_path / "long.wav", noise(30.0, seed=3), 12000, subtype="FLOAT")
    policy = Policy(long="mean", hop_seconds=0.25, window_seconds=4.0)
    decoded = decode_item(({"id": "x", "path": "long.wav", "source": str(path), "meta": {}}, policy, False))
    assert decoded["windows"] == 105 and decoded["signal"].shape == (360_000,) and "x" not in decoded
    assert len(pickle.dumps(decoded)) < 1.1 * 360_000 * 4        # copying the windows would be 20 MB


def test_long_mean_memory_is_flat_in_the_number_of_windows(tmp_path):
    """A 20-s item cut at a 0.25-s hop (65 windows) peaks at the memory of a 4-s hop (5
    windows): the windows are a view of the signal and go through the model batch by batch."""
    path = _write(tmp_path / "in" / "long.wav", chirp(100, 4000, 20.0) + noise(20.0, seed=1), 12000,
                  subtype="FLOAT")
    convfeat.load_model(SYNTH)     # warm caches outside the measurement
    peaks, feats = {}, {}
    for hop in (4.0, 0.25):
        policy = Policy(long="mean", hop_seconds=hop, window_seconds=4.0)
        out = tmp_path / f"h{hop}.h5"
        tracemalloc.start()
        summary = extract([path.parent], out, sets=[parse_set(SYNTH)], policy=policy, batch_size=4, workers=0)
        peaks[hop] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert summary.failed == []
        _, _, _, items, sets = _state(out)
        feats[hop] = np.concatenate([sets[SYNTH].datasets[k][0] for k in LAYERS])
        assert items.columns["windows"][0] == (5 if hop == 4.0 else 65)
    assert peaks[0.25] < 1.5 * peaks[4.0] + 2e6, peaks               # 65 copied windows: +12.5 MB
    # the streamed mean equals the model on all the windows at once
    y, _ = audio.load(path)
    windows = audio.to_windows(y, 12000, Policy(long="mean", hop_seconds=0.25, window_seconds=4.0))
    out = api._forward(convfeat.load_model(SYNTH), np.array(windows))
    expected = np.concatenate([out[k] for k in LAYERS], axis=1).mean(axis=0)
    np.testing.assert_allclose(feats[0.25], expected, atol=1e-5)


# -- 5. property: whatever the bytes, every item ends ok and finite, or failed with a reason ---------
MAGIC = [b"RIFF\x24\x00\x00\x00WAVEfmt ", b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02", b"FORM\x00\x00\x00\x00AIFF",
         b".snd\x00\x00\x00\x18", b"ID3\x03\x00"]
EXTENSIONS = [".wav", ".flac", ".ogg", ".mp3", ".aiff", ".au"]


def _random_file(rng: np.random.Generator, folder: Path, i: int) -> Path:
    kind = int(rng.integers(7))
    sr = int(rng.choice([8000, 12000, 22050, 44100]))
    n = int(rng.integers(1, 3 * sr))
    if kind == 0:                                        # random bytes under an audio name
        path = folder / f"r{i:02d}{EXTENSIONS[rng.integers(len(EXTENSIONS))]}"
        path.write_bytes(rng.bytes(int(rng.integers(0, 4000))))
    elif kind == 1:                                      # a format's magic, then garbage
        j = int(rng.integers(len(MAGIC)))
        path = folder / f"m{i:02d}{EXTENSIONS[j]}"
        path.write_bytes(MAGIC[j] + rng.bytes(int(rng.integers(0, 3000))))
    elif kind == 2:                                      # a real file, truncated or with bytes flipped
        fmt, ext = [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg")][rng.integers(3)]
        import io

        buf = io.BytesIO()
        sf.write(buf, tone(440, n / sr, sr=sr), sr, format=fmt)
        data = bytearray(buf.getvalue())
        if rng.random() < 0.5:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 12))):
                data[int(rng.integers(0, min(len(data), 64)))] = int(rng.integers(256))
        path = folder / f"t{i:02d}{ext}"
        path.write_bytes(bytes(data))
    else:                                                # extreme sample values in a float WAV
        f32 = np.finfo(np.float32)
        y = {3: lambda: np.where(rng.random(n) < 0.01, rng.choice([-1e30, 1e30], n), 0.1).astype(np.float32),
             4: lambda: np.full(n, f32.smallest_subnormal * rng.integers(1, 100), np.float32),
             5: lambda: (f32.max * np.where(np.arange(n) % 2, -1, 1)).astype(np.float32),
             6: lambda: np.full(n, rng.choice([0.5, -1.0, 1e10, 3e38]), np.float32)}[kind]()
        channels = int(rng.integers(1, 3))
        path = _write(folder / f"x{i:02d}.wav", np.stack([y] * channels, axis=1), sr, subtype="FLOAT")
    return path


@pytest.mark.parametrize("seed, workers, with_mfcc", [(0, 1, False), (1, 0, True)])
def test_property_every_item_ends_ok_and_finite_or_failed_with_a_reason(tmp_path, seed, workers, with_mfcc):
    rng = np.random.default_rng(seed)
    src = tmp_path / "in"
    src.mkdir()
    _write(src / "anchor.wav", tone(440, 1.0), 12000)        # at least one good item
    paths = [_random_file(rng, src, i) for i in range(24)]
    assert len(paths) == 24
    out = tmp_path / "f.h5"
    sets = [parse_set(SYNTH)] + ([parse_set("mfcc")] if with_mfcc else [])
    summary = extract([src], out, sets=sets, policy=SHORT, workers=workers)
    ids, status, reason, items, sets = _state(out)
    assert summary.processed == len(ids) == 25 and status["anchor.wav"] == "ok"
    failed = dict(summary.failed)
    for i, item_id in enumerate(ids):
        if status[item_id] == "ok":
            assert item_id not in failed and items.columns["windows"][i] >= 1
            for fs in sets.values():
                assert fs.done[i] and all(np.isfinite(v[i]).all() for v in fs.datasets.values()), item_id
        else:
            assert status[item_id] == "failed" and reason[item_id].strip() and failed[item_id] == reason[item_id]
            assert not any(fs.done[i] for fs in sets.values())
    assert set(failed) == {i for i in ids if status[i] == "failed"}
    # exit code 1 iff something failed (MFCC only: the same decode path, quicker)
    res = runner.invoke(app, ["extract", str(src), "-o", str(tmp_path / "cli.h5"), "-m", "mfcc", "--workers", "0",
                              "--quiet"])
    cli_status = _state(tmp_path / "cli.h5")[1]
    assert res.exit_code == (1 if "failed" in cli_status.values() else 0), res.output
    good = runner.invoke(app, ["extract", str(src / "anchor.wav"), "-o", str(tmp_path / "good.h5"), "-m", "mfcc",
                               "--workers", "0", "--quiet"])
    assert good.exit_code == 0 and set(_state(tmp_path / "good.h5")[1].values()) == {"ok"}
