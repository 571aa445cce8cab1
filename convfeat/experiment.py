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
    hop = 29.0                         # seconds between windows (long = "mean")
    batch_size = 8                     # default 8; 256 (the study's) with a bn_mode=batch set
    calibration_size = 256             # bn_mode=calibrated: clips in the calibration sample
    calibration_seed = 0

    [evaluate]                         # what `convfeat evaluate` takes (convfeat.evaluation.run)
    features = ["choi2017", "random", "mfcc", "mfcc+choi2017"]   # default: every extracted set
    layers = "12345"                   # or "12345,123,5", or "all" (the 31 subsets)
    label = "label"                    # or targets = ["arousal"], or tags = "tags" (+ tag_separator)
    key_column = "id"                  # manifest column naming the items
    fold_column = "fold"               # or split_column, or n_folds = 10; group_column combines with any
    shuffle = false                    # shuffle before making folds, with seed = 0
    protocol = "nested"                # nested | study
    inner_folds = 5                    # nested CV
    inner_search = "halving"           # halving | full (nested CV)
    head = "svm"                       # svm | linear
    scaler = "auto"                    # auto | both | on | off
    max_iter = 1000000                 # libsvm iterations per fit (-1: no cap)
    baselines = ["random", "mfcc"]     # default: the sets named mfcc* or random*
    plots = true

A key the runner does not know, at any level, is an error that names it and
lists the allowed ones (``[dataset] options`` are the adapter's own and go to
it unchecked).  Relative paths are relative to the current directory; ``${VAR}`` is expanded,
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

from .constants import LONG_POLICIES, SHORT_POLICIES
from .errors import InputError
from .evaluation import EvaluationError, Options
from .extraction import Policy, extract, parse_set
from .fileio import sha256_of

STAMP = "stamp.json"

EXPERIMENT_KEYS = ("name", "work", "report")
DATASET_KEYS = ("adapter", "root", "options")
EXTRACT_KEYS = ("sets", "short", "long", "hop", "batch_size", "calibration_size", "calibration_seed")
# [evaluate] key -> (keyword of convfeat.evaluation.run, accepted TOML types)
EVALUATE_KEYS = {
    "features": ("features", (str, list)), "layers": ("layers", (str, int)),
    "label": ("label_column", (str,)), "targets": ("target_columns", (str, list)), "tags": ("tags_column", (str,)),
    "tag_separator": ("tag_separator", (str,)), "key_column": ("key_column", (str,)),
    "fold_column": ("fold_column", (str,)), "split_column": ("split_column", (str,)),
    "group_column": ("group_column", (str,)), "protocol": ("protocol", (str,)), "n_folds": ("n_folds", (int,)),
    "shuffle": ("shuffle", (bool,)), "seed": ("seed", (int,)), "head": ("head", (str,)),
    "scaler": ("scaler", (str,)), "inner_folds": ("inner_folds", (int,)),
    "inner_search": ("inner_search", (str,)), "max_iter": ("max_iter", (int,)),
    "baselines": ("baselines", (str, list)), "plots": ("plots", (bool,)),
}
SECTION_KEYS = {"experiment": EXPERIMENT_KEYS, "dataset": DATASET_KEYS, "extract": EXTRACT_KEYS,
                "evaluate": tuple(EVALUATE_KEYS)}
_OPTION_KEYS = ("protocol", "n_folds", "shuffle", "seed", "head", "scaler", "inner_folds", "inner_search",
                "max_iter")
_TYPE_NAMES = {str: "text", list: "a list", int: "a whole number", bool: "true or false", float: "a number",
               dict: "a table"}


class ExperimentError(InputError):
    """The experiment file is incomplete or inconsistent (the message names the file and the key)."""


def _expand(value: str) -> str:
    env = dict(os.environ)
    env.setdefault("CONVFEAT_SHARED", "../shared")
    out = value
    for key, val in env.items():
        out = out.replace("${" + key + "}", val)
    if "${" in out:
        raise ExperimentError(f"unknown variable in {value!r}")
    return os.path.expanduser(out)


# -- reading and checking the experiment file ----------------------------------------------------
def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]

    if not path.is_file():
        raise ExperimentError(f"experiment file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML ({exc})") from None


def _check_keys(path: Path, where: str, table, allowed) -> None:
    """``table`` must be a TOML table whose keys are all in ``allowed``."""
    if not isinstance(table, dict):
        raise ExperimentError(f"{path}: {where} must be a table, got {table!r}")
    for key in table:
        if key not in allowed:
            raise ExperimentError(f"{path}: unknown key {key!r} in {where}; allowed keys: {', '.join(allowed)}")


