"""`convfeat pretrain` and `convfeat corpus`: train our own tagging convnet."""
from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .common import Device, fail, friendly_errors


class Magnitude(str, Enum):
    log = "log"
    linear = "linear"


class Weighting(str, Enum):
    per_frequency = "per-frequency"
    a_weighting = "a-weighting"
    none = "none"


corpus_app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Synthetic, regenerable, offline music-tagging corpus (pretraining data).")


@corpus_app.callback()
def _group() -> None:
    """Synthetic, regenerable, offline music-tagging corpus (pretraining data)."""


@corpus_app.command("synth")
def synth_cmd(
    out: Path = typer.Option(..., "-o", "--out", help="Output directory (created; if it already holds "
                             "a corpus with the same parameters, missing clips are rendered and the "
                             "rest skipped)."),
    n: int = typer.Option(..., "--n", help="Number of clips (>= 1); clip ids are 000000 … n-1."),
    seed: int = typer.Option(0, "--seed", help="Corpus seed; clip i depends only on (seed, i)."),
    duration: float = typer.Option(10.0, "--duration", help="Clip length in seconds (> 0)."),
    sr: int = typer.Option(12000, "--sr", help="Sample rate of the FLAC files, 8000-48000 Hz."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (output is identical for any count)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no summary."),
):
    """Render N synthetic music clips to OUT/audio/*.flac with OUT/manifest.csv (multi-label tags,
    train/valid/test split, metadata) and OUT/corpus.json (parameters, tag vocabulary)."""
    from ..training import corpus

    if n < 1:
        fail(f"--n must be >= 1, got {n}")
    if not duration > 0:
        fail(f"--duration must be > 0 seconds, got {duration}")
    if not 8000 <= sr <= 48000:
        fail(f"--sr must be between 8000 and 48000 Hz, got {sr}")
    if workers < 1:
        fail(f"--workers must be >= 1, got {workers}")
    try:
        df = corpus.synth(out, n, seed=seed, duration=duration, sr=sr, workers=workers,
                          progress=not quiet)
    except corpus.CorpusError as e:
        fail(str(e))
    if quiet:
        return
    counts = corpus.tag_counts(df)
    typer.echo(f"{out}: {df.attrs.get('rendered', 0)} clips rendered, {df.attrs.get('skipped', 0)} skipped; "
               f"{n} clips, {n * duration / 3600:.2f} h at {sr} Hz")
    typer.echo("splits: " + ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().items()))
    typer.echo("tag counts: " + ", ".join(f"{t} {c}" for t, c in counts.items()))


app = typer.Typer()   # commands collected here, added to the main app by register()


def register(main: typer.Typer) -> None:
    """Add ``pretrain`` and the ``corpus`` group to the main ``convfeat`` app."""
    main.registered_commands += app.registered_commands
    main.add_typer(corpus_app, name="corpus")


@app.command("pretrain")
@friendly_errors
def pretrain_cmd(
    manifest: Path = typer.Argument(..., help="Tagged manifest CSV: 'path' and 'tags' (';'-joined) "
                                    "columns, optional 'split' (train/valid/test). "
                                    "`convfeat corpus synth` writes one."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoint.pt after every epoch, "
                             "then the best-validation model (model.json + weights.npz), usable as "
                             "`convfeat extract -m OUT`."),
    magnitude: Magnitude = typer.Option(Magnitude.log, help="Input magnitude: log = decibels of the "
                                        "mel power, linear = the mel power itself."),
    weighting: Weighting = typer.Option(Weighting.per_frequency, help="Frequency weighting: "
                                        "per-frequency = standardise each mel band with training-set "
                                        "statistics; a-weighting = IEC 61672 A-curve at each band's "
                                        "centre; none = bypass."),
    standardize: bool = typer.Option(True, "--standardize/--no-standardize",
                                     help="Standardise each excerpt over frequency and time "
                                          "(on in every configuration of the study)."),
    scale: float = typer.Option(1.0, help="Multiply the network input by this (the study: 1 or 10)."),
    epochs: int = typer.Option(10, min=1, help="Training epochs."),
    batch_size: int = typer.Option(16, min=2, help="Clips per gradient step."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Seed of the initial weights, the data order and --train-size."),
    train_size: Optional[int] = typer.Option(None, min=1, help="Train on a seeded subset of this "
                                             "many training items (learning curves)."),
    clip_seconds: float = typer.Option(10.0, min=6.0, help="Seconds of each item the network sees "
                                       "(the first ones; shorter items are repeated)."),
    device: Device = typer.Option(Device.auto, help="auto = CUDA when available, else CPU."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch (default: torch's)."),
    workers: int = typer.Option(0, min=0, help="Decoding processes for the one-off spectrogram cache."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where mel spectrograms are cached "
                                             "(default: .convfeat-cache beside the manifest)."),
    name: str = typer.Option("", help="Model name recorded in model.json (default: the folder name)."),
):
    """Train a compact tagging convnet on a multi-label manifest (resumable, seeded).

    Prints training loss and validation ROC-AUC per epoch; run the same
    command again to resume after an interruption.
    """
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ..models.input import InputConfig
    from ..training.pretrain import pretrain

    if threads:
        torch.set_num_threads(threads)
    cfg = InputConfig(magnitude.value, weighting.value, standardize, scale)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), transient=True) as bar:
        tasks = {}

        def progress(phase, done, total):
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        record = pretrain(manifest, out, cfg, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                          train_size=train_size, clip_seconds=clip_seconds, device=device.value,
                          cache_dir=cache_dir, workers=workers, name=name, progress=progress,
                          log=bar.console.print)
    tr = record["training"]
    test = "no test split" if math.isnan(tr["test_auc"]) else f"test ROC-AUC {tr['test_auc']:.4f}"
    typer.echo(f"model: {out} ({record['name']}, input {cfg.name}); best epoch {tr['best_epoch']}: "
               f"validation ROC-AUC {tr['valid_auc']:.4f}, {test}")
