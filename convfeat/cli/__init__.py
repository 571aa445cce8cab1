"""Command-line interface: parses, calls the library, prints.  Nothing else.

One module per command group, each with ``register(app)``:

``tag``       tag, weights list/fetch
``extract``   extract, info, export, merge
``evaluate``  evaluate, import, run
``datasets``  datasets list/manifest
``pretrain``  pretrain, corpus synth
``demo``      demo

``common`` holds the one ``fail``, the one error mapper and the shared option choices.
Library modules are imported inside the commands, so ``convfeat --help`` starts without torch.
"""
from __future__ import annotations

import typer

from . import datasets, demo, evaluate, extract, pretrain, tag

app = typer.Typer(no_args_is_help=True,
                  help="Transfer-learning features for music and audio (Choi et al. 2017 convnet).")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        from .. import __version__

        typer.echo(f"convfeat {__version__}")
        raise typer.Exit()


for _module in (tag, extract, evaluate, datasets, pretrain, demo):
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