def _check_type(path: Path, where: str, key: str, value, types: tuple) -> None:
    ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in types)
    if not ok:
        shown = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise ExperimentError(f"{path}: {where} {key} must be {shown}, got {value!r}")


def _check_extract(path: Path, passes) -> list:
    passes = passes if isinstance(passes, list) else [passes]
    for p in passes:
        _check_keys(path, "[[extract]]", p, EXTRACT_KEYS)
        if not p.get("sets"):
            raise ExperimentError(f"{path}: every [[extract]] pass needs sets = [...]")
        for key, allowed in (("short", SHORT_POLICIES), ("long", LONG_POLICIES)):
            if key in p and p[key] not in allowed:
                raise ExperimentError(f"{path}: [[extract]] {key} must be one of {', '.join(allowed)}, "
                                      f"got {p[key]!r}")
    return passes


def evaluation_arguments(path: str | Path, ev: dict) -> dict:
    """The [evaluate] table → keyword arguments of :func:`convfeat.evaluation.run`, checked.

    Every key must be known and of the right type, and the evaluation options
    (protocol, folds, head, scaler, …) must be valid, so that a mistake is
    reported before any extraction starts.  ``key_column`` defaults to ``id``
    (the column the dataset adapters write).
    """
    path = Path(path)
    _check_keys(path, "[evaluate]", ev, tuple(EVALUATE_KEYS))
    if not any(k in ev for k in ("label", "targets", "tags")):
        raise ExperimentError(f"{path}: [evaluate] needs label, targets or tags")
    kwargs = {}
    for key, value in ev.items():
        name, types = EVALUATE_KEYS[key]
        _check_type(path, "[evaluate]", key, value, types)
        kwargs[name] = value
    kwargs.setdefault("key_column", "id")
    if "layers" in kwargs:
        kwargs["layers"] = str(kwargs["layers"])
    try:
        Options(**{k: kwargs[k] for k in _OPTION_KEYS if k in kwargs})
    except EvaluationError as exc:
        raise ExperimentError(f"{path}: [evaluate] {exc}") from None
    return kwargs


def load_experiment(path: str | Path) -> dict:
    """Read and check an experiment TOML file → dict with defaults filled in.

    Raises :class:`ExperimentError` for a missing section or required key, an
    unknown section or key (naming it and the allowed ones), a value of the
    wrong type and invalid evaluation options.
    """
    path = Path(path)
    cfg = _read_toml(path)
    for section in SECTION_KEYS:
        if section not in cfg:
            raise ExperimentError(f"{path}: missing [{section}] section")
    for section in cfg:
        if section not in SECTION_KEYS:
            raise ExperimentError(f"{path}: unknown section [{section}]; allowed sections: "
                                  f"{', '.join(SECTION_KEYS)}")
    exp = cfg["experiment"]
    _check_keys(path, "[experiment]", exp, EXPERIMENT_KEYS)
    if "name" not in exp:
        raise ExperimentError(f"{path}: [experiment] needs a name")
    exp.setdefault("work", f"runs/{exp['name']}")
    exp.setdefault("report", f"reports/{exp['name']}")
    ds = cfg["dataset"]
    _check_keys(path, "[dataset]", ds, DATASET_KEYS)
    if "adapter" not in ds or "root" not in ds:
        raise ExperimentError(f"{path}: [dataset] needs adapter and root")
    ds.setdefault("options", {})
    _check_type(path, "[dataset]", "options", ds["options"], (dict,))
    cfg["extract"] = _check_extract(path, cfg["extract"])
    evaluation_arguments(path, cfg["evaluate"])
    return cfg


# -- stamps ------------------------------------------------------------------------------------------
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _stamps(work: Path) -> dict:
    p = work / STAMP
    return json.loads(p.read_text()) if p.is_file() else {}


def _save_stamps(work: Path, stamps: dict) -> None:
    tmp = work / (STAMP + ".tmp")
    tmp.write_text(json.dumps(stamps, indent=2))
    os.replace(tmp, work / STAMP)


# -- the steps ------------------------------------------------------------------------------------------
def _manifest_step(ds: dict, work: Path, stamps: dict, steps: dict, log) -> Path:
    """1. The dataset's manifest (skipped when the dataset settings are unchanged)."""
    from . import datasets

    manifest = work / "manifest.csv"
    root = Path(_expand(ds["root"])).resolve()
    ds_key = _digest({"adapter": ds["adapter"], "root": str(root), "options": ds["options"]})
    if manifest.is_file() and stamps.get("manifest") == ds_key:
        steps["manifest"] = "skipped"
        return manifest
    log(f"[manifest] {ds['adapter']} {root}")
    datasets.write_manifest(ds["adapter"], root, manifest, **ds["options"])
    stamps["manifest"] = ds_key
    stamps.pop("evaluate", None)
    _save_stamps(work, stamps)
    steps["manifest"] = "ran"
    return manifest


