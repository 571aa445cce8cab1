"""Helpers of bench/extract.py: generated audio, and memory of `convfeat extract` in a child process.

Not a benchmark itself (bench/run.py skips files starting with ``_``)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SR_SRC = 44100


def make_song(seconds: float, seed: int) -> np.ndarray:
    """A 44.1-kHz stereo "song" ``(samples, 2)`` float32: a chirp, a gated tone and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR_SRC)) / SR_SRC
    f0 = rng.uniform(80, 400)
    y = 0.3 * np.sin(2 * np.pi * (f0 * t + 40 * t ** 2 / seconds))
    y += 0.2 * np.sin(2 * np.pi * rng.uniform(500, 3000) * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    y += 0.05 * rng.standard_normal(t.size)
    return np.stack([y, np.roll(y, 100)], axis=1).astype(np.float32)


def make_collection(root: Path, n: int, seconds: float, fmt: str = "flac") -> list[Path]:
    """``n`` generated songs as 44.1-kHz stereo ``fmt`` files (flac: 16-bit; mp3: libsndfile's
    default encoder settings) in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / f"song{i:03d}.{fmt}"
        sf.write(p, make_song(seconds, i), SR_SRC, format=fmt.upper())
        paths.append(p)
    return paths


def make_long_file(path: Path, minutes: float, sr: int = SR_SRC, fmt: str = "FLAC") -> None:
    """A stereo ``fmt`` file (FLAC, or WAV: 16-bit, 635 MB for an hour) of ``minutes`` at ``sr``
    (tones and a little noise), written minute by minute."""
    block = 60 * sr
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, format=fmt, subtype="PCM_16") as f:
        for k in range(int(np.ceil(minutes))):
            n = block if k + 1 <= minutes else int(round((minutes - k) * block))
            t = (np.arange(n) + k * block) / sr
            y = 0.3 * np.sin(2 * np.pi * (220 + 5 * k) * t) + 0.02 * rng.standard_normal(n)
            f.write(np.stack([y, y], axis=1).astype(np.float32))


def _check(returncode: int, stderr: str) -> None:
    if returncode != 0:
        raise RuntimeError(f"convfeat exited with {returncode}: {stderr[-2000:]}")


def max_rss_of(argv: list[str], cwd: Path = ROOT) -> dict:
    """``convfeat ARGV`` run as a grandchild of a small launcher process, which reports
    ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak resident memory of the largest
    single process of the run (the main process or a decode worker).  The launcher keeps this
    process's own memory out of the figure (Linux carries a forking parent's peak into a child).
    Returns ``max_rss_mib``, ``wall_s``, ``returncode``, ``stderr_tail``; a failed run raises
    :class:`RuntimeError` with the end of its stderr."""
    launcher = ("import resource, subprocess, sys\n"
                "code = 'import sys; from convfeat.cli import main; sys.argv = [\"convfeat\"] + sys.argv[1:]; main()'\n"
                "rc = subprocess.call([sys.executable, '-c', code] + sys.argv[1:])\n"
                "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
                "sys.exit(rc)")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", launcher] + argv, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    _check(res.returncode, res.stderr)
    kib = [int(line.split()[1]) for line in res.stdout.splitlines() if line.startswith("MAXRSS")]
    return {"argv": argv, "returncode": res.returncode, "wall_s": round(wall, 2),
            "max_rss_mib": round(kib[0] / 1024, 1) if kib else None, "stderr_tail": res.stderr[-2000:]}


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
    ``processes`` (how many were seen) and ``returncode``; a failed run raises
    :class:`RuntimeError` with the end of its stderr.
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
    _check(proc.returncode, streams.get("err", ""))
    main_hwm = [int(line.split()[1]) for line in streams.get("out", "").splitlines() if line.startswith("VMHWM")]
    if main_hwm:
        hwm[proc.pid] = max(hwm.get(proc.pid, 0), main_hwm[0])
    return {"argv": argv, "returncode": proc.returncode, "wall_s": round(wall, 2),
            "tree_peak_mib": round(tree_peak / 1024, 1), "hwm_sum_mib": round(sum(hwm.values()) / 1024, 1),
            "main_hwm_mib": round(hwm.get(proc.pid, 0) / 1024, 1), "processes": len(hwm),
            "others_hwm_mib": sorted((round(v / 1024, 1) for k, v in hwm.items() if k != proc.pid), reverse=True),
            "stderr_tail": streams.get("err", "")[-2000:]}


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
        make_long_file(wav, hour_minutes, fmt="WAV")
        print(f"\n--long mean on one {hour_minutes:g}-min 44.1-kHz stereo 16-bit WAV "
              f"({wav.stat().st_size / 2**20:.0f} MiB); convfeat extract -m {model} --long mean --hop H")
        print(f"{'hop s':>6s} {'windows':>8s} {'tree peak MiB':>14s} {'sum VmHWM MiB':>14s} {'main MiB':>9s} "
              f"{'wall s':>8s} {'s/window':>9s}")
        for hop in hops:
            out = tmp / f"hour_hop{hop:g}.h5"
            r = run_measured(["extract", str(wav), "-o", str(out), "-m", model, "--long", "mean", "--hop", f"{hop:g}",
                              "--quiet"])
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


