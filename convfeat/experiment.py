"""One-command experiments: dataset → manifest → features → evaluation → report.

An experiment is a TOML file::

    [experiment]
    name = "esc50-fold4"
    work = "runs/esc50-fold4"          # manifest + feature file (large, not committed)
    report = "docs/results/esc50-fold4" # the report (small, committed)

    [dataset]
    adapter = "esc50"                  # `convfeat datasets list`
    root = "${CONVFEAT_SHARED}/datasets/esc50-fold4"
    options = {}                       # adapter options (-O KEY=VALUE)

    [[extract]]                        # one or more passes, each with its length policy
    sets = ["choi2017", "choi2017:bn_mode=calibrated", "random", "mfcc"]
    short = "repeat"                   # repeat | pad
    long = "first"                     # first | mean
    batch_size = 8

    [evaluate]
    features = ["choi2017", "random", "mfcc", "mfcc+choi2017"]   # default: every set
    layers = "12345"
    label = "label"                    # or targets = ["arousal"], or tags = "tags"
    fold_column = "fold"               # or split_column / group_column, or n_folds = 10
    protocol = "nested"                # nested | study
    head = "svm"                       # svm | linear
    baselines = ["random", "mfcc"]

Relative paths are relative to the current directory; ``${VAR}`` is expanded,
with ``CONVFEAT_SHARED`` defaulting to ``../shared``.  Every step is skipped
when its output is current: the manifest when the dataset settings are
unchanged, each extract pass resumes (finished items are skipped), and the
evaluation when neither the feature file nor the evaluation settings changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from .extract import Policy, extract, parse_set
from .weights import sha256_of

STAMP = "stamp.json"


class ExperimentError(ValueError):
    """The experiment file is incomplete or inconsistent."""


def _expand(value: str) -> str:
    env = dict(os.environ)
    env.setdefault("CONVFEAT_SHARED", "../shared")
    out = value
    for key, val in env.items():
        out = out.replace("${" + key + "}", val)
    if "${" in out:
        raise ExperimentError(f"unknown variable in {value!r}")
    return os.path.expanduser(out)


def load_experiment(path: str | Path) -> dict:
    """Read and validate an experiment TOML file → dict with defaults filled in."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"experiment file not found: {path}")
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML ({exc})") from None
    for section in ("experiment", "dataset", "extract", "evaluate"):
        if section not in cfg:
            raise ExperimentError(f"{path}: missing [{section}] section")
    exp = cfg["experiment"]
    if "name" not in exp:
        raise ExperimentError(f"{path}: [experiment] needs a name")
    exp.setdefault("work", f"runs/{exp['name']}")
    exp.setdefault("report", f"reports/{exp['name']}")
    ds = cfg["dataset"]
    if "adapter" not in ds or "root" not in ds:
        raise ExperimentError(f"{path}: [dataset] needs adapter and root")
    ds.setdefault("options", {})
    passes = cfg["extract"] if isinstance(cfg["extract"], list) else [cfg["extract"]]
    for p in passes:
        if not p.get("sets"):
            raise ExperimentError(f"{path}: every [[extract]] pass needs sets = [...]")
    cfg["extract"] = passes
    ev = cfg["evaluate"]
    if not any(k in ev for k in ("label", "targets", "tags")):
        raise ExperimentError(f"{path}: [evaluate] needs label, targets or tags")
    return cfg


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _stamps(work: Path) -> dict:
    p = work / STAMP
    return json.loads(p.read_text()) if p.is_file() else {}


def _save_stamps(work: Path, stamps: dict) -> None:
    tmp = work / (STAMP + ".tmp")
    tmp.write_text(json.dumps(stamps, indent=2))
    os.replace(tmp, work / STAMP)


