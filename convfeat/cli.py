"""Command-line interface: parses, calls the library, prints.  Nothing else."""
from __future__ import annotations

import json
import sys
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import List, Optional

import typer

from .cli_options import Device

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Transfer-learning features for music and audio (Choi et al. 2017 convnet).")
weights_app = typer.Typer(no_args_is_help=True, help="List, fetch and verify published model weights.")
app.add_typer(weights_app, name="weights")
from .cli_datasets import register as _register_datasets  # noqa: E402  (sub-commands in their own module)

_register_datasets(app)
from .cli_evaluate import register as _register_evaluate  # noqa: E402

_register_evaluate(app)


class BnMode(str, Enum):
    instance = "instance"
    batch = "batch"
    calibrated = "calibrated"
    stored = "stored"


BN_HELP = ("Batch-normalisation statistics: 'instance' = each clip alone (the default for "
           "choi2017 and random, chosen on three real datasets: see the README; "
           "batch-invariant), 'calibrated' = statistics estimated once on a seeded sample of up "
           "to 256 of the given files, then frozen (batch-invariant), 'batch' = statistics of the current batch as in the original "
           "Keras-1 model (features then depend on which files share a batch), 'stored' = "
           "moving statistics stored with the weights (the only mode of choi2017-k2). "
           "Default: the model's own.")
WEIGHTS_HELP = ("Weight file to use instead of the installed one (a Keras HDF5 file; for choi2017 "
                "either the Theano- or the TF-layout file).")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func):
    """Turn the library's expected errors into one line on stderr and a non-zero exit."""
    from .audio import AudioDecodeError
    from .models.keras_import import WeightFileError
    from .store import StoreError
    from .weights import FetchError, WeightsNotFound

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (WeightsNotFound, WeightFileError, FetchError, AudioDecodeError, ValueError, KeyError,
                StoreError) as exc:
            _fail(str(exc).strip("'\""))
    return wrapper


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        from . import __version__

        typer.echo(f"convfeat {__version__}")
        raise typer.Exit()


@app.command("tag")
@friendly_errors
def tag_cmd(
    files: List[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3, aiff, au, …)."),
    model: str = typer.Option("choi2017", help="Tagging model: choi2017, choi2017-k2, a shipped model "
                              "(convfeat-synth) or a folder written by convfeat pretrain."),
    weights: Optional[Path] = typer.Option(None, help=WEIGHTS_HELP),
    bn_mode: Optional[BnMode] = typer.Option(None, help=BN_HELP),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=50, help="Number of tags shown per file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON ({file: {tag: probability}}) instead of a table."),
):
    """Print the most probable tags of each FILE (Million-Song-Dataset tags for choi2017).

    Each file is mixed to mono, resampled to 12 kHz and cut to its first 29 s
    (shorter files are repeated to fill the window).  Exit code 1 if any file
    could not be decoded (the others are still tagged).
    """
    from . import api, audio

    mode = bn_mode.value if bn_mode else None
    decoded, failures = {}, {}
    for path in files:
        try:
            decoded[str(path)] = audio.load(path)
            api.prepare(*decoded[str(path)])  # reject empty / non-finite audio here
        except audio.AudioDecodeError as exc:
            failures[str(path)] = str(exc)
        except ValueError as exc:
            decoded.pop(str(path))
            failures[str(path)] = f"{path}: {exc}"
    if mode == "calibrated":
        if not decoded:
            raise ValueError("no decodable file to calibrate on")
        net = api.calibrated_model(decoded.values(), model, weights)
    else:
        net = api.get_model(model, weights, mode)
    api._require_tags(net)
    if mode == "batch":  # the original behaviour: all files normalised as one batch
        results = dict(zip(decoded, api.tag_batch([y for y, _ in decoded.values()],
                                                  [sr for _, sr in decoded.values()], net, top_k)))
    else:
        results = {path: api.tag(y, sr, model=net, top_k=top_k) for path, (y, sr) in decoded.items()}
    if as_json:
        typer.echo(json.dumps({"results": results, "failures": failures}, indent=2))
    else:
        _print_tag_table(results, top_k)
        for path, reason in failures.items():
            typer.echo(f"failed: {reason}", err=True)
    if failures:
        raise typer.Exit(1)


