"""`convfeat tag` and `convfeat weights …`: parse, call the library, print."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError
from .common import BN_HELP, WEIGHTS_HELP, BnMode, friendly_errors, json_text

app = typer.Typer()   # commands collected here, added to the main app by register()
weights_app = typer.Typer(no_args_is_help=True, help="List, fetch and verify published model weights.")


def register(main: typer.Typer) -> None:
    """Add ``tag`` and the ``weights`` group to the main ``convfeat`` app."""
    main.registered_commands += app.registered_commands
    main.add_typer(weights_app, name="weights")


TAG_DEFAULT_CALIBRATED = "choi2017"   # the model whose tags `tag` calibrates by default
FEW_FILES = 8                          # below this, a calibration sample is mostly the file itself


@app.command("tag")
@friendly_errors
def tag_cmd(
    files: List[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3, aiff, au, …)."),
    model: str = typer.Option("choi2017", help="Tagging model: choi2017, choi2017-k2, a shipped model "
                              "(convfeat-synth) or a folder written by convfeat pretrain."),
    weights: Optional[Path] = typer.Option(None, help=WEIGHTS_HELP),
    bn_mode: Optional[BnMode] = typer.Option(None, help=BN_HELP + " For `tag` with choi2017 the default is "
                                             "'calibrated' on the given files: in instance mode its tags are "
                                             "nearly flat."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=50, help="Number of tags shown per file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON ({file: {tag: probability}}) instead of a table."),
):
    """Print the most probable tags of each FILE (Million-Song-Dataset tags for choi2017).

    With choi2017 the BN statistics are calibrated on the given files by default (tag
    several files together); the table title and the JSON say which model and mode ran.

    Each file is mixed to mono, resampled to 12 kHz and cut to its first 29 s
    (shorter files are repeated to fill the window).  Exit code 1 if any file
    could not be decoded (the others are still tagged).
    """
    from .. import api, audio

    # The published model normalises with the statistics of what it is given; alone (instance mode)
    # its tags are nearly flat (top tag rock/pop at 0.03-0.26 for anything), calibrated on the
    # files at hand they are distinct and plausible (README, "convfeat tag": the evidence).
    mode = bn_mode.value if bn_mode else ("calibrated" if model == TAG_DEFAULT_CALIBRATED else None)
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
            raise InputError("no decodable file to calibrate on")
        net = api.calibrated_model(decoded.values(), model, weights)
        if len(decoded) < FEW_FILES:
            typer.echo(f"note: BN statistics calibrated on {len(decoded)} file(s) only: with so few, tags "
                       f"come out nearly as flat as in instance mode; tag {FEW_FILES} or more files "
                       "together, or use --model choi2017-k2", err=True)
    else:
        net = api.get_model(model, weights, mode)
    used = {"model": model, "bn_mode": net.bn_mode,
            "calibrated_on": len(decoded) if net.bn_mode == "calibrated" else None}
    api._require_tags(net)
    if mode == "batch":  # the original behaviour: all files normalised as one batch
        results = dict(zip(decoded, api.tag_batch([y for y, _ in decoded.values()],
                                                  [sr for _, sr in decoded.values()], net, top_k)))
    else:
        results = {}
        for path, (y, sr) in decoded.items():
            try:
                results[path] = api.tag(y, sr, model=net, top_k=top_k)
            except InputError as exc:        # e.g. samples so extreme the features are not finite
                failures[path] = f"{path}: {exc}"
    for path in list(results):    # a probability that is not a number is no result: that file failed
        bad = [t for t, prob in results[path].items() if not _finite(prob)]
        if bad:
            del results[path]
            failures[path] = (f"{path}: the model gave no valid probability for {len(bad)} tag(s) "
                              f"({', '.join(bad[:3])}{', …' if len(bad) > 3 else ''}: NaN or infinite)")
    if as_json:
        typer.echo(json_text({"results": results, "failures": failures, **used}))
    else:
        _print_tag_table(results, top_k, used)
        for path, reason in failures.items():
            typer.echo(f"failed: {reason}", err=True)
    if failures:
        raise typer.Exit(1)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _print_tag_table(results: dict, top_k: int, used: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    how = f"bn_mode {used['bn_mode']}" + (f" on these {used['calibrated_on']} files"
                                          if used["calibrated_on"] is not None else "")
    table = Table(show_header=True, header_style="bold", title=f"{used['model']} ({how})")
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
    from ..models import weights as w

    rows = w.status()
    if as_json:
        typer.echo(json_text({"cache_dir": str(w.cache_dir()), "weights": rows}))
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
                                         "(default: the canonical URL); always verified by sha256."),
    force: bool = typer.Option(False, help="Download again even if a verified copy is installed."),
):
    """Download (or copy) published weights into the cache, verified by sha256.

    Nothing is installed unless the file's sha256 matches the published one and
    it is an HDF5 file; a failed fetch leaves any earlier copy untouched. A
    --from file is always verified, also when a verified copy is installed.
    """
    from ..models import weights as w

    spec = w.get_spec(name)
    path = w.fetch(name, source=source, force=force, strict_source=True)
    typer.echo(f"installed {name} ({spec.licence}) -> {path}")
