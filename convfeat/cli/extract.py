"""`convfeat extract`, `info`, `export` and `merge`: parse, call the library, print."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..constants import ITEMS_PER_TASK
from .common import (BN_HELP, PRECISION_HELP, WEIGHTS_HELP, WORKERS_HELP, BnMode, Device, ExportFormat,
                     LongPolicy, Precision, ShortPolicy, fail, friendly_errors, json_text, parse_workers)

app = typer.Typer()   # commands collected here, added to the main app by register()


def register(main: typer.Typer) -> None:
    """Add ``extract``, ``info``, ``export`` and ``merge`` to the main ``convfeat`` app."""
    main.registered_commands += app.registered_commands


@app.command("extract")
@friendly_errors
def extract_cmd(
    inputs: List[Path] = typer.Argument(..., help="Audio folders (searched recursively), audio files, "
                                        ".txt lists (one path per line) or manifest CSVs (a 'path' column "
                                        "plus metadata columns, kept with the items)."),
    out: Path = typer.Option(..., "--out", "-o", help="HDF5 feature file to create or complete."),
    model: List[str] = typer.Option(["choi2017"], "--model", "-m", help="Feature set(s), repeatable: "
                                    "choi2017, choi2017-k2, random, mfcc; options as MODEL:key=value,... "
                                    "with keys bn_mode, seed, weights, name (e.g. random:seed=2, "
                                    "choi2017:bn_mode=batch)."),
    bn_mode: Optional[BnMode] = typer.Option(None, help=BN_HELP.replace("the given files", "the collection")),
    seed: int = typer.Option(0, help="Seed of the random-weights model."),
    weights: Optional[Path] = typer.Option(None, help=WEIGHTS_HELP),
    short: ShortPolicy = typer.Option(ShortPolicy.repeat, help="Audio shorter than the 29-s window: repeat it "
                                      "to fill the window (the study) or zero-pad it."),
    long: LongPolicy = typer.Option(LongPolicy.first, help="Audio longer than 29 s: use the first window "
                                    "(the study) or average the features of all windows (see --hop)."),
    hop: float = typer.Option(29.0, min=0.1, help="Seconds between window starts with --long mean."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Windows per inference batch (across files). "
                                             "Default 8, or 256 (the study's) when a set has bn_mode batch, whose "
                                             "features depend on the batch; other sets' do not."),
    batch_order: Optional[str] = typer.Option(None, help="bn_mode batch sets only: the order items enter the "
                                              "batches, shuffled (default, seeded by --batch-seed, as the study) or "
                                              "sorted (by id). Recorded in the set's config."),
    batch_seed: Optional[int] = typer.Option(None, help="bn_mode batch sets only: seed of the shuffled order "
                                             "(default 0)."),
    workers: str = typer.Option("auto", callback=parse_workers, help=WORKERS_HELP),
    device: Device = typer.Option(Device.auto, help="Inference device; auto = cuda when available."),
    precision: Precision = typer.Option(Precision.fp32, help=PRECISION_HELP),
    shard: Optional[str] = typer.Option(None, help="Process only shard I of N (I/N, 1-based): a stable hash "
                                        "of each item id picks its shard. Combine with `convfeat merge`."),
    strict: bool = typer.Option(False, help="Stop at the first item that fails (everything finished is kept)."),
    calibration_size: int = typer.Option(256, min=1, help="Clips sampled for bn_mode calibrated."),
    calibration_seed: int = typer.Option(0, help="Seed of the calibration sample."),
    frames: bool = typer.Option(False, "--frames", help="Also store frame-level features of the convnet sets "
                                "(85.3-ms frames for choi2017, of the first 29 s with --long first, of the whole "
                                "file with --long mean), read back with convfeat.load_frames."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    cluster: Optional[str] = typer.Option(None, metavar="ADDRESS", help="Extract on a Dask cluster: "
                                          "tcp://HOST:PORT (a running scheduler), local or local:N (N worker "
                                          "processes here, one thread each; default one per core), or "
                                          "MODULE:FUNCTION / FILE.py:FUNCTION returning a Dask cluster or Client "
                                          "(e.g. a dask-jobqueue SLURMCluster). One task per shard of "
                                          "--items-per-task items writes OUT.parts/; the parts are merged into "
                                          "OUT, which must not exist yet. The audio and OUT must be on a "
                                          "filesystem every worker sees. Re-run the same command to resume. "
                                          "Needs pip install \"convfeat\\[dask]\"; not with --shard or --strict "
                                          "(--workers does not apply: each worker decodes its own items)."),
    items_per_task: int = typer.Option(ITEMS_PER_TASK, min=1, help="With --cluster: items per task (each "
                                       "task writes one part file)."),
    keep_parts: bool = typer.Option(False, help="With --cluster: keep the part files (OUT.parts/) after "
                                    "merging them into OUT."),
):
    """Extract features of a collection of audio into one HDF5 file.

    Re-running the same command skips finished items; a killed run loses at
    most the batch in flight. Exit code 1 if any item failed (listed at the end).
    """
    from .. import extraction as ex
    from ..store.file import check_target

    # Refuse a file that is not ours, or is newer, before loading any model (checked again under the lock).
    check_target(out)
    sets = [ex.parse_set(m, bn_mode.value if bn_mode else None, seed, str(weights) if weights else None)
            for m in model]
    policy = ex.Policy(short=short.value, long=long.value, hop_seconds=hop)
    log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
    common = dict(batch_size=batch_size, device=device.value, precision=precision.value, frames=frames,
                  calibration_size=calibration_size, calibration_seed=calibration_seed,
                  progress=not quiet and sys.stderr.isatty(), command=" ".join(["convfeat"] + sys.argv[1:]), log=log)
    if cluster is None and keep_parts:
        fail("--keep-parts applies only with --cluster")
    if cluster is not None and (shard or strict):
        fail("--shard and --strict do not apply with --cluster (it splits the collection into tasks itself)")
    if cluster is not None and (batch_order or batch_seed is not None):
        fail("--batch-order and --batch-seed do not apply with --cluster (bn_mode batch sets are not "
             "distributed: their features depend on the whole collection's batches)")
    if cluster is not None:
        summary = ex.extract_on_cluster([str(p) for p in inputs], out, sets, policy, cluster,
                                        items_per_task=items_per_task, keep_parts=keep_parts, **common)
    else:
        summary = ex.extract([str(p) for p in inputs], out, sets, policy, workers=workers, shard=shard,
                             strict=strict, batch_order=batch_order, batch_seed=batch_seed, **common)
    if not quiet:
        if summary.processed == 0 and not summary.failed and not summary.merged_parts:
            typer.echo(f"nothing to do: all {summary.total} items are already done in {summary.path} "
                       "(the file was not modified)", err=True)
        else:
            rate = summary.audio_seconds / summary.seconds if summary.seconds else 0.0
            merged = f" (merged {summary.merged_parts} parts)" if summary.merged_parts else ""
            typer.echo(f"{summary.processed} processed, {len(summary.failed)} failed, {summary.done_before} "
                       f"already done of {summary.total} in {summary.seconds:.1f} s ({rate:.1f}x real time) "
                       f"-> {summary.path}{merged}", err=True)
        for item_id, reason in summary.failed:
            typer.echo(f"failed: {reason if item_id in reason else item_id + ': ' + reason}", err=True)
    if summary.failed:
        raise typer.Exit(1)


@app.command("info")
@friendly_errors
def info_cmd(file: Path = typer.Argument(..., help="A convfeat HDF5 feature file."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a summary.")):
    """Summarise a feature file: items, feature sets, failures and provenance."""
    from .. import store

    info = store.info(file)
    typer.echo(json_text(info) if as_json else store.format_info(info))


@app.command("export")
@friendly_errors
def export_cmd(
    file: Path = typer.Argument(..., help="A convfeat HDF5 feature file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output path (a folder for npy)."),
    fmt: ExportFormat = typer.Option(ExportFormat.npy, "--format", "-f", help="npy, csv or parquet."),
    features: str = typer.Option("choi2017", help="Feature set, or several joined with + (e.g. mfcc+choi2017)."),
    layers: str = typer.Option("12345", help="Convnet blocks to export, e.g. 12345, 5, 135."),
):
    """Export features of the successfully processed items to npy, CSV or Parquet."""
    from .. import store

    for path in store.export(file, out, format=fmt.value, features=features, layers=layers):
        typer.echo(f"wrote {path}")


@app.command("merge")
@friendly_errors
def merge_cmd(out: Path = typer.Argument(..., help="Merged HDF5 file to write; it must not exist (merge never "
                                         "replaces a file: delete an earlier merge first to redo it)."),
              shards: List[Path] = typer.Argument(..., help="Shard files made with extract --shard I/N.")):
    """Combine shard files into one new file (refuses shards made with different configurations, and an OUT
    that exists already)."""
    from .. import store

    path = store.merge(out, shards)
    typer.echo(f"merged {len(shards)} files -> {path}")
