"""Benchmark `convfeat extract` against a naive loop and the model alone.

    python bench/extract.py [--files 48] [--seconds 30] [--hour-minutes 60]

Everything is measured in this one run on generated audio (44.1-kHz stereo
FLAC "songs": chirps, tones and noise), with the random-weights model (same
architecture and cost as choi2017, no weights needed):

* naive     a per-file loop a user might write: ``librosa.load(path, sr=12000)``
            then a batch-of-1 forward of the first 29 s.
* model     the model alone: batched forwards of pre-made 12-kHz windows.
* extract   ``convfeat.extraction`` end to end (decode, resample, batch, infer,
            write the HDF5 file), with 1 and 2 decoding workers.

Throughput is audio seconds per wall second (x real time).  Then the peak
resident memory of ``convfeat extract`` on one long file (default 1 hour),
with ``--long first`` and ``--long mean``, measured in a child process.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR_SRC = 44100


def make_song(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR_SRC)) / SR_SRC
    f0 = rng.uniform(80, 400)
    y = 0.3 * np.sin(2 * np.pi * (f0 * t + 40 * t ** 2 / seconds))
    y += 0.2 * np.sin(2 * np.pi * rng.uniform(500, 3000) * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    y += 0.05 * rng.standard_normal(t.size)
    return np.stack([y, np.roll(y, 100)], axis=1).astype(np.float32)


def make_collection(root: Path, n: int, seconds: float) -> list[Path]:
    paths = []
    for i in range(n):
        p = root / f"song{i:03d}.flac"
        sf.write(p, make_song(seconds, i), SR_SRC)
        paths.append(p)
    return paths


def make_long_file(path: Path, minutes: float) -> None:
    block = 60 * 22050
    with sf.SoundFile(path, "w", samplerate=22050, channels=2, format="FLAC") as f:
        for k in range(int(minutes)):
            t = (np.arange(block) + k * block) / 22050
            y = 0.3 * np.sin(2 * np.pi * (220 + 5 * k) * t) + 0.02 * np.sin(2 * np.pi * 3000 * t)
            f.write(np.stack([y, y], axis=1).astype(np.float32))


def naive_loop(paths, model) -> float:
    import librosa
    import torch

    t0 = time.perf_counter()
    for p in paths:
        y, _ = librosa.load(p, sr=12000, mono=True)
        y = np.resize(y, 348000) if y.size < 348000 else y[:348000]
        with torch.no_grad():
            model(torch.from_numpy(y[None].astype(np.float32)))
    return time.perf_counter() - t0


def model_only(windows: np.ndarray, model, batch_size: int) -> float:
    import torch

    with torch.inference_mode():
        model(torch.from_numpy(windows[:batch_size]))  # warm-up
        t0 = time.perf_counter()
        for s in range(0, len(windows), batch_size):
            model(torch.from_numpy(windows[s:s + batch_size]))
    return time.perf_counter() - t0


def peak_rss_of_extract(path: Path, out: Path, long: str) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of `convfeat extract` in a fresh child process."""
    # VmHWM is this process's own peak; ru_maxrss would carry over the forking
    # parent's peak across exec on Linux.
    code = ("import sys; from convfeat.cli import main; sys.argv=['convfeat']+sys.argv[1:];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, "extract", str(path), "-o", str(out), "-m", "random",
                          "--long", long, "--quiet"], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    return int(res.stdout.strip().splitlines()[-1]) / 1024, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--hour-minutes", type=float, default=60.0, help="length of the long file (0: skip)")
    args = ap.parse_args()

    import torch

    from convfeat import api
    from convfeat.constants import WINDOW_SECONDS
    from convfeat.extraction import extract, parse_set
    from convfeat.models import load_model

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    model = load_model("random")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "songs").mkdir()
        paths = make_collection(tmp / "songs", args.files, args.seconds)
        audio_s = args.files * min(args.seconds, WINDOW_SECONDS)  # what every method turns into features
        rows = []
        t_naive = naive_loop(paths, model)
        rows.append(("naive loop (librosa.load + batch of 1)", t_naive))
        windows = np.stack([api.prepare(sf.read(p, dtype="float32")[0], SR_SRC) for p in paths])
        t_model = model_only(windows, model, args.batch_size)
        rows.append((f"model only (pre-made windows, batch {args.batch_size})", t_model))
        for workers in (0, 1, 2):
            out = tmp / f"f{workers}.h5"
            t0 = time.perf_counter()
            s = extract([tmp / "songs"], out, sets=[parse_set("random")], batch_size=args.batch_size,
                        workers=workers)
            assert not s.failed and s.processed == args.files
            rows.append((f"convfeat extract (workers {workers}, batch {args.batch_size})",
                         time.perf_counter() - t0))
        print(f"\n{args.files} files x {args.seconds:g} s, 44.1 kHz stereo FLAC; "
              f"{audio_s / 60:.1f} min of audio turned into features\n")
        print(f"{'method':52s} {'seconds':>8s} {'x real time':>12s} {'vs naive':>9s} {'vs model':>9s}")
        for name, sec in rows:
            print(f"{name:52s} {sec:8.2f} {audio_s / sec:12.1f} {t_naive / sec:8.2f}x {t_model / sec:8.1%}")
        if args.hour_minutes > 0:
            long_path = tmp / "long.flac"
            make_long_file(long_path, args.hour_minutes)
            print(f"\nlong file: {args.hour_minutes:g} min, 22.05 kHz stereo FLAC "
                  f"({long_path.stat().st_size / 2**20:.0f} MiB)")
            for long in ("first", "mean"):
                rss, wall = peak_rss_of_extract(long_path, tmp / f"long_{long}.h5", long)
                print(f"  convfeat extract --long {long:5s}: peak RSS {rss:7.0f} MiB, {wall:6.1f} s")


if __name__ == "__main__":
    main()
