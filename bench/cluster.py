"""Benchmark `convfeat extract --cluster local:N` against the single-process `extract`.

    python bench/cluster.py [--files 48] [--seconds 30] [--workers 2] [--repeats 3] [--model random] [--json PATH]

Everything is measured in this one run, on one generated collection (44.1-kHz stereo FLAC
"songs", as bench/extract.py makes them):

* single        ``convfeat.extraction.extract`` in this process (``--single-workers``, default auto
                decoding processes, torch's default threads: every core), after a one-file
                run has imported torch: the reference.
* cluster cold  ``extract_on_cluster(cluster="local:N")`` as the command line runs it: the
                LocalCluster is started, its N worker processes (one thread each) import
                torch and load the model, the tasks run, the parts are merged.
* cluster warm  the same on a LocalCluster already running whose workers have already loaded
                the model (one small run first): what a long run pays per item.

Throughput is audio seconds per wall second (x real time); the overhead of a cluster run is
``single throughput / cluster throughput - 1`` (0.10: the cluster run takes 10 % longer); the
single and warm figures are medians of ``--repeats`` runs.  The cold run's extra time over the
warm one is a start-up paid once per run (printed in seconds); the warm overhead is what every
further item pays, the figure a long run converges to.  The
features of every run are compared with the single-process file (max |difference|).  On 2
cores expect parity, not speed-up: the point is the overhead.  ``--scaling 1,2,4`` adds warm
runs with that many workers.  ``--json PATH`` writes every figure to PATH as JSON as well.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract import make_collection  # noqa: E402  (bench/extract.py: the generated songs)


def max_difference(a: Path, b: Path) -> float:
    """Largest |difference| between the features of two files with the same items and sets."""
    from convfeat.store.file import read_state

    _, items_a, sets_a = read_state(a)
    _, items_b, sets_b = read_state(b)
    if list(items_a.columns["id"]) != list(items_b.columns["id"]):
        return float("inf")
    return max(float(np.abs(fs.datasets[d] - sets_b[name].datasets[d]).max())
               for name, fs in sets_a.items() for d in fs.datasets)


def measure(label: str, run, audio_seconds: float, repeats: int = 1) -> dict:
    """Median wall time of ``repeats`` calls of ``run(r)`` (r = 0, 1, ...: each writes its own file)."""
    walls = []
    for r in range(repeats):
        t0 = time.perf_counter()
        summary = run(r)
        walls.append(time.perf_counter() - t0)
    wall = float(np.median(walls))
    speed = audio_seconds / wall
    spread = f"  [{min(walls):.2f}-{max(walls):.2f} s over {repeats}]" if repeats > 1 else ""
    print(f"{label:<28} {wall:8.2f} s  {speed:8.1f}x real time  ({summary.processed} items){spread}", flush=True)
    return {"label": label, "wall_s": round(wall, 3), "walls_s": [round(w, 3) for w in walls],
            "x_real_time": round(speed, 2), "items": summary.processed}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=48, help="generated songs (default 48)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each song (default 30 s)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster (default 2)")
    ap.add_argument("--items-per-task", type=int, default=0,
                    help="items per task (default: enough for 4 tasks per worker)")
    ap.add_argument("--single-workers", default="auto",
                    help="decoding processes of the single run (default auto, as convfeat extract)")
    ap.add_argument("--model", default="random", help="feature set (default random: choi2017's cost, no weights)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--scaling", default="", help="also warm runs with these worker counts, e.g. 1,2,4")
    ap.add_argument("--repeats", type=int, default=3,
                    help="the single and the warm runs are medians of this many (default 3); the cold run is one")
    ap.add_argument("--json", type=Path, help="write the figures to this JSON file too")
    args = ap.parse_args(argv)
    try:
        import distributed
    except ImportError:
        print('skipped: needs the optional package distributed (pip install "convfeat[dask]")')
        return {}

    from convfeat.extraction import extract, extract_on_cluster, parse_set

    sets = [parse_set(args.model)]
    per_task = args.items_per_task or max(1, -(-args.files // (4 * args.workers)))
    result = {"files": args.files, "seconds": args.seconds, "model": args.model, "workers": args.workers,
              "items_per_task": per_task, "batch_size": args.batch_size, "runs": []}
    with tempfile.TemporaryDirectory(prefix="convfeat-bench-cluster-") as tmp:
        tmp = Path(tmp)
        songs = tmp / "songs"
        songs.mkdir()
        make_collection(songs, args.files, args.seconds)
        audio = args.files * args.seconds
        print(f"{args.files} generated {args.seconds:g}-s songs ({audio / 60:.1f} min of audio), -m {args.model}, "
              f"{per_task} items per task", flush=True)

        extract(sorted(songs.iterdir())[:1], tmp / "warmup.h5", sets, workers=0)   # torch imported, kernels loaded
        single = measure("single process", lambda r: extract([songs], tmp / f"single{r}.h5", sets,
                                                             batch_size=args.batch_size,
                                                             workers=(args.single_workers if args.single_workers == "auto"
                                                                      else int(args.single_workers))),
                         audio, args.repeats)
        result["runs"].append(single)
        cold = measure(f"cluster local:{args.workers} cold",
                       lambda r: extract_on_cluster([songs], tmp / "cold.h5", sets, cluster=f"local:{args.workers}",
                                                  items_per_task=per_task, batch_size=args.batch_size), audio)
        cold["max_difference"] = max_difference(tmp / "single0.h5", tmp / "cold.h5")
        result["runs"].append(cold)
        counts = [args.workers] + [int(c) for c in args.scaling.split(",") if c.strip() and int(c) != args.workers]
        for n in counts:
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as cluster:
                # a first run of one-item tasks, so that every worker imports torch and loads the model
                extract_on_cluster(sorted(songs.iterdir())[:2 * n], tmp / f"warmup{n}.h5", sets,
                                   cluster=cluster.scheduler_address, items_per_task=1, batch_size=args.batch_size)
                warm = measure(f"cluster local:{n} warm",
                               lambda r, n=n: extract_on_cluster([songs], tmp / f"warm{n}-{r}.h5", sets,
                                                                 cluster=cluster.scheduler_address,
                                                                 items_per_task=per_task,
                                                                 batch_size=args.batch_size), audio, args.repeats)
                warm["workers"] = n
                warm["max_difference"] = max_difference(tmp / "single0.h5", tmp / f"warm{n}-0.h5")
                result["runs"].append(warm)
    for run in result["runs"][1:]:
        run["overhead"] = round(run["wall_s"] / single["wall_s"] - 1, 3)
        print(f"overhead of {run['label']}: {100 * run['overhead']:+.1f} % "
              f"(max |feature difference| {run['max_difference']:.2g})")
    warm_same = next(r for r in result["runs"] if r.get("workers") == args.workers)
    # A cold run pays a fixed start-up (cluster, worker processes, torch, model) once; what a
    # longer run pays per item is the warm overhead.
    result["startup_s"] = round(cold["wall_s"] - warm_same["wall_s"], 3)
    result["per_item_overhead"] = warm_same["overhead"]
    print(f"cold start-up: {result['startup_s']:.1f} s once per run; per-item overhead (warm): "
          f"{100 * result['per_item_overhead']:+.1f} % (target < 15 %)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
