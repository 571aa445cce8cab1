"""Command-line interface: parses, calls the library, prints.  Nothing else."""
from __future__ import annotations

import json
import sys
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Transfer-learning features for music and audio (Choi et al. 2017 convnet).")
weights_app = typer.Typer(no_args_is_help=True, help="List, fetch and verify published model weights.")
app.add_typer(weights_app, name="weights")


class ModelName(str, Enum):
    choi2017 = "choi2017"
    choi2017_k2 = "choi2017-k2"
    random = "random"


class BnMode(str, Enum):
    instance = "instance"
    batch = "batch"
    calibrated = "calibrated"
    stored = "stored"


BN_HELP = ("Batch-normalisation statistics: 'instance' = each clip alone (the default for "
           "choi2017 and random, chosen provisionally until measured on real datasets; "
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
    from .weights import FetchError, WeightsNotFound

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (WeightsNotFound, WeightFileError, FetchError, AudioDecodeError, ValueError, KeyError) as exc:
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
    model: ModelName = typer.Option(ModelName.choi2017, help="Tagging model."),
    weights: Optional[Path] = typer.Option(None, help=WEIGHTS_HELP),
    bn_mode: Optional[BnMode] = typer.Option(None, help=BN_HELP),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=50, help="Number of tags shown per file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON ({file: {tag: probability}}) instead of a table."),
):
    """Print the most probable Million-Song-Dataset tags of each FILE.

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
        net = api.calibrated_model(decoded.values(), model.value, weights)
    else:
        net = api.get_model(model.value, weights, mode)
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


@app.command("demo")
@friendly_errors
def demo(
    seconds: float = typer.Option(10.0, min=0.5, help="Length of the generated test signal."),
):
    """Embed a generated signal with every model available offline and print the features.

    Needs no download: the random-weights twin always runs; the published
    models run too when their weights are installed.
    """
    import numpy as np

    from . import api
    from .weights import WeightsNotFound

    sr = 22050
    t = np.arange(int(seconds * sr)) / sr
    # A little "music": an A-major arpeggio of decaying plucks over a click track.
    y = np.zeros_like(t)
    for i, f in enumerate([220.0, 277.18, 329.63, 440.0] * int(np.ceil(seconds))):
        start = i * 0.25
        if start >= seconds:
            break
        env = np.where(t >= start, np.exp(-(t - start) * 6.0), 0.0)
        y += 0.3 * env * np.sin(2 * np.pi * f * (t - start))
    y[:: sr // 2] += 0.5
    typer.echo(f"signal: {seconds:g} s generated arpeggio at {sr} Hz")
    for name in ("random", "choi2017", "choi2017-k2"):
        try:
            x = api.embed(y, sr, model=name)
        except WeightsNotFound:
            typer.echo(f"{name:12s} weights not installed (convfeat weights fetch {name})")
            continue
        per_layer = ", ".join(f"L{k + 1} {np.linalg.norm(x[32 * k:32 * (k + 1)]):.2f}" for k in range(5))
        typer.echo(f"{name:12s} feature {x.shape[0]}-d, per-layer norms: {per_layer}")
        if name != "random":
            tags = api.tag(y, sr, model=name, top_k=3)
            typer.echo(" " * 13 + "top tags: " + ", ".join(f"{k} {v:.2f}" for k, v in tags.items()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
