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


_TYPE_WORDS = {"int": "INTEGER", "float": "NUMBER", "path": "PATH", "file": "PATH", "directory": "PATH",
               "str": "TEXT", "text": "TEXT"}


def _readable_help(command) -> None:
    """Help shows words, not Python types: no ``<bool>`` after a flag, ``INTEGER`` / ``PATH`` /
    ``TEXT`` after an option, an argument by its name alone (``FILES...``)."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None      # the name (FILES...) says it
            if param.metavar is None:
                param.metavar = param.name.upper()
        elif param.metavar is None:
            try:
                shown = param.display_type(None).strip("<>")      # "int", "path", "list[str]", "a|b"
            except Exception:                                    # an unusual type: keep typer's own
                continue
            word = shown.removeprefix("list[").removesuffix("]").replace(" range", "")
            if "|" in word:      # choices: listed when short, else named (the help lists them)
                param.metavar = word if len(word) <= 12 else param.name.upper()
            else:
                param.metavar = _TYPE_WORDS.get(word.lower(), word.upper())
    make_help_option = command.get_help_option

    def help_option(ctx):                                    # --help is made on demand, not a param
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _readable_help(sub)


def main() -> None:
    command = typer.main.get_command(app)
    _readable_help(command)
    command(prog_name="convfeat")


if __name__ == "__main__":
    main()
