"""`convfeat datasets …`: list the dataset adapters, write manifests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import fail

datasets_app = typer.Typer(no_args_is_help=True,
                           help="Manifests (labels, official folds / splits) for published datasets.")


def _parse_options(pairs: List[str]) -> dict:
    opts = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"-O/--option takes KEY=VALUE, got {pair!r}")
        opts[key.strip().replace("-", "_")] = value.strip()
    return opts


@datasets_app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (name, task, layout, columns, folds, options)."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the Markdown table of the README."),
):
    """List the dataset adapters: name, task, folds / splits, what each reads."""
    from .. import datasets

    if as_json:
        typer.echo(json.dumps([a.describe() for a in datasets.adapters()], indent=2, ensure_ascii=False))
        return
    if markdown:
        typer.echo(datasets.markdown_table())
        return
    rows = [(a.name, a.task, a.description) for a in datasets.adapters()]
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    typer.echo(f"{'name':{w0}}  {'task':{w1}}  description")
    for name, task, desc in rows:
        typer.echo(f"{name:{w0}}  {task:{w1}}  {desc}")
    typer.echo("\nLayouts, columns, folds and options: convfeat datasets list --markdown (or --json).")


@datasets_app.command("manifest")
def manifest_cmd(
    name: str = typer.Argument(..., help="Adapter name (see `convfeat datasets list`)."),
    root: Path = typer.Argument(..., help="The dataset's folder as published (or the CSV for `csv`)."),
    out: Path = typer.Option(..., "-o", "--out", help="Manifest CSV to write (atomically)."),
    option: Optional[List[str]] = typer.Option(None, "-O", "--option", metavar="KEY=VALUE",
                                               help="Adapter option, repeatable (e.g. -O label=genre for csv, "
                                                    "-O subset=esc10 for esc50, -O seed=1 for philharmonia)."),
    allow_missing: bool = typer.Option(False, "--allow-missing",
                                       help="Write the manifest without files listed in the metadata but "
                                            "absent on disk (they are counted in a warning), instead of failing."),
):
    """Write the manifest of dataset NAME found at ROOT: id, path, label or targets,
    the official folds / splits, groups and metadata.  Prints a one-line summary;
    exit code 2 with `error: …` when ROOT does not look like the dataset or
    listed files are missing."""
    from .. import datasets

    opts = _parse_options(option)
    try:
        df = datasets.write_manifest(name, root, out, allow_missing=allow_missing, **opts)
    except datasets.DatasetError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or out}: {exc.strerror or exc}")
    for w in df.attrs.get("warnings", []):
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{out}: {name}, {datasets.summarize(df)}")


def register(app: typer.Typer) -> None:
    """Add the `datasets` sub-app to the main convfeat app."""
    app.add_typer(datasets_app, name="datasets")
