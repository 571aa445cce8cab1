"""Benchmark the compact convnet: the reference forward pass against the fast exact path.

    python bench/model.py [--json PATH] [--repeats 7] [--batches 1,16] [--threads 1,2]
                          [--model random] [--bn-mode instance]

Everything is measured in this one run, on 29-s windows (348,000 samples at 12 kHz) of
generated audio, with the same module: ``model(y, reference=True)`` (the straightforward
computation, tests/test_port.py checks it against NumPy) and ``model(y)`` (the fast path of
convfeat/models/fast.py), both under ``torch.no_grad()``:

* throughput  for each torch thread count and batch size, the two paths run alternately
              (``--repeats`` times each, order swapped every round); medians of the wall
              time, as x real time (seconds of audio per second) and as the ratio
              reference / fast (also the median of the per-round ratios);
* per layer   the reference's time per stage (front end; per block convolution, batch
              normalisation, pooling + ELU + mean; head), medians, batch 16;
* fast stages the fast path's time per stage (compiled kernels, FFT, convolutions);
* exactness   max |fast - reference| / (max |reference| + 1e-6) per output, batch 16, in
              every BN mode the model has (calibrated on 4 clips);
* compile     whether the kernels came from the cache or were compiled in this run, and
              the first call's time.

The machine's other load is reported (load average before and after): other processes share
the cores, so compare the ratios (measured in the same run), not absolute figures across runs.
``--json PATH`` writes every figure to PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from convfeat.constants import LAYER_NAMES, SAMPLE_RATE, WINDOW_SAMPLES  # noqa: E402
from convfeat.models import fast, load_model  # noqa: E402

SECONDS = WINDOW_SAMPLES / SAMPLE_RATE


def signals(n: int, seed: int = 0) -> torch.Tensor:
    """n different 29-s windows: chirps, tones, noise, clicks."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    out = []
    for i in range(n):
        f0, f1 = rng.uniform(60, 3000, 2)
        y = 0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * SECONDS)))
        y += 0.2 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) * (i % 2)
        y += rng.normal(0, 0.02 * (1 + i % 3), t.size)
        y[:: int(SAMPLE_RATE * rng.uniform(0.2, 0.6))] += 0.5
        out.append(y)
    return torch.from_numpy(np.stack(out).astype(np.float32))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.no_grad()
def throughput(model, threads, batches, repeats) -> list:
    rows = []
    for th in threads:
        torch.set_num_threads(th)
        for b in batches:
            y = signals(b, seed=b)
            model(y), model(y, reference=True)                      # warm both paths
            ref, fst = [], []
            for r in range(repeats):
                if r % 2 == 0:
                    ref.append(timed(lambda: model(y, reference=True)))
                    fst.append(timed(lambda: model(y)))
                else:
                    fst.append(timed(lambda: model(y)))
                    ref.append(timed(lambda: model(y, reference=True)))
            mr, mf = float(np.median(ref)), float(np.median(fst))
            row = {"threads": th, "batch": b, "reference_s": mr, "fast_s": mf,
                   "reference_x_realtime": b * SECONDS / mr, "fast_x_realtime": b * SECONDS / mf,
                   "speedup": mr / mf, "speedup_median_of_rounds": float(np.median(np.array(ref) / np.array(fst))),
                   "reference_all_s": ref, "fast_all_s": fst}
            rows.append(row)
            print(f"  threads {th}  batch {b:2d}  reference {mr * 1e3:8.1f} ms ({row['reference_x_realtime']:7.0f}x rt)"
                  f"   fast {mf * 1e3:7.1f} ms ({row['fast_x_realtime']:7.0f}x rt)   speedup {row['speedup']:5.2f}x"
                  f"  (per-round median {row['speedup_median_of_rounds']:.2f}x)", flush=True)
    return rows


@torch.no_grad()
def reference_per_layer(model, threads, batch, repeats) -> dict:
    """Median seconds of each stage of the reference computation."""
    out = {}
    y = signals(batch, seed=1)
    mode = model.bn_mode
    for th in threads:
        torch.set_num_threads(th)
        times: dict[str, list] = {}

        def tick(name, t0):
            times.setdefault(name, []).append(time.perf_counter() - t0)
            return time.perf_counter()

        for _ in range(repeats):
            t = time.perf_counter()
            x = model.spectrogram(y, mode)
            t = tick("frontend", t)
            for k, blk in enumerate(model.blocks, 1):
                z = blk.conv(x)
                t = tick(f"block{k}.conv", t)
                z = blk.bn(z, mode)
                t = tick(f"block{k}.bn", t)
                if model.config.feature_point == "pre_pool":
                    z = nn.functional.elu(z)
                    z.mean(dim=(2, 3))
                    x = nn.functional.max_pool2d(z, blk.pool)
                else:
                    x = nn.functional.elu(nn.functional.max_pool2d(z, blk.pool))
                    x.mean(dim=(2, 3))
                t = tick(f"block{k}.pool+elu+mean", t)
            if model.head is not None:
                torch.sigmoid(model.head(x.amax(dim=(2, 3))))
                tick("head", t)
        med = {k: float(np.median(v)) for k, v in times.items()}
        med["total"] = float(sum(med.values()))
        out[str(th)] = med
    return out


