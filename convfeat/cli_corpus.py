"""`convfeat corpus …`: render the synthetic multi-label tagging corpus (see convfeat.corpus)."""
from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Synthetic, regenerable, offline music-tagging corpus (pretraining data).")


@app.callback()
def _group() -> None:
    """Synthetic, regenerable, offline music-tagging corpus (pretraining data)."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command("synth")
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
    from . import corpus

    if n < 1:
        _fail(f"--n must be >= 1, got {n}")
    if not duration > 0:
        _fail(f"--duration must be > 0 seconds, got {duration}")
    if not 8000 <= sr <= 48000:
        _fail(f"--sr must be between 8000 and 48000 Hz, got {sr}")
    if workers < 1:
        _fail(f"--workers must be >= 1, got {workers}")
    try:
        df = corpus.synth(out, n, seed=seed, duration=duration, sr=sr, workers=workers,
                          progress=not quiet)
    except corpus.CorpusError as e:
        _fail(str(e))
    if quiet:
        return
    counts = corpus.tag_counts(df)
    typer.echo(f"{out}: {df.attrs.get('rendered', 0)} clips rendered, {df.attrs.get('skipped', 0)} skipped; "
               f"{n} clips, {n * duration / 3600:.2f} h at {sr} Hz")
    typer.echo("splits: " + ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().items()))
    typer.echo("tag counts: " + ", ".join(f"{t} {c}" for t, c in counts.items()))
