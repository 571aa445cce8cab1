"""Benchmark and study reproduction for `convfeat evaluate`.

    python bench/evaluate.py                  # time the full 31-subset sweep on gtzan_genre (+ mfcc, mfcc+12345)
    python bench/evaluate.py --scaler auto    # ... with the grid the study's code actually ran (scaler never on)
    python bench/evaluate.py --reproduce docs/study_reproduction.json   # every study figure, study + nested

Needs the study's features in ../shared/paper (set CONVFEAT_SHARED); skips with the reason otherwise.
The features are imported into convfeat files first (convfeat.store.importer.import_study), then evaluated
with the same code as `convfeat evaluate`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("CONVFEAT_SHARED", ROOT.parent / "shared")).expanduser()
KEY_ROWS = "12345,1,2,3,4,5"   # + mfcc and mfcc+12345 (added below)


def _paper() -> Path | None:
    p = SHARED / "paper"
    if not (p / "results.csv").exists():
        print(f"skipped: needs {p} (set CONVFEAT_SHARED to the shared/ folder)")
        return None
    return p


def time_sweep(jobs: int, scaler: str) -> None:
    from convfeat import evaluation as ev
    from convfeat.store.importer import import_study

    paper = _paper()
    if paper is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = import_study(paper, tmp, ["gtzan_genre"])["gtzan_genre"]
        t_import = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = ev.run([info["features"]], info["labels"], label_column="label", layers="all", protocol="study",
                     scaler=scaler, n_jobs=jobs, out_dir=Path(tmp) / "report", plots=True)
        seconds = time.perf_counter() - t0
    res = out["results"]
    grid = ev.grid_for("svm", "classification", "study", scaler)
    best = max(res, key=lambda r: r.score)
    print(f"gtzan_genre (1000 items x up to 280 features): {len(res)} feature sets x {len(grid)} grid points x 10 folds "
          f"= {len(res) * len(grid) * 10} SVC fits, protocol study, scaler {scaler}, {jobs} processes")
    print(f"import {t_import:.1f} s; sweep + report {seconds:.1f} s ({seconds / 60:.2f} min) on {ev.cpu_count()} "
          f"cores (1-min load average at the end: {os.getloadavg()[0]:.2f}; other processes share these cores)")
    print(f"12345: {next(r.score for r in res if r.feature.endswith('/12345') and '+' not in r.feature):.4f}; "
          f"best: {best.feature} {best.score:.4f}")


def reproduce(out_json: Path, jobs: int, parts: list[str], emo_rows: str = KEY_ROWS) -> None:
    """Every figure of the four tasks: study protocol (as run, and the grid as described) and nested CV."""
    from convfeat import evaluation as ev
    from convfeat.store.importer import STUDY_TASKS, import_study

    paper = _paper()
    if paper is None:
        return
    doc = json.loads(out_json.read_text()) if out_json.exists() else {}
    emo = ["emoMusic_a", "emoMusic_v"]
    gtzan = ["gtzan_genre", "gtzan_speechmusic"]
    runs = {
        # name: (tasks, protocol, scaler, layers).  "auto" = the grid the study's code ran (scaler never on);
        # the nested runs use that same grid, so study vs nested isolates the selection bias.
        "study": (list(STUDY_TASKS), "study", "auto", "all"),
        "nested": (gtzan, "nested", "off", "all"),
        "nested_emo": (emo, "nested", "off", emo_rows),
        "study_both": (gtzan, "study", "both", KEY_ROWS),
        "study_both_emo": (emo, "study", "both", emo_rows),
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = import_study(paper, tmp)
        for part in parts:
            tasks, protocol, scaler, layers = runs[part]
            for task in tasks:
                key = f"{part}:{task}"
                if key in doc:
                    continue
                info = files[task]
                t0 = time.perf_counter()
                kw = {"label_column": info["columns"][0]} if info["task"] == "classification" else \
                    {"target_columns": info["columns"]}
                features = ("choi2017,mfcc" + (",mfcc+choi2017/12345" if "12345" in layers.split(",") and
                                               layers == KEY_ROWS else "")) if layers != "all" else None
                out = ev.run([info["features"]], info["labels"], features=features, layers=layers, protocol=protocol,
                             scaler=scaler, n_jobs=jobs, plots=False, **kw)
                rows = {}
                for r in out["results"]:
                    name = r.feature.replace("choi2017/", "")
                    if name.startswith("mfcc+") and name != "mfcc+12345":
                        continue  # mfcc+<subset> other than the study's mfcc+12345
                    rows[name] = {"score": r.score, "mean": float(r.fold_scores[r.primary].mean()),
                                  "std": r.summary()["std"], "ci95": r.summary()["ci95"],
                                  "params": [ev._describe_point(p) for p in r.params],
                                  "not_converged": r.capped,
                                  "second_metric": {m: r.summary(m)["score"] for m in r.metrics[1:]}}
                doc[key] = {"task": task, "protocol": protocol, "scaler": scaler, "splits": out["splits"].description,
                            "seconds": time.perf_counter() - t0, "rows": rows}
                out_json.write_text(json.dumps(ev._json_safe(doc), indent=1))
                print(f"{key}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s", flush=True)


def table(in_json: Path) -> str:
    """Markdown: published vs reproduced (study protocol), the grid as described, and nested CV."""
    import pandas as pd

    paper = _paper()
    doc = json.loads(in_json.read_text())
    pub = pd.read_csv(paper / "results.csv")
    lines = ["| task | features | published | study protocol (as run) | Δ | study protocol, scaler really on/off "
             "| nested CV (same grid as the study), mean ± std |", "|---|---|---|---|---|---|---|"]
    for task in ("gtzan_genre", "gtzan_speechmusic", "emoMusic_a", "emoMusic_v"):
        rows = pub[pub.task == task]
        for _, row in rows.iterrows():
            feat = row.features
            get = lambda part: doc.get(f"{part}:{task}", {}).get("rows", {}).get(feat)  # noqa: E731
            st = get("study")
            both = get("study_both") or get("study_both_emo")
            nest = get("nested") or get("nested_emo")
            d = st["score"] - row.score if st else None
            lines.append(f"| {task} | {feat} | {row.score:.4f} | {st['score']:.4f} | {d:+.4f} | "
                         if st else f"| {task} | {feat} | {row.score:.4f} | – | – | ")
            lines[-1] += (f"{both['score']:.4f} | " if both else "– | ")
            lines[-1] += (f"{nest['score']:.4f} ± {nest['std']:.4f} |" if nest else "– |")
    return "\n".join(lines)


def main() -> None:
    from convfeat.evaluation import cpu_count

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=cpu_count())
    ap.add_argument("--scaler", default="both", choices=["auto", "both", "on", "off"],
                    help="both = the grid as SPEC §4 states it (64 points, default); auto = as the study's code ran")
    ap.add_argument("--reproduce", type=Path, help="write every reproduced figure to this JSON file (resumable)")
    ap.add_argument("--emo-rows", default=KEY_ROWS, help="layer subsets of the emoMusic runs with the grid as "
                    "described and nested CV (their linear SVR points are slow); mfcc is always included")
    ap.add_argument("--table", type=Path, help="print the Markdown table of a --reproduce JSON file")
    ap.add_argument("--parts", default="study,nested,study_both_emo,study_both,nested_emo")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
    elif args.reproduce:
        reproduce(args.reproduce, args.jobs, [p for p in args.parts.split(",") if p], args.emo_rows)
    else:
        time_sweep(args.jobs, args.scaler)


if __name__ == "__main__":
    main()