@torch.no_grad()
def fast_stages(model, threads, batch, repeats) -> dict:
    """Median seconds per stage of the fast path (kernels by name, FFT, convolutions)."""
    out = {}
    y = signals(batch, seed=1)
    par, rfft, conv = fast._parallel, torch.fft.rfft, nn.functional.conv2d
    times: dict[str, float] = {}

    def add(name, t0):
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0

    def p(fn, n, *a, **kw):
        t0 = time.perf_counter()
        par(fn, n, *a, **kw)
        add("kernel " + fn.__name__, t0)

    def f(*a, **k):
        t0 = time.perf_counter()
        r = rfft(*a, **k)
        add("torch.fft.rfft", t0)
        return r

    def c(*a, **k):
        t0 = time.perf_counter()
        r = conv(*a, **k)
        add("conv2d (blocks 2+)", t0)
        return r

    fast._parallel, torch.fft.rfft, nn.functional.conv2d = p, f, c
    try:
        for th in threads:
            torch.set_num_threads(th)
            runs = []
            for _ in range(repeats):
                times.clear()
                t0 = time.perf_counter()
                model(y)
                total = time.perf_counter() - t0
                runs.append(dict(times, total=total))
            keys = runs[0].keys()
            med = {k: float(np.median([r.get(k, 0.0) for r in runs])) for k in keys}
            med["other (python, log10, small ops)"] = med["total"] - sum(v for k, v in med.items() if k != "total")
            out[str(th)] = med
    finally:
        fast._parallel, torch.fft.rfft, nn.functional.conv2d = par, rfft, conv
    return out


@torch.no_grad()
def exactness(model_name, weights, bn_modes, batch) -> dict:
    y = signals(batch, seed=7)
    out = {}
    for mode in bn_modes:
        m = load_model(model_name, weights=weights, bn_mode="instance" if mode == "calibrated" else mode)
        if mode == "calibrated":
            m.calibrate(signals(4, seed=3).numpy(), batch_size=4)
        got, ref = m(y), m(y, reference=True)
        out[mode] = {k: float((got[k].double() - ref[k].double()).abs().max() / (ref[k].double().abs().max() + 1e-6))
                     for k in ref}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--model", default="random", help="random (default: the architecture's cost, no weights "
                                                      "needed), choi2017, choi2017-k2, convfeat-synth, ...")
    ap.add_argument("--weights", default=None, help="weight file of --model (default: the installed one)")
    ap.add_argument("--bn-mode", default=None)
    args = ap.parse_args()
    threads = [int(v) for v in args.threads.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    load0 = os.getloadavg()

    t0 = time.perf_counter()
    ok = fast.available()
    build_s = time.perf_counter() - t0
    model = load_model(args.model, weights=args.weights, bn_mode=args.bn_mode)
    if model.bn_mode == "calibrated":
        model.calibrate(signals(4, seed=3).numpy(), batch_size=4)
    torch.set_num_threads(threads[0])
    with torch.no_grad():
        first_s = timed(lambda: model(signals(1)))
        second_s = timed(lambda: model(signals(1)))
    compile_info = {"available": ok, "reason": fast.unavailable_reason(),
                    "compiled_in_this_run_s": fast.compile_seconds(), "build_or_load_s": build_s,
                    "first_call_s": first_s, "second_call_s": second_s}
    print(f"model {args.model} (bn_mode {model.bn_mode}), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, load average {load0[0]:.2f}")
    print(f"kernels: {'available' if ok else 'UNAVAILABLE: ' + str(fast.unavailable_reason())}; "
          f"compiled in this run: {fast.compile_seconds():.1f} s (0 = cache hit), build/load {build_s:.2f} s; "
          f"first call {first_s * 1e3:.0f} ms, second {second_s * 1e3:.0f} ms (batch 1)")

    print("throughput (29-s windows; wall-clock medians, reference and fast alternated):")
    rows = throughput(model, threads, batches, args.repeats)
    big = max(batches)
    print(f"reference per stage (batch {big}, medians, ms):")
    per_layer = reference_per_layer(model, threads, big, max(3, args.repeats // 2))
    for th, med in per_layer.items():
        print(f"  threads {th}: " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in med.items()))
    print(f"fast path per stage (batch {big}, medians, ms):")
    stages = fast_stages(model, threads, big, max(3, args.repeats // 2))
    for th, med in stages.items():
        print(f"  threads {th}: " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in med.items()))
    torch.set_num_threads(threads[-1])
    exact = exactness(args.model, args.weights, list(model.config.allowed_bn_modes), big)
    print(f"exactness (batch {big}; max |fast - ref| / (max |ref| + 1e-6) per output):")
    for mode, errs in exact.items():
        print(f"  {mode:10s} " + "  ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    load1 = os.getloadavg()
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} ({os.cpu_count()} CPUs)")
    if args.json:
        record = {"command": " ".join(sys.argv), "model": args.model, "bn_mode": model.bn_mode,
                  "window_seconds": SECONDS, "torch": torch.__version__, "cpus": os.cpu_count(),
                  "load_average_before": load0, "load_average_after": load1, "kernels": compile_info,
                  "throughput": rows, "reference_per_stage_s": per_layer, "fast_per_stage_s": stages,
                  "exactness": exact, "layers": list(LAYER_NAMES)}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
