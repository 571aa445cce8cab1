"""`convfeat demo`: the offline first contact (render, extract, tag)."""
from __future__ import annotations

from pathlib import Path

import typer

from .common import friendly_errors

app = typer.Typer()   # commands collected here, added to the main app by register()


def register(main: typer.Typer) -> None:
    """Add ``demo`` to the main ``convfeat`` app."""
    main.registered_commands += app.registered_commands


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
    (`convfeat corpus synth`), the features from the model shipped inside the
    package (convfeat-synth), the random-weights twin and MFCC, plus the published
    choi2017 when its weights are installed.  Prints each clip's true tags
    beside the shipped model's top tags.
    """
    from ..demo import require_shipped_model, run_demo

    require_shipped_model()
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
