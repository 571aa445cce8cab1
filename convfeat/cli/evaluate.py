"""`convfeat evaluate`, `import` and `run`: parse, call the library, print."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .common import fail, friendly_errors

app = typer.Typer()   # commands collected here, added to the main app by register()


def register(main: typer.Typer) -> None:
    """Add ``evaluate``, ``import`` and ``run`` to the main ``convfeat`` app."""
    main.registered_commands += app.registered_commands


class Protocol(str, Enum):
    nested = "nested"
    study = "study"


class Head(str, Enum):
    svm = "svm"
    linear = "linear"


class Scaler(str, Enum):
    auto = "auto"
    both = "both"
    on = "on"
    off = "off"


class InnerSearch(str, Enum):
    halving = "halving"
    full = "full"


@app.command("evaluate")
@friendly_errors
def evaluate_cmd(
    files: List[Path] = typer.Argument(..., help="Feature file(s) (HDF5, from `convfeat extract` or `convfeat import`)."),
    labels: Optional[Path] = typer.Option(None, "--labels", "-l", help="Manifest CSV with one row per item, matched "
                                          "to the items by id or path (see --key-column). Default: the metadata "
                                          "columns stored with the items."),
    label_column: Optional[str] = typer.Option(None, help="Class label column (classification)."),
    target_columns: Optional[str] = typer.Option(None, help="Numeric target column(s), comma-separated (regression; "
                                                 "each target is evaluated on its own)."),
    tags_column: Optional[str] = typer.Option(None, help="Tag-list column, e.g. 'rock;guitar' (multi-label)."),
    tag_separator: Optional[str] = typer.Option(None, help="Separator of the tag lists (default: ; | , or spaces)."),
    key_column: Optional[str] = typer.Option(None, help="Manifest column naming the items (default: the first of id, "
                                             "path, filepath, filename, … with unique values matching the most "
                                             "item ids or paths)."),
    fold_column: Optional[str] = typer.Option(None, help="Predefined folds: each value is one test fold."),
    split_column: Optional[str] = typer.Option(None, help="Fixed split: train (or valid/dev) vs test."),
    group_column: Optional[str] = typer.Option(None, help="Groups (recording, artist, speaker, …) never on both "
                                               "sides of a fold: group-aware k-fold, and with --fold-column or "
                                               "--split-column group-aware inner folds of nested CV. Default with "
                                               "--fold-column/--split-column: the labels' 'group' column if any "
                                               "(the datasets' manifests have one)."),
    features: Optional[str] = typer.Option(None, "--features", "-f", help="Feature sets, comma-separated "
                                           "(choi2017,random,mfcc; a+b concatenates; FILE:set when several files "
                                           "hold the name). Default: every set."),
    layers: str = typer.Option("12345", help="Convnet blocks: 12345, a comma list (12345,123,5) or all (the 31 "
                               "subsets, plus mfcc and mfcc+<set>/12345 when a set named mfcc is present)."),
    protocol: Protocol = typer.Option(Protocol.nested, help="nested = hyper-parameters chosen by an inner CV in each "
                                      "outer training fold (honest); study = the study's procedure, best grid "
                                      "point's mean CV score (optimistic)."),
    folds: int = typer.Option(10, "--folds", "-k", min=2, help="k of the (stratified / group) k-fold."),
    shuffle: bool = typer.Option(False, help="Shuffle before making folds (the study did not)."),
    seed: int = typer.Option(0, help="Seed of --shuffle."),
    head: Head = typer.Option(Head.svm, help="svm = the study's SVC/SVR grid; linear = logistic regression / ridge "
                              "(fast, for large sets). One-vs-rest for tags."),
    scaler: Scaler = typer.Option(Scaler.auto, help="Standard scaling in the grid: both (on and off, as SPEC §4 "
                                  "states the grid), on, off; auto = off for --protocol study (what the study's "
                                  "code ran: its scaler never switched on) and both otherwise."),
    inner_folds: int = typer.Option(5, min=2, help="Inner folds of nested CV."),
    inner_search: InnerSearch = typer.Option(InnerSearch.halving, help="How nested CV chooses the grid point in each "
                                             "outer training fold: halving = successive halving over the inner folds "
                                             "(about 2.6x fewer fits; README says how often it picks another point), "
                                             "full = every point on every inner fold."),
    baselines: Optional[str] = typer.Option(None, help="Baseline feature sets for the paired tests (default: sets "
                                            "named mfcc* or random*). A set is paired with a baseline's same layer "
                                            "subset, else with the baseline's best subset (said in the report)."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Parallel fits: threads of the kernel-SVM engine, "
                          "processes otherwise (0 = all cores)."),
    max_iter: int = typer.Option(1_000_000, help="libsvm iterations per fit (-1: no cap). Fits that stop at the "
                                 "cap are listed in the report."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder: report.md, report.json, summary.csv, "
                                       "folds.csv, tests.csv, predictions.csv, confusion/*.png, layers.png."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG figures."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line."),
):
    """Score feature sets on a labelled task: per-fold scores, mean ± std, 95% CI, paired tests vs baselines.

    Examples:

      convfeat evaluate features.h5 -l gtzan.csv --label-column genre --layers all --protocol study -o report/

      convfeat evaluate features.h5 -l emo.csv --target-columns arousal,valence -f choi2017,mfcc

      convfeat evaluate a.h5 b.h5 -l tags.csv --tags-column tags --head linear --group-column artist
    """
    from .. import evaluation as ev

    n_jobs = jobs or ev.cpu_count()
    progress = None
    if not quiet and sys.stderr.isatty():
        def progress(done, total):
            typer.echo(f"\r{done}/{total} fold fits", err=True, nl=done == total)
    res = ev.run([str(f) for f in files], str(labels) if labels else None, label_column=label_column,
                 target_columns=target_columns, tags_column=tags_column, tag_separator=tag_separator,
                 key_column=key_column, fold_column=fold_column, split_column=split_column,
                 group_column=group_column, features=features, layers=layers, protocol=protocol.value,
                 n_folds=folds, shuffle=shuffle, seed=seed, head=head.value, scaler=scaler.value,
                 inner_folds=inner_folds, inner_search=inner_search.value, baselines=baselines, n_jobs=n_jobs, max_iter=max_iter, out_dir=out,
                 plots=not no_plots, progress=progress,
                 title=" ".join(["convfeat"] + sys.argv[1:]) if sys.argv else None)
    lab = res["labels"]
    r0 = res["results"][0]
    typer.echo(f"{ev.PROTOCOL_LABELS[r0.protocol]}")
    typer.echo(f"{lab.task}, {len(lab)} items ({lab.matched_on}); folds: {r0.splits}; head {r0.head}")
    for line in lab.summary_lines() + res["notes"]:
        typer.echo(f"note: {line}", err=True)
    capped = [(r, c) for r in res["results"] for c in r.capped]
    for r, c in capped:
        if "re-run" in c:
            typer.echo(f"note: {r.feature}: {c}", err=True)
    n_capped = sum("re-run" not in c for _, c in capped)
    if n_capped:
        typer.echo(f"note: {n_capped} grid point(s) stopped at the libsvm iteration cap (--max-iter {max_iter}) in "
                   "some folds; none is a reported head (listed in the report)", err=True)
    typer.echo(ev.format_table(res["results"], res["tests"]))
    if out is not None:
        typer.echo(f"report: {Path(out) / 'report.md'}")


@app.command("import")
@friendly_errors
def import_cmd(
    sources: List[Path] = typer.Argument(None, help="Embeddings: one .npy (N×d), .npz (arrays per layer, optional "
                                         "'ids'), .csv/.tsv (id column + numeric columns), or several .npy files, "
                                         "one per layer (layer1, layer2, … in the order given)."),
    out: Path = typer.Option(..., "--out", "-o", help="Feature file to create or extend (with --study: a folder)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Feature set name (e.g. openl3, study, mfcc)."),
    ids: Optional[Path] = typer.Option(None, help="Item ids, row by row: a text file (one per line) or a CSV "
                                       "(column --id-column)."),
    id_column: Optional[str] = typer.Option(None, help="Id column of the CSV source or of --ids."),
    path_column: Optional[str] = typer.Option(None, help="Column of --ids to store as the items' path."),
    split_layers: Optional[int] = typer.Option(None, min=1, max=5, help="Split one (N, k·w) array into k layers."),
    study: Optional[Path] = typer.Option(None, help="Import the study's stored features from this folder: every "
                                         "<task>.csv + <task>_layer_{0..4}.npy (+ <task>_mfcc.npy) of the study's "
                                         "release (e.g. ../shared/paper), whatever the task's name; one file per "
                                         "task in --out, sets choi2017 and mfcc."),
):
    """Import foreign embeddings into a convfeat feature file, to evaluate them with the same protocol.

    Examples:

      convfeat import emb.npy --ids ids.txt -n openl3 -o features.h5

      convfeat import gtzan_genre_layer_{0,1,2,3,4}.npy --ids gtzan_genre.csv --id-column filepath -n study -o g.h5

      convfeat import --study ../shared/paper -o study/
    """
    from ..store.importer import import_embeddings, import_study

    if study is not None:
        if sources:
            fail("give either --study or source files")
        done = import_study(study, out)
        for task, d in done.items():
            typer.echo(f"{task}: {d['features']} (labels {d['labels']}, column {', '.join(d['columns'])})")
        return
    if not sources:
        fail("give the embedding file(s) to import (or --study DIR)")
    if not name:
        fail("give the feature set name with --name")
    info = import_embeddings(sources, out, name, ids=ids, id_column=id_column, path_column=path_column,
                             split_layers=split_layers,
                             command=" ".join(["convfeat"] + sys.argv[1:]) if sys.argv else None)
    widths = ", ".join(f"{k} {w}" for k, w in info["datasets"].items())
    typer.echo(f"imported {info['n_items']} items as set {info['set']!r} ({widths}) -> {info['path']}")


@app.command("run")
@friendly_errors
def run_cmd(
    experiment: Path = typer.Argument(..., help="Experiment TOML file (see the README, 'Experiments')."),
    jobs: Optional[int] = typer.Option(None, help="Processes for the evaluation (default: all cores)."),
    workers: int = typer.Option(1, min=0, help="Decoding worker processes for extraction."),
    force: bool = typer.Option(False, help="Redo the manifest and the evaluation even if they are current."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final table."),
):
    """Dataset -> manifest -> features -> evaluation -> report, in one command.

    Resumable: every step whose output is current is skipped (extraction
    resumes where it stopped).
    """
    from .. import evaluation as ev
    from ..experiment import run_experiment

    log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
    out = run_experiment(experiment, jobs=jobs, workers=workers, force=force, log=log,
                         progress=not quiet and sys.stderr.isatty())
    if out.get("results"):
        typer.echo(ev.format_table(out["results"], out["tests"]))
    typer.echo(f"report: {out['report']} ({', '.join(f'{k} {v}' for k, v in out['steps'].items())})")
