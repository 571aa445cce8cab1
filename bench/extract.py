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

``--rss`` measures memory against collection size and window count instead
(``convfeat extract`` in a child process, default options, ``-m random``):

* short files  the peak RSS of the whole process tree (the main process and
               its decoding workers) for 100, 1,000 and 3,000 generated 4-s
               44.1-kHz stereo FLAC files (``--rss-counts``): flat when the
               largest/smallest ratio is near 1.
* long file    ``--long mean`` on one generated 1-hour 44.1-kHz stereo WAV
               (635 MB) at ``--hop 29`` (124 windows) and ``--hop 1`` (3,572).

Each with its wall time.  Two peaks are given: ``tree`` (the largest sum of
VmRSS over the tree, polled every 50 ms) and ``hwm`` (the sum of each
process's own VmHWM, an upper bound: the processes need not peak together).
``--json PATH`` writes every figure measured to PATH as JSON as well.

    python bench/extract.py --rss --files 0 --hour-minutes 0 --json rss.json
"""
from __future__ import annotations

import argparse
import json
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


def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process now running (from /proc)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            out[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _status_kib(pid: int, keys=("VmRSS", "VmHWM")) -> dict:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {line.split(":")[0]: int(line.split()[1]) for line in lines if line.split(":")[0] in keys}


def run_measured(argv: list[str], interval: float = 0.05, cwd: Path = ROOT) -> dict:
    """Run ``convfeat ARGV`` in a child process and poll the memory of its process tree.

    Returns ``wall_s``, ``tree_peak_mib`` (largest sum of VmRSS over the child and
    all its descendants at one poll), ``hwm_sum_mib`` (the sum over every process
    seen of its VmHWM, the main process's read at its exit), ``main_hwm_mib``,
    ``processes`` (how many were seen) and ``returncode``.
    """
    code = ("import sys; from convfeat.cli import main; sys.argv=['convfeat']+sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code or 0\nelse:\n    rc = 0\n"
            "print('VMHWM', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
            "sys.exit(rc)")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd)
    import threading

    streams = {}
    readers = [threading.Thread(target=lambda k=k, f=f: streams.__setitem__(k, f.read()), daemon=True)
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    hwm: dict[int, int] = {}
    tree_peak = 0
    while proc.poll() is None:
        ppid = _ppids()
        tree, frontier = {proc.pid}, [proc.pid]
        while frontier:
            parent = frontier.pop()
            kids = [p for p, pp in ppid.items() if pp == parent and p not in tree]
            tree.update(kids)
            frontier += kids
        total = 0
        for pid in tree:
            st = _status_kib(pid)
            total += st.get("VmRSS", 0)
            hwm[pid] = max(hwm.get(pid, 0), st.get("VmHWM", 0))
        tree_peak = max(tree_peak, total)
        time.sleep(interval)
    wall = time.perf_counter() - t0
    for r in readers:
        r.join()
    main_hwm = [int(line.split()[1]) for line in streams.get("out", "").splitlines() if line.startswith("VMHWM")]
    if main_hwm:
        hwm[proc.pid] = max(hwm.get(proc.pid, 0), main_hwm[0])
    return {"argv": argv, "returncode": proc.returncode, "wall_s": round(wall, 2),
            "tree_peak_mib": round(tree_peak / 1024, 1), "hwm_sum_mib": round(sum(hwm.values()) / 1024, 1),
            "main_hwm_mib": round(hwm.get(proc.pid, 0) / 1024, 1), "processes": len(hwm),
            "others_hwm_mib": sorted((round(v / 1024, 1) for k, v in hwm.items() if k != proc.pid), reverse=True),
            "stderr_tail": streams.get("err", "")[-2000:]}


def make_wav_hour(path: Path, minutes: float = 60.0, sr: int = SR_SRC) -> None:
    """A 44.1-kHz stereo 16-bit WAV of ``minutes`` (635 MB for an hour), written minute by minute."""
    block = 60 * sr
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, subtype="PCM_16") as f:
        for k in range(int(round(minutes))):
            t = (np.arange(block) + k * block) / sr
            y = 0.3 * np.sin(2 * np.pi * (220 + 5 * k) * t) + 0.02 * np.sin(2 * np.pi * 3000 * t)
            f.write(np.stack([y, y], axis=1).astype(np.float32))


def rss_section(tmp: Path, counts: list[int], hour_minutes: float, hops: list[float], model: str) -> dict:
    """The ``--rss`` measurements (see the module docstring); prints a table, returns the figures."""
    result: dict = {"model": model, "short_files": [], "long_file": []}
    if counts:
        songs = tmp / "short"
        songs.mkdir()
        t0 = time.perf_counter()
        paths = make_collection(songs, max(counts), 4.0)
        print(f"\nmemory against collection size: {max(counts)} generated 4-s 44.1-kHz stereo FLAC files "
              f"({time.perf_counter() - t0:.0f} s to write); convfeat extract -m {model}, default options")
        print(f"{'files':>6s} {'tree peak MiB':>14s} {'sum VmHWM MiB':>14s} {'main MiB':>9s} {'procs':>6s} "
              f"{'wall s':>8s} {'files/s':>8s}")
        for n in counts:
            listing = tmp / f"list{n}.txt"
            listing.write_text("".join(f"{p}\n" for p in paths[:n]))
            r = run_measured(["extract", str(listing), "-o", str(tmp / f"short{n}.h5"), "-m", model, "--quiet"])
            if r["returncode"] != 0:
                raise RuntimeError(r["stderr_tail"])
            r["files"] = n
            result["short_files"].append(r)
            print(f"{n:6d} {r['tree_peak_mib']:14.0f} {r['hwm_sum_mib']:14.0f} {r['main_hwm_mib']:9.0f} "
                  f"{r['processes']:6d} {r['wall_s']:8.1f} {n / r['wall_s']:8.1f}")
        peaks = [r["tree_peak_mib"] for r in result["short_files"]]
        hwms = [r["hwm_sum_mib"] for r in result["short_files"]]
        result["short_files_ratio"] = {"tree_peak": round(max(peaks) / min(peaks), 3),
                                       "hwm_sum": round(max(hwms) / min(hwms), 3)}
        print(f"largest/smallest: tree peak {result['short_files_ratio']['tree_peak']:.2f}, "
              f"sum VmHWM {result['short_files_ratio']['hwm_sum']:.2f}")
    if hour_minutes > 0 and hops:
        wav = tmp / "hour.wav"
        make_wav_hour(wav, hour_minutes)
        print(f"\n--long mean on one {hour_minutes:g}-min 44.1-kHz stereo 16-bit WAV "
              f"({wav.stat().st_size / 2**20:.0f} MiB); convfeat extract -m {model} --long mean --hop H")
        print(f"{'hop s':>6s} {'windows':>8s} {'tree peak MiB':>14s} {'sum VmHWM MiB':>14s} {'main MiB':>9s} "
              f"{'wall s':>8s} {'s/window':>9s}")
        for hop in hops:
            out = tmp / f"hour_hop{hop:g}.h5"
            r = run_measured(["extract", str(wav), "-o", str(out), "-m", model, "--long", "mean", "--hop", f"{hop:g}",
                              "--quiet"])
            if r["returncode"] != 0:
                raise RuntimeError(r["stderr_tail"])
            import h5py

            with h5py.File(out, "r") as h:
                windows = int(h["items/windows"][0])
            r.update(hop_s=hop, windows=windows, minutes=hour_minutes)
            result["long_file"].append(r)
            print(f"{hop:6g} {windows:8d} {r['tree_peak_mib']:14.0f} {r['hwm_sum_mib']:14.0f} "
                  f"{r['main_hwm_mib']:9.0f} {r['wall_s']:8.1f} {r['wall_s'] / windows:9.3f}")
    for r in result["short_files"] + result["long_file"]:
        r.pop("stderr_tail", None)
    return result


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
    ap.add_argument("--rss", action="store_true", help="measure peak memory against collection size and "
                    "window count (see above; about 15 min on 2 cores)")
    ap.add_argument("--rss-counts", default="100,1000,3000", help="collection sizes for --rss")
    ap.add_argument("--rss-minutes", type=float, default=60.0, help="length of the --rss long file (0: skip)")
    ap.add_argument("--rss-hops", default="29,1", help="--hop values for the --rss long file")
    ap.add_argument("--rss-model", default="random", help="feature set for --rss (random: choi2017's cost)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    report: dict = {}

    import torch

    from convfeat import api
    from convfeat.constants import WINDOW_SECONDS
    from convfeat.extraction import extract, parse_set
    from convfeat.models import load_model

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    report["machine"] = {"cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.files > 0:
            model = load_model("random")
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
            report["throughput"] = {"files": args.files, "seconds": args.seconds, "audio_s": audio_s,
                                    "rows": [{"method": n, "wall_s": round(sec, 3)} for n, sec in rows]}
        if args.hour_minutes > 0:
            long_path = tmp / "long.flac"
            make_long_file(long_path, args.hour_minutes)
            print(f"\nlong file: {args.hour_minutes:g} min, 22.05 kHz stereo FLAC "
                  f"({long_path.stat().st_size / 2**20:.0f} MiB)")
            report["long_file_main_rss"] = []
            for long in ("first", "mean"):
                rss, wall = peak_rss_of_extract(long_path, tmp / f"long_{long}.h5", long)
                print(f"  convfeat extract --long {long:5s}: peak RSS {rss:7.0f} MiB, {wall:6.1f} s")
                report["long_file_main_rss"].append({"long": long, "main_hwm_mib": round(rss, 1),
                                                     "wall_s": round(wall, 2)})
        if args.rss:
            counts = [int(x) for x in args.rss_counts.split(",") if x.strip()]
            hops = [float(x) for x in args.rss_hops.split(",") if x.strip()]
            report["rss"] = rss_section(tmp, counts, args.rss_minutes, hops, args.rss_model)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