def _print_tag_table(results: dict, top_k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("file")
    for i in range(top_k):
        table.add_column(f"#{i + 1}")
    for path, tags in results.items():
        table.add_row(Path(path).name, *[f"{t} {p:.2f}" for t, p in tags.items()])
    Console(width=max(100, 24 * (top_k + 1))).print(table)


@weights_app.command("list")
def weights_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Show every known weight file, where it was found and whether its sha256 verifies.

    Search order: --weights PATH, then $CONVFEAT_WEIGHTS_DIR, then the user cache
    ($CONVFEAT_CACHE_DIR or the platform cache directory).
    """
    from . import weights as w

    rows = w.status()
    if as_json:
        typer.echo(json.dumps({"cache_dir": str(w.cache_dir()), "weights": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"cache: {w.cache_dir()}")
    for col in ("name", "model", "status", "path", "note"):
        table.add_column(col)
    for r in rows:
        state = "not installed" if r["path"] is None else ("ok" if r["verified"] else "CHECKSUM MISMATCH")
        table.add_row(r["name"], r["model"], state, r["path"] or "-", r["note"])
    Console(width=160).print(table)


@weights_app.command("fetch")
@friendly_errors
def weights_fetch(
    name: str = typer.Argument(..., help="Weights to install: choi2017, choi2017-tf or choi2017-k2."),
    source: Optional[str] = typer.Option(None, "--from", help="Local file, file:// URL or mirror URL "
                                         "(default: the canonical URL)."),
    force: bool = typer.Option(False, help="Download again even if a verified copy is installed."),
):
    """Download (or copy) published weights into the cache, verified by sha256.

    Nothing is installed unless the file's sha256 matches the published one and
    it is an HDF5 file; a failed fetch leaves any earlier copy untouched.
    """
    from . import weights as w

    spec = w.get_spec(name)
    path = w.fetch(name, source=source, force=force)
    typer.echo(f"installed {name} ({spec.licence}) -> {path}")


class ShortPolicy(str, Enum):
    repeat = "repeat"
    pad = "pad"


class LongPolicy(str, Enum):
    first = "first"
    mean = "mean"


class ExportFormat(str, Enum):
    npy = "npy"
    csv = "csv"
    parquet = "parquet"


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
    batch_size: int = typer.Option(8, min=1, help="Windows per inference batch (across files)."),
    workers: int = typer.Option(1, min=0, help="Decoding worker processes, which overlap decoding with inference (0: decode in the main process)."),
    device: Device = typer.Option(Device.auto, help="Inference device; auto = cuda when available."),
    shard: Optional[str] = typer.Option(None, help="Process only shard I of N (I/N, 1-based): a stable hash "
                                        "of each item id picks its shard. Combine with `convfeat merge`."),
    strict: bool = typer.Option(False, help="Stop at the first item that fails (everything finished is kept)."),
    calibration_size: int = typer.Option(256, min=1, help="Clips sampled for bn_mode calibrated."),
    calibration_seed: int = typer.Option(0, help="Seed of the calibration sample."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
):
    """Extract features of a collection of audio into one HDF5 file.

    Re-running the same command skips finished items; a killed run loses at
    most the batch in flight. Exit code 1 if any item failed (listed at the end).
    """
    from . import extract as ex

    sets = [ex.parse_set(m, bn_mode.value if bn_mode else None, seed, str(weights) if weights else None)
            for m in model]
    policy = ex.Policy(short=short.value, long=long.value, hop_seconds=hop)
    log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
    summary = ex.extract([str(p) for p in inputs], out, sets, policy, batch_size=batch_size, workers=workers,
                         device=device.value, shard=shard, strict=strict, calibration_size=calibration_size,
                         calibration_seed=calibration_seed, progress=not quiet and sys.stderr.isatty(),
                         command=" ".join(["convfeat"] + sys.argv[1:]), log=log)
    if not quiet:
        rate = summary.audio_seconds / summary.seconds if summary.seconds else 0.0
        typer.echo(f"{summary.processed} processed, {len(summary.failed)} failed, {summary.done_before} already "
                   f"done of {summary.total} in {summary.seconds:.1f} s ({rate:.1f}x real time) -> {summary.path}",
                   err=True)
        for item_id, reason in summary.failed:
            typer.echo(f"failed: {reason if item_id in reason else item_id + ': ' + reason}", err=True)
    if summary.failed:
        raise typer.Exit(1)


@app.command("info")
@friendly_errors
def info_cmd(file: Path = typer.Argument(..., help="A convfeat HDF5 feature file."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a summary.")):
    """Summarise a feature file: items, feature sets, failures and provenance."""
    from . import readback

    info = readback.info(file)
    typer.echo(json.dumps(info, indent=2, default=str) if as_json else readback.format_info(info))


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
    from . import readback

    for path in readback.export(file, out, format=fmt.value, features=features, layers=layers):
        typer.echo(f"wrote {path}")


@app.command("merge")
@friendly_errors
def merge_cmd(out: Path = typer.Argument(..., help="Merged HDF5 file to write."),
              shards: List[Path] = typer.Argument(..., help="Shard files made with extract --shard I/N.")):
    """Combine shard files into one (refuses shards made with different configurations)."""
    from . import readback

    path = readback.merge(out, shards)
    typer.echo(f"merged {len(shards)} files -> {path}")


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
    from . import evaluate as ev
    from .experiment import ExperimentError, run_experiment

    log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
    try:
        out = run_experiment(experiment, jobs=jobs, workers=workers, force=force, log=log,
                             progress=not quiet and sys.stderr.isatty())
    except ExperimentError as exc:
        _fail(str(exc))
    if out.get("results"):
        typer.echo(ev.format_table(out["results"], out["tests"]))
    typer.echo(f"report: {out['report']} ({', '.join(f'{k} {v}' for k, v in out['steps'].items())})")


@app.command("demo")
@friendly_errors
def demo(
    out: Path = typer.Option(Path("convfeat-demo"), "--out", "-o",
                             help="Folder for the rendered clips (corpus/) and features.h5."),
    clips: int = typer.Option(8, min=2, max=200, help="Number of synthetic clips to render."),
    seed: int = typer.Option(2026, help="Corpus seed of the clips."),
):
    """Offline demo: render clips, extract features into one HDF5 file, tag them.

    Needs no download: the clips come from the synthetic corpus generator
    (`convfeat corpus synth`), the features from the model shipped in models/
    (convfeat-synth), the random-weights twin and MFCC, plus the published
    choi2017 when its weights are installed.  Prints each clip's true tags
    beside the shipped model's top tags.
    """
    from .demo import run_demo

    typer.echo(f"rendering {clips} synthetic 10-s clips (seed {seed}) into {out}/corpus ...")
    res = run_demo(out, clips, seed, log=typer.echo)
    typer.echo(f"features: {res['features']}  sets: {', '.join(res['sets'])}")
    if res["clips"]:
        typer.echo("clip    true tags  |  convfeat-synth top tags (as many as true ones)")
        for c in res["clips"]:
            pred = ", ".join(f"{t} {p:.2f}" for t, p in zip(c["predicted"], c["probabilities"]))
            typer.echo(f"{c['id']}  {';'.join(c['true'])}  |  {pred}")
        typer.echo(f"precision of the top tags: {res['precision_at_k']:.2f} (random guessing: about 0.26)")
    typer.echo(f"load them: convfeat.load('{res['features']}', 'convfeat-synth')  "
               f"or  convfeat info {res['features']}")


from .cli_pretrain import register as _register_pretrain  # noqa: E402  (needs friendly_errors)

_register_pretrain(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