def run_experiment(path: str | Path, *, jobs: int | None = None, workers: int = 1, force: bool = False,
                   log=None, progress: bool = False) -> dict:
    """Run (or bring up to date) the experiment in ``path``; returns what was done and where.

    Returns a dict: ``manifest``, ``features`` and ``report`` paths, ``steps``
    (step name → "ran" / "skipped"), and ``report_files``.
    """
    from . import datasets, readback
    from . import evaluate as ev_mod

    log = log or (lambda msg: None)
    cfg = load_experiment(path)
    exp, ds, passes, ev = cfg["experiment"], cfg["dataset"], cfg["extract"], cfg["evaluate"]
    work = Path(_expand(exp["work"]))
    report_dir = Path(_expand(exp["report"]))
    work.mkdir(parents=True, exist_ok=True)
    stamps = {} if force else _stamps(work)
    steps = {}

    # 1. manifest
    manifest = work / "manifest.csv"
    root = Path(_expand(ds["root"])).resolve()
    ds_key = _digest({"adapter": ds["adapter"], "root": str(root), "options": ds["options"]})
    if manifest.is_file() and stamps.get("manifest") == ds_key:
        steps["manifest"] = "skipped"
    else:
        log(f"[manifest] {ds['adapter']} {root}")
        datasets.write_manifest(ds["adapter"], root, manifest, **ds["options"])
        stamps["manifest"] = ds_key
        stamps.pop("evaluate", None)
        _save_stamps(work, stamps)
        steps["manifest"] = "ran"

    # 2. extraction passes (each resumable)
    features_file = work / "features.h5"
    set_names = []
    for k, p in enumerate(passes):
        policy = Policy(short=p.get("short", "repeat"), long=p.get("long", "first"),
                        hop_seconds=float(p.get("hop", 29.0)))
        specs = [parse_set(s) for s in p["sets"]]
        set_names += [s.resolved_name() for s in specs]
        log(f"[extract {k + 1}/{len(passes)}] {', '.join(s.resolved_name() for s in specs)} "
            f"(short={policy.short}, long={policy.long})")
        summary = extract([manifest], features_file, specs, policy, batch_size=int(p.get("batch_size", 8)),
                          workers=workers, calibration_size=int(p.get("calibration_size", 256)),
                          calibration_seed=int(p.get("calibration_seed", 0)), progress=progress,
                          command=f"convfeat run {path}", log=log)
        steps[f"extract{k + 1}"] = "ran" if summary.processed else "skipped"
        if summary.failed:
            log(f"  {len(summary.failed)} items failed (kept out of the evaluation): "
                + "; ".join(r for _, r in summary.failed[:3]))

    # 3. evaluation
    features = list(ev.get("features") or set_names)
    layers = str(ev.get("layers", "12345"))
    ev_key = _digest({"evaluate": ev, "features_sha256": sha256_of(features_file),
                      "manifest": stamps.get("manifest")})
    report_json = report_dir / "report.json"
    if report_json.is_file() and stamps.get("evaluate") == ev_key:
        steps["evaluate"] = "skipped"
        return {"manifest": manifest, "features": features_file, "report": report_dir, "steps": steps,
                "report_files": {}}
    log(f"[evaluate] {', '.join(features)} (layers {layers}, protocol {ev.get('protocol', 'nested')})")
    mats, ids_per = {}, {}
    for name in features:
        ids, X = readback.load(features_file, features=name, layers=layers)
        ids_per[name] = dict(zip(ids.tolist(), range(len(ids))))
        mats[name] = X
    # the same items for every feature set, so the paired tests compare like with like
    common = [i for i in ids_per[features[0]] if all(i in ids_per[n] for n in features[1:])]
    labels = ev_mod.load_labels(manifest, common, label_column=ev.get("label"),
                                target_columns=ev.get("targets"), tags_column=ev.get("tags"),
                                fold_column=ev.get("fold_column"), split_column=ev.get("split_column"),
                                group_column=ev.get("group_column"), key_column="id")
    for line in labels.summary_lines():
        log("  " + line)
    aligned = {name: mats[name][[ids_per[name][i] for i in labels.ids]] for name in features}
    baselines = [b for b in ev.get("baselines", ["random", "mfcc"]) if b in aligned]
    n_targets = labels.y.shape[1] if labels.task == "regression" else 1
    results = []
    jobs = jobs or ev_mod.cpu_count()
    for j in range(n_targets):
        results += ev_mod.sweep(aligned, labels.target(j), labels.task, ev.get("protocol", "nested"),
                                folds=labels.folds, split=labels.split, groups=labels.groups,
                                n_folds=int(ev.get("n_folds", 10)), head=ev.get("head", "svm"),
                                inner_folds=int(ev.get("inner_folds", 5)), ids=labels.ids,
                                target=str(labels.names[j]) if labels.task == "regression" else "",
                                n_jobs=jobs)
    tests = ev_mod.compare(results, baselines)
    meta = {"experiment": exp["name"], "command": f"convfeat run {path}", "dataset": ds["adapter"],
            "features_file": str(features_file), "layers": layers, "python": sys.version.split()[0],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    files = ev_mod.write_report(report_dir, results, tests, labels=labels, baselines=baselines, meta=meta)
    stamps["evaluate"] = ev_key
    _save_stamps(work, stamps)
    steps["evaluate"] = "ran"
    return {"manifest": manifest, "features": features_file, "report": report_dir, "steps": steps,
            "report_files": files, "results": results, "tests": tests}
