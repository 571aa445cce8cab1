"""Benchmark `convfeat extract` against the model alone, the decoder alone and a naive loop.

    python bench/extract.py [--files 160] [--mp3-files 32] [--seconds 30] [--batch-size 8] [--hour-minutes 60]
                            [--resampler] [--cores] [--precision] [--rss] [--json FILE]
    python bench/extract.py --files 4 --hour-minutes 2 --resampler --cores --precision   # smoke test
    python bench/extract.py --files 160 --hour-minutes 0 --cluster local:2              # + the Dask overhead

Everything is measured in this one run, on generated 44.1-kHz stereo "songs" (chirps, tones,
noise) written as 16-bit FLAC and as MP3 (libsndfile's encoder), with the random-weights model
(choi2017's architecture and cost, no weights needed).  Throughput is seconds of audio turned
into features (the first 29 s of each file) per wall second: x real time.

* reference   the reference module (``model(x, reference=True)``), pre-made 12-kHz windows,
              batches of ``--batch-size``, torch's default threads (one per core);
* fast        the fast exact path (``model(x)``), same windows, batches and threads;
              and on one core (one torch thread), which enters the bound below;
* decode      ``convfeat.audio.read_signal`` alone (decode, mix-down, resample to 12 kHz with
              soxr HQ; only the first 29 s + 1 s), per file, in this process: one core;
* naive       ``librosa.load(path, sr=12000)`` + a batch-of-1 forward of the reference module;
* extract     ``convfeat.extract`` end to end (decode workers, batching, inference, HDF5
              file) with ``--workers auto``, on the FLAC and on the MP3 files (median of
              ``--repeats`` runs, each into a new file, like every other timing); and on one file,
              its fixed cost (worker start-up, model, file), which a small ``--files`` makes
              dominant (the FLAC ratio to the bound is also given without it);
* bound       the pipeline bound ``cores / (decode per file + fast model per clip, each on one
              core)``: what a perfect use of every core would give;
* per layer   the reference's time per stage and the fast path's (bench/model.py), batch 16;
* memory      peak RSS (``ru_maxrss`` of the largest process) of ``convfeat extract`` in a child
              process on one ``--hour-minutes`` 44.1-kHz stereo FLAC, ``--long first`` and
              ``--long mean``.

Then the issue-#11 targets (fast >= 4x reference, extract >= 85 % of the bound on FLAC, extract
>= 4x naive and >= 1,000x real time, RSS < 1 GiB), each PASS or MISS.  Optional sections:

* ``--resampler``  soxr LQ/MQ/HQ/VHQ: resampling time per file (one core) and the largest
                   feature difference from HQ (the default), relative to each layer's scale;
* ``--cores``      extract end to end with several (workers, torch threads) pairs, and what
                   ``--workers auto`` picks (convfeat/extraction/cores.py);
* ``--precision``  bf16 autocast against fp32: time and largest feature difference per layer
                   (random weights, and the published choi2017 weights when ../shared has them);
                   this and ``--resampler`` use the first 32 FLAC files;
* ``--rss``        memory against collection size and window count (bench/_common.py);
* ``--handoff``    extract end to end with the decoded signals handed back through shared memory
                   (the default, convfeat/extraction/handoff.py) and pickled through the process
                   pool's pipe (the way before it), alternating runs; and the hand-off alone: a
                   29-s signal returned from a worker process both ways.

Other processes share the cores of a busy machine: compare ratios measured in the same run, and
run the real measurement on a quiet machine.  ``--json FILE`` writes every figure.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import SR_SRC, make_collection, make_long_file, max_rss_of, rss_section

ESC50_BF16 = (
    "convfeat weights fetch choi2017 --from ../shared/models/choi2017/weights_tensorflow.hdf5",
    "convfeat datasets manifest esc50 ../shared/datasets/esc50-fold4 -o esc.csv",
    "convfeat extract esc.csv -o esc.h5 -m choi2017",
    "convfeat extract esc.csv -o esc.h5 -m choi2017:name=choi2017-bf16 --precision bf16",
    "convfeat evaluate esc.h5 -l esc.csv --label-column label --group-column group -k 5 --inner-folds 3 "
    "-f choi2017,choi2017-bf16 --baselines choi2017 -o esc-bf16/")
SUBSET = 32   # files the --resampler and --precision sections use
TARGETS = {"fast_vs_reference": 4.0, "extract_flac_vs_bound": 0.85, "extract_vs_naive": 4.0,
           "extract_x_realtime": 1000.0, "hour_rss_mib": 1024.0}


def _bench_model():
    """bench/model.py as a module (its per-stage timers)."""
    spec = importlib.util.spec_from_file_location("bench_model", ROOT / "bench" / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(fn, repeats: int = 1) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out))


def forward_all(model, windows: np.ndarray, batch: int, reference: bool) -> None:
    import torch

    with torch.no_grad():
        for s in range(0, len(windows), batch):
            model(torch.from_numpy(windows[s:s + batch]), reference=reference)


def decode_per_file(paths: list[Path], repeats: int) -> float:
    """Median seconds to decode + resample one file (the first window's worth), this process."""
    from convfeat import audio

    return timed(lambda: [audio.read_signal(p, audio.Policy()) for p in paths], repeats) / len(paths)


def naive_loop(paths: list[Path], model) -> float:
    import librosa
    import torch

    t0 = time.perf_counter()
    for p in paths:
        y, _ = librosa.load(p, sr=12000, mono=True)
        y = np.resize(y, 348000) if y.size < 348000 else y[:348000]
        with torch.no_grad():
            model(torch.from_numpy(y[None].astype(np.float32)), reference=True)
    return time.perf_counter() - t0


def run_extract(folder: Path, out: Path, batch: int, workers="auto", threads: int | None = None,
                precision: str = "fp32", repeats: int = 1) -> float:
    """Median wall seconds of ``repeats`` runs of ``convfeat.extract`` on ``folder``, each into a
    new file (``out`` with the run's number)."""
    from convfeat.extraction import extract, parse_set
    from convfeat.extraction.cores import torch_threads

    walls = []
    for r in range(max(1, repeats)):
        target = out.with_name(f"{out.stem}-{r}{out.suffix}")
        with torch_threads(threads):
            t0 = time.perf_counter()
            s = extract([folder], target, sets=[parse_set("random")], batch_size=batch, workers=workers,
                        device="cpu", precision=precision)
            walls.append(time.perf_counter() - t0)
        if s.failed or s.processed != s.total:
            raise RuntimeError(f"extract failed: {s.failed[:3]}")
    return float(np.median(walls))


def rel_diff(a: dict, b: dict) -> dict:
    """Per layer: max |a - b| / max |b|."""
    return {k: float(np.abs(np.asarray(a[k], np.float64) - b[k]).max() / (np.abs(b[k]).max() + 1e-12)) for k in b}


def features(model, windows: np.ndarray, batch: int = 8) -> dict:
    import torch

    from convfeat.constants import LAYER_NAMES

    outs = {k: [] for k in LAYER_NAMES}
    with torch.no_grad():
        for s in range(0, len(windows), batch):
            res = model(torch.from_numpy(np.ascontiguousarray(windows[s:s + batch])))
            for k in LAYER_NAMES:
                outs[k].append(res[k].float().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


# -- sections ---------------------------------------------------------------------------------
def main_section(args, tmp: Path, cores: int) -> dict:
    import torch

    from convfeat import audio
    from convfeat.constants import WINDOW_SECONDS
    from convfeat.models import load_model

    model = load_model("random")
    n, n3 = args.files, max(1, min(args.mp3_files, args.files))
    flac = make_collection(tmp / "flac", n, args.seconds, "flac")
    mp3 = make_collection(tmp / "mp3", n3, args.seconds, "mp3")
    clip_s = min(args.seconds, WINDOW_SECONDS)          # audio each method turns into features, per file
    windows = np.stack([audio.read_windows(p)[0][0] for p in flac])
    b, reps = args.batch_size, args.repeats
    forward_all(model, windows[:b], b, False), forward_all(model, windows[:b], b, True)   # warm up
    t_ref = timed(lambda: forward_all(model, windows, b, True), reps)
    t_fast = timed(lambda: forward_all(model, windows, b, False), reps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_fast1 = timed(lambda: forward_all(model, windows, b, False), reps)
    torch.set_num_threads(threads)
    dec = {"flac": decode_per_file(flac, reps), "mp3": decode_per_file(mp3, reps)}
    t_naive = naive_loop(flac, model)
    t_ext = {f: run_extract(tmp / f, tmp / f"{f}.h5", b, repeats=reps) for f in ("flac", "mp3")}
    t_one = run_extract(flac[0], tmp / "one.h5", b, repeats=reps)  # fixed cost: worker start-up, model, file, one item
    per_clip1 = t_fast1 / n
    rows = {"reference module": (t_ref, n), "fast model": (t_fast, n), "fast model, 1 core": (t_fast1, n),
            "decode + resample FLAC, 1 core": (dec["flac"] * n, n), "decode + resample MP3, 1 core": (dec["mp3"] * n3, n3),
            "naive loop (librosa.load + reference, batch 1)": (t_naive, n),
            "extract FLAC (--workers auto)": (t_ext["flac"], n), "extract MP3 (--workers auto)": (t_ext["mp3"], n3),
            "extract of 1 FLAC file (its fixed cost)": (t_one, 1)}
    bound = {f: cores / (dec[f] + per_clip1) * clip_s for f in dec}   # x real time
    for f, k in (("flac", n), ("mp3", n3)):
        rows[f"pipeline bound {f.upper()} ({cores} cores)"] = (k * clip_s / bound[f], k)
    print(f"\n{n} FLAC and {n3} MP3 files x {args.seconds:g} s, 44.1-kHz stereo; batch {b}; torch threads {threads}")
    print(f"{'':50s} {'files':>6s} {'seconds':>8s} {'x real time':>12s} {'ms/file':>8s}")
    for name, (sec, k) in rows.items():
        print(f"{name:50s} {k:6d} {sec:8.3f} {k * clip_s / sec:12.1f} {sec / k * 1e3:8.1f}")
    xrt = {name: k * clip_s / sec for name, (sec, k) in rows.items()}
    ratios = {"fast_vs_reference": t_ref / t_fast,
              "extract_flac_vs_naive": xrt["extract FLAC (--workers auto)"] / xrt[
                  "naive loop (librosa.load + reference, batch 1)"],
              "extract_flac_vs_bound": xrt["extract FLAC (--workers auto)"] / bound["flac"],
              "extract_mp3_vs_bound": xrt["extract MP3 (--workers auto)"] / bound["mp3"],
              "extract_flac_vs_bound_without_fixed_cost":
                  n * clip_s / max(t_ext["flac"] - t_one, 1e-9) / bound["flac"]}
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    return {"files": n, "mp3_files": n3, "seconds": args.seconds, "clip_s": clip_s, "batch": b, "threads": threads,
            "wall_s": {k: v[0] for k, v in rows.items()}, "x_realtime": xrt,
            "decode_ms_per_file_1core": {k: v * 1e3 for k, v in dec.items()},
            "fast_ms_per_clip_1core": per_clip1 * 1e3, "extract_fixed_cost_s": t_one, "bound_x_realtime": bound,
            "ratios": ratios}


def per_layer_section(args, cores: int) -> dict:
    from convfeat.models import load_model

    bm = _bench_model()
    model = load_model("random")
    threads = sorted({1, cores})
    ref = bm.reference_per_layer(model, threads, 16, max(1, args.repeats))
    fst = bm.fast_stages(model, threads, 16, max(1, args.repeats))
    print("\nper stage, batch 16, medians (ms):")
    for th in ref:
        print(f"  reference, {th} thread(s): " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in ref[th].items()))
        print(f"  fast,      {th} thread(s): " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in fst[th].items()))
    return {"reference_s": ref, "fast_s": fst}


def memory_section(args, tmp: Path) -> list:
    path = tmp / "hour.flac"
    make_long_file(path, args.hour_minutes)
    print(f"\npeak RSS (largest process, ru_maxrss) of convfeat extract on one {args.hour_minutes:g}-min "
          f"44.1-kHz stereo FLAC ({path.stat().st_size / 2**20:.0f} MiB):")
    out = []
    for long in ("first", "mean"):
        r = max_rss_of(["extract", str(path), "-o", str(tmp / f"hour_{long}.h5"), "-m", "random", "--long", long,
                        "--quiet"])
        r.pop("stderr_tail")
        r.update(long=long, minutes=args.hour_minutes)
        out.append(r)
        print(f"  --long {long:5s}: {r['max_rss_mib']:7.0f} MiB, {r['wall_s']:6.1f} s")
    return out


def resampler_section(args, tmp: Path) -> dict:
    """soxr presets: resampling time per file on one core; feature difference from HQ."""
    import soundfile as sf

    from convfeat import audio
    from convfeat.constants import RESAMPLER_QUALITIES, SAMPLE_RATE
    from convfeat.models import load_model

    paths = sorted((tmp / "flac").glob("*.flac"))[:SUBSET]
    monos = [audio.mixdown(sf.read(p, dtype="float32", frames=31 * SR_SRC, always_2d=True)[0]) for p in paths]
    models = {"random": load_model("random"), "convfeat-synth": load_model("convfeat-synth")}
    win = {q: np.stack([audio.to_windows(audio.resample(m, SR_SRC, SAMPLE_RATE, q), SAMPLE_RATE)[0] for m in monos])
           for q in RESAMPLER_QUALITIES}
    ref = {name: features(m, win["HQ"]) for name, m in models.items()}
    out = {}
    print(f"\nresampler (soxr, 44.1 -> 12 kHz, 31 s mono per file, one core; {len(paths)} files):")
    for q in RESAMPLER_QUALITIES:
        t = timed(lambda q=q: [audio.resample(m, SR_SRC, SAMPLE_RATE, q) for m in monos], args.repeats) / len(monos)
        diffs = {name: max(rel_diff(features(m, win[q]), ref[name]).values()) for name, m in models.items()}
        out[q] = {"ms_per_file": t * 1e3, "max_rel_feature_diff_vs_HQ": diffs}
        print(f"  {q:4s} {t * 1e3:7.2f} ms/file   max feature difference vs HQ (of layer scale): "
              + ", ".join(f"{n} {d:.1e}" for n, d in diffs.items()))
    return out


def _return_signal(job):   # a stand-in decode task for handoff_section: a 29-s 12-kHz signal
    return {"id": job, "signal": np.full(349200, job, np.float32)}


def handoff_section(args, tmp: Path) -> dict:
    """Shared-memory hand-off of decoded signals against pickling, end to end and alone."""
    from convfeat.extraction import decoding

    audio_s = args.files * min(args.seconds, 29.0)
    walls = {True: [], False: []}
    try:
        for r in range(max(1, args.repeats)):
            for shared in (False, True):
                decoding.SHARED_MEMORY = shared
                walls[shared].append(run_extract(tmp / "flac", tmp / f"handoff_{shared}_{r}.h5", args.batch_size))
    finally:
        decoding.SHARED_MEMORY = True
    ext = {k: float(np.median(v)) for k, v in walls.items()}
    # the hand-off alone: 200 signals from one worker, this process's CPU time per signal
    n, alone = 200, {}
    for shared in (False, True):
        decoding.SHARED_MEMORY = shared
        decoding.decode_item, real = _return_signal, decoding.decode_item
        stream = decoding.decoded_stream(list(range(n)), 1, pool=decoding.start_decoders(1))
        try:
            first = next(stream)
            c0 = time.process_time()
            got = [first["signal"][0]] + [d["signal"][0] for d in stream]
            alone[shared] = (time.process_time() - c0) / (n - 1) * 1e3
        finally:
            decoding.decode_item, decoding.SHARED_MEMORY = real, True
        assert got == list(range(n)), "signals came back wrong"
    print(f"\nhand-off of decoded signals ({args.files} FLAC files, --workers auto, median of {args.repeats}):")
    print(f"  pickled through the pipe: {ext[False]:7.2f} s {audio_s / ext[False]:8.1f}x real time; "
          f"this process {alone[False]:.2f} ms CPU per 29-s signal")
    print(f"  shared memory (default):  {ext[True]:7.2f} s {audio_s / ext[True]:8.1f}x real time; "
          f"this process {alone[True]:.2f} ms CPU per 29-s signal")
    print(f"  shared / pickled: {ext[False] / ext[True]:.3f}x end to end")
    return {"extract_wall_s": {"pickled": ext[False], "shared": ext[True]},
            "runs_s": {"pickled": walls[False], "shared": walls[True]},
            "run_cpu_ms_per_signal": {"pickled": alone[False], "shared": alone[True]},
            "speedup": ext[False] / ext[True]}


def cores_section(args, tmp: Path, cores: int) -> dict:
    from convfeat.extraction.cores import plan_cores

    auto = plan_cores(cores, "cpu", ["random"], args.files)
    pairs = [tuple(int(v) for v in p.split(":")) for p in args.pairs.split(",")]
    audio_s = args.files * min(args.seconds, 29.0)
    print(f"\nworkers x torch threads, extract FLAC end to end (auto on {cores} cores = {auto[0]} workers, "
          f"{auto[1]} thread(s)):")
    out = []
    for w, th in pairs:
        wall = run_extract(tmp / "flac", tmp / f"cores_{w}_{th}.h5", args.batch_size, workers=w, threads=th,
                           repeats=args.repeats)
        out.append({"workers": w, "threads": th, "wall_s": wall, "x_realtime": audio_s / wall,
                    "auto": (w, th) == auto})
        print(f"  workers {w} threads {th}: {wall:7.2f} s {audio_s / wall:9.1f}x real time"
              f"{'   <- auto' if (w, th) == auto else ''}")
    return {"auto": list(auto), "rows": out}


def precision_section(args, tmp: Path) -> dict:
    from convfeat import audio
    from convfeat.models import load_model
    from convfeat.models.precision import autocast

    paths = sorted((tmp / "flac").glob("*.flac"))[:SUBSET]
    windows = np.stack([audio.read_windows(p)[0][0] for p in paths])
    shared = Path(os.environ.get("CONVFEAT_SHARED", ROOT.parent / "shared"))
    names = ["random"] + (["choi2017"] if (shared / "models/choi2017/weights_tensorflow.hdf5").exists() else [])
    out = {}
    print(f"\nprecision: bf16 autocast (reference module) vs fp32 (fast path), {len(windows)} clips:")
    for name in names:
        weights = str(shared / "models/choi2017/weights_tensorflow.hdf5") if name == "choi2017" else None
        model = load_model(name, weights=weights)
        t32 = timed(lambda model=model: features(model, windows, args.batch_size), args.repeats)
        fp32 = features(model, windows, args.batch_size)
        with autocast("cpu", "bf16"):
            features(model, windows[:1], 1)
            t16 = timed(lambda model=model: features(model, windows, args.batch_size), args.repeats)
            bf16 = features(model, windows, args.batch_size)
        d = rel_diff(bf16, fp32)
        out[name] = {"fp32_s": t32, "bf16_s": t16, "max_rel_diff": d}
        print(f"  {name}: fp32 {t32:.2f} s, bf16 {t16:.2f} s; max |bf16 - fp32| / max |fp32|: "
              + ", ".join(f"{k} {v:.1e}" for k, v in d.items()))
    print("  effect on one evaluation (ESC-50 fold-4 set in ../shared), the commands:")
    for line in ESC50_BF16:
        print("    " + line)
    return out


def targets(report: dict) -> dict:
    m = report.get("main", {})
    got = {}
    if m:
        got["fast_vs_reference"] = m["ratios"]["fast_vs_reference"]
        got["extract_flac_vs_bound"] = m["ratios"]["extract_flac_vs_bound"]
        got["extract_vs_naive"] = m["ratios"]["extract_flac_vs_naive"]
        got["extract_x_realtime"] = m["x_realtime"]["extract FLAC (--workers auto)"]
    if report.get("memory"):
        got["hour_rss_mib"] = max(r["max_rss_mib"] for r in report["memory"])
    out = {}
    print("\ntargets (issue #11; meaningful on a quiet machine only):")
    for k, v in got.items():
        ok = v < TARGETS[k] if k == "hour_rss_mib" else v >= TARGETS[k]
        out[k] = {"value": v, "target": TARGETS[k], "pass": bool(ok)}
        print(f"  {k:24s} {v:10.2f}  target {'<' if k == 'hour_rss_mib' else '>='} {TARGETS[k]:g}  "
              f"{'PASS' if ok else 'MISS'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=160, help="generated FLAC files (0: skip the main table)")
    ap.add_argument("--mp3-files", type=int, default=32, help="generated MP3 files (encoding is slow: ~1 s each)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--batch-size", type=int, default=8, help="windows per batch (extract's default: 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timings are medians of this many runs")
    ap.add_argument("--hour-minutes", type=float, default=60.0, help="length of the long file (0: skip)")
    ap.add_argument("--resampler", action="store_true", help="time soxr presets, feature difference from HQ")
    ap.add_argument("--cores", action="store_true", help="extract with several (workers, threads) pairs")
    ap.add_argument("--pairs", default="1:1,2:1,1:2,2:2,3:1,0:2", help="WORKERS:THREADS,... for --cores")
    ap.add_argument("--precision", action="store_true", help="bf16 autocast against fp32")
    ap.add_argument("--rss", action="store_true", help="memory against collection size and window count")
    ap.add_argument("--rss-counts", default="100,1000,3000")
    ap.add_argument("--rss-minutes", type=float, default=60.0)
    ap.add_argument("--rss-hops", default="29,1")
    ap.add_argument("--handoff", action="store_true", help="extract with signals handed back through shared "
                    "memory against pickled, alternating runs; and the hand-off alone")
    ap.add_argument("--cluster", default=None, metavar="local:N",
                    help="also time `extract --cluster local:N` against the single-process run on --files "
                         "songs (bench/cluster.py: cold and warm cluster, overhead)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = ap.parse_args()
    if args.cluster is not None and not (args.cluster == "local" or args.cluster.startswith("local:")):
        ap.error("--cluster takes local or local:N (a LocalCluster of N worker processes)")

    import torch

    from convfeat.extraction.cores import available_cores

    cores = available_cores()
    load0 = os.getloadavg()
    report: dict = {"command": " ".join(sys.argv), "machine": {
        "cores": cores, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "load_average_before": load0}}
    print(f"machine: {cores} cores, torch {torch.__version__} ({report['machine']['cpu_capability']}), "
          f"{torch.get_num_threads()} threads, load average {load0[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.files > 0:
            report["main"] = main_section(args, tmp, cores)
            report["per_layer"] = per_layer_section(args, cores)
        if args.hour_minutes > 0:
            report["memory"] = memory_section(args, tmp)
        if args.resampler and args.files > 0:
            report["resampler"] = resampler_section(args, tmp)
        if args.cores and args.files > 0:
            report["cores"] = cores_section(args, tmp, cores)
        if args.handoff and args.files > 0:
            report["handoff"] = handoff_section(args, tmp)
        if args.precision and args.files > 0:
            report["precision"] = precision_section(args, tmp)
        if args.rss:
            counts = [int(x) for x in args.rss_counts.split(",") if x.strip()]
            hops = [float(x) for x in args.rss_hops.split(",") if x.strip()]
            report["rss"] = rss_section(tmp, counts, args.rss_minutes, hops, "random")
    if args.cluster is not None:
        import cluster as cluster_bench   # bench/cluster.py, beside this file

        n = args.cluster.partition(":")[2] or str(cores)
        print()
        report["cluster"] = cluster_bench.main(["--files", str(max(args.files, 8)), "--seconds", str(args.seconds),
                                                "--workers", n, "--batch-size", str(args.batch_size),
                                                "--repeats", str(args.repeats)])
    report["targets"] = targets(report)
    report["machine"]["load_average_after"] = os.getloadavg()
    print(f"load average after {report['machine']['load_average_after'][0]:.2f} ({cores} cores)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