def _extract_steps(passes: list, manifest: Path, features_file: Path, steps: dict, *, workers: int, progress: bool,
                   command: str, log) -> list[str]:
    """2. The extraction passes (each resumable) → the names of the sets extracted."""
    set_names = []
    for k, p in enumerate(passes):
        policy = Policy(short=p.get("short", "repeat"), long=p.get("long", "first"),
                        hop_seconds=float(p.get("hop", 29.0)))
        specs = [parse_set(s) for s in p["sets"]]
        set_names += [s.resolved_name() for s in specs]
        log(f"[extract {k + 1}/{len(passes)}] {', '.join(s.resolved_name() for s in specs)} "
            f"(short={policy.short}, long={policy.long})")
        summary = extract([manifest], features_file, specs, policy, batch_size=p.get("batch_size"),
                          workers=workers, calibration_size=int(p.get("calibration_size", 256)),
                          calibration_seed=int(p.get("calibration_seed", 0)), progress=progress,
                          command=command, log=log)
        steps[f"extract{k + 1}"] = "ran" if summary.processed else "skipped"
        if summary.failed:
            log(f"  {len(summary.failed)} items failed (kept out of the evaluation): "
                + "; ".join(r for _, r in summary.failed[:3]))
    return set_names


def run_experiment(path: str | Path, *, jobs: int | None = None, workers: int = 1, force: bool = False,
                   log=None, progress: bool = False) -> dict:
    """Run (or bring up to date) the experiment in ``path``; returns what was done and where.

    The evaluation is :func:`convfeat.evaluation.run`, the same as ``convfeat
    evaluate``, with every [evaluate] setting passed through.

    Returns a dict: ``manifest``, ``features`` and ``report`` paths, ``steps``
    (step name → "ran" / "skipped"), ``report_files``, and when the
    evaluation ran its ``results`` and ``tests``.
    """
    from . import evaluation

    log = log or (lambda msg: None)
    cfg = load_experiment(path)
    exp, ds, passes, ev = cfg["experiment"], cfg["dataset"], cfg["extract"], cfg["evaluate"]
    work = Path(_expand(exp["work"]))
    report_dir = Path(_expand(exp["report"]))
    work.mkdir(parents=True, exist_ok=True)
    stamps = {} if force else _stamps(work)
    steps = {}
    manifest = _manifest_step(ds, work, stamps, steps, log)
    features_file = work / "features.h5"
    set_names = _extract_steps(passes, manifest, features_file, steps, workers=workers, progress=progress,
                               command=f"convfeat run {path}", log=log)

    # 3. evaluation: the same entry point as `convfeat evaluate`
    kwargs = evaluation_arguments(path, ev)
    kwargs["features"] = kwargs.get("features") or set_names
    ev_key = _digest({"runner": "convfeat.evaluation.run", "evaluate": ev,
                      "features_sha256": sha256_of(features_file), "manifest": stamps.get("manifest")})
    report_json = report_dir / "report.json"
    if report_json.is_file() and stamps.get("evaluate") == ev_key:
        steps["evaluate"] = "skipped"
        return {"manifest": manifest, "features": features_file, "report": report_dir, "steps": steps,
                "report_files": {}}
    shown = kwargs["features"] if isinstance(kwargs["features"], str) else ", ".join(kwargs["features"])
    log(f"[evaluate] {shown} (layers {kwargs.get('layers', '12345')}, protocol {kwargs.get('protocol', 'nested')})")
    meta = {"experiment": exp["name"], "command": f"convfeat run {path}", "dataset": ds["adapter"],
            "features_file": str(features_file), "layers": kwargs.get("layers", "12345"),
            "python": sys.version.split()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = evaluation.run([features_file], manifest, **kwargs, n_jobs=jobs or evaluation.cpu_count(),
                         out_dir=report_dir, title=exp["name"], meta=meta)
    for line in out["labels"].summary_lines() + out["notes"]:
        log("  " + line)
    stamps["evaluate"] = ev_key
    _save_stamps(work, stamps)
    steps["evaluate"] = "ran"
    return {"manifest": manifest, "features": features_file, "report": report_dir, "steps": steps,
            "report_files": out["files"], "results": out["results"], "tests": out["tests"]}
